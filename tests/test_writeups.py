"""Reproducible write-ups: Plan.to_python's standalone script against the engine, and tw.report's HTML/Markdown."""

from __future__ import annotations

import ast
import base64
import io
import re
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pytest

import tfopt_widgets as tw
from tfopt_widgets.plan.script import FILL_IN
from tfopt_widgets.tflite.file import TFLiteModel

# The body a reader writes into load_training_data(): the digits demo's training split, without tfopt_widgets.
DIGITS_TRAIN = """from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]
    y = digits.target.astype("int64")
    order = np.random.default_rng(0).permutation(len(x))
    train = order[int(round(len(x) * 0.25)):]
    return x[train], y[train]"""

# Runs the script as __main__ with tfopt_widgets made unimportable: it must stand on tf_keras + tfmot + TF alone.
WITHOUT_PACKAGE = ("import runpy, sys; sys.modules['tfopt_widgets'] = None; "
                   "runpy.run_path(sys.argv[1], run_name='__main__')")


def mixed_plan() -> tw.Plan:
    """Every stage and scheme at once: QAT, PQAT with a folded BN group, PCQAT next to a CQAT Dense (tfmot would
    share one quantizer between them and drop PCQAT's zeros), and a layer frozen while clustering."""
    return (tw.Plan().quantize("conv1", "conv2", "dense", "classifier").prune("conv2", sparsity=0.5)
            .prune("dense", sparsity=0.75).cluster("dense", clusters=16).cluster("classifier", clusters=8))


def summary_table(stdout: str) -> dict[str, tuple[float, int]]:
    """The script's per-layer table: {layer: (sparsity, unique values)}."""
    rows = {}
    for line in stdout.splitlines():
        if line.startswith("'"):
            name, sparsity, unique = line.rsplit(None, 2)
            rows[ast.literal_eval(name.strip())] = (float(sparsity), int(unique))
    return rows


def started_script(script: str, tmp_path) -> subprocess.Popen:
    """``script`` with the digits demo's training data filled in, running as __main__ in its own process (in
    ``tmp_path``, as reproduce.py) with tfopt_widgets made unimportable; stdout and stderr together."""
    assert script.count(FILL_IN) == 1
    path = tmp_path / "reproduce.py"
    path.write_text(script.replace(FILL_IN, DIGITS_TRAIN))
    return subprocess.Popen([sys.executable, "-c", WITHOUT_PACKAGE, str(path)], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_generated_script_reproduces_optimize_and_convert(digits, frozen, tmp_path):
    _, (x_train, y_train), _ = digits
    model_path = tmp_path / "digits.keras"
    frozen.save(model_path)
    plan = mixed_plan()
    script = plan.to_python(str(model_path), "edgetpu", model=frozen, epochs=1,
                            output_path=str(tmp_path / "script.tflite"))
    assert "tfopt_widgets" not in script.replace("tfopt-widgets", "")
    # The script runs in its own process while the engine does the same here.
    process = started_script(script, tmp_path)
    try:
        optimized = tw.optimize(frozen, plan, (x_train, y_train), epochs=1)
        engine = tw.convert(optimized, "edgetpu", representative_data=x_train)
        output, _ = process.communicate(timeout=600)
    finally:
        process.kill()
    assert process.returncode == 0, output[-4000:]

    stats = optimized.layer_stats()
    script_stats = summary_table(output)
    assert set(script_stats) == set(stats.index)
    sizes = {layer: kernel.size for layer, kernel in optimized.weights().items()}
    for layer, (sparsity, unique) in script_stats.items():
        # Within 0.5%, or one weight: int8 fake-quant rounds the odd tiny weight of a small kernel to zero.
        assert sparsity == pytest.approx(stats.loc[layer, "sparsity"], abs=max(0.005, 1.01 / sizes[layer])), layer
        if plan[layer].cluster:
            # Each is at most the cluster count; int8 fake-quant may merge two close centroids in one process and
            # not in the other (TensorFlow's CPU kernels are not bit-reproducible across processes): 1 in ~8 runs.
            clusters = plan[layer].cluster.clusters
            engine_unique = int(stats.loc[layer, "unique_values"])
            assert unique <= clusters and engine_unique <= clusters, f"cluster count of {layer}"
            assert abs(unique - engine_unique) <= 1, f"cluster count of {layer}: {unique} vs {engine_unique}"
    assert stats.loc["dense", "sparsity"] >= 0.745 and script_stats["dense"][0] >= 0.745

    reproduced = TFLiteModel.load(tmp_path / "script.tflite")
    assert [op.op for op in reproduced.ops] == [op.op for op in engine.ops]
    assert [(t.dtype, t.shape) for t in reproduced.tensors] == [(t.dtype, t.shape) for t in engine.tensors]
    assert reproduced.inputs[0].dtype == "int8" and reproduced.inputs[0].shape_signature == (1, 8, 8, 1)
    # Pruning zeros survive into the int8 file on both sides (per weighted op, in op order).
    for mine, theirs in zip(reproduced.ops, engine.ops):
        if mine.op in ("CONV_2D", "FULLY_CONNECTED"):
            kernels = [m.tensor_data(op.inputs[1]) for m, op in ((reproduced, mine), (engine, theirs))]
            zeros = [np.mean(kernel == 0) for kernel in kernels]
            assert zeros[0] == pytest.approx(zeros[1], abs=max(0.005, 1.01 / kernels[0].size)), mine


@pytest.mark.slow
def test_generated_script_keeps_float_layers_as_convert_does(digits, frozen, tmp_path):
    """keep_float next to QAT (cpu: float I/O), and a plan that only keeps a layer float (Edge TPU: int8 I/O,
    nothing fine-tuned): each script's file keeps exactly that layer float, like the engine's file for the plan."""
    _, (x_train, y_train), _ = digits
    model_path = tmp_path / "digits.keras"
    frozen.save(model_path)
    plans = {"qat": (tw.Plan().quantize("dense").keep_float("conv2"), "cpu"),
             "kept": (tw.Plan().keep_float("conv2"), "edgetpu")}
    processes = {}
    try:
        for name, (plan, target) in plans.items():
            script = plan.to_python(str(model_path), target, model=frozen, epochs=1,
                                    output_path=str(tmp_path / f"{name}.tflite"))
            assert "tfopt_widgets" not in script.replace("tfopt-widgets", "")
            path = tmp_path / f"{name}.py"
            path.write_text(script.replace(FILL_IN, DIGITS_TRAIN))
            processes[name] = subprocess.Popen([sys.executable, "-c", WITHOUT_PACKAGE, str(path)], cwd=tmp_path,
                                               text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        optimized = tw.optimize(frozen, plans["qat"][0], (x_train, y_train), epochs=1)
        engines = {"qat": tw.convert(optimized, "cpu", representative_data=x_train, plan=plans["qat"][0]),
                   "kept": tw.convert(frozen, "edgetpu", representative_data=x_train, plan=plans["kept"][0])}
        outputs = {name: process.communicate(timeout=600)[0] for name, process in processes.items()}
    finally:
        for process in processes.values():
            process.kill()
    for name, engine in engines.items():
        assert processes[name].returncode == 0, outputs[name][-4000:]
        # The script's model has the engine's layer names (quant_dense for QAT), so the engine's map reads its file.
        reproduced = TFLiteModel.load(tmp_path / f"{name}.tflite", layer_origins=engine.layer_origins)
        assert reproduced.float_layers() == engine.float_layers() == ["conv2"], name
        assert [op.op for op in reproduced.ops] == [op.op for op in engine.ops], name
        assert [(t.dtype, t.shape) for t in reproduced.tensors] == [(t.dtype, t.shape) for t in engine.tensors], name
        assert abs(reproduced.size - engine.size) <= 64, (name, reproduced.size, engine.size)
        convs = [op for op in reproduced.ops if op.op == "CONV_2D"]
        assert [reproduced.tensors[op.inputs[1]].dtype for op in convs] == ["int8", "float32"], name
    assert set(summary_table(outputs["qat"])) == {"dense"} and summary_table(outputs["kept"]) == {}
    assert TFLiteModel.load(tmp_path / "qat.tflite").inputs[0].dtype == "float32"  # the cpu target's float I/O
    kept = TFLiteModel.load(tmp_path / "kept.tflite")
    assert kept.inputs[0].dtype == "int8" and kept.inputs[0].shape_signature == (1, 8, 8, 1)


def test_layer_names_are_quoted_safely(tmp_path):
    marker = tmp_path / "injected"
    nasty = [f"a'); open({str(marker)!r}, 'w') #", 'b"""\n import os', "c\\", "d\x00e", "f{x}"]
    plan = tw.Plan().prune(nasty[0], sparsity=0.5).cluster(nasty[1], clusters=4).quantize(*nasty[2:])
    script = plan.to_python(model_path="it's \"here\".keras", target="cpu")
    tree = ast.parse(script)
    assert not any(isinstance(node, ast.Call) and getattr(node.func, "id", None) == "open" for node in ast.walk(tree))
    namespace = {"__name__": "not_main"}
    exec(compile(tree, "reproduce.py", "exec"), namespace)  # noqa: S102 -- defines everything, runs nothing
    assert not marker.exists()
    assert list(namespace["PRUNE"]) == [nasty[0]] and list(namespace["CLUSTER"]) == [nasty[1]]
    assert namespace["QUANTIZE"] == nasty[2:]
    assert namespace["MODEL_PATH"] == "it's \"here\".keras"


def test_script_finds_folded_layers_as_inspect_does(digits):
    model = digits[0]
    script = tw.Plan().quantize("conv2").to_python()  # no model given: the script finds the groups itself
    namespace = {"__name__": "not_main"}
    exec(compile(script, "reproduce.py", "exec"), namespace)  # noqa: S102 -- defines, runs nothing
    assert namespace["QUANTIZED_WITH"] is None
    assert namespace["quantized_with"](model) == {"conv2": tw.inspect(model).group_members("conv2")} \
        == {"conv2": ["bn2", "relu2"]}
    named = tw.Plan().quantize("conv2").to_python(model=model)
    assert "QUANTIZED_WITH = {'conv2': ['bn2', 'relu2']}" in named


def test_script_settings_follow_the_target_and_plan():
    prune_only = tw.Plan().prune("dense", sparsity=0.5)
    assert "QUANTIZATION = 'int8'" in prune_only.to_python(target="cpu")  # calibrated on the training data
    assert "QUANTIZATION = 'float16'" in prune_only.to_python(target="gpu")
    qat = tw.Plan().quantize("dense")
    assert "QUANTIZATION = 'int8'" in qat.to_python(target="gpu")  # QAT layers make the file int8 where allowed
    edgetpu = qat.to_python(target="edgetpu")
    assert "INT8_IO = True" in edgetpu and "FIXED_BATCH = True" in edgetpu
    assert ("QUANTIZE_SCHEME = quantize_scheme('quantization.keras.default_8bit.Default8BitQuantizeScheme', {}, [])"
            in edgetpu)
    assert ("QUANTIZE_SCHEME = quantize_scheme('experimental.combine.Default8BitPrunePreserveQuantizeScheme', {}, [])"
            in qat.copy().prune("dense", sparsity=0.5).to_python())
    clustered_only = tw.Plan().quantize("dense").cluster("classifier", clusters=8).to_python()
    assert "FROZEN_WHILE_QUANTIZING = ['classifier']" in clustered_only
    assert ("QUANTIZE_SCHEME = quantize_scheme('experimental.combine.Default8BitClusterPreserveQuantizeScheme', "
            "{'preserve_sparsity': False}, ['dense'])" in tw.Plan().quantize("dense").cluster("dense", clusters=8).to_python())
    with pytest.raises(tw.PlanError, match="empty"):
        tw.Plan().to_python()
    kept = qat.copy().keep_float("conv1").to_python()  # QAT plus selective int8, as tw.suggest_plan makes for cpu
    assert "KEEP_FLOAT = ['conv1']" in kept and "content = selective_int8(converter, model, KEEP_FLOAT" in kept
    float_only = tw.Plan().keep_float("conv1").to_python(target="gpu")  # float16: every layer stays float anyway
    assert "KEEP_FLOAT = []" in float_only and "selective_int8" not in float_only
    assert "fine_tune" not in float_only and "content = converter.convert()" in float_only
    with pytest.raises(tw.TargetError, match="keep_float"):  # as tw.convert: only int8 has a denylist
        tw.Plan().keep_float("conv1").to_python(quantization="dynamic")
    with pytest.raises(tw.TargetError):
        qat.to_python(target="tpu9000")


# -- tw.report ----------------------------------------------------------------------------------------------------

NASTY = '<script>alert("x")</script> & | `name` $x$'


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


@pytest.fixture(scope="module")
def written_report(digits, tmp_path_factory):
    """A report for the digits demo: PQAT on `dense`, float32 baseline and Edge TPU runs, plus a markup layer name."""
    model, (x_train, y_train), test = digits
    optimized = tw.optimize(model, tw.Plan().prune("dense", sparsity=0.75).quantize("dense"), (x_train, y_train),
                            epochs=1)
    baseline = tw.convert(model, "float32")
    edgetpu = tw.convert(optimized, "edgetpu", representative_data=x_train)
    plan = optimized.plan.copy().quantize(NASTY)  # a name from a user's model that is markup in HTML and Markdown
    runs = [("float32 baseline", baseline, tw.evaluate(baseline, test, runs=5)),
            ("Edge TPU, PQAT <int8>", edgetpu, tw.evaluate(edgetpu, test, runs=5))]
    path = tw.report(tmp_path_factory.mktemp("report") / "digits.html", model=model, optimized=optimized, runs=runs,
                     plan=plan, notes="Notes are <b>text</b>.")
    return path


@pytest.mark.slow
def test_report_html_is_self_contained_and_escaped(written_report):
    from PIL import Image

    text = written_report.read_text(encoding="utf-8")
    tags = _Tags()
    tags.feed(text)
    names = [tag for tag, _ in tags.tags]
    assert "script" not in names and "iframe" not in names and "link" not in names
    for tag, attrs in tags.tags:
        assert not any(key.startswith("on") for key in attrs), (tag, attrs)
        assert not any("http" in (attrs.get(key) or "") for key in ("src", "href")), (tag, attrs)
    images = [attrs["src"] for tag, attrs in tags.tags if tag == "img"]
    assert len(images) == 1, "one figure: dense (the markup-named layer has no weights)"
    for src in images:
        assert src.startswith("data:image/png;base64,")
        image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        image.verify()
        assert image.size[0] > 400
    assert "<b>text</b>" not in text and "&lt;b&gt;text&lt;/b&gt;" in text
    assert "<script>alert" not in text and "&lt;script&gt;alert(&quot;x&quot;)" in text
    for heading in ("Plan", "Results", "Compatibility: Edge TPU, PQAT &lt;int8&gt; (Edge TPU)", "Weight distributions"):
        assert f"<h2>{heading}</h2>" in text
    assert "75.00%" in text, "the stats table shows the pruned kernel's zeros"

    markdown = written_report.with_suffix(".md").read_text(encoding="utf-8")
    assert "<script>" not in markdown and "&lt;script&gt;" in markdown and "\\|" in markdown
    linked = re.findall(r"\]\((digits_files/[^)]+\.png)\)", markdown)
    assert linked and all((written_report.parent / link).is_file() for link in linked)
    plan_json = markdown.split("~~~~json\n", 1)[1].split("\n~~~~", 1)[0]
    assert NASTY in tw.Plan.from_json(plan_json), "the escaped plan JSON still reads back"


@pytest.mark.slow
def test_studio_report_and_static_summary(digits, tmp_path):
    from nbconvert import HTMLExporter
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    from tfopt_widgets.writeups.reporting import studio_summary_html

    model, train, test = digits
    studio = tw.Studio(model, train_data=train, validation_data=test, target="cpu")
    studio.plan.quantize("dense")
    summary = studio_summary_html(studio)
    assert "dense" in summary and "No results yet" in summary and "<script" not in summary
    studio.plan.clear()
    studio.run(wait=True)  # an empty plan: baseline + a post-training int8 file, no fine-tuning
    assert studio.error == ""
    summary = studio_summary_html(studio)
    assert "float32 baseline" in summary and "int8" in summary
    path = studio.export_report(tmp_path / "studio.html")
    text = path.read_text(encoding="utf-8")
    assert "<h2>Results</h2>" in text and "<h2>Compatibility: float32 baseline (Float32 baseline)</h2>" in text
    # The last run's layer errors, measured on the data its baseline was measured on (an int8 file: every layer).
    assert text.count("<h2>Layer errors: ") == 1 and "error / scale" in text
    assert text.count("data:image/png;base64,") >= 1, "the largest layers' weights, before and in the file"

    # Without a widget front-end (nbconvert, GitHub), the Studio's output reads as a static summary.
    bundle = studio._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle and "float32 baseline" in bundle["text/html"]
    notebook = new_notebook(cells=[new_code_cell("studio", outputs=[new_output("display_data", data=bundle)])])
    page, _ = HTMLExporter().from_notebook_node(notebook)
    assert "tfopt-widgets Studio: digits_cnn" in page and "float32 baseline" in page
