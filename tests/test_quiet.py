"""What the package keeps out of the output: TensorFlow's C++ lines that ignore TF_CPP_MIN_LOG_LEVEL, and tfmot's
root-logger note under PCQAT; and that nothing else is lost on the way."""

from __future__ import annotations

import logging
import os

from tfopt_widgets.quiet import imported_quietly, stderr_without
from tfopt_widgets.runtime.training import NO_ZEROS_NOTE, root_log_without


def test_stderr_without_drops_only_the_listed_lines(capfd):
    with stderr_without(("harmless",)):
        os.write(2, b"a harmless line\nsomething to act on\n")
    assert capfd.readouterr().err == "something to act on\n"


def test_an_import_keeps_its_start_up_lines_out(tmp_path, monkeypatch, capfd):
    (tmp_path / "noisy_start.py").write_text(
        "import os\n"
        "os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n')\n"
        "os.write(2, b'I0000 00:00:1 1 port.cc:153] oneDNN custom operations are on. You may see...\\n')\n"
        "os.write(2, b'E0000 00:00:1 1 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)\\n')\n"
        "os.write(2, b'a line of its own\\n')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = imported_quietly("noisy_start")
    assert module.__name__ == "noisy_start" and capfd.readouterr().err == "a line of its own\n"
    assert imported_quietly("noisy_start") is module and capfd.readouterr().err == ""


def test_the_cqat_note_is_left_out_and_nothing_else(caplog):
    root = logging.getLogger()
    handlers = list(root.handlers)
    with caplog.at_level(logging.WARNING):
        with root_log_without(NO_ZEROS_NOTE):
            logging.warning(NO_ZEROS_NOTE)  # noqa: LOG015 -- as tfmot's cluster_preserve_quantize_registry logs it
            logging.warning("something else")  # noqa: LOG015
            logging.getLogger("tfopt.test").warning(NO_ZEROS_NOTE)  # another logger's record is not ours to drop
        logging.warning(NO_ZEROS_NOTE)  # noqa: LOG015 -- after the block: as before
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        ("root", "something else"), ("tfopt.test", NO_ZEROS_NOTE), ("root", NO_ZEROS_NOTE)]
    assert root.handlers == handlers and not root.filters


def test_the_demo_loads_tensorflow_without_its_start_up_lines():
    # A notebook that imports the demo (or any engine module) before anything of tw.* loads TensorFlow through the
    # engine's stack, which keeps the C++ start-up lines out; a TensorFlow error line would still come through.
    import subprocess
    import sys

    script = "from tfopt_widgets.demo import digits_model; digits_model(epochs=1)"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    for noise in ("oneDNN", "cuInit", "cuda", "absl::InitializeLog"):
        assert noise not in done.stderr, done.stderr[-2000:]
