"""Keep harmless native log lines (TFLite converter, LiteRT delegate banners) out of notebooks and test output."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings


class CapturedText:
    """What was written to file descriptor 2 inside :func:`captured_stderr`; filled in when the block ends."""

    text = ""


@contextlib.contextmanager
def captured_stderr(*ignored_warnings: str):
    """Send file descriptor 2 (where C++ code logs) to a buffer, and ignore Python warnings matching the messages.

    The caller gets a :class:`CapturedText` to quote in an error message when the guarded call fails.
    """
    captured = CapturedText()
    with tempfile.TemporaryFile() as buffer, warnings.catch_warnings():
        for message in ignored_warnings:
            warnings.filterwarnings("ignore", message=message)
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(buffer.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            buffer.seek(0)
            captured.text = buffer.read().decode(errors="replace")


@contextlib.contextmanager
def captured_stdout():
    """Send file descriptor 1 and ``sys.stdout`` to a buffer: for tools that print a report instead of returning it.

    TFLite's ``Analyzer.analyze`` prints its report (from Python, and native code may write to fd 1 directly); the
    caller gets a :class:`CapturedText` with everything written, filled in when the block ends.
    """
    captured = CapturedText()
    with tempfile.TemporaryFile() as buffer, tempfile.TemporaryFile(mode="w+") as text:
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(buffer.fileno(), 1)
        try:
            with contextlib.redirect_stdout(text):
                yield captured
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
            buffer.seek(0)
            text.seek(0)
            captured.text = buffer.read().decode(errors="replace") + text.read()


# Lines TensorFlow's C++ code writes through absl, whose log settings TF_CPP_MIN_LOG_LEVEL does not reach (TF 2.21):
# while it loads and looks for devices, two oneDNN and two CUDA-driver lines, each after absl's own "All log messages
# before absl::InitializeLog()" line, then "failed call to cuInit" on the first device query; while a clustered model
# fine-tunes, an error-level line about oneDNN's int32 kernels (it falls back to Eigen by itself). None of them asks
# anything of the user.
HARMLESS_LINES = ("All log messages before absl::InitializeLog()", "oneDNN custom operations are on",
                  "Could not find cuda drivers", "failed call to cuInit", "Unable to register cuDNN",
                  "Unable to register cuFFT", "Unable to register cuBLAS", "computation placer already registered",
                  "This TensorFlow binary is optimized to use available CPU instructions",
                  "To enable the following instructions", "TF-TRT Warning",
                  "oneDNN supports DT_INT32 only on platforms with AVX-512")


@contextlib.contextmanager
def stderr_without(dropped: tuple[str, ...] = HARMLESS_LINES):
    """Capture file descriptor 2 inside the block; at its end (also on an error) write what was captured to
    ``sys.stderr``, less the lines that contain one of ``dropped``."""
    log = CapturedText()
    try:
        with captured_stderr() as log:
            yield
    finally:
        kept = [line for line in log.text.splitlines(keepends=True)
                if line.strip() and not any(words in line for words in dropped)]
        if kept:
            sys.stderr.write("".join(kept))
            sys.stderr.flush()


def imported_quietly(name: str, start=None):
    """``importlib.import_module(name)``, then ``start(module)``, inside :func:`stderr_without`.

    For TensorFlow, whose C++ start-up lines ignore TF_CPP_MIN_LOG_LEVEL; a module already imported is returned
    as it is (its lines were written when it loaded).
    """
    import importlib

    if name in sys.modules:
        return sys.modules[name]
    with stderr_without():
        module = importlib.import_module(name)
        if start is not None:
            start(module)
    return module
