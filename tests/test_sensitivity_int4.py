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


def _without_int4(report):
    """The same report without its int4 rows (the layers' sizes keep their "int4" entry)."""
    return tw.SensitivityReport(report.model_name, report.metric, report.baseline, report.int8_value,
                                [row for row in report.rows if row.level != "int4"], report.layers,
                                report.int8_gzip_size, report.float_gzip_size, report.samples, report.levels, 0.0, None)


def _int4_layers(plan):
    return [layer for layer, spec in plan.precisions.items() if spec.weights == "int4"]


def test_suggest_plan_gives_int4_weights_within_the_budget(report, digits):
    model = digits[0]
    without = _without_int4(report)
    sizes = []
    for budget in (0.0, 0.01, 0.05):
        plan = tw.suggest_plan(report, budget=budget, target="cpu")
        plan.validate(model, target="cpu")  # int4 beside prune / cluster, never with keep_float or QAT
        estimate = report.estimate(plan, "cpu")
        assert estimate["drop"] <= budget + 1e-9  # budget 0 too: negative int4 drops count as 0
        assert all(spec.describe() == "int4 weights, float activations" for spec in plan.precisions.values())
        assert not set(plan.precisions) & set(plan.float_layers)
        sizes.append(estimate["size"])
        # Without int4 rows, the plan of before: no precision, and int4 makes the same budget's plan smaller.
        plain = tw.suggest_plan(without, budget=budget, target="cpu")
        assert not plain.precisions and without.estimate(plain, "cpu") == report.estimate(plain, "cpu")
        if _int4_layers(plan):
            assert estimate["size"] < report.estimate(plain, "cpu")["size"]
    assert sizes == sorted(sizes, reverse=True)
    generous = tw.suggest_plan(report, budget=0.05, target="cpu")
    assert _int4_layers(generous) and set(_int4_layers(generous)) <= set(WEIGHTED)
    # Float modes: the other layers float16 or dynamic, int4 still offered.
    for mode in ("float16", "dynamic"):
        assert _int4_layers(tw.suggest_plan(report, budget=0.05, target="cpu", quantization=mode)), mode


def test_estimate_counts_an_int4_layer(report):
    """int4 on one layer: its int4 size instead of its int8 size, its int4 drop instead of its int8 share."""
    unplanned = report.estimate(tw.Plan(), "cpu")
    for name in WEIGHTED:
        sizes, row = report.layer_sizes[name].size, report.row(name, "quantize", "int4")
        share = max(0.0, report.row(name, "quantize", "int8").keep_float_value - report.int8_value)
        planned = report.estimate(tw.Plan().precision(name, weights="int4"), "cpu")
        assert unplanned["size"] - planned["size"] == sizes["int8"] - sizes["int4"]
        assert planned["drop"] == pytest.approx(unplanned["drop"] - share + max(0.0, row.drop))
        # In a float16 conversion the layer's float16 kernel is what int4 replaces.
        float16 = report.estimate(tw.Plan().precision(name, weights="int4"), "cpu", "float16")
        assert report.estimate(tw.Plan(), "cpu", "float16")["size"] - float16["size"] == \
            sizes["float16"] - sizes["int4"]


def test_int4_size_after_pruning_or_clustering_is_estimated_near_the_real_one(report, digits):
    """The int4 gzip size suggest_plan assumes for a pruned or clustered kernel, against the real one."""
    from tfopt_widgets.analysis.jobs import cluster, int4_size, prune
    from tfopt_widgets.analysis.suggestion import _int4_size

    model = digits[0]
    for name in ("conv2", "dense"):
        kernel = np.moveaxis(model.get_layer(name).get_weights()[0], -1, 0)  # the file's layout: output first
        layer = report.layer_sizes[name].size
        assert int4_size(kernel) == layer["int4"]
        for technique, level, compress in (("prune", 0.5, prune), ("cluster", 16, cluster)):
            row = report.row(name, technique, level)
            assert "int4" not in row.size  # not measured: estimated
            real = int4_size(compress(kernel, level))
            estimated = _int4_size(layer, row.size, technique, level)
            assert 0.85 * real <= estimated <= 1.3 * real, (name, technique, estimated, real)


def test_no_int4_where_the_target_cannot_run_it(report):
    without = _without_int4(report)
    for target, mode in (("edgetpu", None), ("hexagon", None), ("gpu", None), ("cpu", "int16x8")):
        for budget in (0.0, 0.05):
            plan = tw.suggest_plan(report, budget=budget, target=target, quantization=mode)
            assert not plan.precisions, (target, mode)
            assert plan == tw.suggest_plan(without, budget=budget, target=target, quantization=mode)


def test_suggested_int4_plan_converts_and_is_verified(report, digits, frozen):
    _, train, test = digits
    budget = 0.05
    plan = tw.suggest_plan(report, budget=budget, target="cpu")
    int4 = _int4_layers(plan)
    tfl = tw.convert(frozen, "cpu", plan=plan, representative_data=train[0][:100])
    found = tfl.precisions()
    assert all(found[name].plan_words == ("int4", "float") for name in int4)
    assert all(found[name].weights == "int8" for name in WEIGHTED if name not in int4)
    assert tfl.gzip_size < tw.convert(frozen, "cpu", representative_data=train[0][:100]).gzip_size
    # Carried out (fine-tuned one epoch for the pruning / clustering, then converted): estimate vs measurement.
    check = report.verify(frozen, plan, train, test, target="cpu", budget=budget, epochs=1)
    assert check.estimated_drop <= budget + 1e-9 and math.isfinite(check.measured_drop)
    assert check.estimated_size == report.estimate(plan, "cpu")["size"]
    # An int4 layer is out of the int8 part (float activations): the file's float_layers() lists it.
    assert set(check.float_layers) == set(plan.float_layers) | set(int4)
    assert check.gzip_size < check.float_gzip_size / 5
    assert (check.missed_by == 0.0) == check.within_budget


def test_suggestion_text_counts_int4_layers():
    from tfopt_widgets.widgets.sensitivity_panel import suggestion_text

    plan = tw.Plan().prune("dense", sparsity=0.5).precision("dense", "conv2", weights="int4")
    text = suggestion_text({"plan": plan, "budget": 0.01, "title": "CPU", "estimate": {"drop": 0.004, "size": 500},
                             "unplanned": {"size": 900}})
    assert "1 pruned, 2 with int4 weights;" in text and "alone" not in text


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
