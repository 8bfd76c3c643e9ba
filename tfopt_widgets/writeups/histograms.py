"""Binned weight distributions and their stats: what the weight view shows, computed in Python with numpy.

Only these bins and numbers travel to the browser, never the weights themselves.

>>> import numpy as np
>>> h = compare({"float": np.array([0.0, 0.5, 1.0]), "tflite": np.array([0.0, 0.5, 1.0])}, bins=4)
>>> h["edges"], h["counts"]["float"]
([0.0, 0.25, 0.5, 0.75, 1.0], [1, 0, 1, 1])
>>> h["stats"]["float"]["unique_values"]
3
>>> h["zeros"]["float"], h["nonzero"]["float"]   # what the plots draw: exact zeros as a count beside the bars
(1, [0, 0, 1, 1])
>>> q = levels(np.array([[-8, 0, 7], [1, 1, 0]], dtype=np.int8), "int4", channel_axis=0)
>>> q["available"], q["used"], q["per_channel_used"], q["zeros"], q["counts"][8:10]
(16, 4, 2.5, 2, [2, 2])
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["BINS", "COLORS", "LEVELS", "compare", "levels", "levels_caption", "stats", "stored_as"]

BINS = 40  # fine enough to show clusters and the spike at zero, small enough to send per click
# The series' colours wherever they are drawn (the Studio's weight view, tw.report's figures), side by side in each
# bin: before, optimized, a converted file, a second file. Okabe-Ito colours, which readers with the common
# colour-vision deficiencies tell apart, at different lightnesses (CIE L* 61, 46, 54, 58) so they differ in
# greyscale too; these four are the palette's only ones at 3:1 contrast or more both on white and on a dark theme's
# background (#1f1f1f), as bars need to be seen.
COLORS = ("#CC79A7", "#0072B2", "#D55E00", "#009E73")
LEVELS = {"int4": (-8, 7), "int8": (-128, 127)}  # the integers a stored kernel of each type can hold


def stats(values: np.ndarray, reference: np.ndarray | None = None) -> dict:
    """Sparsity (fraction of exact zeros), unique values, min, max, std and size of ``values``.

    With ``reference`` (the same weights before conversion, same shape) it adds ``error_max`` and ``error_rms``:
    how far the stored values are from the reference, which for an int8 file is its quantization error.
    """
    flat = np.asarray(values, dtype=np.float32).ravel()
    result = {
        "size": int(flat.size),
        "sparsity": float(np.mean(flat == 0)) if flat.size else 0.0,
        "unique_values": int(np.unique(flat).size),
        "min": float(flat.min()) if flat.size else 0.0,
        "max": float(flat.max()) if flat.size else 0.0,
        "std": float(flat.std()) if flat.size else 0.0,
    }
    if reference is not None and np.shape(reference) == np.shape(values) and flat.size:
        diff = flat - np.asarray(reference, dtype=np.float32).ravel()
        result["error_max"] = float(np.abs(diff).max())
        result["error_rms"] = float(np.sqrt(np.mean(diff * diff)))
    return result


def compare(series: Mapping[str, np.ndarray | None], bins: int = BINS,
            references: Mapping[str, str] | None = None) -> dict:
    """Histograms of several versions of one layer's weights on shared bin edges, plus each one's stats.

    ``series``: {label: array or None}; None entries (not computed yet) are left out. ``references``: {label:
    label of the series it is compared against} for the error stats (e.g. {"tflite": "optimized"}).
    Returns ``{"edges": [bins + 1 floats], "counts": {label: [bins ints]}, "zeros": {label: int}, "nonzero":
    {label: [bins ints]}, "stats": {label: stats}}``: ``counts`` bins every finite value, ``zeros`` counts the
    exact zeros and ``nonzero`` bins the rest. The plots draw ``nonzero`` as bars and ``zeros`` as a number beside
    them: after pruning, the zeros (often most of a kernel) would otherwise set the bars' scale and flatten
    everything else into the axis.
    """
    arrays = {label: np.asarray(a, dtype=np.float32).ravel() for label, a in series.items() if a is not None}
    finite = [a[np.isfinite(a)] for a in arrays.values() if a.size]
    low = min((float(a.min()) for a in finite if a.size), default=0.0)
    high = max((float(a.max()) for a in finite if a.size), default=1.0)
    if high <= low:  # a constant kernel: give it a visible bin around its value
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, int(bins) + 1)
    counts = {label: np.histogram(a[np.isfinite(a)], bins=edges)[0].astype(int).tolist() for label, a in arrays.items()}
    zeros = {label: int(np.count_nonzero(a == 0)) for label, a in arrays.items()}
    nonzero = {label: np.histogram(a[np.isfinite(a) & (a != 0)], bins=edges)[0].astype(int).tolist()
               for label, a in arrays.items()}
    result_stats = {}
    for label in arrays:
        reference_label = (references or {}).get(label)
        reference = series.get(reference_label) if reference_label else None
        result_stats[label] = stats(series[label], reference)
    return {"edges": [round(float(e), 7) for e in edges], "counts": counts, "zeros": zeros, "nonzero": nonzero,
            "stats": result_stats}


def levels(values: np.ndarray, dtype: str, channel_axis: int | None = None) -> dict:
    """How a quantized kernel uses its integer levels: ``values`` are the integers stored in the file (a
    :class:`tfopt_widgets.tflite.readback.StoredLevels`' ``values``), ``dtype`` "int4" or "int8", ``channel_axis``
    the axis with one scale per output channel (None: per tensor).

    Returns ``{"dtype", "levels": [every integer of the type], "counts": [weights at each], "zeros": weights at
    level 0 (the value 0; pruned weights are there), "nonzero": counts with level 0's left out (what the plots
    draw, as for the float series), "available": levels of the type, "used": levels used anywhere, "channels",
    "per_channel_used": levels used per channel on average}``. A histogram of dequantized values cannot show
    this: each channel's scale puts its 16 int4 levels at other values.
    """
    low, high = LEVELS[dtype]
    values = np.asarray(values)
    counts = np.bincount(values.astype(np.int64).ravel() - low, minlength=high - low + 1)
    rows = values.reshape(1, -1) if channel_axis is None or values.ndim == 0 else \
        np.moveaxis(values, channel_axis, 0).reshape(values.shape[channel_axis], -1)
    ordered = np.sort(rows, axis=1)
    distinct = 1 + np.count_nonzero(np.diff(ordered, axis=1), axis=1) if ordered.size else np.zeros(1)
    nonzero = counts.copy()
    nonzero[-low] = 0
    return {"dtype": dtype, "levels": list(range(low, high + 1)), "counts": counts.astype(int).tolist(),
            "zeros": int(counts[-low]), "nonzero": nonzero.astype(int).tolist(), "available": high - low + 1,
            "used": int(np.count_nonzero(counts)), "channels": int(rows.shape[0]),
            "per_channel_used": round(float(np.mean(distinct)), 2)}


def levels_caption(summary: dict) -> str:
    """One sentence under a levels plot: "int4 in the file (levels -8..7): 15.0 of 16 used per channel ..."."""
    levels = summary["levels"]
    where = "per channel on average" if summary["channels"] > 1 else "in the kernel"
    return (f"{summary['dtype']} in the file (levels {levels[0]}..{levels[-1]}): {summary['per_channel_used']:.1f} "
            f"of {summary['available']} used {where}, {summary['used']} in all; level 0 (the value 0, pruned "
            f"weights too) holds {summary['zeros']:,} weights, not drawn as a bar.")


def stored_as(summary: dict | None, dtype: str = "float32") -> str:
    """A stats table's "stored as" cell: "int4, 15.6 of 16 levels used per channel", or ``dtype`` without levels."""
    if summary is None:
        return dtype
    return f"{summary['dtype']}, {summary['per_channel_used']:.1f} of {summary['available']} levels used per channel"
