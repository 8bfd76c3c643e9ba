"""The Studio's views say what their numbers are (issue 14): the weight view keeps exact zeros out of the bars'
scale and counts them beside the plot, the results table says where latency was measured, the results plot joins
the page only once there is something to plot, the sensitivity bar explains Budget and "float" in words, and the
report's figures draw the same data in the same colours.

Real widgets and real arrays; no browser (tests/browser/test_console.py and test_plots_dark.py look at the page).
"""

from __future__ import annotations

import html
import io

import numpy as np
import pytest

from tfopt_widgets.widgets.results_view import ResultsView
from tfopt_widgets.widgets.sensitivity_panel import SensitivityPanel
from tfopt_widgets.widgets.weight_view import SERIES, WeightView
from tfopt_widgets.writeups.histograms import COLORS, compare

SIZE, PRUNED = 2048, 1050


def pruned_kernel(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A (32, 64) float kernel and the same kernel with its 1,050 smallest weights set to zero."""
    before = np.random.default_rng(seed).normal(0.0, 0.05, (32, 64)).astype(np.float32)
    after = before.copy().ravel()
    after[np.argsort(np.abs(after))[:PRUNED]] = 0.0
    return before, after.reshape(before.shape)


def test_histogram_counts_exact_zeros_apart_from_the_bars():
    before, after = pruned_kernel()
    h = compare({"float": before, "optimized": after})
    assert h["zeros"] == {"float": 0, "optimized": PRUNED}
    assert sum(h["counts"]["optimized"]) == SIZE  # every value, zeros included
    assert sum(h["nonzero"]["optimized"]) == SIZE - PRUNED  # the bars: zeros left out
    zero_bin = int(np.searchsorted(h["edges"], 0.0, side="right")) - 1
    assert h["counts"]["optimized"][zero_bin] - h["nonzero"]["optimized"][zero_bin] == PRUNED
    assert h["nonzero"]["float"] == h["counts"]["float"]  # nothing to leave out of a float kernel


def test_weight_view_scales_the_bars_without_the_zeros_and_shows_their_count():
    before, after = pruned_kernel()
    view = WeightView()
    view.set_weights({"dense": before}, optimized={"dense": after}, tflite={"dense": after}, tflite_mode="int8")
    view.layer = "dense"

    h = view.histogram
    assert h["zeros"] == {"float": 0, "optimized": PRUNED, "tflite": PRUNED}
    bars = view._bars[0]
    assert bars.visible and bars.type == "grouped" and bars.color_mode == "element"
    assert np.array_equal(bars.y, [h["nonzero"][label] for label, _, _ in SERIES])
    assert list(bars.colors) == [colour for _, _, colour in SERIES]
    tallest = max(max(counts) for counts in h["nonzero"].values())
    # The y scale fits the non-zero bars (at most one round step above them); the 1,050 zeros would need 4x more.
    assert tallest <= view._y_scale.max < 2 * tallest < PRUNED
    assert "exact zeros" in view.zeros.value and f"{PRUNED:,}" in view.zeros.value
    assert view.zeros.value.count("■") == 3
    # A few round ticks across the bins, not d3's dense default ("-0.14-0.12-0.1" in a narrow plot).
    ticks = np.asarray(view._x_axis.tick_values)
    assert 3 <= len(ticks) <= 8 and h["edges"][0] <= ticks.min() and ticks.max() <= h["edges"][-1]
    step = np.diff(ticks)[0]
    assert np.allclose(np.diff(ticks), step) and any(np.isclose(step / 10.0 ** np.floor(np.log10(step)), (1, 2, 5)))


def test_weight_view_series_are_opaque_okabe_ito_colours_seen_on_light_and_dark():
    assert [colour for _, _, colour in SERIES] == list(COLORS[:3])
    assert set(COLORS) <= {"#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000"}
    view = WeightView()
    assert not view._bars[0].opacities  # no see-through fills: each series stands on its own
    lightness = [_lightness(colour) for colour in COLORS[:3]]
    assert min(abs(a - b) for i, a in enumerate(lightness) for b in lightness[i + 1:]) >= 6  # apart in greyscale
    for colour in COLORS:  # bars need 3:1 against the background (WCAG 1.4.11), light or dark
        for background in ("#ffffff", "#111111", "#1f1f1f"):
            assert _contrast(colour, background) >= 3, (colour, background)


def _luminance(colour: str) -> float:
    rgb = np.array([int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    return float(linear @ [0.2126, 0.7152, 0.0722])


def _contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def _lightness(colour: str) -> float:
    """CIE L* of a hex colour."""
    y = _luminance(colour)
    return 116 * y ** (1 / 3) - 16 if y > 0.008856 else 903.3 * y


ROW = {"run": "float32 baseline", "target": "float32", "mode": "none", "size": 147_656, "gzip_size": 135_000,
       "accuracy": 0.95, "latency_ms": 0.004, "accelerated_share": None}


def test_results_table_says_latency_is_measured_on_this_cpu_not_the_target():
    view = ResultsView()
    for value in (view.table.value, _after_add(view, ROW).table.value):
        assert "latency on this CPU" in value  # the column heading itself
        caption = html.unescape(value.split("tfopt-latency-caption", 1)[1])
        assert "this machine's CPU" in caption and "not on the target chip" in caption


def _after_add(view: ResultsView, row: dict) -> ResultsView:
    view.add(row)
    return view


def test_results_plot_joins_the_view_only_once_a_run_is_scored():
    view = ResultsView()
    assert view.children == (view.table,)  # no hidden bqplot figure (it would lay out with a negative width)
    view.add({**ROW, "accuracy": None})
    assert view.children == (view.table,)
    view.add({**ROW, "run": "cpu (int8)", "target": "cpu", "accuracy": 0.94, "gzip_size": 40_000})
    assert view.children == (view.table, view.plot)
    assert list(view._names.text) == ["cpu (int8)"] and list(view._points.x) == [40.0]


def test_sensitivity_bar_explains_budget_and_the_float_column_in_words():
    panel = SensitivityPanel()
    assert panel.help in panel.children and panel.help.layout.display != "none"
    text = panel.help.value
    assert "<b>Budget</b>" in text and "0.01 = one accuracy point" in text
    assert "<b>float</b> column" in text and "stays float" in text


def test_report_figure_draws_the_same_series_colours_side_by_side_with_zeros_apart():
    from matplotlib.image import imread

    from tfopt_widgets.writeups.reporting import _plot

    before, after = pruned_kernel()
    png = _plot("dense", compare({"float (before)": before, "optimized (Keras)": after, "TFLite: cpu": after}),
                "prune")
    pixels = (imread(io.BytesIO(png))[..., :3] * 255).round().astype(int).reshape(-1, 3)
    drawn = {tuple(p) for p in pixels}
    for colour in COLORS[:3]:
        assert tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5)) in drawn, colour
    # No blended colours from see-through fills: the old grey/blue/red overlay made many in-between shades.
    assert tuple(int(COLORS[3][i:i + 2], 16) for i in (1, 3, 5)) not in drawn  # only three series here


def test_conversion_error_of_a_bad_model_name_says_the_name_is_the_cause():
    # Keras accepts a backslash in a model's name (a Windows path, say); TensorFlow's op names do not, and every op
    # is named '<model>/<layer>/...', so the converter's message points at the first layer's op.
    import tfopt_widgets as tw
    from tfopt_widgets.model.stack import keras

    inputs = keras.Input((4,), name="features")
    model = keras.Model(inputs, keras.layers.Dense(2, name="dense")(inputs), name="models\\digits")
    with pytest.raises(tw.ConversionError) as error:
        tw.convert(model, "float32")
    message = str(error.value)
    assert "names the op or layer that failed" not in message
    assert "The cause is the model's name, not a layer: 'models\\\\digits'" in message
    assert "name='models_digits'" in message  # a name that converts, as a line to run
    assert error.value.layer is None and error.value.field == "model"  # not blamed on layer 'dense'
    renamed = keras.Model(model.inputs, model.outputs, name="models_digits")  # what the hint says to do
    assert tw.convert(renamed, "float32").size > 0


def test_conversion_error_of_a_bad_layer_name_names_that_layer():
    import tfopt_widgets as tw
    from tfopt_widgets.model.stack import keras

    inputs = keras.Input((4,), name="features")
    model = keras.Model(inputs, keras.layers.Dense(2, name="conv\\1")(inputs), name="fine")
    with pytest.raises(tw.ConversionError, match=r"The cause is the name of layer 'conv\\\\1'.*'conv_1'") as error:
        tw.convert(model, "float32")
    assert error.value.layer == "conv\\1"


def test_a_model_name_that_tensorflow_cannot_trace_is_a_conversion_error():
    # A space is refused earlier than a backslash: while the model is traced ("'my model/' is not a valid root scope
    # name"), before the converter runs. It still arrives as our error, naming the model's name as the cause.
    import tfopt_widgets as tw
    from tfopt_widgets.model.stack import keras

    inputs = keras.Input((4,), name="features")
    model = keras.Model(inputs, keras.layers.Dense(2, name="dense")(inputs), name="my model")
    with pytest.raises(tw.ConversionError, match="model's name") as error:
        tw.convert(model, "float32")
    assert error.value.field == "model" and isinstance(error.value.__cause__, ValueError)
