"""The engine on the building blocks of real architectures that the digits demo lacks (issue 12's crash cells).

Each model here is a few layers of what a Keras application has: Conv -> BatchNormalization -> Activation("relu")
(ResNet, EfficientNet, DenseNet, Xception, Inception), a Rescaling in front (MobileNetV3, EfficientNet, RegNet,
ConvNeXt), a softmax Activation head (MobileNet), a Conv2DTranspose (U-Nets), a Normalization layer, a nested
Sequential stem called inside a Functional model (ConvNeXt). The whole applications run in bench/zoo.py; a few
of them at tiny inputs run in tests/test_zoo.py.
"""

import numpy as np
import pytest

import tfopt_widgets as tw
from tfopt_widgets.model.stack import keras

pytestmark = pytest.mark.slow


def unchanged(model):
    """A check that ``model``'s weights are bit-identical to now."""
    before = [np.array(w, copy=True) for w in model.get_weights()]
    return lambda: all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


@pytest.fixture(scope="module")
def resnet_like():
    """Rescaling -> Conv/BN/Activation('relu') -> Conv -> Conv2DTranspose -> pooling -> Dense -> Activation('softmax')."""
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 255.0, name="rescale")(inputs)
    x = keras.layers.Conv2D(8, 3, name="conv1")(x)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.Activation("relu", name="relu1")(x)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv2")(x)
    x = keras.layers.Conv2DTranspose(4, 3, name="up")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(10, name="dense")(x)
    outputs = keras.layers.Activation("softmax", name="softmax")(x)
    model = keras.Model(inputs, outputs, name="resnet_like")
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = (rng.random((16, 16, 16, 3)) * 255).astype("float32")
    return model, (x, rng.integers(0, 10, 16))


def quantized_int8(opt, x):
    tfl = tw.convert(opt, "edgetpu", representative_data=x)
    return tfl, tfl.compatibility


@pytest.mark.parametrize("extra, scheme", [
    ({"prune": ("conv2", "dense")}, "PQAT"),
    ({"cluster": ("conv2", "dense")}, "CQAT"),
    ({"prune": ("conv2", "dense"), "cluster": ("conv2", "dense")}, "PCQAT"),
])
def test_collaborative_qat_with_activation_layers_and_rescaling(resnet_like, extra, scheme):
    # Used to raise AttributeError ('Default8BitActivationQuantizeConfig' has no 'weight_quantizer') for CQAT and
    # ValueError (get_quantize_config() on Rescaling) for every collaborative scheme.
    model, data = resnet_like
    same = unchanged(model)
    plan = tw.Plan().quantize("conv1", "conv2", "up", "dense")
    if "prune" in extra:
        plan.prune(*extra["prune"], sparsity=0.5)
    if "cluster" in extra:
        plan.cluster(*extra["cluster"], clusters=8)
    opt = tw.optimize(model, plan, data, epochs=1, batch_size=8)
    stats = opt.layer_stats()
    assert stats.loc["dense", "scheme"] == scheme
    if "prune" in extra:
        assert stats.loc["dense", "sparsity"] == pytest.approx(0.5, abs=0.01)
        assert stats.loc["conv2", "sparsity"] == pytest.approx(0.5, abs=0.01)
    if "cluster" in extra:
        assert stats.loc["dense", "unique_values"] <= 8 + ("prune" in extra)
    # The relu and softmax Activation layers are quantized (folded or as outputs), the Rescaling stays float.
    names = {layer.name for layer in opt.model.layers}
    assert {"quant_conv1", "quant_dense", "quant_up"} <= names and "rescale" in names
    tfl = tw.convert(opt, "edgetpu", representative_data=data[0])
    assert tfl.inputs[0].dtype == "int8"
    assert same(), "the user's model was changed"


def test_quantize_with_prune_or_cluster_is_refused_where_qat_cannot_keep_them(resnet_like):
    model, data = resnet_like
    up = tw.inspect(model)["up"]
    assert up.supports("quantize").ok and up.supports("prune").ok and up.supports("cluster").ok
    combined = up.supports("cluster", "quantize")
    assert not combined.ok and "Conv2D and Dense" in combined.reason
    assert not up.supports("prune", "quantize").ok
    assert tw.inspect(model)["conv2"].supports("prune", "cluster", "quantize").ok
    plan = tw.Plan().quantize("up", "conv2").cluster("up", clusters=8)
    with pytest.raises(tw.PlanError, match=r"Cannot combine cluster \+ quantize \(CQAT\) on layer 'up'") as error:
        tw.optimize(model, plan, data, epochs=1)
    assert error.value.layer == "up"
    # Quantized but not clustered, a Conv2DTranspose gets plain QAT next to a cluster-preserved Conv2D.
    opt = tw.optimize(model, tw.Plan().quantize("up", "conv2").cluster("conv2", clusters=8), data, epochs=1,
                      batch_size=8)
    assert opt.layer_stats().loc["up", "scheme"] == "QAT"


def test_normalization_has_nothing_to_prune_or_cluster():
    inputs = keras.Input((4,))
    norm = keras.layers.Normalization(name="norm")
    norm.adapt(np.random.default_rng(0).random((20, 4)))
    model = keras.Model(inputs, keras.layers.Dense(2, name="dense")(norm(inputs)))
    info = tw.inspect(model)
    for technique in ("prune", "cluster"):
        support = info["norm"].supports(technique)
        assert not support.ok and "no trainable weights" in support.reason
    assert info["dense"].supports("cluster").ok


def test_nested_sequential_stem_called_in_a_functional_model_is_inlined():
    # ConvNeXt's stem: a Sequential built on its own Input, called inside the Functional model (its call there is
    # the Sequential's node 1), followed by `x + y` TFOpLambda layers whose y is recorded as a keyword argument.
    stem = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 2, strides=2, name="stem_conv")],
                            name="stem")
    inputs = keras.Input((8, 8, 3))
    x = stem(inputs)
    y = keras.layers.Conv2D(4, 1, name="branch")(x)
    x = x + y
    outputs = keras.layers.Dense(3, name="head")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs, name="convnext_like")
    same = unchanged(model)
    with pytest.warns(tw.ModelNotice, match="nested"):
        info = tw.inspect(model)
    assert "stem/stem_conv" in [layer.name for layer in info]
    sample = np.random.default_rng(1).random((2, 8, 8, 3)).astype("float32")
    tfl = tw.convert(model, "float32")
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=tfl.content)
    interpreter.resize_tensor_input(0, sample.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], sample)
    interpreter.invoke()
    result = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(result, model.predict(sample, verbose=0), atol=1e-5)
    assert same()


@pytest.mark.parametrize("where", ["train_data", "validation_data", "representative_data"])
def test_nan_and_inf_are_data_errors_naming_the_argument_and_index(digits, frozen, where):
    _, (x, y), _ = digits
    bad = x.copy()
    bad[7, 1, 2, 0] = np.nan if where != "validation_data" else np.inf
    plan = tw.Plan().quantize("conv1")
    with pytest.raises(tw.DataError, match="sample 7 is the first") as error:
        if where == "train_data":
            tw.optimize(frozen, plan, (bad, y), epochs=1)
        elif where == "validation_data":
            tw.optimize(frozen, plan, (x, y), epochs=1, validation_data=(bad, y))
        else:
            tw.convert(frozen, "edgetpu", representative_data=bad[:50])
    assert error.value.field == where
    base = tw.convert(frozen, "float32")
    with pytest.raises(tw.DataError, match="sample 7") as error:
        tw.evaluate(base, (bad, y))
    assert error.value.field == "data"


def test_labels_outside_the_classes_are_a_data_error(digits, frozen):
    _, (x, y), _ = digits
    labels = y.copy()
    labels[3] = 10
    with pytest.raises(tw.DataError, match=r"class 10 \(sample 3 is the first such\).*10 classes") as error:
        tw.optimize(frozen, tw.Plan().quantize("conv1"), (x, labels), epochs=1)
    assert error.value.field == "train_data"


def test_a_failure_inside_fine_tuning_is_our_error_with_the_cause_chained(digits, frozen):
    _, (x, y), _ = digits
    with pytest.raises(tw.ModelError, match="Fine-tuning .* failed") as error:
        tw.optimize(frozen, tw.Plan().prune("dense", sparsity=0.5), (x, y[:, None] * np.ones((1, 3))), epochs=1)
    assert error.value.__cause__ is not None


def test_sensitivity_of_a_separable_convolution():
    # Used to raise "The truth value of an array with more than one element is ambiguous" (a variable in `or`).
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.SeparableConv2D(8, 3, activation="relu", name="sep")(inputs)
    outputs = keras.layers.Dense(4, activation="softmax", name="head")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(2)
    data = (rng.random((16, 12, 12, 3)).astype("float32"), rng.integers(0, 4, 16))
    report = tw.sensitivity(model, data, levels={"prune": (0.5,), "cluster": (8,)}, executor="threads")
    frame = report.to_dataframe()
    assert "sep" in frame.index and frame.loc["sep"].notna().any()
    assert {row.technique for row in report.rows if row.layer == "sep"} == {"quantize", "prune", "cluster"}
    assert any(row.size for row in report.rows if row.layer == "sep" and row.technique == "prune")


def test_text_model_with_a_gru_through_sensitivity_and_evaluation():
    # TFLite's calibrator crashed the process on the GRU's WHILE loop; the sensitivity's int8 variants now unroll it
    # as tw.convert does. Evaluation resets the fused LSTM's state before every chunk of samples.
    inputs = keras.Input((10,), dtype="int32")
    x = keras.layers.Embedding(30, 8, name="embed")(inputs)
    x = keras.layers.LSTM(8, return_sequences=True, name="lstm")(x)
    x = keras.layers.Bidirectional(keras.layers.GRU(4), name="bigru")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="head")(x)
    model = keras.Model(inputs, outputs, name="text")
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(3)
    data = (rng.integers(0, 30, (24, 10)).astype("int32"), rng.integers(0, 3, 24))
    with pytest.warns(tw.ModelNotice, match="unrolled"):
        report = tw.sensitivity(model, data, levels={"prune": (0.5,), "cluster": (8,)}, executor="threads")
    assert {"head", "embed"} <= {row.layer for row in report.rows}
    float_file = tw.convert(model, "float32")
    metrics = tw.evaluate(float_file, data)
    keras_accuracy = float(np.mean(np.argmax(model.predict(data[0], verbose=0), axis=1) == data[1]))
    assert metrics.value == pytest.approx(keras_accuracy, abs=1e-9)


@pytest.mark.parametrize("dtype", ["int32", "float32"])
def test_token_ids_stay_integers_in_an_int8_file(dtype):
    inputs = keras.Input((10,), dtype=dtype)
    x = keras.layers.Flatten()(keras.layers.Embedding(300, 8, name="embed")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(x))
    ids = np.random.default_rng(4).integers(0, 300, (40, 10)).astype(dtype)
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tfl = tw.convert(model, "edgetpu", representative_data=ids)
    notices = [str(w.message) for w in caught if issubclass(w.category, tw.ModelNotice)]
    if dtype == "int32":
        assert tfl.inputs[0].dtype == "int32" and not any("Embedding" in n for n in notices)
    else:
        assert tfl.inputs[0].dtype == "int8" and any("feeds Embedding 'embed'" in n for n in notices)


def test_keras3_hard_swish_activation_and_average_pooling_through_qat_to_the_edge_tpu():
    # MobileNetV3 from Keras 3 has Activation("hard_swish") layers: tfmot could not clone them ("Unable to clone
    # model") nor quantize them ("not supported by Default8BitActivationQuantizeConfig"); they now pass through
    # float. An AveragePooling2D is quantized without an output range of its own (DenseNet121's got one, and TFLite's
    # int8 AVERAGE_POOL_2D refused it: "violate the same scale constraint"; that needs the whole DenseNet to show,
    # which bench/zoo.py runs).
    import keras as keras3

    inputs = keras3.Input((16, 16, 3))
    x = keras3.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = keras3.layers.BatchNormalization(name="bn")(x)
    x = keras3.layers.Activation("hard_swish", name="hswish")(x)
    x = keras3.layers.Conv2D(8, 1, name="conv2")(x)
    x = keras3.layers.AveragePooling2D(2, name="pool")(x)
    x = keras3.layers.Conv2D(4, 1, activation="relu", name="conv3")(x)
    outputs = keras3.layers.Dense(3, name="head")(keras3.layers.GlobalAveragePooling2D(name="gap")(x))
    model = keras3.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(5)
    data = (rng.random((8, 16, 16, 3)).astype("float32"), rng.random((8, 3)).astype("float32"))
    with pytest.warns(tw.ModelNotice, match="Keras 3"):
        info = tw.inspect(model)
    assert not info["hswish"].supports("quantize").ok and "hard_silu" in info["hswish"].supports("quantize").reason
    assert info["hswish"].group is None
    plan = tw.Plan().quantize(*[layer.name for layer in info if layer.supports("quantize").ok])
    with pytest.warns(tw.ModelNotice):  # the Keras 3 model is rebuilt with tf_keras
        tfl = tw.convert(tw.optimize(model, plan, data, epochs=1, batch_size=4), "edgetpu", representative_data=data[0])
    assert "AVERAGE_POOL_2D" in {op.op for op in tfl.ops} and tfl.inputs[0].dtype == "int8"


def test_keras3_convnext_block_ports_with_equal_outputs():
    # Keras 3's ConvNeXt: LayerNormalization records rms_scaling=False, and its LayerScale is the application's own
    # layer; both used to refuse the port ("no tf_keras equivalent").
    import keras as keras3
    from keras.src.applications.convnext import LayerScale

    inputs = keras3.Input((8, 8, 4))
    x = keras3.layers.DepthwiseConv2D(3, padding="same", name="dw")(inputs)
    x = keras3.layers.LayerNormalization(epsilon=1e-6, name="norm")(x)
    x = keras3.layers.Dense(4, name="pw")(x)
    x = LayerScale(0.5, 4, name="scale")(x)
    model = keras3.Model(inputs, keras3.layers.Add(name="add")([inputs, x]))
    sample = np.random.default_rng(6).random((2, 8, 8, 4)).astype("float32")
    ported = tw.to_tf_keras(model)  # explicit: no notice
    np.testing.assert_allclose(ported.predict(sample, verbose=0), model.predict(sample, verbose=0), atol=1e-6)
    assert type(ported.get_layer("scale")).__name__ == "LayerScale"
