"""Per-layer precision in the write-ups (issue 15): the integer levels a converted file stores (int4's 16, which
per-channel scales blur in a histogram of dequantized values) in the Studio's weight view and tw.report's figures,
and each layer's quantization error in tw.report. The digits demo through tw.run and LiteRT Quantizer; no mocks."""

from __future__ import annotations

import base64
import html
import io
import re

import numpy as np
import pytest

import tfopt_widgets as tw
from tfopt_widgets.tflite.readback import FLAGGED, IDEAL
from tfopt_widgets.widgets.weight_view import SERIES, WeightView
from tfopt_widgets.writeups.histograms import LEVELS, levels
from tfopt_widgets.writeups.reporting import Run

INT4 = ("conv2", "dense")


@pytest.fixture(scope="module")
def int4_run(digits):
    """tw.run with int4 weights on conv2 and dense (dense also pruned to 50% with int16 outputs), baseline too."""
    model, train, test = digits
    plan = (tw.Plan().precision("conv2", weights="int4").precision("dense", weights="int4", activations="int16")
            .prune("dense", sparsity=0.5))
    return tw.run(model, plan, "cpu", train, test, baseline=True, epochs=1)


def test_stored_levels_are_the_files_int4_and_int8_integers(int4_run):
    tfl = int4_run.tflite
    stored, precisions, dequantized = tfl.stored_levels(), tfl.precisions(), tfl.weights()
    assert set(INT4) < set(stored)
    for layer, found in stored.items():
        assert found.dtype == precisions[layer].weights, layer  # the type the file's precisions read
        summary = levels(found.values, found.dtype, found.channel_axis)
        low, high = LEVELS[found.dtype]
        assert summary["levels"] == list(range(low, high + 1)) and summary["available"] == high - low + 1
        assert sum(summary["counts"]) == found.values.size == dequantized[layer].size
        # Level 0 is the value 0 (symmetric weights): the dequantized kernel's exact zeros, no more, no less.
        assert summary["zeros"] == np.count_nonzero(dequantized[layer] == 0)
        channels = np.moveaxis(found.values, found.channel_axis, 0).reshape(found.values.shape[found.channel_axis], -1)
        assert summary["per_channel_used"] == pytest.approx(np.mean([np.unique(row).size for row in channels]),
                                                            abs=0.01)
        assert summary["used"] == np.unique(found.values).size
    for layer in INT4:
        assert stored[layer].dtype == "int4" and stored[layer].values.min() >= -8 and stored[layer].values.max() <= 7
        assert levels(stored[layer].values, "int4", stored[layer].channel_axis)["used"] <= 16
    assert {stored[layer].dtype for layer in set(stored) - set(INT4)} == {"int8"}
    assert "pool" not in stored and "bn2" not in stored  # no kernel; folded into conv2's op, not its own
    assert int4_run.baseline.tflite.stored_levels() == {}  # the float32 file stores no integers
    # The pruned int4 layer: its level 0 holds at least the weights pruning zeroed.
    pruned = int(np.count_nonzero(int4_run.optimized.weights()["dense"] == 0))
    assert pruned > 0
    assert levels(stored["dense"].values, "int4", stored["dense"].channel_axis)["zeros"] >= pruned


def test_weight_view_plots_the_files_int4_levels_under_the_histogram(int4_run):
    tfl = int4_run.tflite
    view = WeightView()
    view.set_weights(int4_run.baseline.tflite.weights(), optimized=int4_run.optimized.weights(), tflite=tfl.weights(),
                     tflite_mode=tfl.quantization, tflite_levels=tfl.stored_levels())
    view.layer = "dense"
    shown = view.levels
    assert shown["dtype"] == "int4" and len(shown["levels"]) == 16 and shown["used"] <= 16
    stored = tfl.stored_levels()["dense"]
    assert shown == levels(stored.values, "int4", stored.channel_axis)
    assert view.levels_box.layout.display != "none"
    bars = view._levels_bars
    assert list(bars.x) == shown["levels"] and list(bars.y) == shown["nonzero"] and bars.y[shown["levels"].index(0)] == 0
    assert list(bars.colors) == [SERIES[2][2]]  # the converted file's colour in the histogram above
    caption = html.unescape(view.levels_caption.value)
    assert "int4 in the file" in caption and "of 16 used per channel" in caption
    assert f"{shown['per_channel_used']:.1f}" in caption and f"{shown['zeros']:,}" in caption
    assert "stored as" in view.stats.value and "int4, " in view.stats.value
    assert "dequantized (int4)" in view.stats.value  # the layer's own type, not the file's mode (int8)
    assert view.histogram["zeros"]["tflite"] == shown["zeros"]  # the histogram's zeros are level 0's weights

    view.layer = "conv1"
    assert view.levels["dtype"] == "int8" and view.levels["available"] == 256
    view.layer = "pool"
    assert view.levels == {} and view.levels_box.layout.display == "none"
    # A new file without levels (the float32 file) drops the old file's levels.
    view.layer = "dense"
    view.set_weights(tflite=int4_run.baseline.tflite.weights(), tflite_mode="none")
    assert view.levels == {} and view.levels_box.layout.display == "none"
    assert "stored as" in view.stats.value and "int4" not in view.stats.value


def _section(text: str, heading: str) -> str:
    """The HTML from ``<h2>heading</h2>`` to the next heading."""
    return text.split(f"<h2>{heading}</h2>", 1)[1].split("<h2>", 1)[0]


def _rows(fragment: str) -> dict[str, list[tuple[str, str]]]:
    """{first cell: [(class attribute, text) per cell]} of the table rows in ``fragment``."""
    rows = {}
    for row in re.findall(r"<tr>(.*?)</tr>", fragment):
        cells = [(attrs, html.unescape(cell)) for attrs, cell in re.findall(r"<td([^>]*)>(.*?)</td>", row)]
        if cells:
            rows[cells[0][1]] = cells
    return rows


def test_report_of_run_results_has_each_layers_error_and_the_int4_levels(digits, int4_run, tmp_path):
    from PIL import Image

    model = digits[0]
    path = tw.report(tmp_path / "int4.html", model=model, optimized=int4_run.optimized,
                     runs=[int4_run.baseline, int4_run])
    text = path.read_text(encoding="utf-8")
    frame = int4_run.layer_errors()
    assert int4_run.baseline.layer_errors() is None
    assert text.count("<h2>Layer errors: ") == 1, "the float32 baseline has no layer errors"
    heading = f"Layer errors: {html.escape(int4_run.label, quote=True)}"
    section = _section(text, heading)
    assert f"About {IDEAL:.2f} is rounding alone; above {FLAGGED:g}" in section and "int16" in section
    rows = _rows(section)
    quantized = frame[frame["weights"].isin(["int4", "int8"]) | frame["activations"].isin(["int8", "int16"])]
    assert set(rows) == set(quantized["layer"]) and set(INT4) <= set(rows)
    for _, error in quantized.iterrows():
        cells = rows[error["layer"]]
        assert cells[3][1] == error["activations"] and cells[4] == (" class='num'", f"{error['rms_error']:.3g}")
        flag_class, flag = cells[-1]
        if error["flagged"]:
            assert flag.startswith("FLAGGED") and flag_class == " class='flag'"
        elif error["activations"] == "int8":
            assert flag == "ok" and flag_class == ""
            assert cells[5][1] == f"{error['error_over_scale']:.2f}"
    assert rows["dense"][2][1] == "int4" and rows["dense"][-1][1].startswith("not flagged: int16 output")
    assert rows["conv2"][2][1] == "int4"

    # The int4 layers' figures get the levels plot (a taller PNG) and their stats say how the file stores them.
    figures = _section(text, "Weight distributions")
    images = re.findall(r"<img src='data:image/png;base64,([^']+)' alt='weight histogram of layer (\w+)'", figures)
    assert {layer for _, layer in images} == set(INT4)
    for data, _ in images:
        width, height = Image.open(io.BytesIO(base64.b64decode(data))).size
        assert height > 0.4 * width, "the levels plot under the histogram"
    assert figures.count("int4, ") == 2 and figures.count(" of 16 levels used per channel") == 2

    markdown = path.with_suffix(".md").read_text(encoding="utf-8")
    assert markdown.count("## Layer errors: ") == 1
    part = markdown.split("## Layer errors: ", 1)[1].split("\n## ", 1)[0]
    assert f"above {FLAGGED:g}" in part
    for _, error in quantized.iterrows():
        line = next(line for line in part.splitlines() if line.startswith(f"| {error['layer']} |"))
        assert f"| {error['rms_error']:.3g} |" in line


def test_a_tuple_run_keeps_working_without_layer_errors(int4_run):
    run = Run.of(("int4 file", int4_run.tflite, int4_run.metrics))
    assert run.layer_errors is None and run.value == int4_run.metrics.value
    from_result = Run.of(int4_run)
    assert from_result.label == int4_run.label and from_result.layer_errors is int4_run.layer_errors()
    assert from_result.accelerated_share == int4_run.accelerated_share and from_result.size == int4_run.tflite.size
