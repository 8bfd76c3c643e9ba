"""tw.sensitivity's int4 level (issue 15 item 5): each weighted layer's weights int4 alone, by LiteRT Quantizer as
tw.convert gives plan.precision(layer, weights="int4"), on the digits demo (real models)."""

import math

import numpy as np
import pytest

import tfopt_widgets as tw

keras = pytest.importorskip("tf_keras")

WEIGHTED = ("conv1", "conv2", "dense", "classifier")


@pytest.fixture(scope="module")
def report(digits):
    model, _, test = digits
    return tw.sensitivity(model, test, levels={"quantize": ("int8", "int4"), "prune": (0.5,), "cluster": (16,)})


def test_an_int4_row_per_weighted_layer(report):
    int4 = {row.layer: row for row in report.rows if row.technique == "quantize" and row.level == "int4"}
    assert set(int4) == set(WEIGHTED)  # pooling and flatten have no weights: no int4 row
    for name in WEIGHTED:
        row = report.row(name, "quantize", "int4")
        assert math.isfinite(row.drop) and row.drop < 0.05, (name, row.drop)
        assert row.value == pytest.approx(report.baseline - row.drop)
        assert row.keep_float_value is None and row.quant_error is None  # int8-only measurements
        # Its gzip size: in the row's and the layer's sizes, half the int8 kernel's or less.
        assert 0 < row.size["int4"] < row.size["int8"] < row.size["float32"]
        assert report.layer_sizes[name].size["int4"] == row.size["int4"]
    assert report.row("dense", "quantize", "int4").size["int4"] < 0.6 * report.layer_sizes["dense"].size["int8"]
    # Without a level, "quantize" is still the int8 measurement (layers_dataframe's quant error and keep-float gain).
    assert report.row("dense", "quantize").level == "int8"
    assert report.layers_dataframe().loc["dense", "quant_error"] is not None


def test_dataframe_and_json_show_the_level(report):
    frame = report.to_dataframe()
    assert ("quantize", "int8") in frame.columns and ("quantize", "int4") in frame.columns
    assert list(frame.columns).index(("quantize", "int4")) == 1  # beside int8, before prune
    assert np.isfinite(frame.loc[list(WEIGHTED), ("quantize", "int4")].to_numpy(dtype=float)).all()
    assert np.isnan(frame.loc["pool", ("quantize", "int4")])
    sizes = report.to_dataframe("int4")
    assert sizes.loc["dense", ("quantize", "int4")] == report.layer_sizes["dense"].size["int4"]
    data = report.to_dict()
    assert data["levels"]["quantize"] == ["int8", "int4"]
    assert sum(row["level"] == "int4" for row in data["rows"]) == len(WEIGHTED)
    assert "int4" in report.to_json()


def test_int4_variant_is_the_file_tw_convert_makes(digits):
    from tfopt_widgets.analysis.variants import int4_files

    model = digits[0]
    float_file = tw.convert(model, "float32")
    files = int4_files(float_file, [*WEIGHTED, "pool"])
    assert set(files) == set(WEIGHTED)
    for name, content in files.items():
        found = tw.TFLiteModel(content, layer_origins=float_file.layer_origins).precisions()
        assert found[name].plan_words == ("int4", "float"), name
        others = [layer for layer in WEIGHTED if layer != name]
        assert all(found[layer].weights == "float32" for layer in others), name
    # tw.convert's own int4 for the same layer (a float32 conversion finished by LiteRT Quantizer): the same file.
    converted = tw.convert(model, "cpu", plan=tw.Plan().precision("dense", weights="int4"), quantization="none")
    assert converted.precisions()["dense"].plan_words == ("int4", "float")
    assert converted.content == files["dense"]


def test_suggest_plan_ignores_int4_rows(report):
    plan = tw.suggest_plan(report, budget=0.02, target="cpu")
    assert not plan.precisions
    estimate = report.estimate(plan, "cpu")
    assert math.isfinite(estimate["drop"]) and estimate["size"] > 0


def test_no_int4_row_for_a_depthwise_layer(digits):
    rng = np.random.default_rng(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="depthwise")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(4, activation="softmax", name="dense")(x)
    model = keras.Model(inputs, outputs, name="depthwise_cnn")
    x_data = rng.random((64, 8, 8, 1), dtype=np.float32)
    y_data = rng.integers(0, 4, 64)
    report = tw.sensitivity(model, (x_data, y_data), techniques=("quantize",), levels={"quantize": ("int4",)})
    assert {row.layer for row in report.rows} == {"conv", "dense"}
    assert all(row.level == "int4" for row in report.rows) and report.int8_value is None
    # LiteRT Quantizer's own policy refuses int4 for DEPTHWISE_CONV_2D, whether or not the layer prunes.
    from tfopt_widgets.analysis.variants import int4_files

    assert set(int4_files(tw.convert(model, "float32"), ["conv", "depthwise", "dense"])) == {"conv", "dense"}


def test_unknown_quantize_level_is_refused(digits):
    model, _, test = digits
    with pytest.raises(tw.Error, match="int4"):
        tw.sensitivity(model, test, techniques=("quantize",), levels={"quantize": ("int2",)})
