"""Plan.to_python with plan.precision: the script runs LiteRT Quantizer as tw.convert does (runtime/precision.py
inlined whole, the precisions as a dict constant) and its file reads back the engine's precisions; a plan without
precisions gets no LiteRT Quantizer code. Real conversions, real LiteRT Quantizer, the script in its own process
with tfopt_widgets made unimportable."""

from __future__ import annotations

import ast
import json

import pytest
from test_writeups import started_script

import tfopt_widgets as tw
from tfopt_widgets.tflite.file import TFLiteModel

# What only a script with precisions holds: LiteRT Quantizer's package, runtime/precision.py, the step that calls it.
LITERT_CODE = ("litert_quantizer", "litert-quantizer", "runtime: precision.py", "PRECISIONS", "with_precisions",
               "quantize_file", "converter_mode")


def mixed_plan() -> tw.Plan:
    """int4 weights on conv2, int16 activations on dense, float on classifier (the issue's example)."""
    return (tw.Plan().precision("conv2", weights="int4").precision("dense", activations="int16")
            .precision("classifier", weights="float"))


def constants(script: str) -> dict:
    """The script's module-level constants that are plain literals, by name."""
    found = {}
    for node in ast.parse(script).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                found[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return found


def test_the_script_holds_the_precisions_and_says_it_needs_litert_quantizer():
    plan = mixed_plan()
    script = plan.to_python("digits.keras", "cpu")
    assert "tfopt_widgets" not in script.replace("tfopt-widgets", "")
    assert all(code in script for code in LITERT_CODE)
    docstring = ast.get_docstring(ast.parse(script))
    assert "litert-quantizer" in docstring and "LiteRT Quantizer" in docstring
    precisions = constants(script)["PRECISIONS"]
    assert json.loads(json.dumps(precisions)) == precisions  # the recipe's input as JSON
    assert precisions == {
        "conv2": {"weights": "int4", "activations": "float", "granularity": "channel", "algorithm": "minmax"},
        "dense": {"weights": None, "activations": "int16", "granularity": "channel", "algorithm": "minmax"},
        "classifier": {"weights": "float", "activations": "float", "granularity": "channel", "algorithm": "minmax"}}
    assert constants(script)["QUANTIZATION"] == "int8"


def test_a_plan_without_precisions_gets_no_litert_quantizer_code():
    for plan in (tw.Plan().quantize("conv1").prune("dense", sparsity=0.5), tw.Plan().keep_float("conv2")):
        script = plan.to_python("digits.keras", "cpu")
        assert not [code for code in LITERT_CODE if code in script], plan
        assert "Requires:" not in script and "with TensorFlow, tf_keras and tfmot only." in script


def test_int16x8_with_precisions_is_refused_as_convert_refuses_it():
    with pytest.raises(tw.TargetError, match="int16x8"):
        mixed_plan().to_python("digits.keras", "cpu", quantization="int16x8")


@pytest.mark.slow
def test_the_script_reproduces_converts_precisions(digits, frozen, tmp_path):
    _, (x_train, _), _ = digits
    model_path = tmp_path / "digits.keras"
    frozen.save(model_path)
    plan = mixed_plan()
    script = plan.to_python(str(model_path), "cpu", model=frozen, output_path=str(tmp_path / "script.tflite"))
    # The script runs in its own process while the engine converts here (both calibrate on the same 200 inputs).
    process = started_script(script, tmp_path)
    try:
        engine = tw.convert(frozen, "cpu", plan=plan, representative_data=x_train)
        output, _ = process.communicate(timeout=600)
    finally:
        process.kill()
    assert process.returncode == 0, output[-4000:]

    reproduced = TFLiteModel.load(tmp_path / "script.tflite", layer_origins=engine.layer_origins)
    assert reproduced.precisions() == engine.precisions()
    words = {layer: p.plan_words for layer, p in reproduced.precisions().items()}
    assert words["conv2"] == ("int4", "float") and words["dense"] == ("int8", "int16")
    assert words["classifier"] == ("float", "float") and words["conv1"] == ("int8", "int8")
    assert [op.op for op in reproduced.ops] == [op.op for op in engine.ops]
    assert [(t.dtype, t.shape) for t in reproduced.tensors] == [(t.dtype, t.shape) for t in engine.tensors]
    assert abs(reproduced.size - engine.size) <= 64, (reproduced.size, engine.size)
