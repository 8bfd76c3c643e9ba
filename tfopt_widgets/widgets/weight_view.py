"""The weight view: one layer's weight histogram before and after optimization, overlaid (bqplot), with stats.

Histograms are binned in Python (``tfopt_widgets.writeups.histograms``); only bins and stats reach the browser.

>>> view = WeightView()
>>> view.set_weights(float_kernels, optimized=opt.weights(), tflite=tfl.weights())
>>> view.layer = "dense"
>>> view.histogram["counts"].keys()
dict_keys(['float', 'optimized', 'tflite'])
"""

from __future__ import annotations

import html
import threading

import bqplot
import ipywidgets as widgets
import numpy as np
import traitlets

from ..writeups.histograms import compare

# Series in drawing order: label, legend text, colour.
SERIES = (
    ("float", "float (before)", "#8c8c8c"),
    ("optimized", "optimized Keras", "#1f77b4"),
    ("tflite", "TFLite, dequantized", "#d62728"),
)
_STAT_ROWS = (("sparsity", "sparsity", "{:.1%}"), ("unique_values", "unique values", "{:,}"),
              ("min", "min", "{:.4g}"), ("max", "max", "{:.4g}"), ("std", "std", "{:.4g}"),
              ("error_max", "max |error| vs before conversion", "{:.3g}"),
              ("error_rms", "RMS error vs before conversion", "{:.3g}"))


class WeightView(widgets.VBox):
    """The selected layer's kernel: float, optimized and converted histograms overlaid, plus their stats."""

    layer = traitlets.Unicode("", help="the layer shown; '' shows nothing")
    histogram = traitlets.Dict(help="what is drawn: {'edges', 'counts': {series: counts}, 'stats': {series: "
                                    "stats}} (tfopt_widgets.writeups.histograms.compare)")

    def __init__(self, *, layer: str = ""):
        self._lock = threading.RLock()
        self._weights = {label: {} for label, _, _ in SERIES}
        self._modes = {}
        x_scale, self._y_scale = bqplot.LinearScale(), bqplot.LinearScale(min=0.0, max=1.0)
        # Overlaid: float and optimized as wide see-through bars, the file's values as narrow solid bars inside
        # them, so all three stay visible where they coincide (a QAT kernel and its int8 file hold the same values).
        self._bars = [bqplot.Bars(x=[0.0], y=[0], scales={"x": x_scale, "y": self._y_scale}, colors=[color],
                                  opacities=[0.85 if label == "tflite" else 0.45], labels=[legend],
                                  padding=0.6 if label == "tflite" else 0.0, stroke="white", stroke_width=0.5,
                                  visible=False)
                      for label, legend, color in SERIES]
        # No num_ticks: then d3 picks round tick values (with num_ticks bqplot spaces them evenly, giving -5e-8).
        axes = [bqplot.Axis(scale=x_scale, label="weight value", tick_format=".2~g"),
                bqplot.Axis(scale=self._y_scale, side="left", label="count", tick_format=".2~s",
                            num_ticks=5)]  # with the scale's max at 4 round steps, the 5 even ticks are round
        self.figure = bqplot.Figure(marks=self._bars, axes=axes, padding_x=0.0, padding_y=0.0,
                                    fig_margin={"top": 20, "bottom": 45, "left": 55, "right": 10},
                                    layout=widgets.Layout(width="100%", height="260px"),
                                    animation_duration=0)
        self.title = widgets.HTML()
        self.stats = widgets.HTML()
        super().__init__([self.title, self.figure, self.stats],
                         layout=widgets.Layout(width="100%", min_width="320px"))
        self.add_class("tfopt-weight-view")
        self.layer = layer
        self._redraw()

    def set_weights(self, before: dict | None = None, *, optimized: dict | None = None, tflite: dict | None = None,
                    tflite_mode: str | None = None) -> None:
        """Kernels per layer name: ``before`` (float), ``optimized`` (Keras after fine-tuning), ``tflite``
        (dequantized from the file, converted with ``tflite_mode``). A None argument keeps what was set."""
        with self._lock:
            for label, values in (("float", before), ("optimized", optimized), ("tflite", tflite)):
                if values is not None:
                    self._weights[label] = dict(values)
            if tflite is not None:
                self._modes["tflite"] = tflite_mode
        self._redraw()

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
            for bars in self._bars:
                bars.visible = False
            note = "Select a layer in the table (its name) to see its weights." if not layer else \
                "This layer has no kernel to show."
            self.title.value = f"<b>Weights</b> {html.escape(layer)}<br><i>{note}</i>"
            self.stats.value = ""
            return
        # The file's error is measured against what was converted: the optimized kernel, else the float one.
        reference = "optimized" if series["optimized"] is not None else "float"
        histogram = compare(series, references={"tflite": reference})
        edges = np.asarray(histogram["edges"])
        centers = ((edges[:-1] + edges[1:]) / 2).tolist()
        highest = max((max(c) for c in histogram["counts"].values() if c), default=1)
        with self.figure.hold_sync():
            self._y_scale.max = 4.0 * _round_up(highest / 4)
            for (label, _, _), bars in zip(SERIES, self._bars):
                counts = histogram["counts"].get(label)
                with bars.hold_sync():
                    bars.x, bars.y = centers, counts if counts is not None else [0] * len(centers)
                    bars.visible = counts is not None
        self.histogram = histogram
        legend = " ".join(f"<span style='white-space:nowrap'><span style='color:{color}'>■</span> "
                          f"{html.escape(text)}</span>" for label, text, color in SERIES if label in histogram["counts"])
        self.title.value = (f"<div style='line-height:1.4'><b>Weights of</b> <code>{html.escape(layer)}</code>"
                            f" &nbsp; {legend}</div>")
        self.stats.value = _stats_table(histogram["stats"], mode)


def _round_up(value: float) -> float:
    """The smallest round number (1, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a power of ten) at least ``value``."""
    if value <= 0:
        return 1.0
    power = 10.0 ** np.floor(np.log10(value))
    return float(next(m * power for m in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10) if m * power >= value))


def _stats_table(stats: dict, tflite_mode: str | None) -> str:
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
    return (f"<table class='tfopt-stats' style='font-size:12px;line-height:1.35'><thead><tr><th></th>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")
