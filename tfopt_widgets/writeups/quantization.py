"""tw.report's view of what quantization did to each layer: its measured error (a "Layer errors" section per run)
and the integer levels its file stores (a small plot under the layer's weight histogram).

>>> heading, text, table = errors_section("CPU, int8", result.layer_errors())
>>> table[0]
['layer', 'op', 'weights', 'activations', 'RMS error', 'error / scale', 'accumulated RMS error', 'flag']

Numbers come from ``TFLiteModel.layer_errors`` (tfopt_widgets.tflite.readback) and the levels from
``tfopt_widgets.writeups.histograms.levels``; this module only words and draws them.
"""

from __future__ import annotations

import math
import textwrap

from ..tflite.readback import FLAGGED, IDEAL
from .histograms import levels_caption

__all__ = ["FLAG", "draw_levels", "errors_section", "flag_word"]

FLAG = "FLAGGED"  # the flag column's word for a layer above the threshold (the HTML also colours it)


def flag_word(row) -> str:
    """The flag column: FLAGGED above the threshold on an 8-bit output, else why the ratio reads as it does."""
    if bool(row["flagged"]):
        return f"{FLAG} (above {FLAGGED:g})"
    activations = str(row["activations"])
    if activations == "int16":
        return "not flagged: int16 output, weights' error"
    if not activations.startswith(("int", "uint")):
        return "not flagged: float output"
    return "ok"


def _quantized(row) -> bool:
    return any(str(row[key]).startswith(("int", "uint")) for key in ("weights", "activations"))


def _number(value, fmt: str) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)


def errors_section(label: str, frame) -> tuple[str, list[str], tuple[list[str], list[list[str]]]] | None:
    """(heading, paragraphs, (headers, rows)) for one run's ``layer_errors`` DataFrame; None when no layer of the
    file is quantized (a float file) or there is no frame (the float32 baseline)."""
    if frame is None:
        return None
    rows = [[str(row["layer"]), str(row["op"]), "–" if row["weights"] is None or row["weights"] != row["weights"]
             else str(row["weights"]), str(row["activations"]), _number(row["rms_error"], "{:.3g}"),
             _number(row["error_over_scale"], "{:.2f}"), _number(row["accumulated_rms_error"], "{:.3g}"),
             flag_word(row)] for _, row in frame.iterrows() if _quantized(row)]
    if not rows:
        return None
    samples = frame.attrs.get("samples")
    text = [(f"Each quantized layer against the float model{f' on {samples} samples' if samples else ''}: the RMS "
            "error of its output (the layer alone, fed what this file feeds it), that error over the output's "
            f"quantization step (error / scale) and the error accumulated from the input. About {IDEAL:.2f} is "
            f"rounding alone; above {FLAGGED:g} on an 8-bit output is flagged, as TFLite's quantization debugger "
            "does. An int16 output's step is 256 times finer, so its ratio measures the weights' error, not "
            "rounding; a float output has no step.")]
    flagged = [row[0] for row in rows if row[-1].startswith(FLAG)]
    if flagged:
        text.append(f"Warning: {len(flagged)} layer{'s' if len(flagged) > 1 else ''} flagged: {', '.join(flagged)}. "
                    "Give them more bits (plan.precision) or keep them float.")
    headers = ["layer", "op", "weights", "activations", "RMS error", "error / scale", "accumulated RMS error", "flag"]
    return f"Layer errors: {label}", text, (headers, rows)


def draw_levels(axes, summaries: list[tuple[str, dict, str]]) -> None:
    """Draw ``summaries`` ([(series label, histograms.levels summary, colour)]) on matplotlib ``axes``: one bar per
    stored integer level, the series side by side, level 0 left out as in the histogram above; each series'
    caption as the axes' title."""
    step = 1.0 / (len(summaries) + 0.5)
    for i, (label, summary, colour) in enumerate(summaries):
        axes.bar([level - 0.5 + step * (0.25 + i) for level in summary["levels"]], summary["nonzero"], width=step,
                 align="edge", color=colour, linewidth=0)
    lows, highs = zip(*((s["levels"][0], s["levels"][-1]) for _, s, _ in summaries))
    axes.set_xlim(min(lows) - 0.5, max(highs) + 0.5)
    axes.set_ylim(bottom=0)
    axes.set_xlabel("stored integer level", fontsize=8)
    axes.set_ylabel("count", fontsize=8)
    axes.tick_params(labelsize=7)
    if max(highs) - min(lows) < 20:
        axes.set_xticks(range(min(lows), max(highs) + 1))
    title = "\n".join(textwrap.fill(f"{label}: {levels_caption(summary)}", 135) for label, summary, _ in summaries)
    axes.set_title(title, fontsize=7.5, loc="left", parse_math=False)
