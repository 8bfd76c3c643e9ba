"""tw.report: a self-contained write-up of an optimization: plan, weight histograms, results, target compatibility.

>>> opt = tw.optimize(model, plan, (x_train, y_train))
>>> baseline, tfl = tw.convert(model, "float32"), tw.convert(opt, "edgetpu", representative_data=x_train)
>>> tw.report("report.html", model=model, optimized=opt,
...           runs=[("float32", baseline, tw.evaluate(baseline, (x_test, y_test))),
...                 ("Edge TPU, PQAT", tfl, tw.evaluate(tfl, (x_test, y_test)))])
PosixPath('report.html')
>>> result = tw.run(model, plan, "cpu", (x_train, y_train), (x_test, y_test), baseline=True)
>>> tw.report("run.html", model=model, optimized=result.optimized, runs=[result.baseline, result])
PosixPath('run.html')

tw.run's results also give each quantized layer's error ("Layer errors: <run>", measured on the run's data), and a
layer whose file stores integer weights gets a plot of the levels it uses under its histogram.

The HTML file holds everything (figures as PNG data URIs) and needs no JavaScript, no network and no kernel to be
read; a Markdown twin (``report.md``) with its PNG files in ``report_files/`` goes next to it for a repository or a
paper's supplement. Every name from the model is escaped. Figures are drawn with matplotlib's Agg canvas (no pyplot
state, so a report can be written from a background thread).
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import Error
from ..pipeline import RunResult, plan_summary
from ..plan import Plan
from .histograms import COLORS, compare, levels, stored_as
from .quantization import FLAG, draw_levels, errors_section

__all__ = ["Run", "report", "studio_report", "studio_summary_html", "summary_html"]

MAX_FIGURES = 24  # per report: a MobileNet has ~50 weighted layers, and a reader wants the planned ones


@dataclass
class Run:
    """One row of the results table: a converted file and what was measured on it.

    ``tflite`` (a TFLiteModel) gives the sizes, the compatibility summary and the stored weights; without it the
    numbers come from the fields (e.g. a Studio results row). ``layer_errors``: ``TFLiteModel.layer_errors``'s
    DataFrame for the file (a "Layer errors" section), None when not measured.
    """

    label: str
    target: str | None = None
    mode: str | None = None
    size: int | None = None
    gzip_size: int | None = None
    metric: str = "accuracy"
    value: float | None = None
    latency_ms: float | None = None
    accelerated_share: float | None = None
    tflite: object = field(default=None, repr=False)
    layer_errors: object = field(default=None, repr=False)

    @classmethod
    def of(cls, item) -> Run:
        """A Run from a tw.RunResult (its layer errors measured on its data), ``(label, TFLiteModel, Metrics or
        None)``, a Studio results row (dict) or a Run."""
        if isinstance(item, Run):
            return item
        if isinstance(item, RunResult):
            run = cls.of((item.label, item.tflite, item.metrics))
            run.accelerated_share, run.layer_errors = item.accelerated_share, item.layer_errors()
            return run
        if isinstance(item, dict):
            return cls(label=str(item.get("run", "")), target=item.get("target"), mode=item.get("mode"),
                       size=item.get("size"), gzip_size=item.get("gzip_size"), value=item.get("accuracy"),
                       latency_ms=item.get("latency_ms"), accelerated_share=item.get("accelerated_share"))
        if isinstance(item, (tuple, list)) and len(item) in (2, 3):
            label, tflite, metrics = (*item, None)[:3]
            run = cls(label=str(label), target=getattr(tflite, "target", None),
                      mode=getattr(tflite, "quantization", None), size=tflite.size, gzip_size=tflite.gzip_size,
                      tflite=tflite)
            if metrics is not None:
                run.metric, run.value, run.latency_ms = metrics.metric, metrics.value, metrics.latency_ms
            if tflite.target is not None:
                run.accelerated_share = tflite.compatibility.summary.get("op_share")
            return run
        raise Error(f"Each run is a tw.RunResult, (label, TFLiteModel, Metrics), (label, TFLiteModel) or a Studio "
                    f"results row; got {type(item).__name__}.", field="runs")


def report(path, *, model=None, optimized=None, runs=(), plan: Plan | None = None, title: str | None = None,
           layers=None, markdown: bool = True, notes: str = "") -> Path:
    """Write an HTML report to ``path`` (and, with ``markdown``, ``<stem>.md`` plus ``<stem>_files/*.png``).

    ``model``: the user's float tf_keras model (the "before" weights). ``optimized``: tw.optimize's result (the
    "after" weights; its plan is used when ``plan`` is not given). ``runs``: results rows, each a tw.RunResult
    (with its layer errors), ``(label, TFLiteModel, Metrics)`` (Metrics may be left out) or a Studio results row.
    ``layers``: the layers to draw (default: the planned ones, else the largest weighted layers). ``notes``: a paragraph of plain text shown
    under the title. Returns the HTML file's path.
    """
    path = Path(path)
    plan = plan if plan is not None else getattr(optimized, "plan", None) or Plan()
    runs = [Run.of(item) for item in runs]
    figures = _figures(model, optimized, runs, plan, layers)
    title = title or f"Optimization report: {_model_name(model, optimized)}"
    sections = _sections(model, plan, runs, notes)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_html(title, sections, figures, plan), encoding="utf-8")
    if markdown:
        folder = path.with_name(f"{path.stem}_files")
        folder.mkdir(exist_ok=True)
        for figure in figures:
            (folder / figure.file).write_bytes(figure.png)
        path.with_suffix(".md").write_text(_markdown(title, sections, figures, plan, folder.name), encoding="utf-8")
    return path


def summary_html(plan: Plan, runs=(), *, title: str = "", target: str | None = None) -> str:
    """A small static HTML summary (plan and results tables, no figures): what a notebook shows without widgets."""
    runs = [Run.of(item) for item in runs]
    heading = f"<p><b>{_e(title)}</b>" + (f" (target: {_e(target)})" if target else "") + "</p>" if title else ""
    results = _table_html(*_results_table(runs)) if runs else "<p><i>No results yet.</i></p>"
    return (f"<div class='tfopt-static-summary'>{heading}<p><b>Plan</b></p>{_table_html(*_plan_table(plan, None))}"
            f"<p><b>Results</b></p>{results}</div>")


def studio_report(studio, path="report.html", **kwargs) -> Path:
    """:func:`report` for what a ``tw.Studio`` holds: its model, last optimized model, every results row.

    The baseline row and the last run's row get their TFLiteModel (compatibility, stored weights), and the last
    run its layer errors (the ones the Studio's error column shows, measured once); the plan is the one the last
    run used (the live plan when nothing was optimized yet). ``kwargs`` go to :func:`report`.
    """
    runs = [Run.of(row) for row in studio.results_view.rows]
    baseline = studio.baseline  # the float32 baseline the Studio made on its first run (a tw.RunResult)
    if runs and baseline is not None:
        runs[0].tflite = baseline.tflite
    last = studio.last_run
    if len(runs) > 1 and last is not None:
        runs[-1].tflite, runs[-1].layer_errors = last.tflite, last.layer_errors()
    optimized = studio.optimized
    kwargs.setdefault("plan", optimized.plan if optimized is not None else studio.plan)
    kwargs.setdefault("title", f"Optimization report: {studio.info.name}")
    return report(path, model=studio.model, optimized=optimized, runs=runs, **kwargs)


def studio_summary_html(studio) -> str:
    """The Studio as static HTML (plan and results, no figures): what nbconvert or GitHub show without widgets."""
    body = summary_html(studio.plan, list(studio.results_view.rows), title=f"tfopt-widgets Studio: {studio.info.name}",
                        target=studio.target)
    return (f"{body}<p style='color:#666;font-size:12px'>A static snapshot from when this output was made; the "
            "interactive Studio needs a running kernel. studio.export_report(path) writes the full report.</p>")


# -- content ----------------------------------------------------------------------------------------------------

@dataclass
class _Figure:
    layer: str
    file: str
    png: bytes
    stats: list[tuple[str, dict]]


@dataclass
class _Section:
    heading: str
    text: list[str] = field(default_factory=list)  # plain-text paragraphs
    table: tuple[list[str], list[list[str]]] | None = None


def _model_name(model, optimized) -> str:
    for source in (model, getattr(optimized, "model", None)):
        if source is not None and getattr(source, "name", None):
            return str(source.name)
    return "model"


def _sections(model, plan: Plan, runs: list[Run], notes: str) -> list[_Section]:
    info = None
    if model is not None:
        from ..model.inspection import inspect

        info = inspect(model)
    intro = [f"Written by tfopt-widgets {__version__} on {datetime.date.today().isoformat()}."]
    if info is not None:
        intro.append(f"Model {info.name!r}: {len(info.layers)} layers, {info.params:,} parameters.")
    if notes:
        intro.append(notes)
    sections = [_Section("", intro)]
    plan_text = [f"{plan_summary(plan, info)}; the other layers are left as they are."] if len(plan) else \
        ["The plan is empty: every run below converts the model as it is."]
    sections.append(_Section("Plan", plan_text, _plan_table(plan, info)))
    if runs:
        about = ("Sizes are of the .tflite file; gzip size shows what pruning and clustering save once compressed. "
                 "Latency: median of batch-1 runs with LiteRT on the machine that wrote this report, not on the "
                 "target's chip.")
        sections.append(_Section("Results", [about], _results_table(runs)))
    for run in runs:
        if run.tflite is None or run.tflite.target is None:
            continue
        compatibility = run.tflite.compatibility
        s = compatibility.summary
        where = s["accelerator"] or "CPU"
        text = [f"{s['ops_accelerated']}/{s['ops']} ops run on the {where}"
                + (f", {s['mac_share']:.0%} of {s['macs']:,} multiply-accumulates" if s["mac_share"] is not None
                   else "") + f"; parameters {s['parameter_bytes']:,} B. Checked by: {s['checker']}."]
        text += [f"Warning: {w}" for w in s["warnings"]] + list(s["notes"])
        rows = [[name, "yes" if p.accelerated else "no" if p.accelerated is False else "(no op)",
                 f"{p.macs:,}", p.reason or p.note or ""]
                for name, p in compatibility.by_layer().items() if p.accelerated is not None or p.reason]
        table = (["layer", f"on the {where}", "MACs", "why not / note"], rows) if rows else None
        sections.append(_Section(f"Compatibility: {run.label} ({compatibility.target.title})", text, table))
    for run in runs:
        errors = errors_section(run.label, run.layer_errors)
        if errors is not None:
            sections.append(_Section(*errors))
    return sections


def _plan_table(plan: Plan, info) -> tuple[list[str], list[list[str]]]:
    rows = []
    for entry in plan:
        layer = info.get(entry.layer) if info is not None else None
        prune = (f"{entry.prune.sparsity:.0%} ({entry.prune.schedule}"
                 + (f", blocks {entry.prune.block_size[0]}x{entry.prune.block_size[1]}"
                    if tuple(entry.prune.block_size) != (1, 1) else "") + ")") if entry.prune else ""
        cluster = f"{entry.cluster.clusters} ({entry.cluster.init})" if entry.cluster else ""
        rows.append([entry.layer, layer.class_name if layer else "", f"{layer.params:,}" if layer else "",
                     entry.scheme, prune, cluster,
                     "int8 QAT" if entry.quantize else "kept float" if getattr(entry, "keep_float", False) else ""])
    return ["layer", "type", "params", "scheme", "prune", "cluster", "quantize"], rows


def _results_table(runs: list[Run]) -> tuple[list[str], list[list[str]]]:
    metric = next((run.metric for run in runs if run.value is not None), "accuracy")
    rows = [[run.label, run.target or "", run.mode or "", _n(run.size, "{:,} B"), _n(run.gzip_size, "{:,} B"),
             _n(run.value, "{:.4f}"), _n(run.latency_ms, "{:.3f} ms"), _n(run.accelerated_share, "{:.0%}")]
            for run in runs]
    return ["run", "target", "mode", "size", "gzip size", metric, "latency", "ops on the accelerator"], rows


def _n(value, fmt: str) -> str:
    return "–" if value is None else fmt.format(value)


def _figures(model, optimized, runs: list[Run], plan: Plan, layers) -> list[_Figure]:
    """One PNG per layer: its kernel's distribution before, after optimization and as stored in each file."""
    from ..techniques.optimization import kernels

    before = kernels(model) if model is not None else {}
    after = optimized.weights() if optimized is not None else {}
    # The stored weights of the last two quantized files (a float32 file holds the "before" weights again), with
    # their integer kernels and each layer's stored type.
    stored = [(run.label, run.tflite.weights(), run.tflite.stored_levels(), run.tflite.precisions()) for run in runs
              if run.tflite is not None and getattr(run.tflite, "layer_origins", None) and run.mode != "none"][-2:]
    if layers is None:
        available = {*before, *after}
        layers = [name for name in plan.layers("prune") + plan.layers("cluster") + plan.layers("quantize")
                  + list(plan.precisions) if name in available]
        layers = list(dict.fromkeys(layers)) or sorted(available, key=lambda n: -(before.get(n, after.get(n)).size))
    figures = []
    for i, layer in enumerate(list(layers)[:MAX_FIGURES]):
        series = {"float (before)": before.get(layer), "optimized (Keras)": after.get(layer)}
        summaries, kinds = {}, {}
        for label, weights, integers, precisions in stored:
            series[f"TFLite: {label}"] = weights.get(layer)
            if layer in integers:
                found = integers[layer]
                summaries[f"TFLite: {label}"] = levels(found.values, found.dtype, found.channel_axis)
            kinds[f"TFLite: {label}"] = getattr(precisions.get(layer), "weights", None) or "float"
        if all(values is None for values in series.values()):
            continue
        data = compare(series)
        for label, s in data["stats"].items():
            s["stored"] = stored_as(summaries.get(label), kinds.get(label, "float32"))
        png = _plot(layer, data, _planned(plan, layer), summaries)
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", layer).strip("-.")[:40] or "layer"
        figures.append(_Figure(layer, f"{i + 1:02d}-{slug}.png", png, list(data["stats"].items())))
    return figures


def _planned(plan: Plan, layer: str) -> str:
    """A figure title's words for what the plan does to ``layer``: "pruning", "int4 weights", "not planned"."""
    if layer not in plan:
        return "not planned"
    words = [plan[layer].scheme] if plan[layer].scheme != "none" else []
    spec = plan.precisions.get(layer)
    if spec is not None:
        words.append(f"{spec.weights or 'default'} weights, {spec.activations} activations")
    return ", ".join(words) or "none"


def _plot(layer: str, data: dict, scheme: str, summaries: dict | None = None) -> bytes:
    """The Studio's weight view on paper: the series side by side in each bin, in the same colours, the exact zeros
    as counts beside the plot (in the legend) rather than a bar that would flatten the others. ``summaries``
    ({series label: histograms.levels}) adds a plot of the stored integer levels below, in the series' colours."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    summaries = summaries or {}
    figure = Figure(figsize=(8.6, 4.0 if summaries else 2.4), dpi=100)
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(2 if summaries else 1, 1, height_ratios=(3, 2) if summaries else None)
    axes = figure.add_subplot(grid[0])
    edges = np.asarray(data["edges"])
    series = list(data["nonzero"].items())
    step = np.diff(edges) / (len(series) + 0.5)  # a quarter of a bar's width on each side of a bin's group
    for i, (label, counts) in enumerate(series):
        axes.bar(edges[:-1] + step * (0.25 + i), counts, width=step, align="edge", color=COLORS[i % len(COLORS)],
                 linewidth=0, label=f"{label}: {data['zeros'][label]:,}")
    axes.set_xlim(edges[0], edges[-1])
    axes.set_ylim(bottom=0)
    axes.set_xlabel("weight value", fontsize=8)
    axes.set_ylabel("count (non-zero)", fontsize=8)
    axes.tick_params(labelsize=7)
    # parse_math=False: a '$' in a layer or run name must stay text, not become matplotlib mathtext.
    axes.set_title(f"{layer} ({scheme})", fontsize=9, loc="left", parse_math=False)
    legend = axes.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                         title="exact zeros, not in the bars", title_fontsize=7, alignment="left")
    for text in legend.get_texts():
        text.set_parse_math(False)
    if summaries:
        order = list(data["nonzero"])
        draw_levels(figure.add_subplot(grid[1]), [(label, summary, COLORS[order.index(label) % len(COLORS)])
                                                  for label, summary in summaries.items()])
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


# -- HTML -------------------------------------------------------------------------------------------------------

def _e(text) -> str:
    return html.escape(str(text), quote=True)


_CSS = """
body{font-family:"Liberation Sans",Arial,Helvetica,sans-serif;margin:24px auto;max-width:1000px;color:#222;
line-height:1.45;padding:0 16px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:3px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}th,td{padding:3px 10px;border-bottom:1px solid #eee;
text-align:left;vertical-align:top}th{background:#f5f5f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.flag{color:#9b1c1c;font-weight:bold}
.figure{margin:14px 0 22px}.figure img{max-width:100%;display:block}
.stats td{font-size:12px}pre{background:#f7f7f7;padding:8px;overflow:auto;font-size:12px}
.warning{color:#8a4b00}
"""


def _table_html(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td{_cell_class(cell)}>{_e(cell)}</td>" for cell in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell_class(cell: str) -> str:
    if (cell or "").startswith(FLAG):  # a flagged layer: the word says it, the colour (7:1 on white) adds to it
        return " class='flag'"
    return " class='num'" if re.fullmatch(r"[-–\d.,%]+(e[-+]\d+)?( ms| B)?", cell or "-") else ""


def _stats_rows(stats: list[tuple[str, dict]]) -> tuple[list[str], list[list[str]]]:
    rows = [[label, f"{s['size']:,}", f"{s['sparsity']:.2%}", f"{s['unique_values']:,}", f"{s['min']:.4g}",
             f"{s['max']:.4g}", f"{s['std']:.4g}", s.get("stored", "")] for label, s in stats]
    return ["weights", "count", "zeros", "unique values", "min", "max", "std", "stored as"], rows


def _html(title: str, sections: list[_Section], figures: list[_Figure], plan: Plan) -> str:
    head = (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
            f"<meta name='generator' content='tfopt-widgets {_e(__version__)}'><style>{_CSS}</style></head><body>")
    parts = [head, f"<h1>{_e(title)}</h1>"]
    for section in sections:
        if section.heading:
            parts.append(f"<h2>{_e(section.heading)}</h2>")
        for paragraph in section.text:
            css = " class='warning'" if paragraph.startswith("Warning:") else ""
            parts.append(f"<p{css}>{_e(paragraph)}</p>")
        if section.table is not None:
            parts.append(_table_html(*section.table))
    if figures:
        parts.append("<h2>Weight distributions</h2><p>Each planned layer's main kernel: the float weights before, "
                     "the optimized Keras weights, and the values stored in the converted file (dequantized), side by "
                     "side in each bin. Exact zeros (what pruning makes) are counted beside each plot instead of "
                     "drawn, so they do not flatten the other bars.</p>")
        for figure in figures:
            data = base64.b64encode(figure.png).decode("ascii")
            parts.append(f"<div class='figure'><img src='data:image/png;base64,{data}' "
                         f"alt='{_e('weight histogram of layer ' + figure.layer)}'>"
                         f"<div class='stats'>{_table_html(*_stats_rows(figure.stats))}</div></div>")
    parts.append("<h2>Reproduce</h2><p>The plan as JSON (tw.Plan.from_json); plan.to_python(model_path=..., "
                 "target=...) writes it as a standalone tfmot script.</p>"
                 f"<pre>{_e(plan.to_json())}</pre></body></html>")
    return "\n".join(parts) + "\n"


# -- Markdown ---------------------------------------------------------------------------------------------------

def _md(text, block: bool = False) -> str:
    """Plain text for Markdown: HTML and Markdown syntax neutralised, one line (GitHub renders inline HTML).

    ``block``: the text starts a line (a paragraph or heading), where '#', '-', '>' or '1.' would start a block.
    """
    text = html.escape(str(text), quote=False).replace("\r", " ").replace("\n", " ")
    text = re.sub(r"([\\`*_\[\]|~])", r"\\\1", text)
    if block:
        text = re.sub(r"^(\d+)([.)])", r"\1\\\2", text)
        text = "\\" + text if re.match(r"[#+\-=>!]", text) else text
    return text


def _table_md(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(_md(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _markdown(title: str, sections: list[_Section], figures: list[_Figure], plan: Plan, folder: str) -> str:
    parts = [f"# {_md(title, block=True)}"]
    for section in sections:
        if section.heading:
            parts.append(f"## {_md(section.heading, block=True)}")
        parts += [_md(paragraph, block=True) for paragraph in section.text]
        if section.table is not None:
            parts.append(_table_md(*section.table))
    if figures:
        parts.append("## Weight distributions")
        for figure in figures:
            parts.append(f"![weight histogram of layer {_md(figure.layer)}]({folder}/{figure.file})")
            parts.append(_table_md(*_stats_rows(figure.stats)))
    # JSON's own escapes keep markup out even of a code block (some renderers are lax), and it still parses.
    plan_json = plan.to_json().replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    parts.append(f"## Reproduce\n\nThe plan as JSON (tw.Plan.from_json):\n\n~~~~json\n{plan_json}\n~~~~")
    return "\n\n".join(parts) + "\n"
