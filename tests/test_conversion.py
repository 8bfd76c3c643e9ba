"""tw.convert on the digits demo: every target and mode, dtypes read back from the file, refusals, layer mapping."""

import re
import types

import numpy as np
import pytest

import tfopt_widgets as tw
from tfopt_widgets.targets import TARGETS, Target, get_target

# (target, quantization, calibrate) -> the mode the file must say it used.
CONVERSIONS = {
    ("float32", None, False): "none",
    ("cpu", None, False): "dynamic",
    ("cpu", None, True): "int8",
    ("cpu", "none", False): "none",
    ("cpu", "float16", False): "float16",
    ("cpu", "int16x8", True): "int16x8",
    ("gpu", None, False): "float16",
    ("gpu", "int8", True): "int8",
    ("edgetpu", None, True): "int8",
    ("hexagon", None, True): "int8",
}
# mode -> (kernel dtype as stored, activation dtype between layers)
DTYPES = {
    "none": ("float32", "float32"),
    "dynamic": ("int8", "float32"),
    "float16": ("float16", "float32"),
    "int8": ("int8", "int8"),
    "int16x8": ("int8", "int16"),
}
DIGITS_OPS = [("CONV_2D", "conv1"), ("CONV_2D", "conv2"), ("MAX_POOL_2D", "pool"), ("RESHAPE", "flatten"),
              ("FULLY_CONNECTED", "dense"), ("FULLY_CONNECTED", "classifier"), ("SOFTMAX", "classifier")]


def layer_op(tfl, layer, op="CONV_2D"):
    return next(o for o in tfl.ops if o.layer == layer and o.op == op)


def kernel_tensor(tfl, op):
    """The stored kernel of ``op``, looking through the DEQUANTIZE that float16 files put in front of it."""
    producers = {t: o for o in tfl.ops for t in o.outputs}
    index = op.inputs[1]
    if index in producers and producers[index].op == "DEQUANTIZE":
        index = producers[index].inputs[0]
    return tfl.tensors[index]


def test_targets_are_data_with_sources():
    assert list(TARGETS) == ["float32", "cpu", "gpu", "edgetpu", "hexagon"]
    for target in TARGETS.values():
        assert isinstance(target, Target) and target.source and target.summary and target.title
        assert target.default_quantization in target.allowed_quantizations
    edgetpu = get_target("Edge TPU")
    assert (edgetpu.allowed_quantizations, edgetpu.int8_io, edgetpu.fixed_batch) == (("int8",), True, True)
    assert get_target("hexagon").allowed_quantizations == ("int8",)
    assert get_target("cpu").quantization_for(None, calibrated=True) == "int8"
    assert get_target("gpu").quantization_for(None, calibrated=True) == "float16"


@pytest.mark.parametrize("key", list(CONVERSIONS), ids=lambda key: "-".join(str(k) for k in key))
def test_every_target_and_mode_reads_back_true_dtypes(converted, key):
    tfl = converted(*key)
    mode = CONVERSIONS[key]
    assert (tfl.target, tfl.quantization) == (key[0], mode)
    kernel_dtype, activation_dtype = DTYPES[mode]
    for layer, op_name in [("conv2", "CONV_2D"), ("dense", "FULLY_CONNECTED")]:
        op = layer_op(tfl, layer, op_name)
        assert kernel_tensor(tfl, op).dtype == kernel_dtype, (layer, mode)
        assert tfl.tensors[op.outputs[0]].dtype == activation_dtype, (layer, mode)
    if mode in ("int8", "dynamic", "int16x8"):
        assert kernel_tensor(tfl, layer_op(tfl, "conv2")).quantized
    if mode == "dynamic":  # kernels under 1,024 values stay float32: the file, not the mode, says what was quantized
        assert kernel_tensor(tfl, layer_op(tfl, "conv1")).dtype == "float32"
    assert tfl.size == len(tfl.content) and 0 < tfl.gzip_size < tfl.size


def test_sizes_shrink_against_the_float_baseline(converted):
    baseline = converted("float32").size
    assert converted("cpu").size < baseline / 3  # int8 weights
    assert converted("gpu").size < baseline * 0.6  # float16 weights
    assert converted("edgetpu", calibrate=True).size < baseline / 3


@pytest.mark.parametrize("target", ["edgetpu", "hexagon"])
def test_int8_targets_get_int8_io(converted, target):
    tfl = converted(target, calibrate=True)
    for tensor in tfl.inputs + tfl.outputs:
        assert tensor.dtype == "int8" and tensor.quantized
    # every activation is integer: nothing falls back to float on the accelerator
    assert {t.dtype for t in tfl.tensors if not t.constant} == {"int8"}


def test_edgetpu_fixes_the_batch_to_one(converted):
    tfl = converted("edgetpu", calibrate=True)
    assert tfl.inputs[0].shape_signature == (1, 8, 8, 1)
    assert tfl.outputs[0].shape_signature == (1, 10)
    assert converted("cpu").inputs[0].shape_signature == (-1, 8, 8, 1)  # dynamic elsewhere


@pytest.mark.parametrize("key", [("float32", None, False), ("edgetpu", None, True), ("cpu", "int16x8", True)],
                         ids=["float32", "edgetpu-int8", "int16x8"])
def test_ops_map_to_the_users_layers(converted, key):
    tfl = converted(*key)
    core = [(op.op, op.layer) for op in tfl.ops if op.op not in ("QUANTIZE", "DEQUANTIZE")]
    assert core == DIGITS_OPS
    assert layer_op(tfl, "conv2").layers == ("conv2", "bn2", "relu2")  # BatchNormalization and ReLU folded in
    assert all(op.layer is None for op in tfl.ops if op.op in ("QUANTIZE", "DEQUANTIZE"))  # I/O casts only


def test_padding_folded_into_a_strided_convolution_maps_to_the_convolution():
    # MobileNetV2's ZeroPadding2D -> DepthwiseConv2D(strides=2, padding="valid"): one op whose tensor names name
    # both layers; the convolution is its layer (its weights, histogram and badge), the padding is folded in.
    from tfopt_widgets.model.stack import keras

    inputs = keras.Input((8, 8, 4))
    x = keras.layers.ZeroPadding2D(((0, 1), (0, 1)), name="pad")(inputs)
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="valid", name="depthwise")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    model = keras.Model(inputs, keras.layers.ReLU(6.0, name="relu")(x))
    tfl = tw.convert(model, "float32")
    (op,) = [op for op in tfl.ops if op.op == "DEPTHWISE_CONV_2D"]
    assert op.layer == "depthwise" and set(op.layers) == {"pad", "depthwise", "bn", "relu"}
    assert set(tfl.weights()) == {"depthwise"}


def test_op_options_are_read_from_the_file(converted):
    tfl = converted("float32")
    conv1 = layer_op(tfl, "conv1")
    assert conv1.options["padding"] == "SAME" and conv1.options["stride_w"] == 1
    assert conv1.options["fused_activation_function"] == "RELU"
    pool = layer_op(tfl, "pool", "MAX_POOL_2D")
    assert (pool.options["filter_width"], pool.options["stride_h"]) == (2, 2)
    assert tfl.tensors[conv1.inputs[1]].shape == (16, 3, 3, 1)  # filter size: TFLite's (out, h, w, in)


def test_weights_are_dequantized_kernels_in_keras_layout(digits, converted):
    model = digits[0]
    names = ("conv1", "dense", "classifier")
    float_weights = converted("float32").weights()
    int8_weights = converted("edgetpu", calibrate=True).weights()
    assert set(float_weights) == set(int8_weights) == {"conv1", "conv2", "dense", "classifier"}
    for name in names:
        kernel = model.get_layer(name).kernel.numpy()
        assert np.array_equal(float_weights[name], kernel)
        assert int8_weights[name].dtype == np.float32 and int8_weights[name].shape == kernel.shape
        # per-channel int8: each value within half a quantization step of the Keras kernel
        step = np.abs(kernel).max() / 127
        assert np.abs(int8_weights[name] - kernel).max() <= step
        assert len(np.unique(int8_weights[name])) < len(np.unique(kernel)) or kernel.size < 256
    assert converted("gpu").weights()["dense"].dtype == np.float32  # float16 in the file, float32 out


def test_convert_never_changes_the_users_model(frozen, digits):
    _, (x_train, _), _ = digits
    optimizer = frozen.optimizer
    layers = [layer.name for layer in frozen.layers]
    for target in ("edgetpu", "cpu"):  # the concrete-function path and the from_keras_model path
        tw.convert(frozen, target, representative_data=x_train[:50])
    assert [layer.name for layer in frozen.layers] == layers and frozen.optimizer is optimizer


def test_accepts_an_optimized_model_wrapper(digits):
    tfl = tw.convert(types.SimpleNamespace(model=digits[0]), "float32")
    assert [(op.op, op.layer) for op in tfl.ops] == DIGITS_OPS


def test_save_load_and_repr(converted, tmp_path):
    tfl = converted("edgetpu", calibrate=True)
    path = tfl.save(tmp_path / "out" / "digits.tflite")
    assert path.read_bytes() == tfl.content
    loaded = tw.TFLiteModel.load(path)
    assert [op.op for op in loaded.ops] == [op.op for op in tfl.ops]
    assert loaded.ops[0].layer is None  # without the Keras model the names are unknown
    assert "edgetpu" in repr(tfl) and "int8[1,8,8,1]" in repr(tfl)


@pytest.fixture(scope="module")
def qat_model(digits):
    """The digits model after whole-model quantization-aware training (one short epoch), on a copy."""
    from tfopt_widgets.model.stack import copy_model, tfmot

    model, (x_train, y_train), _ = digits
    qat = tfmot.quantization.keras.quantize_model(copy_model(model))
    qat.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    qat.fit(x_train, y_train, epochs=1, batch_size=64, verbose=0)
    return qat


def test_qat_model_converts_to_int8_without_representative_data(qat_model):
    tfl = tw.convert(qat_model, "edgetpu")
    assert tfl.quantization == "int8"
    assert {t.dtype for t in tfl.tensors if not t.constant} == {"int8"}
    assert [(op.op, op.layer) for op in tfl.ops] == DIGITS_OPS  # quant_conv1 -> conv1
    assert tw.convert(qat_model, "cpu").quantization == "int8"  # QAT ranges make int8 the CPU default


def test_partly_quantized_model_still_needs_data(digits):
    from tfopt_widgets.model.stack import copy_model, keras, tfmot

    q = tfmot.quantization.keras
    annotated = keras.models.clone_model(
        copy_model(digits[0]),
        clone_function=lambda layer: q.quantize_annotate_layer(layer) if layer.name == "dense" else layer)
    with pytest.raises(tw.DataError, match="representative_data") as error:
        tw.convert(q.quantize_apply(annotated), "edgetpu")
    assert error.value.field == "representative_data"


def test_refusals_say_why(frozen, digits):
    _, (x_train, _), _ = digits
    with pytest.raises(tw.TargetError, match="8-bit") as error:
        tw.convert(frozen, "edgetpu", x_train, quantization="float16")
    assert error.value.field == "quantization"
    with pytest.raises(tw.TargetError, match="int16x8"):
        tw.convert(frozen, "gpu", x_train, quantization="int16x8")
    with pytest.raises(tw.TargetError, match="baseline"):
        tw.convert(frozen, "float32", quantization="dynamic")
    with pytest.raises(tw.TargetError, match="float32, cpu, gpu, edgetpu, hexagon") as error:
        tw.convert(frozen, "tpu")
    assert error.value.field == "target"
    with pytest.raises(tw.TargetError, match="Unknown quantization"):
        tw.convert(frozen, "cpu", quantization="int4")


def test_bad_representative_data(frozen, digits):
    from tfopt_widgets.model.stack import tf

    _, (x_train, y_train), _ = digits
    with pytest.raises(tw.DataError, match="representative_data=x_train") as error:
        tw.convert(frozen, "edgetpu")
    assert error.value.field == "representative_data"
    with pytest.raises(tw.DataError, match=r"representative_data"):
        tw.convert(frozen, "cpu", quantization="int16x8")
    with pytest.raises(tw.DataError, match=r"\(1348, 8, 8\).*\(n, 8, 8, 1\)") as error:
        tw.convert(frozen, "edgetpu", x_train[..., 0])
    assert error.value.field == "representative_data"
    with pytest.raises(tw.DataError, match="empty"):
        tw.convert(frozen, "edgetpu", x_train[:0])
    wrong = tf.data.Dataset.from_tensor_slices((x_train[..., 0], y_train)).batch(8)
    with pytest.raises(tw.DataError, match=r"\(None, 8, 8\).*\(None, 8, 8, 1\)"):
        tw.convert(frozen, "edgetpu", wrong)


def test_tf_data_representative_data(digits):
    from tfopt_widgets.model.stack import tf

    model, (x_train, y_train), _ = digits
    tfl = tw.convert(model, "hexagon", tf.data.Dataset.from_tensor_slices((x_train, y_train)).batch(32))
    assert tfl.quantization == "int8" and tfl.inputs[0].dtype == "int8"


def test_bad_models(frozen):
    import keras as keras3

    from tfopt_widgets.model.stack import keras

    with pytest.warns(tw.ModelNotice, match="Keras 3"):  # rebuilt with tf_keras, then converted
        assert tw.convert(keras3.Sequential([keras3.Input((3,)), keras3.layers.Dense(2)]), "float32").size > 0
    inputs3 = keras3.Input((3,))
    with pytest.raises(tw.ModelError, match="RMSNormalization"):
        tw.convert(keras3.Model(inputs3, keras3.layers.RMSNormalization()(inputs3)))
    with pytest.raises(tw.ModelError):
        tw.convert("model.keras")
    inputs = keras.Input((None, None, 1))
    resizable = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs)))
    with pytest.raises(tw.ModelError, match=r"\(None, None, None, 1\)") as error:
        tw.convert(resizable, "edgetpu", np.zeros((4, 8, 8, 1), np.float32))
    assert error.value.field == "model"
    assert tw.convert(resizable, "cpu").inputs[0].shape_signature == (-1, -1, -1, 1)  # fine where shapes may vary


def test_converter_failures_are_conversion_errors():
    from tfopt_widgets.model.stack import keras, tf

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda t: tf.math.erf(t), name="erf")(inputs))
    with pytest.raises(tw.ConversionError, match=r"(?s)TF Select ops: Erf.*replace the layer") as error:
        tw.convert(model, "float32")
    assert error.value.field == "model" and error.value.__cause__ is not None  # the converter's full text
    assert error.value.layer == "erf"  # the converter locates the op by its Keras name scope


# -- recurrent models (issue 12): LSTM, Bidirectional(GRU) and a Keras 3 Embedding -> Conv1D -> LSTM ---------------
# TFLite fuses a Keras LSTM (UNIDIRECTIONAL_SEQUENCE_LSTM) and lowers other recurrent layers to WHILE loops only at
# a fixed batch, so these files take batch 1 on every target; int8 unrolls what would be a WHILE loop, since
# TFLite's calibrator crashes the process on one (tensorflow/tensorflow#75140).
VOCAB, SEQUENCE, UNITS = 50, 12, 8
RECURRENT_TARGETS = ["float32", "cpu", "gpu", "edgetpu", "hexagon"]  # cpu with data: int8
CALIBRATED = {"cpu", "edgetpu", "hexagon"}


@pytest.fixture(scope="module")
def text_models():
    """{kind: (model, x, y)}: tiny untrained text classifiers over token ids (floats, as Keras inputs default to)."""
    import keras as keras3

    from tfopt_widgets.model.stack import keras

    inputs = keras.Input((SEQUENCE,), name="tokens")
    x = keras.layers.Embedding(VOCAB, UNITS, name="embed")(inputs)
    lstm = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="head")(
        keras.layers.LSTM(UNITS, name="lstm")(x)), name="lstm_text")
    inputs = keras.Input((SEQUENCE,), name="tokens")
    x = keras.layers.Embedding(VOCAB, UNITS, name="embed")(inputs)
    bigru = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="head")(
        keras.layers.Bidirectional(keras.layers.GRU(UNITS), name="bigru")(x)), name="bigru_text")
    inputs = keras3.Input((SEQUENCE,), name="tokens")
    x = keras3.layers.Embedding(VOCAB, UNITS, name="embed")(inputs)
    x = keras3.layers.Conv1D(UNITS, 3, activation="relu", name="conv")(x)
    keras3_model = keras3.Model(inputs, keras3.layers.Dense(2, activation="softmax", name="head")(
        keras3.layers.LSTM(UNITS, name="lstm")(x)), name="keras3_text")
    rng = np.random.default_rng(0)
    x, y = rng.integers(1, VOCAB, (32, SEQUENCE)).astype(np.float32), rng.integers(0, 2, 32)
    return {kind: (model, x, y) for kind, model in
            [("lstm", lstm), ("bigru", bigru), ("keras3", keras3_model)]}


@pytest.fixture(scope="module")
def recurrent_file(text_models):
    """``recurrent_file(kind, target)``: (TFLiteModel, [ModelNotice messages]), converted once per module."""
    import warnings

    cache = {}

    def get(kind, target):
        if (kind, target) not in cache:
            model, x, _ = text_models[kind]
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                tfl = tw.convert(model, target, representative_data=x if target in CALIBRATED else None)
            cache[kind, target] = tfl, [str(w.message) for w in caught if issubclass(w.category, tw.ModelNotice)]
        return cache[kind, target]

    return get


def litert_outputs(tfl, x, reset=True):
    """The file's outputs for each sample of ``x``, one invoke each (batch 1), state reset before each if asked."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=tfl.content)
    interpreter.allocate_tensors()
    (given,), (taken,) = interpreter.get_input_details(), interpreter.get_output_details()
    outputs = []
    for sample in x:
        if reset:
            interpreter.reset_all_variables()
        interpreter.set_tensor(given["index"], sample[None].astype(np.float32))
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(taken["index"])[0].copy())
    return np.stack(outputs)


@pytest.mark.parametrize("target", RECURRENT_TARGETS)
@pytest.mark.parametrize("kind", ["lstm", "bigru", "keras3"])
def test_recurrent_models_convert_for_every_target(recurrent_file, text_models, kind, target):
    tfl, notices = recurrent_file(kind, target)
    _, x, y = text_models[kind]
    ops = {op.op for op in tfl.ops}
    int8 = target in CALIBRATED
    assert tfl.quantization == {"float32": "none", "gpu": "float16"}.get(target, "int8")
    if kind == "bigru":
        # Two WHILE loops in float; int8 gets the GRU unrolled (no WHILE for the calibrator), so the batch may stay
        # dynamic again where the target allows it.
        assert ("WHILE" in ops) != int8
        assert tfl.inputs[0].shape_signature[0] == (-1 if int8 and target != "edgetpu" else 1)
        assert any("Bidirectional(GRU) 'bigru'" in n and "unrolled" in n for n in notices) == int8
    else:
        assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in ops and "WHILE" not in ops  # the fused LSTM op, also in int8
        assert tfl.inputs[0].shape_signature[0] == 1
        assert any("LSTM 'lstm'" in n and "reset_all_variables" in n for n in notices)
    assert any("batch 1" in n for n in notices) == (tfl.inputs[0].shape_signature[0] == 1 and target != "edgetpu")
    assert tfl.inputs[0].dtype == ("int8" if target in ("edgetpu", "hexagon") else "float32")
    metrics = tw.evaluate(tfl, (x, y), runs=3, warmup=1)  # runs in LiteRT
    assert metrics.samples == len(x) and 0.0 <= metrics.accuracy <= 1.0 and metrics.size == tfl.size


@pytest.mark.parametrize("kind", ["lstm", "bigru", "keras3"])
def test_recurrent_float32_files_match_keras(recurrent_file, text_models, kind):
    model, x, _ = text_models[kind]
    tfl, _ = recurrent_file(kind, "float32")
    expected = np.asarray(model.predict(x, verbose=0))
    np.testing.assert_allclose(litert_outputs(tfl, x), expected, atol=1e-5)
    if kind != "bigru":
        # The fused LSTM keeps its state in variable tensors between invokes (hence the notice): the same sample
        # run twice without a reset gives another answer.
        again = litert_outputs(tfl, x[:1].repeat(2, axis=0), reset=False)
        assert np.abs(again[0] - again[1]).max() > 1e-6
        np.testing.assert_allclose(again[0], expected[0], atol=1e-5)


def test_loops_that_cannot_be_unrolled_are_never_calibrated():
    """int8 of a WHILE loop would crash the process: a variable-length GRU or a tf.map_fn is refused instead,
    naming the layer, except where the mode was the cpu target's own choice (it falls back to dynamic range)."""
    from tfopt_widgets.model.stack import keras, tf

    inputs = keras.Input((None,), name="tokens")
    x = keras.layers.Embedding(VOCAB, 4, name="embed")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(keras.layers.GRU(4, name="gru")(x)))
    tokens = np.random.default_rng(0).integers(1, VOCAB, (8, SEQUENCE)).astype(np.float32)
    with pytest.warns(tw.ModelNotice) as notices:
        tfl = tw.convert(model, "cpu", representative_data=tokens)
    assert any(re.search(r"GRU 'gru' .*cannot be unrolled.*quantization='dynamic'", str(notice.message))
               for notice in notices)
    assert tfl.quantization == "dynamic" and tfl.inputs[0].shape_signature == (1, -1)
    assert tw.evaluate(tfl, (tokens, np.zeros(8, int)), runs=2, warmup=1).samples == 8
    with pytest.raises(tw.ConversionError, match=r"(?s)tensorflow#75140.*fixed length") as error:
        tw.convert(model, "hexagon", representative_data=tokens)
    assert error.value.layer == "gru"
    with pytest.raises(tw.ConversionError, match="quantization='dynamic'"):
        tw.convert(model, "cpu", representative_data=tokens, quantization="int8")  # asked for: no fallback

    inputs = keras.Input((6,))
    rows = keras.layers.Lambda(lambda t: tf.map_fn(lambda row: tf.reduce_sum(row) * row, t), name="rows")
    mapped = keras.Model(inputs, keras.layers.Dense(2, name="head")(rows(inputs)))
    assert "WHILE" in {op.op for op in tw.convert(mapped, "float32").ops}
    with pytest.raises(tw.ConversionError, match=r"Layer 'rows' computes a loop.*runs only int8") as error:
        tw.convert(mapped, "edgetpu", representative_data=np.ones((4, 6), np.float32))
    assert error.value.layer == "rows"


def test_a_loop_in_a_lambda_that_needs_a_fixed_batch_gets_batch_one():
    """Not only recurrent layers: a dynamic-batch conversion that fails on a loop's TensorList ops is tried again
    at batch 1, and the notice names the layer the converter's message names."""
    from tfopt_widgets.model.stack import keras, tf

    def running_sum(t):
        return keras.backend.rnn(lambda x, states: (x + states[0], [x + states[0]]), t, [tf.zeros_like(t[:, 0])])[1]

    inputs = keras.Input((5, 3))
    x = keras.layers.Flatten(name="flat")(keras.layers.Lambda(running_sum, name="running_sum")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(x), name="scan_model")
    with pytest.warns(tw.ModelNotice, match="Layer 'running_sum' converts to TFLite only with a fixed batch"):
        tfl = tw.convert(model, "float32")
    assert "WHILE" in {op.op for op in tfl.ops} and tfl.inputs[0].shape_signature == (1, 5, 3)
    samples = np.random.default_rng(0).normal(size=(4, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(litert_outputs(tfl, samples), model.predict(samples, verbose=0), atol=1e-5)

def test_ops_without_an_integer_kernel_stay_float():
    """An op with no kernel in the integer mode leaves a file with that op float, never a bare converter failure:
    int8 does so by itself (TF 2.21); int16x8 stops, and is tried again with the float fallback, with a notice."""
    from tfopt_widgets.model.stack import keras, tf

    inputs = keras.Input((6,))
    x = keras.layers.Dense(6, name="dense")(inputs)
    x = keras.layers.Lambda(lambda t: tf.math.cumsum(t, axis=1), name="cumsum")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(x), name="cumsum_model")
    samples = np.random.default_rng(0).normal(size=(16, 6)).astype(np.float32)
    assert tw.convert(model, "cpu", samples).float_layers() == ["cumsum"]  # int8
    with pytest.warns(tw.ModelNotice, match=r"16x8-bit not yet supported for op: 'CUMSUM'.*stays float"):
        tfl = tw.convert(model, "cpu", samples, quantization="int16x8")
    assert tfl.quantization == "int16x8" and tfl.float_layers() == ["cumsum"]
    assert tfl.tensors[layer_op(tfl, "head", "FULLY_CONNECTED").outputs[0]].dtype == "int16"
