"""TFLiteModel.compatibility on real converted models: which ops each target's accelerator runs, and why not."""

import dataclasses

import numpy as np
import pytest

import tfopt_widgets as tw
from tfopt_widgets.targets import TARGETS, compatibility, gpu
from tfopt_widgets.targets.rules import CHECKS

keras = pytest.importorskip("tf_keras")
tf = pytest.importorskip("tensorflow")

AFTER = "after the first unsupported op"


def calibration(shape, count=20, seed=0):
    return np.random.default_rng(seed).random((count, *shape), dtype=np.float32)


def small_cnn(middle, name="middle", input_shape=(8, 8, 1)):
    """conv1 -> ``middle`` layer -> conv2 -> flatten -> dense: an op under test between two supported layers."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = middle(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="dense")(x)
    return keras.Model(inputs, outputs, name=name)


@pytest.fixture(scope="module")
def mobilenet_edgetpu():
    model = keras.applications.MobileNetV2(weights=None, alpha=0.35, input_shape=(96, 96, 3))
    return tw.convert(model, "edgetpu", representative_data=calibration((96, 96, 3), count=10))


@pytest.fixture(scope="module")
def float_op_model():
    """cumsum has no int8 kernel, so an "int8" file keeps it float between a DEQUANTIZE and a QUANTIZE."""
    return small_cnn(keras.layers.Lambda(lambda t: tf.math.cumsum(t, axis=1), name="cumsum"))


def test_op_tables_are_data_with_sources():
    from ai_edge_litert import schema_py_generated as schema

    builtin = {name for name in vars(schema.BuiltinOperator) if not name.startswith("_")}
    for target in TARGETS.values():
        assert target.ops_source and "2026-" in target.ops_source, target.name
        assert set(target.ops) <= builtin, set(target.ops) - builtin
        for rules in [*target.ops.values(), target.tensor_rules]:
            assert all(rule.check in CHECKS and rule.what for rule in rules)
        assert (target.accelerator is None) == (target.placement == "cpu") == (not target.ops)
    assert TARGETS["edgetpu"].placement == "prefix"
    assert TARGETS["hexagon"].placement == TARGETS["gpu"].placement == "partition"


def test_mobilenet_v2_runs_entirely_on_the_edge_tpu(mobilenet_edgetpu):
    result = mobilenet_edgetpu.compatibility
    assert len(result) > 60 and all(entry.accelerated and entry.reason is None for entry in result)
    summary = result.summary
    assert summary["op_share"] == summary["mac_share"] == 1.0
    # MobileNetV2 alpha 0.35 needs ~59 M MACs at 224x224; (96/224)^2 of that is ~11 M.
    assert 8e6 < summary["macs"] < 15e6
    assert 0 < summary["parameter_bytes_accelerated"] <= summary["parameter_bytes"] < summary["parameter_cache_bytes"]
    assert summary["streams_weights"] is False and summary["warnings"] == []
    layers = result.by_layer()
    assert layers["Conv1"].accelerated and layers["Conv1"].macs > 0
    # Folded BatchNormalization layers leave no op of their own; tensor names tell the fold only sometimes.
    assert layers["bn_Conv1"].accelerated in (True, None)
    assert all(place.accelerated in (True, None) for place in layers.values())
    assert sum(place.accelerated is True for place in layers.values()) >= 60


def test_edge_tpu_falls_back_from_the_first_unsupported_op_on(float_op_model):
    result = tw.convert(float_op_model, "edgetpu", representative_data=calibration((8, 8, 1))).compatibility
    first = next(entry for entry in result if not entry.accelerated)
    assert first.layer == "cumsum" and first.op in ("DEQUANTIZE", "CUMSUM")
    assert all(entry.accelerated for entry in result[:first.index])
    assert all(not entry.accelerated for entry in result[first.index:])
    cumsum = next(entry for entry in result if entry.op == "CUMSUM")
    assert "CUMSUM is not supported by the Edge TPU" in cumsum.reason or AFTER in cumsum.reason
    assert all(AFTER in entry.reason and "'cumsum'" in entry.reason for entry in result[first.index + 1:])
    layers = result.by_layer()
    assert layers["conv1"].accelerated is True
    assert layers["cumsum"].accelerated is False and "not supported by the Edge TPU" in layers["cumsum"].reason
    assert layers["conv2"].accelerated is False and AFTER in layers["conv2"].reason
    assert layers["dense"].accelerated is False
    assert 0 < result.summary["mac_share"] < 0.5  # conv1 is on the chip, conv2 and dense are not


def test_hexagon_partitions_out_only_the_float_op_and_its_casts(float_op_model):
    result = tw.convert(float_op_model, "hexagon", representative_data=calibration((8, 8, 1))).compatibility
    fallback = {entry.op: entry for entry in result.fallbacks}
    assert set(fallback) == {"DEQUANTIZE", "CUMSUM", "QUANTIZE"}
    assert "CUMSUM is not supported by the Hexagon DSP" in fallback["CUMSUM"].reason
    assert "float tensor" in fallback["QUANTIZE"].reason and "float32" in fallback["QUANTIZE"].reason
    assert "float tensor" in fallback["DEQUANTIZE"].reason
    layers = result.by_layer()
    assert layers["conv1"].accelerated and layers["conv2"].accelerated and layers["dense"].accelerated
    assert layers["cumsum"].accelerated is False
    assert result.summary["mac_share"] == 1.0 and result.summary["op_share"] < 1.0


def test_float16_gpu_file_passes_the_gpu_check(converted):
    tfl = converted("gpu")
    assert tfl.quantization == "float16"
    # TFLite's own check finds nothing to flag; the table agrees op by op.
    assert gpu._analyze(tfl.content) == {}
    result = tfl.compatibility
    assert all(entry.accelerated for entry in result) and result.summary["op_share"] == 1.0
    assert "Analyzer" in result.summary["checker"]
    assert set(result.by_layer()["classifier"].ops) >= {op.index for op in tfl.ops if op.layer == "classifier"}


def test_unsupported_gpu_op_is_reported_per_op():
    model = small_cnn(keras.layers.Lambda(lambda t: tf.reverse(t, axis=[1]), name="reverse"))
    result = tw.convert(model, "gpu").compatibility
    assert [(entry.op, entry.layer) for entry in result.fallbacks] == [("REVERSE_V2", "reverse")]
    assert "REVERSE_V2 is not supported by the GPU" in result.fallbacks[0].reason
    assert result.by_layer()["conv2"].accelerated  # the GPU delegate partitions: later layers stay on the GPU
    assert result.summary["mac_share"] == 1.0 and result.summary["partitions"] == 2
    assert any("split into 2 GPU partitions" in warning for warning in result.summary["warnings"])


def test_analyzer_report_is_parsed_per_op():
    report = """Subgraph#0 main(T#0) -> [T#3]
  Op#0 CONV_2D(T#0, T#1, T#2) -> [T#3]
  Op#1 REVERSE_V2(T#3, T#4[1]) -> [T#5]
GPU COMPATIBILITY WARNING: Not supported op REVERSE_V2
  Op#2 RESHAPE(T#5) -> [T#6]

GPU COMPATIBILITY WARNING: Subgraph#0 has GPU delegate compatibility issues at nodes 1 with TFLite runtime version 2.x
Subgraph#1 other(T#0) -> [T#1]
  Op#0 ROUND(T#0) -> [T#1]
GPU COMPATIBILITY WARNING: Not supported op ROUND
"""
    assert gpu.parse_gpu_report(report) == {1: "Not supported op REVERSE_V2"}


def test_dynamic_batch_gets_a_fixed_batch_file_for_the_edge_tpu(digits, converted):
    model = digits[0]
    assert model.inputs[0].shape[0] is None
    edgetpu = converted("edgetpu", calibrate=True)
    assert edgetpu.inputs[0].shape_signature == (1, 8, 8, 1)
    assert all(entry.accelerated for entry in edgetpu.compatibility)
    # The CPU file keeps the dynamic batch: on the Edge TPU that is a violated limit, named with the value.
    cpu_file = converted("cpu", calibrate=True)
    assert cpu_file.inputs[0].shape_signature[0] == -1
    on_edgetpu = compatibility.check(cpu_file, "edgetpu")
    assert not on_edgetpu[0].accelerated and "dynamic size" in on_edgetpu[0].reason


def test_float_io_casts_stay_on_the_cpu_without_ending_the_edge_tpu_subgraph(digits):
    model, (x_train, _), _ = digits
    result = tw.convert(model, "edgetpu", representative_data=x_train[:50], int8_io=False).compatibility
    first, last = result[0], result[-1]
    assert (first.op, last.op) == ("QUANTIZE", "DEQUANTIZE")
    assert not first.accelerated and "quantizes the float input on the CPU" in first.reason
    assert not last.accelerated and "dequantizes the output to float" in last.reason
    assert all(entry.accelerated for entry in result[1:-1]) and result.summary["partitions"] == 1


def test_a_model_that_cannot_be_fixed_is_refused_for_the_edge_tpu():
    inputs = keras.Input((None, None, 1))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D(name="gap")(x))
    with pytest.raises(tw.ModelError, match="needs every size fixed"):
        tw.convert(model, "edgetpu", representative_data=calibration((8, 8, 1)))


@pytest.fixture(scope="module")
def limits_model():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = keras.layers.Reshape((2, 4, 8, 8), name="to5d")(x)  # 4 dimensions > 1: the Edge TPU takes 3, Hexagon 4-D
    x = keras.layers.Lambda(lambda t: tf.reduce_mean(t, axis=1), name="mean5d")(x)
    x = keras.layers.Reshape((8, 8, 4), name="to3d")(x)
    x = keras.layers.Conv2D(4, 3, strides=4, padding="same", name="stride4")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(16_500, activation="softmax", name="wide")(x)
    return keras.Model(inputs, outputs, name="limits")


def test_per_op_limits_name_the_actual_values(limits_model):
    data = calibration((8, 8, 1))
    hexagon = tw.convert(limits_model, "hexagon", representative_data=data).compatibility
    stride = next(entry for entry in hexagon if entry.layer == "stride4")
    assert not stride.accelerated and "stride_w is 4; the limit is 3" in stride.reason
    assert any("5-D" in entry.reason and "at most 4-D" in entry.reason for entry in hexagon.fallbacks)
    assert hexagon.by_layer()["conv"].accelerated and hexagon.by_layer()["wide"].accelerated

    edgetpu = tw.convert(limits_model, "edgetpu", representative_data=data).compatibility
    first = edgetpu.fallbacks[0]
    assert "outside the 3 innermost" in first.reason and "2x4x8x8" in first.reason
    softmax = next(entry for entry in edgetpu if entry.op == "SOFTMAX")
    assert AFTER in softmax.reason and "16,500 elements; the limit is 16,000" in softmax.reason
    assert edgetpu.by_layer()["conv"].accelerated is True


def test_weights_beyond_the_parameter_cache_are_said_to_stream(mobilenet_edgetpu):
    # MobileNetV2 0.35 holds ~1.7 MB of int8 parameters: on a chip with a 1 MiB cache they would stream.
    small_cache = dataclasses.replace(TARGETS["edgetpu"], parameter_cache=2**20)
    summary = compatibility.check(mobilenet_edgetpu, small_cache).summary
    assert summary["op_share"] == 1.0 and summary["streams_weights"] is True
    assert summary["parameter_bytes_accelerated"] > summary["parameter_cache_bytes"] == 2**20
    assert any("stream from host memory" in warning for warning in summary["warnings"])


def test_digits_on_every_target(converted):
    expected_share = {"float32": 1.0, "cpu": 1.0, "gpu": 1.0, "edgetpu": 1.0, "hexagon": 1.0}
    for target, share in expected_share.items():
        tfl = converted(target, calibrate=target in ("edgetpu", "hexagon"))
        result = tfl.compatibility
        assert result.summary["target"] == target and result.summary["mac_share"] == share
        layers = result.by_layer()
        assert list(layers)[:2] == ["conv1", "conv2"]
        assert layers["dropout"].accelerated is None and "no op" in layers["dropout"].reason
        assert layers["bn2"].accelerated and "folded into layer 'conv2'" in layers["bn2"].reason
    cpu = converted("cpu").compatibility
    assert "dynamic range" in cpu.by_layer()["dense"].note
    assert any("dynamic range" in note for note in cpu.summary["notes"])
    assert cpu.summary["accelerator"] is None and cpu.summary["parameter_bytes_accelerated"] is None


def test_pruned_1x1_convs_get_xnnpack_sparse_notes():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.ZeroPadding2D(1, name="pad")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="stem")(x)
    x = keras.layers.Conv2D(32, 1, activation="relu", name="pointwise")(x)
    x = keras.layers.GlobalAveragePooling2D(keepdims=True, name="gap")(x)
    outputs = keras.layers.Conv2D(4, 1, name="head")(x)
    model = keras.Model(inputs, keras.layers.Flatten(name="flatten")(outputs))
    kernel, bias = model.get_layer("pointwise").get_weights()
    kernel[np.abs(kernel) < np.quantile(np.abs(kernel), 0.8)] = 0  # what magnitude pruning to 80% leaves
    model.get_layer("pointwise").set_weights([kernel, bias])
    result = tw.convert(model, "cpu", representative_data=calibration((16, 16, 3))).compatibility
    note = result.by_layer()["pointwise"].note
    assert "80% zeros" in note and "fits XNNPACK's sparse subgraph" in note
    assert "runs dense" in result.by_layer()["stem"].note
    sparse = next(note for note in result.summary["notes"] if "sparse inference" in note)
    assert "does not apply" in sparse and "EXPERIMENTAL_SPARSITY" in sparse


def test_reprs_escape_layer_names_and_export_a_dataframe(converted):
    result = converted("edgetpu", calibrate=True).compatibility
    text = repr(result)
    assert "Edge TPU" in text and "conv1" in text and "CONV_2D" in text
    entries = [dataclasses.replace(entry, layer="<b>conv</b>") for entry in result]
    marked = compatibility.Compatibility(result.target, entries, result.summary, ["<b>conv</b>"])
    page = marked._repr_html_()
    assert "&lt;b&gt;conv&lt;/b&gt;" in page and "<b>conv</b>" not in page
    frame = result.to_dataframe()
    assert len(frame) == len(result) and {"index", "op", "layer", "accelerated", "reason", "macs"} <= set(frame)


def test_a_bare_file_needs_a_target(converted):
    bare = tw.TFLiteModel(converted("edgetpu", calibrate=True).content)
    with pytest.raises(tw.TargetError, match="which target"):
        _ = bare.compatibility
    result = compatibility.check(bare, "edgetpu")
    assert all(entry.accelerated and entry.layer is None for entry in result) and result.by_layer() == {}


def test_hexagon_depthwise_limits_and_partly_placed_layers():
    # The converter lowers a dilated depthwise conv to SPACE_TO_BATCH_ND + DEPTHWISE_CONV_2D + BATCH_TO_SPACE_ND:
    # the conv runs on the DSP, the two reshuffles do not, and the layer's roll-up says so.
    model = small_cnn(keras.layers.DepthwiseConv2D(3, padding="same", dilation_rate=2, name="dilated"))
    result = tw.convert(model, "hexagon", representative_data=calibration((8, 8, 1))).compatibility
    ops = {entry.op: entry for entry in result if entry.layer == "dilated"}
    assert ops["DEPTHWISE_CONV_2D"].accelerated and not ops["SPACE_TO_BATCH_ND"].accelerated
    dilated = result.by_layer()["dilated"]
    assert dilated.accelerated is False and dilated.reason.startswith("2 of 3 ops on the CPU")
    strided = small_cnn(keras.layers.DepthwiseConv2D(5, strides=2, padding="same", name="wide_filter"))
    place = tw.convert(strided, "hexagon", representative_data=calibration((8, 8, 1))).compatibility.by_layer()
    assert place["wide_filter"].accelerated is False and "width 5 is not supported" in place["wide_filter"].reason
