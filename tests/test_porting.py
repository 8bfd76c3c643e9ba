"""The models users really have: Keras 3 models, nested (transfer-learning) models, TFOpLambda layers, Conv1D.

Keras 3 models are rebuilt as tf_keras models; every rebuild is checked numerically against the original.
"""

import warnings

import keras as keras3
import numpy as np
import pytest

import tfopt_widgets as tw
from tfopt_widgets.model.stack import keras

RNG = np.random.default_rng(0)


def images(n, size, scale=1.0):
    return (RNG.random((n, size, size, 3)) * scale).astype("float32")


def text_model():
    inputs = keras3.Input((20,), dtype="int32")
    x = keras3.layers.Embedding(100, 16, name="embedding")(inputs)
    x = keras3.layers.Conv1D(8, 3, activation="relu", name="conv1d")(x)
    x = keras3.layers.LSTM(8, name="lstm")(x)
    return keras3.Model(inputs, keras3.layers.Dense(2, activation="softmax", name="out")(x), name="text")


@pytest.mark.parametrize("build, sample", [
    (lambda: keras3.applications.MobileNetV2(weights=None, alpha=0.35, input_shape=(96, 96, 3)),
     lambda: images(2, 96)),
    (lambda: keras3.applications.ResNet50(weights=None, input_shape=(64, 64, 3)), lambda: images(2, 64)),
    (lambda: keras3.applications.MobileNetV3Small(weights=None, input_shape=(32, 32, 3), classes=4),
     lambda: images(2, 32, 255.0)),
    (text_model, lambda: RNG.integers(0, 100, (3, 20)).astype("int32")),
], ids=["MobileNetV2", "ResNet50", "MobileNetV3Small", "text"])
def test_keras3_models_are_rebuilt_exactly(build, sample):
    original = build()
    before = [w.copy() for w in original.get_weights()]
    rebuilt = tw.to_tf_keras(original)
    assert isinstance(rebuilt, keras.Model) and rebuilt.name == original.name
    assert [layer.name for layer in original.layers] == [layer.name for layer in rebuilt.layers
                                                         if not layer.name.startswith("tf.")]
    x = sample()
    difference = np.abs(np.asarray(original(x, training=False)) - rebuilt(x, training=False).numpy()).max()
    assert difference <= 1e-5
    assert all(np.array_equal(a, b) for a, b in zip(before, original.get_weights())), "the Keras 3 model changed"


@pytest.mark.parametrize("activation", ["hard_sigmoid", "hard_silu", "silu", "relu6", "gelu", "swish", "elu"])
def test_keras3_activations_keep_their_own_definitions(activation):
    # tf_keras's hard_sigmoid is 0.2x+0.5 and Keras 3's is relu6(x+3)/6: the same name must not change the math.
    inputs = keras3.Input((6,))
    model = keras3.Model(inputs, keras3.layers.Dense(5, activation=activation)(inputs))
    x = RNG.normal(size=(8, 6)).astype("float32") * 3
    assert np.abs(np.asarray(model(x)) - tw.to_tf_keras(model)(x).numpy()).max() <= 1e-5


def test_keras3_file_loads_by_path(tmp_path):
    model = keras3.Sequential([keras3.Input((8, 8, 1)), keras3.layers.Conv2D(4, 3, name="conv"),
                               keras3.layers.Flatten(name="flat"), keras3.layers.Dense(3, name="dense")], name="k3")
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    model.save(tmp_path / "k3.keras")
    loaded = tw.load_model(tmp_path / "k3.keras")
    x = RNG.random((4, 8, 8, 1)).astype("float32")
    assert isinstance(loaded, keras.Model)
    assert np.abs(np.asarray(model(x)) - loaded(x).numpy()).max() <= 1e-5
    assert loaded.loss == "sparse_categorical_crossentropy", "compile settings carried over for fine-tuning"
    with pytest.raises(tw.ModelError, match="does not exist"):
        tw.load_model(tmp_path / "missing.keras")


def test_keras3_subclassed_and_unknown_ops_are_named():
    class Net(keras3.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras3.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    net = Net()
    net.build((None, 3))
    with pytest.raises(tw.ModelError, match="subclassed Keras 3 model.*Functional API"):
        tw.to_tf_keras(net)
    inputs = keras3.Input((4,))
    model = keras3.Model(inputs, keras3.ops.cumsum(keras3.layers.Dense(3)(inputs), axis=-1))
    with pytest.raises(tw.ModelError, match="Operation 'cumsum'.*no tf_keras equivalent"):
        tw.to_tf_keras(model)


def test_keras3_model_goes_through_optimize_and_convert(digits):
    _, (x, y), (x_test, y_test) = digits
    inputs = keras3.Input((8, 8, 1))
    h = keras3.layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    h = keras3.layers.Flatten(name="flat")(keras3.layers.MaxPooling2D(name="pool")(h))
    model = keras3.Model(inputs, keras3.layers.Dense(10, activation="softmax", name="dense")(h), name="k3_digits")
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    model.fit(x, y, epochs=8, verbose=0)
    keras3_accuracy = float(np.mean(np.argmax(model.predict(x_test, verbose=0), axis=1) == y_test))
    before = [w.copy() for w in model.get_weights()]
    plan = tw.Plan().quantize("conv", "dense").prune("dense", sparsity=0.5)
    with pytest.warns(tw.ModelNotice, match="Keras 3"):
        opt = tw.optimize(model, plan, (x, y), epochs=1)
    assert "Keras 3" in opt.notices[0]
    assert opt.layer_stats().loc["dense", "sparsity"] == pytest.approx(0.5, abs=0.01)
    tflite = tw.convert(opt, "edgetpu")  # fully quantization-aware: no representative data needed
    assert {op.layer for op in tflite.ops if op.op in ("CONV_2D", "FULLY_CONNECTED")} == {"conv", "dense"}
    assert tw.evaluate(tflite, (x_test, y_test)).accuracy > keras3_accuracy - 0.05
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_transfer_learning_model_is_flattened_and_optimized():
    base = keras3.applications.MobileNetV2(weights=None, alpha=0.35, input_shape=(32, 32, 3), include_top=False)
    model = keras3.Sequential([keras3.Input((32, 32, 3)), base, keras3.layers.GlobalAveragePooling2D(name="gap"),
                               keras3.layers.Dense(4, activation="softmax", name="head")], name="transfer")
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tw.ModelNotice)
        info = tw.inspect(model)
        prefix = f"{base.name}/"
        inner = [layer.name for layer in info.layers if layer.name.startswith(prefix)]
        assert f"{prefix}Conv1" in inner and info[f"{prefix}Conv1"].supports("quantize").ok
        flat = tw.to_tf_keras(model)
        x = images(4, 32)
        from tfopt_widgets.model.porting import flatten

        assert np.abs(flatten(flat)(x).numpy() - np.asarray(model(x))).max() <= 1e-5
        convolutions = [layer.name for layer in info.layers
                        if layer.class_name in ("Conv2D", "DepthwiseConv2D") and layer.name.startswith(prefix)]
        plan = tw.Plan().quantize(*convolutions, "head").prune(f"{prefix}Conv_1", sparsity=0.5)
        opt = tw.optimize(model, plan, (x, np.arange(4) % 4), epochs=1, batch_size=4)
        tflite = tw.convert(opt, "cpu", representative_data=x)
    assert opt.layer_stats().loc[f"{prefix}Conv_1", "sparsity"] == pytest.approx(0.5, abs=0.01)
    assert f"{prefix}Conv1" in {op.layer for op in tflite.ops}
    assert tflite.quantization == "int8"


def test_tfoplambda_layers_pass_through_qat():
    model = keras.applications.MobileNetV3Small(weights=None, input_shape=(32, 32, 3), classes=4)
    model.compile(loss="sparse_categorical_crossentropy")
    info = tw.inspect(model)
    lambdas = [layer for layer in info.layers if layer.class_name == "TFOpLambda"]
    assert lambdas and all("passes it through" in layer.supports("quantize").reason for layer in lambdas)
    plan = tw.Plan().quantize(*[layer.name for layer in info.layers
                                if layer.supports("quantize").ok and layer.group is None])
    x = images(4, 32, 255.0)
    opt = tw.optimize(model, plan, (x, np.arange(4) % 4), epochs=1, batch_size=4)
    tflite = tw.convert(opt, "cpu", representative_data=x)
    kernels = [t for t in tflite.tensors if t.constant and len(t.shape) == 4]
    assert kernels and all(t.dtype == "int8" for t in kernels)


def test_conv1d_is_quantization_aware_trained_with_a_conv_config():
    inputs = keras.Input((16, 3))
    x = keras.layers.Conv1D(8, 3, activation="relu", name="conv1d")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(keras.layers.Flatten(name="flat")(x)))
    model.compile(loss="sparse_categorical_crossentropy")
    info = tw.inspect(model)
    assert info["conv1d"].supports("quantize").ok
    x_train = RNG.random((16, 16, 3)).astype("float32")
    opt = tw.optimize(model, tw.Plan().quantize("conv1d", "out"), (x_train, np.arange(16) % 2), epochs=1)
    tflite = tw.convert(opt, "cpu")  # fully QAT: int8 without representative data
    conv = [op for op in tflite.ops if op.op == "CONV_2D"]
    assert conv and conv[0].layer == "conv1d"
    assert tflite.tensors[conv[0].inputs[1]].dtype == "int8"
