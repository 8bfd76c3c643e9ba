"""The results: one row per run (the float32 baseline first) and a size-vs-accuracy plot (bqplot).

Latency is measured where the kernel runs, on this machine's CPU with LiteRT, not on the target's chip; the table
says so under its latency heading, since an Edge TPU file timed on a desktop CPU often looks slower than float.

>>> view = ResultsView()
>>> view.add({"run": "float32 baseline", "target": "float32", "mode": "none", "size": 147656, ...})
>>> view.results        # a pandas DataFrame, one row per run
"""

from __future__ import annotations

import html
import threading

import bqplot
import ipywidgets as widgets
import traitlets

from .weight_view import PLOT_BACKGROUND, PLOT_TEXT, plot_axis

# Columns: key, heading, format of a value (None shows as a dash).
COLUMNS = (
    ("run", "run", "{}"),
    ("target", "target", "{}"),
    ("mode", "mode", "{}"),
    ("size", "size", "{:,} B"),
    ("gzip_size", "gzip size", "{:,} B"),
    ("accuracy", "accuracy", "{:.3f}"),
    ("latency_ms", "latency on this CPU*", "{:.3f} ms"),
    ("accelerated_share", "ops on the accelerator", "{:.0%}"),
)
LATENCY_CAPTION = ("* Latency: median of batch-1 runs with LiteRT on this machine's CPU, not on the target chip. An "
                   "Edge TPU, GPU or DSP file runs on CPU kernels here (int8 is often slower than float on a desktop "
                   "CPU), so compare latency between runs of one target, and measure on the device itself.")
POINT_COLOR = "#009E73"  # Okabe-Ito bluish green: visible on light and dark backgrounds


class ResultsView(widgets.VBox):
    """A table of every run and a scatter plot of gzip size against accuracy."""

    rows = traitlets.List(help="one dict per run with the keys of COLUMNS (plus plan, epochs)")

    def __init__(self):
        self._lock = threading.RLock()
        self.table = widgets.HTML(layout=widgets.Layout(overflow="auto", width="100%"))
        x_scale, y_scale = bqplot.LinearScale(min=0.0), bqplot.LinearScale()
        self._x_scale = x_scale
        scales = {"x": x_scale, "y": y_scale}
        self._points = bqplot.Scatter(x=[], y=[], names=[], display_names=False, scales=scales,
                                      colors=[POINT_COLOR], default_size=64,
                                      tooltip=bqplot.Tooltip(fields=["name", "x", "y"],
                                                             labels=["run", "gzip KB", "accuracy"],
                                                             formats=["", ".1f", ".3f"]))
        # The runs' names as a Label mark, whose colour can follow the theme (a Scatter's own names cannot).
        self._names = bqplot.Label(x=[], y=[], text=[], scales=scales, colors=[PLOT_TEXT], default_size=12,
                                   x_offset=9, y_offset=4)
        axes = [plot_axis(x_scale, label="gzip size (KB)", tick_format=".3~s"),
                plot_axis(y_scale, side="left", label="accuracy", tick_format=".3f", label_offset="50px",
                          num_ticks=4)]
        self.plot = bqplot.Figure(marks=[self._points, self._names], axes=axes, animation_duration=0, padding_y=0.15,
                                  background_style=PLOT_BACKGROUND,
                                  fig_margin={"top": 15, "bottom": 45, "left": 75, "right": 20},
                                  layout=widgets.Layout(width="100%", max_width="460px", height="230px"))
        self.plot.add_class("tfopt-plot")
        # The plot joins the view only once a run has a score: a bqplot Figure laid out while hidden gets a
        # negative width (the browser logs "<rect> attribute width: A negative value is not valid").
        super().__init__([self.table], layout=widgets.Layout(width="100%"))
        self.add_class("tfopt-results")
        self._render()

    def add(self, row: dict) -> None:
        """Append one run's row."""
        with self._lock:
            self.rows = [*self.rows, dict(row)]

    @property
    def results(self):
        """The rows as a pandas DataFrame (columns as in the table, plus the plan each run used)."""
        import pandas as pd

        with self._lock:
            rows = list(self.rows)
        return pd.DataFrame(rows, columns=[key for key, _, _ in COLUMNS] + ["epochs", "plan"])

    @traitlets.observe("rows")
    def _rows_changed(self, change) -> None:
        self._render()

    def _render(self) -> None:
        rows = list(self.rows)
        head = "".join(f"<th style='padding:2px 10px;text-align:{'left' if i < 3 else 'right'}'>{name}</th>"
                       for i, (_, name, _) in enumerate(COLUMNS))
        body = "".join(
            "<tr>" + "".join(f"<td style='padding:2px 10px;text-align:{'left' if i < 3 else 'right'}'>"
                             f"{html.escape(_cell(row.get(key), fmt))}</td>" for i, (key, _, fmt) in enumerate(COLUMNS))
            + "</tr>" for row in rows)
        muted = "color:var(--jp-content-font-color2,#555)"
        empty = "" if rows else (f"<tr><td colspan='{len(COLUMNS)}' style='padding:4px 10px;{muted}'>No runs yet: "
                                 "click “Optimize and convert”.</td></tr>")
        self.table.value = (f"<table class='tfopt-results-table' style='border-collapse:collapse;font-size:13px;line-height:1.4'>"
                            f"<thead><tr>{head}</tr></thead><tbody>{body}{empty}</tbody></table>"
                            f"<div class='tfopt-latency-caption' style='font-size:12px;line-height:1.4;{muted};"
                            f"margin:4px 10px 6px;max-width:760px'>{html.escape(LATENCY_CAPTION)}</div>")
        scored = [row for row in rows if row.get("accuracy") is not None]
        if scored:  # from 0, with room on the right for the last point's name
            self._x_scale.max = max(row["gzip_size"] for row in scored) / 1000 * 1.45
        x, y, names = ([row["gzip_size"] / 1000 for row in scored], [row["accuracy"] for row in scored],
                       [row["run"] for row in scored])
        with self._points.hold_sync():
            self._points.x, self._points.y, self._points.names = x, y, names
        with self._names.hold_sync():
            self._names.x, self._names.y, self._names.text = x, y, names
        # An empty plot with made-up axes says nothing, and a hidden one is laid out with a negative width.
        children = (self.table, self.plot) if scored else (self.table,)
        if self.children != children:
            self.children = children


def _cell(value, fmt: str) -> str:
    if value is None:
        return "–"
    try:
        return fmt.format(value)
    except (TypeError, ValueError):
        return str(value)
