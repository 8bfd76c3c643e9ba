"""tw.inspect on real tf_keras models: layers, weights, support rules decided by what tfmot 0.8.1 does."""

import pytest

import tfopt_widgets as tw
from tfopt_widgets.model.stack import keras

L = keras.layers


def test_lists_every_layer_with_weights_and_shapes(digits):
    model = digits[0]
    info = tw.inspect(model)
    assert [layer.name for layer in info.layers] == [layer.name for layer in model.layers]
    assert info.params == model.count_params() == sum(layer.params for layer in info.layers)
    conv2 = info["conv2"]
    assert conv2.class_name == "Conv2D" and conv2.output_shape == (None, 8, 8, 32)
    assert [(w.name.split("/")[-1], w.shape, w.bytes) for w in conv2.weights] == [
        ("kernel:0", (3, 3, 16, 32), 3 * 3 * 16 * 32 * 4), ("bias:0", (32,), 32 * 4)]
    assert info.weight_bytes == 4 * model.count_params()
    assert info["dense"].inbound == ["flatten"]


def test_support_follows_tfmot_behaviour(digits):
    info = tw.inspect(digits[0])
    supported = {layer.name: tuple(layer.supports(t).ok for t in ("quantize", "prune", "cluster"))
                 for layer in info.layers}
    assert supported == {
        "image": (False, False, False),
        "conv1": (True, True, True), "conv2": (True, True, True),
        "bn2": (True, False, False), "relu2": (True, False, False),  # folded into conv2 when quantized
        "pool": (True, False, False), "flatten": (True, False, False), "dropout": (True, False, False),
        "dense": (True, True, True), "classifier": (True, True, True),
    }
    assert info["bn2"].group == "conv2" and info["relu2"].group == "conv2"
    assert info.group_members("conv2") == ["bn2", "relu2"]
    assert "no weights to prune" in info["flatten"].supports("prune").reason
    with pytest.raises(ValueError):
        info["dense"].supports("distill")


def test_traps_from_the_field_notes():
    inputs = keras.Input((16, 16, 3))
    x = L.SeparableConv2D(8, 3, name="sep")(inputs)
    x = L.DepthwiseConv2D(3, name="dw")(x)
    x = L.BatchNormalization(name="bn_after_dw")(x)
    x = L.Reshape((-1, 8), name="to_seq")(x)
    x = L.Conv1D(4, 3, name="conv1d")(x)
    x = L.LSTM(4, name="lstm")(x)
    x = L.BatchNormalization(name="bn_alone")(x)
    model = keras.Model(inputs, L.Dense(2, name="out")(x))
    info = tw.inspect(model)
    assert info["sep"].supports("quantize").ok  # a whole-model transform splits it in two
    assert not info["dw"].supports("cluster").ok and "deliberately" in info["dw"].supports("cluster").reason
    assert not info["dw"].supports("prune").ok
    assert info["bn_after_dw"].supports("quantize").ok and info["bn_after_dw"].group == "dw"
    assert not info["bn_alone"].supports("quantize").ok
    assert "follows no convolution" in info["bn_alone"].supports("quantize").reason
    support = info["lstm"].supports("quantize")
    assert not support.ok and "not in tfmot's default 8-bit" in support.reason and "tw.convert" in support.reason
    assert "registry lacks Conv1D" in info["conv1d"].supports("quantize").reason  # quantized with our config
    for name in ("conv1d", "lstm"):
        assert info[name].supports("prune").ok and info[name].supports("cluster").ok


def test_embedding_cannot_be_quantization_aware_trained():
    inputs = keras.Input((5,), dtype="int32")
    x = L.Embedding(10, 4, name="emb")(inputs)
    model = keras.Model(inputs, L.Dense(2, name="out")(L.Flatten()(x)))
    info = tw.inspect(model)
    assert not info["emb"].supports("quantize").ok and info["emb"].supports("prune").ok


def test_mobilenet_v2_depthwise_layers_are_not_clusterable():
    model = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=4)
    info = tw.inspect(model)
    depthwise = [layer for layer in info.layers if layer.class_name == "DepthwiseConv2D"]
    assert depthwise and all(not layer.supports("cluster").ok and layer.supports("quantize").ok
                             for layer in depthwise)
    batch_norms = [layer for layer in info.layers if layer.class_name == "BatchNormalization"]
    assert all(layer.group is not None for layer in batch_norms)
    assert info.params == model.count_params()


def test_nested_model_layers_are_inlined_as_outer_slash_inner():
    inner = keras.Sequential([keras.Input((4,)), L.Dense(3, name="d1")], name="backbone")
    model = keras.Sequential([keras.Input((4,)), inner, L.Dense(2, name="head")])
    with pytest.warns(tw.ModelNotice, match="nested"):
        info = tw.inspect(model)
    assert [layer.name for layer in info.layers][1:] == ["backbone/d1", "head"]
    assert info["backbone/d1"].supports("prune").ok and info["head"].supports("prune").ok
    assert info.params == model.count_params()
    assert "nested" in info.notices[0] and "nested" in info._repr_html_()


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = L.Dense(2)

    def call(self, x):
        return self.dense(x)


def test_subclassed_model_is_inspected_as_far_as_keras_allows():
    model = Subclassed()
    model.build((None, 3))
    info = tw.inspect(model)
    assert info.layers[0].class_name == "Dense" and info.layers[0].params == 8
    assert "Functional API" in info.layers[0].supports("quantize").reason


def test_keras3_model_is_inspected_as_its_tf_keras_rebuild():
    import keras as keras3

    model = keras3.Sequential([keras3.Input((4,)), keras3.layers.Dense(2, name="d")])
    with pytest.warns(tw.ModelNotice, match="Keras 3"):
        info = tw.inspect(model)
    assert info["d"].supports("quantize").ok and "Keras 3" in info.notices[0]


def test_keras3_layer_without_tf_keras_equivalent_is_named():
    import keras as keras3

    inputs = keras3.Input((4,))
    model = keras3.Model(inputs, keras3.layers.Dense(2)(keras3.layers.RMSNormalization(name="rms")(inputs)))
    with pytest.raises(tw.ModelError, match="'rms' \\(RMSNormalization\\) has no tf_keras equivalent") as error:
        tw.inspect(model)
    assert error.value.layer == "rms"


def test_html_and_dataframe_views_escape_names():
    # TensorFlow refuses '<' in layer names (scope rules) but not in model names; '>' passes in both.
    name = "<img src=x onerror=alert(1)>"
    inputs = keras.Input((4,))
    model = keras.Model(inputs, L.Dense(2, name="a>b")(inputs), name=name)
    info = tw.inspect(model)
    page = info._repr_html_()
    assert name not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "a&gt;b" in page and "a>b" not in page
    frame = info.to_dataframe()
    assert list(frame.columns) == ["type", "output_shape", "params", "weight_bytes", "quantize", "prune", "cluster"]
    assert frame.loc["a>b", "params"] == 10
