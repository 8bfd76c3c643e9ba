"""The weight view: one layer's weight histogram before and after optimization, side by side (bqplot), with stats.

Histograms are binned in Python (``tfopt_widgets.writeups.histograms``); only bins and stats reach the browser.
Exact zeros (what pruning makes) are a count beside the plot, not a bar, so they never flatten the other bars.

>>> view = WeightView()
>>> view.set_weights(float_kernels, optimized=opt.weights(), tflite=tfl.weights())
>>> view.layer = "dense"
>>> view.histogram["counts"].keys()
dict_keys(['float', 'optimized', 'tflite'])
>>> view.histogram["zeros"]        # exact zeros per series, shown beside the bars
{'float': 0, 'optimized': 1050, 'tflite': 1050}

The file's integer levels (``tflite_levels=tfl.stored_levels()``) get a small plot of their own under the histogram:
per-channel scales blur int4's 16 levels among the dequantized values, the stored integers show them.

>>> view.set_weights(tflite=tfl.weights(), tflite_mode=tfl.quantization, tflite_levels=tfl.stored_levels())
>>> view.levels["dtype"], view.levels["per_channel_used"]
('int4', 15.0)
"""

from __future__ import annotations

import html
import threading

import bqplot
import ipywidgets as widgets
import numpy as np
import traitlets

from ..writeups.histograms import COLORS, compare, levels, levels_caption, stored_as

# Series in drawing order (side by side in each bin): label, legend text, colour (the report's colours too).
SERIES = (
    ("float", "float (before)", COLORS[0]),
    ("optimized", "optimized Keras", COLORS[1]),
    ("tflite", "TFLite, dequantized", COLORS[2]),
)
# The plots' text follows the page's theme: JupyterLab's variables, which VS Code's notebook renderer maps to its
# --vscode-* colours on the output's container. They are set on the plots' own elements: bqplot's defaults resolve
# these variables once, at the page's root, which gives black labels in VS Code's dark theme (and orange axis labels
# in JupyterLab's dark theme).
PLOT_TEXT = "var(--jp-content-font-color1, #1a1a1a)"
PLOT_MUTED = "var(--jp-content-font-color2, #5a5a5a)"
PLOT_BACKGROUND = {"fill": "transparent"}  # the output's own background, whatever the theme


def plot_axis(scale, **options) -> bqplot.Axis:
    """A bqplot Axis whose ticks and label follow the page's theme (see PLOT_TEXT)."""
    return bqplot.Axis(scale=scale, color=PLOT_MUTED, label_color=PLOT_TEXT, **options)


_STAT_ROWS = (("sparsity", "sparsity", "{:.1%}"), ("unique_values", "unique values", "{:,}"),
              ("min", "min", "{:.4g}"), ("max", "max", "{:.4g}"), ("std", "std", "{:.4g}"),
              ("error_max", "max |error| vs before conversion", "{:.3g}"),
              ("error_rms", "RMS error vs before conversion", "{:.3g}"))


class WeightView(widgets.VBox):
    """The selected layer's kernel: float, optimized and converted histograms side by side, plus their stats."""

    layer = traitlets.Unicode("", help="the layer shown; '' shows nothing")
    histogram = traitlets.Dict(help="what is drawn: {'edges', 'counts': {series: counts}, 'zeros': {series: exact "
                                    "zeros, shown beside the bars}, 'nonzero': {series: counts without them, the "
                                    "bars}, 'stats': {series: stats}} (tfopt_widgets.writeups.histograms.compare)")
    levels = traitlets.Dict(help="the shown layer's integer levels in the converted file, drawn under the histogram: "
                                 "{'dtype', 'levels', 'counts', 'zeros', 'nonzero', 'used', 'per_channel_used', ...} "
                                 "(tfopt_widgets.writeups.histograms.levels); {} when the file stores it as float")

    def __init__(self, *, layer: str = ""):
        self._lock = threading.RLock()
        self._weights = {label: {} for label, _, _ in SERIES}
        self._modes = {}
        self._levels = {}  # {layer: StoredLevels} of the converted file
        self._scaled = {}  # {layer: BatchNormalization layers folded into its kernel in the converted file}
        x_scale, self._y_scale = bqplot.LinearScale(), bqplot.LinearScale(min=0.0, max=1.0)
        # One grouped mark: each bin's series stand side by side, opaque, rather than overlapping see-through
        # fills that blend into colours of their own. Its y has a row per series shown, in SERIES order.
        self._bars = [bqplot.Bars(x=[0.0], y=[[0]], scales={"x": x_scale, "y": self._y_scale}, type="grouped",
                                  color_mode="element", colors=[SERIES[0][2]], padding=0.15, visible=False)]
        # Tick values set per layer (_round_ticks): d3's own are too dense for a narrow plot ("-0.14-0.12-0.1"),
        # and with num_ticks bqplot spaces them evenly, giving values like -5e-8.
        self._x_axis = plot_axis(x_scale, label="weight value", tick_format=".2~g")
        axes = [self._x_axis,
                plot_axis(self._y_scale, side="left", label="count (non-zero)", tick_format=".2~s",
                          num_ticks=5)]  # with the scale's max at 4 round steps, the 5 even ticks are round
        self.figure = bqplot.Figure(marks=self._bars, axes=axes, padding_x=0.0, padding_y=0.0,
                                    background_style=PLOT_BACKGROUND,
                                    fig_margin={"top": 20, "bottom": 45, "left": 55, "right": 10},
                                    layout=widgets.Layout(flex="1 1 auto", width="auto", min_width="0",
                                                          height="260px"),
                                    animation_duration=0)
        self.figure.add_class("tfopt-plot")
        self.zeros = widgets.HTML(layout=widgets.Layout(flex="0 0 auto", width="112px", margin="18px 0 0 4px"))
        self.zeros.add_class("tfopt-zeros")
        self.title = widgets.HTML()
        self.stats = widgets.HTML()
        plot = widgets.HBox([self.figure, self.zeros], layout=widgets.Layout(width="100%", align_items="flex-start"))
        self._make_levels_plot()
        super().__init__([self.title, plot, self.levels_box, self.stats],
                         layout=widgets.Layout(width="100%", min_width="320px"))
        self.add_class("tfopt-weight-view")
        self.layer = layer
        self._redraw()

    def set_weights(self, before: dict | None = None, *, optimized: dict | None = None, tflite: dict | None = None,
                    tflite_mode: str | None = None, tflite_levels: dict | None = None,
                    tflite_scaled: dict | None = None) -> None:
        """Kernels per layer name: ``before`` (float), ``optimized`` (Keras after fine-tuning), ``tflite``
        (dequantized from the file, converted with ``tflite_mode``), ``tflite_levels`` (the same file's
        ``TFLiteModel.stored_levels()``: its integer kernels), ``tflite_scaled`` ({layer: the BatchNormalization
        layers folded into its kernel in the file}: its values are then not compared with the Keras kernel). A
        None argument keeps what was set, except that a new ``tflite`` drops the old file's levels and folds."""
        with self._lock:
            for label, values in (("float", before), ("optimized", optimized), ("tflite", tflite)):
                if values is not None:
                    self._weights[label] = dict(values)
            if tflite is not None:
                self._modes["tflite"] = tflite_mode
            if tflite is not None or tflite_levels is not None:
                self._levels = dict(tflite_levels or {})
            if tflite is not None or tflite_scaled is not None:
                self._scaled = dict(tflite_scaled or {})
        self._redraw()

    def _make_levels_plot(self) -> None:
        """A small bar plot of the file's integer levels (one bar per level, in the file's series colour)."""
        x_scale, self._levels_y = bqplot.LinearScale(), bqplot.LinearScale(min=0.0, max=1.0)
        self._levels_bars = bqplot.Bars(x=[0], y=[0], scales={"x": x_scale, "y": self._levels_y}, colors=[SERIES[2][2]],
                                        padding=0.2)
        self._levels_x_axis = plot_axis(x_scale, label="stored integer level", tick_format="d")
        axes = [self._levels_x_axis,
                plot_axis(self._levels_y, side="left", label="count", tick_format=".2~s", num_ticks=3)]
        self.levels_figure = bqplot.Figure(marks=[self._levels_bars], axes=axes, padding_x=0.0, padding_y=0.0,
                                           background_style=PLOT_BACKGROUND, animation_duration=0,
                                           fig_margin={"top": 8, "bottom": 40, "left": 55, "right": 10},
                                           layout=widgets.Layout(width="100%", height="130px"))
        self.levels_figure.add_class("tfopt-plot")
        self.levels_caption = widgets.HTML()
        # The plot joins the box only while it has levels to show: a bqplot figure drawn in a hidden box has no
        # width and logs negative-width errors in the browser console.
        self.levels_box = widgets.VBox([], layout=widgets.Layout(width="100%", display="none"))

    def _show_levels(self, layer: str) -> dict:
        with self._lock:
            stored = self._levels.get(layer)
        summary = levels(stored.values, stored.dtype, stored.channel_axis) if stored is not None else {}
        self.levels = summary
        if not summary:
            with self.levels_box.hold_sync():
                self.levels_box.layout.display = "none"
                self.levels_box.children = ()
            return summary
        bars = self._levels_bars
        with self.levels_figure.hold_sync(), bars.hold_sync():
            self._levels_y.max = 2.0 * _round_up(max(summary["nonzero"], default=0) / 2)
            bars.x, bars.y = summary["levels"], summary["nonzero"]
            self._levels_x_axis.tick_values = summary["levels"][::1 if len(summary["levels"]) <= 16 else 32]
        self.levels_caption.value = (f"<div style='font-size:12px;line-height:1.4'>"
                                     f"<span style='color:{SERIES[2][2]}'>■</span> "
                                     f"{html.escape(levels_caption(summary))}</div>")
        with self.levels_box.hold_sync():
            self.levels_box.children = (self.levels_caption, self.levels_figure)
            self.levels_box.layout.display = "flex"
        return summary

    @traitlets.observe("layer")
    def _layer_changed(self, change) -> None:
        self._redraw()

    def _redraw(self) -> None:
        with self._lock:
            layer = self.layer
            series = {label: self._weights[label].get(layer) for label, _, _ in SERIES}
            mode = self._modes.get("tflite")
        if not layer or all(values is None for values in series.values()):
            self.histogram = {}
            self._bars[0].visible = False
            note = "Select a layer in the table (its name) to see its weights." if not layer else \
                "This layer has no kernel to show."
            self.title.value = f"<b>Weights</b> {html.escape(layer)}<br><i>{note}</i>"
            self.zeros.value = self.stats.value = ""
            self._show_levels("")
            return
        # The file's error is measured against what was converted: the optimized kernel, else the float one; not
        # where a BatchNormalization was folded into the file's kernel (scaled per output channel, not comparable).
        with self._lock:
            scaled = self._scaled.get(layer, ()) if series["tflite"] is not None else ()
        reference = "optimized" if series["optimized"] is not None else "float"
        histogram = compare(series, references={} if scaled else {"tflite": reference})
        edges = np.asarray(histogram["edges"])
        centers = ((edges[:-1] + edges[1:]) / 2).tolist()
        shown = [(label, color) for label, _, color in SERIES if label in histogram["nonzero"]]
        highest = max((max(histogram["nonzero"][label], default=0) for label, _ in shown), default=0)
        bars = self._bars[0]
        with self.figure.hold_sync(), bars.hold_sync():
            self._y_scale.max = 4.0 * _round_up(highest / 4)
            self._x_axis.tick_values = _round_ticks(float(edges[0]), float(edges[-1]))
            bars.x, bars.y = centers, [histogram["nonzero"][label] for label, _ in shown]
            bars.colors = [color for _, color in shown]
            bars.visible = True
        self.histogram = histogram
        legend = " ".join(f"<span style='white-space:nowrap'><span style='color:{color}'>■</span> "
                          f"{html.escape(text)}</span>" for label, text, color in SERIES if label in histogram["counts"])
        folded = (f"<br><i>In the file {', '.join(html.escape(name) for name in scaled)} "
                  f"{'is' if len(scaled) == 1 else 'are'} folded into this kernel: TFLite's values are the Keras "
                  "kernel scaled per output channel, so the error rows compare nothing and are left out.</i>"
                  if scaled else "")
        self.title.value = (f"<div style='line-height:1.4'><b>Weights of</b> <code>{html.escape(layer)}</code>"
                            f" &nbsp; {legend}{folded}</div>")
        self.zeros.value = _zeros_box(histogram)
        summary = self._show_levels(layer)
        if summary:  # the layer's own type in the file (int4 in an int8 file), not the file's mode
            mode = summary["dtype"]
        self.stats.value = _stats_table(histogram["stats"], mode, stored_as(summary or None, "float"))


def folded_batch_norms(tflite, info) -> dict:
    """{layer: the BatchNormalization layers the converter folded into its kernel in ``tflite``} (tw.inspect's
    ``info`` says which layers are BatchNormalization), for :meth:`WeightView.set_weights`'s ``tflite_scaled``."""
    found = {layer: [name for name in names if info.get(name) is not None
                     and info.get(name).class_name == "BatchNormalization"]
             for layer, names in tflite.folded_layers().items()}
    return {layer: names for layer, names in found.items() if names}


def _zeros_box(histogram: dict) -> str:
    """Exact zeros per series, beside the bars (which leave them out)."""
    lines = "".join(f"<div style='white-space:nowrap'><span style='color:{color}'>■</span> "
                    f"<span aria-label='exact zeros in {html.escape(legend)}'>{histogram['zeros'][label]:,}</span>"
                    "</div>" for label, legend, color in SERIES if label in histogram["zeros"])
    return (f"<div style='font-size:12px;line-height:1.5'><b>exact zeros</b><br>"
            f"<span style='font-size:11px;opacity:0.8'>not drawn as bars</span>{lines}</div>")


def _round_ticks(low: float, high: float, spaces: int = 7) -> np.ndarray:
    """Round values from ``low`` to ``high``, at most ``spaces`` steps of 1, 2 or 5 times a power of ten apart."""
    step = _round_up((high - low) / spaces, steps=(1, 2, 5, 10))
    ticks = np.arange(np.ceil(low / step) * step, high + step * 1e-9, step)
    return np.round(ticks / step) * step  # exact multiples: no -0.30000000000000004


def _round_up(value: float, steps=(1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10)) -> float:
    """The smallest round number (one of ``steps`` times a power of ten) at least ``value``."""
    if value <= 0:
        return 1.0
    power = 10.0 ** np.floor(np.log10(value))
    return float(next(m * power for m in steps if m * power >= value))


def _stats_table(stats: dict, tflite_mode: str | None, tflite_stored: str) -> str:
    labels = [(label, legend) for label, legend, _ in SERIES if label in stats]
    head = "".join(f"<th style='text-align:right;padding:0 8px'>{html.escape(legend)}"
                   f"{' (' + html.escape(tflite_mode) + ')' if label == 'tflite' and tflite_mode else ''}</th>"
                   for label, legend in labels)
    body = []
    for key, name, fmt in _STAT_ROWS:
        if not any(key in stats[label] for label, _ in labels):
            continue
        cells = "".join(f"<td style='text-align:right;padding:0 8px'>"
                        f"{fmt.format(stats[label][key]) if key in stats[label] else ''}</td>" for label, _ in labels)
        body.append(f"<tr><td>{name}</td>{cells}</tr>")
    stored = "".join(f"<td style='text-align:right;padding:0 8px'>"
                     f"{html.escape(tflite_stored if label == 'tflite' else 'float32')}</td>" for label, _ in labels)
    body.append(f"<tr><td>stored as</td>{stored}</tr>")
    return (f"<table class='tfopt-stats' style='font-size:12px;line-height:1.35'><thead><tr><th></th>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")
