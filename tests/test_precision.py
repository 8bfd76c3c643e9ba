"""Per-layer precision (plan.precision) carried out by LiteRT Quantizer in tw.convert, read back from the file
(TFLiteModel.precisions) and measured against the float model (TFLiteModel.layer_errors): the digits demo, real
conversions, real LiteRT Quantizer, no mocks."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tfopt_widgets as tw
from tfopt_widgets.plan.specs import PrecisionSpec
from tfopt_widgets.tflite.readback import FLAGGED, kernel_tensor


def mixed_plan() -> tw.Plan:
    """int4 weights on conv2, int16 activations on dense, float on classifier."""
    return (tw.Plan().precision("conv2", weights="int4").precision("dense", activations="int16")
            .precision("classifier", weights="float"))


@pytest.fixture(scope="module")
def mixed(digits):
    model, (x_train, _), _ = digits
    return tw.convert(model, "cpu", plan=mixed_plan(), representative_data=x_train[:200])


def kernel_values(tfl, layer):
    """(the layer's main kernel as stored, unpacked; dequantized) in the file."""
    op = next(op for op in tfl.ops if op.layer == layer and kernel_tensor(tfl, op) is not None)
    index = kernel_tensor(tfl, op)
    return tfl.tensors[index], tfl.tensor_data(index), tfl.tensor_data(index, dequantize=True)


# -- the plan --------------------------------------------------------------------------------------------------------

def test_precision_round_trips_through_json_and_is_removed_alone():
    plan = mixed_plan().precision("dense", weights="int4", granularity="block32").prune("conv2", sparsity=0.5)
    text = plan.to_json()
    data = json.loads(text)
    assert data["version"] == 1
    assert data["layers"]["classifier"] == {"precision": {"weights": "float", "activations": "float",
                                                          "granularity": "channel", "algorithm": "minmax"}}
    assert data["layers"]["conv2"]["precision"]["weights"] == "int4" and "prune" in data["layers"]["conv2"]
    again = tw.Plan.from_json(text)
    assert again == plan
    assert again.precisions["dense"] == PrecisionSpec("int4", "float", "block32", "minmax")
    # weights left out stays left out: a layer without weights reads back the same
    loose = tw.Plan().precision("pool", activations="int16")
    assert "weights" not in loose.to_dict()["layers"]["pool"]["precision"]
    assert tw.Plan.from_dict(loose.to_dict()).precisions["pool"] == PrecisionSpec(None, "int16")
    # a version-1 plan without the key reads as before
    assert tw.Plan.from_dict({"format": "tfopt-widgets/plan", "version": 1,
                              "layers": {"dense": {"quantize": True}}}).precisions == {}
    again.remove("conv2", "precision")
    assert "conv2" not in again.precisions and again["conv2"].prune is not None
    again.remove("classifier", "precision")
    assert "classifier" not in again


@pytest.mark.parametrize(("settings", "field"), [
    ({"weights": "int2"}, "weights"),
    ({"activations": "int4"}, "activations"),
    ({"weights": "int4", "granularity": "block16"}, "granularity"),
    ({"weights": "int8", "granularity": "block32"}, "granularity"),
    ({"weights": "int4", "activations": "int8", "granularity": "block64"}, "granularity"),
    ({"weights": "int8", "algorithm": "kmeans"}, "algorithm"),
    ({"weights": "int8", "activations": "int8", "algorithm": "hadamard"}, "algorithm"),
    ({"weights": "float", "algorithm": "mse"}, "algorithm"),
])
def test_precision_refuses_bad_settings_naming_the_field(settings, field):
    with pytest.raises(tw.PlanError) as raised:
        tw.Plan().precision("dense", **settings)
    assert raised.value.field == field


def test_validate_refuses_precision_conflicts_and_weights_without_weights(digits):
    model = digits[0]
    for plan, layer, field in [
        (tw.Plan().quantize("dense").precision("dense", weights="int4"), "dense", "precision"),
        (tw.Plan().keep_float("dense").precision("dense", weights="int4"), "dense", "precision"),
        (tw.Plan().precision("pool", weights="int8"), "pool", "weights"),
        (tw.Plan().precision("bn2", weights="int4"), "bn2", "weights"),
        (tw.Plan().precision("dense", weights="float", activations="int8"), "dense", "weights"),
        (tw.Plan().precision("dens", weights="int4"), "dens", "layer"),
    ]:
        with pytest.raises(tw.PlanError) as raised:
            plan.validate(model)
        assert (raised.value.layer, raised.value.field) == (layer, field), str(raised.value)
        assert repr(layer) in str(raised.value)
    mixed_plan().precision("pool", activations="int16").validate(model, target="cpu")  # no error


@pytest.mark.parametrize(("target", "weights", "activations", "words"), [
    ("edgetpu", "int4", "float", "8-bit"),
    ("edgetpu", "int8", "int16", "8-bit"),
    ("edgetpu", "float", "float", "keep_float"),
    ("hexagon", "int4", "int8", "8-bit"),
    ("gpu", "int4", "float", "CreateVectorCopyData"),
    ("gpu", "int8", "int16", "PopulateQuantParams"),
    ("float32", "int8", "float", "baseline"),
])
def test_targets_refuse_what_they_cannot_run_with_the_reason(digits, target, weights, activations, words):
    plan = tw.Plan().precision("conv2", weights=weights, activations=activations)
    with pytest.raises(tw.PlanError) as raised:
        plan.validate(digits[0], target=target)
    assert raised.value.layer == "conv2" and words in str(raised.value)
    assert tw.TARGETS[target].precisions_source


def test_edgetpu_conversion_refuses_int4_before_converting(digits):
    model, (x_train, _), _ = digits
    with pytest.raises(tw.PlanError) as raised:
        tw.convert(model, "edgetpu", plan=tw.Plan().precision("dense", weights="int4"),
                   representative_data=x_train[:50])
    assert raised.value.layer == "dense"
    assert "Edge TPU runs only fully 8-bit quantized models" in str(raised.value)


def test_integer_activations_need_representative_data(digits):
    with pytest.raises(tw.DataError) as raised:
        tw.convert(digits[0], "cpu", plan=tw.Plan().precision("dense", activations="int16"))
    assert raised.value.field == "representative_data" and "'dense'" in str(raised.value)


# -- the conversion and the read-back --------------------------------------------------------------------------------

def test_mixed_precisions_convert_and_read_back_exactly(mixed, digits):
    got = {layer: p.plan_words for layer, p in mixed.precisions().items()}
    assert got["conv2"] == ("int4", "float")
    assert got["dense"] == ("int8", "int16")
    assert got["classifier"] == ("float", "float")
    assert got["conv1"] == ("int8", "int8")  # the rest: the cpu target's own int8
    assert mixed.precisions()["classifier"].weights == "float32"
    assert mixed.quantization == "int8" and mixed.target == "cpu"
    # tw.TFLiteModel's op-to-layer map still names every op of a layer
    assert {op.layer for op in mixed.ops if op.op in ("CONV_2D", "FULLY_CONNECTED")} == {
        "conv1", "conv2", "dense", "classifier"}
    _, _, (x_test, y_test) = digits
    baseline = tw.evaluate(tw.convert(digits[0], "float32"), (x_test, y_test), runs=1)
    assert tw.evaluate(mixed, (x_test, y_test), runs=1).accuracy >= baseline.accuracy - 0.02
    assert mixed.size < 0.5 * baseline.size  # int8 and int4 weights, float32 only for the classifier


def test_int4_weights_are_unpacked_and_dequantize_close_to_the_keras_kernel(mixed, digits):
    tensor, values, _ = kernel_values(mixed, "conv2")
    assert tensor.dtype == "int4" and values.dtype == np.int8
    assert values.min() >= -8 and values.max() <= 7 and len(np.unique(values)) > 8
    keras_kernel = digits[0].get_layer("conv2").get_weights()[0]  # BatchNormalization folds into the file's kernel
    assert mixed.weights()["conv2"].shape == keras_kernel.shape
    # per output channel, the stored values are within half a step of the float file's kernel
    float_kernel = tw.convert(digits[0], "float32").weights()["conv2"]
    step = np.asarray(tensor.scale).reshape(1, 1, 1, -1)
    assert np.all(np.abs(mixed.weights()["conv2"] - float_kernel) <= step / 2 + 1e-6)


def test_layer_errors_has_a_row_for_every_quantized_layer(mixed, digits):
    _, _, (x_test, _) = digits
    errors = mixed.layer_errors(x_test, samples=16)
    quantized = {layer for layer, p in mixed.precisions().items()
                 if p.plan_words != ("float", "float") and layer not in ("bn2", "relu2")}
    assert quantized <= set(errors["layer"]) and {"conv2", "dense"} <= quantized
    rows = errors.set_index("layer")
    # conv1's int8: about rounding alone (TFLite's debugger: ~0.29 ideal, above 0.7 flagged)
    assert 0.1 < rows.loc["conv1", "error_over_scale"] < FLAGGED and not rows.loc["conv1", "flagged"]
    assert rows.loc["conv2", "rms_error"] > 0 and np.isnan(rows.loc["conv2", "scale"])  # float activations
    assert rows.loc["dense", "activations"] == "int16" and rows.loc["dense", "scale"] < 1e-3
    # the float classifier adds no error of its own, though what reaches it carries the layers' before
    assert rows.loc["classifier", "rms_error"] < 1e-5 < rows.loc["classifier", "accumulated_rms_error"]
    assert errors.attrs["samples"] == 16


def test_int16_activations_calibrate_on_the_extremes(digits):
    # dense's int16 activations calibrated on extremes, not LiteRT's moving average: same error as the converter's
    # int16x8 on that layer (LiteRT's own averaging clipped the outputs and gave about 12x more).
    model, (x_train, _), (x_test, _) = digits
    tfl = tw.convert(model, "cpu", plan=tw.Plan().precision("dense", activations="int16"),
                     representative_data=x_train[:200])
    reference = tw.convert(model, "cpu", quantization="int16x8", representative_data=x_train[:200])
    ours = tfl.layer_errors(x_test).set_index("layer").loc["dense", "rms_error"]
    theirs = reference.layer_errors(x_test).set_index("layer").loc["dense", "rms_error"]
    assert ours < 2 * theirs


def test_dynamic_and_float16_modes_give_the_other_layers_that_mode(digits):
    model, _, (x_test, y_test) = digits
    plan = tw.Plan().precision("conv2", weights="int4").precision("classifier", weights="float")
    with pytest.warns(tw.ModelNotice, match="no per-layer control in 'dynamic'"):
        dynamic = tw.convert(model, "cpu", plan=plan)  # no data: the cpu target's dynamic range
    got = {layer: p.plan_words for layer, p in dynamic.precisions().items()}
    assert dynamic.quantization == "dynamic"
    assert got["conv2"] == ("int4", "float") and got["dense"] == ("int8", "float")
    assert got["classifier"] == ("float", "float") and got["conv1"] == ("float", "float")  # under 1,024 weights
    gpu_plan = tw.Plan().precision("dense", weights="int8")
    with pytest.warns(tw.ModelNotice, match="no per-layer control in 'float16'"):
        gpu = tw.convert(model, "gpu", plan=gpu_plan)
    stored = {layer: p.weights for layer, p in gpu.precisions().items()}
    assert stored["dense"] == "int8" and stored["conv2"] == "float16" and stored["classifier"] == "float16"
    assert gpu.compatibility.summary["op_share"] == 1.0
    for tfl in (dynamic, gpu):
        assert tw.evaluate(tfl, (x_test, y_test), runs=1).accuracy > 0.9


def test_int16x8_and_unsupported_ops_are_refused(digits):
    model, (x_train, _), _ = digits
    with pytest.raises(tw.TargetError) as raised:
        tw.convert(model, "cpu", quantization="int16x8", representative_data=x_train[:50],
                   plan=tw.Plan().precision("dense", weights="int4"))
    assert raised.value.field == "precision" and "activations='int16'" in str(raised.value)
    # LiteRT Quantizer's own policy: blocks only for Dense, gptq only for Dense
    for settings in ({"weights": "int4", "granularity": "block32"}, {"weights": "int4", "algorithm": "gptq"}):
        with pytest.raises(tw.PlanError) as raised:
            tw.convert(model, "cpu", plan=tw.Plan().precision("conv2", **settings), representative_data=x_train[:50])
        assert raised.value.layer == "conv2" and "CONV_2D" in str(raised.value)
    # a layer folded into another's op is named with the op's owner
    with pytest.raises(tw.PlanError, match="inside layer 'conv2'"):
        tw.convert(model, "cpu", plan=tw.Plan().precision("bn2", activations="int16"), representative_data=x_train[:50])


def test_pruned_zeros_clusters_and_qat_layers_survive_int4(digits):
    model, (x_train, y_train), _ = digits
    plan = (tw.Plan().quantize("conv1").prune("dense", sparsity=0.75).cluster("conv2", clusters=8))
    optimized = tw.optimize(model, plan, (x_train, y_train), epochs=1)
    int8 = tw.convert(optimized, "cpu", representative_data=x_train[:200])
    int4 = tw.convert(optimized, "cpu", representative_data=x_train[:200],
                      plan=plan.copy().precision("dense", weights="int4").precision("conv2", weights="int4"))
    assert {layer: int4.precisions()[layer].weights for layer in ("conv1", "conv2", "dense")} == {
        "conv1": "int8", "conv2": "int4", "dense": "int4"}
    # pruned: every zero of the Keras kernel is a zero of the int4 tensor, and the share is the pruning's
    keras_dense = optimized.model.get_layer("dense").get_weights()[0]
    assert np.mean(keras_dense == 0) == pytest.approx(0.75, abs=0.01)
    stored = int4.weights()["dense"]
    assert np.all(stored[keras_dense == 0] == 0)
    _, dense_values, _ = kernel_values(int4, "dense")
    assert np.mean(dense_values == 0) == pytest.approx(0.75, abs=0.01)
    # clustered into 8 values: at most 8 int4 values per output channel (per-channel scales)
    _, conv2_values, _ = kernel_values(int4, "conv2")
    assert max(len(np.unique(channel)) for channel in conv2_values.reshape(len(conv2_values), -1)) <= 8
    # the QAT layer keeps the converter's int8 weights exactly
    assert np.array_equal(kernel_values(int4, "conv1")[1], kernel_values(int8, "conv1")[1])
    assert int4.gzip_size < int8.gzip_size


def test_a_saved_file_reads_back_without_tensorflow(mixed, digits, tmp_path):
    import subprocess
    import sys

    mixed.save(tmp_path / "mixed.tflite")
    tw.convert(digits[0], "float32").save(tmp_path / "float.tflite")
    np.save(tmp_path / "x.npy", digits[2][0][:4])
    code = (
        "import json, sys, numpy as np\n"
        "from tfopt_widgets.tflite.file import TFLiteModel\n"
        f"origins = {json.dumps(mixed.layer_origins)}\n"
        f"tfl = TFLiteModel.load({str(tmp_path / 'mixed.tflite')!r}, layer_origins=origins)\n"
        f"ref = TFLiteModel.load({str(tmp_path / 'float.tflite')!r})\n"
        "words = {k: v.plan_words for k, v in tfl.precisions().items()}\n"
        f"errors = tfl.layer_errors(np.load({str(tmp_path / 'x.npy')!r}), reference=ref)\n"
        "heavy = [m for m in ('tensorflow', 'tf_keras') if m in sys.modules]\n"
        "print(json.dumps([words['conv2'], len(errors), heavy]))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    conv2, rows, heavy = json.loads(done.stdout.strip().splitlines()[-1])
    assert conv2 == ["int4", "float"] and rows >= 5 and heavy == []
