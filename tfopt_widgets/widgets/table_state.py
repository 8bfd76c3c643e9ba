"""What the layer table sends to the page, as plain data: the layers as named columns, the plan as one entry per
planned layer, the sensitivity heat map, what a target lets a layer's precision be, and each layer's error in the
last converted file. Every value is named; nothing here holds a widget.

>>> plan_state(tw.Plan().prune("dense", sparsity=0.5).precision("conv2", weights="int4"))["conv2"]["weights"]
'int4'
>>> errors_state(result.layer_errors(), result.label)["layers"]["conv1"]["ratio"]   # about 0.29: rounding alone
"""

from __future__ import annotations

import math

from ..plan import CLUSTER_INITS, TECHNIQUES, Plan, has_kernel
from ..targets import PRECISION_ACTIVATIONS, PRECISION_WEIGHTS


def _shape_text(shape) -> str:
    """"8, 8, 16" for (None, 8, 8, 16): the batch dimension left out; several outputs joined with " | "."""
    if shape is None:
        return ""
    if isinstance(shape, list):
        return " | ".join(_shape_text(s) for s in shape)
    dims = list(shape)[1:] if len(shape) and shape[0] is None else list(shape)
    return ", ".join("?" if d is None else str(d) for d in dims)


def layer_columns(info) -> tuple[dict[str, list], list[str]]:
    """(columns, reasons) for :attr:`LayerTable.layers` and :attr:`LayerTable.reasons` from a ModelInfo.

    ``columns`` maps each field to its values, one per layer in model order: ``name``, ``class_name``,
    ``output_shape``, ``params``, ``weight_bytes``, and per technique ``supports_<technique>`` (1/0: flags go as
    numbers, a third of "false"'s bytes on a 500-layer model) and ``<technique>_reason`` (an index into ``reasons``;
    -1: none), and ``has_kernel`` (1: plan.precision may give the layer weights). A new field is one more key in
    ``row`` below.
    """
    reasons: dict[str, int] = {}
    columns: dict[str, list] = {}
    for layer in info.layers:
        row = {"name": layer.name, "class_name": layer.class_name, "output_shape": _shape_text(layer.output_shape),
               "params": int(layer.params), "weight_bytes": int(layer.weight_bytes),
               "has_kernel": int(has_kernel(layer))}
        for technique in TECHNIQUES:
            support = layer.supports(technique)
            row[f"supports_{technique}"] = int(bool(support.ok))
            row[f"{technique}_reason"] = reasons.setdefault(support.reason, len(reasons)) if support.reason else -1
        for field, value in row.items():
            columns.setdefault(field, []).append(value)
    return columns, list(reasons)


# An unplanned layer's entry in `plan_state`; the front-end and _entry fill fields an entry leaves out from it. Its
# keys are also the fields an edit from the page may set.
# ``weights`` and ``activations`` are the layer's plan.precision in its words ("" for both: no precision, the
# conversion's own mode; "" weights beside set activations: weights left out, as a layer without a kernel has).
EMPTY_ENTRY = {"quantize": False, "sparsity": 0, "clusters": 0, "init": CLUSTER_INITS[0], "keep_float": False,
               "weights": "", "activations": ""}


def plan_state(plan: Plan) -> dict:
    """{layer: {quantize, sparsity (0: off), clusters (0: off), init, keep_float, weights, activations}} for the
    planned layers only."""
    return {entry.layer: row_state(entry) for entry in plan}


def row_state(entry) -> dict:
    """One layer's `plan_state` entry from its LayerPlan (EMPTY_ENTRY when nothing is planned)."""
    precision = entry.precision
    return {"quantize": bool(entry.quantize), "sparsity": entry.prune.sparsity if entry.prune else 0,
            "clusters": entry.cluster.clusters if entry.cluster else 0,
            "init": entry.cluster.init if entry.cluster else CLUSTER_INITS[0], "keep_float": bool(entry.keep_float),
            "weights": (precision.weights or "") if precision else "",
            "activations": precision.activations if precision else ""}


def precision_words(row: dict, field: str, value: str, layer) -> dict:
    """The row's {"weights", "activations"} after the page sets one of them to ``value`` (the page's withEdit does
    the same): "" clears both (no precision); the first word given to a layer with a kernel fills in the other,
    float activations beside integer weights and int8 weights beside integer activations, so the row always
    shows what the layer gets. A layer without a kernel has no weights word (one asked for is refused)."""
    words = {"weights": row["weights"], "activations": row["activations"], field: value}
    if not value:
        return {"weights": "", "activations": ""}
    if not has_kernel(layer):  # weights asked of it stay, for the plan to refuse with the reason
        return {"weights": value if field == "weights" else "", "activations": words["activations"]}
    if not words["activations"]:
        words["activations"] = "float"
    if not words["weights"]:
        words["weights"] = "float" if words["activations"] == "float" else "int8"
    return words


def precision_choices(target) -> dict:
    """What a target lets the precision column offer: {"weights": {word: why not, or ""}, "activations": {...},
    "target": its title}; a word no (weights, activations) pair of the target uses carries the target's reason."""
    pairs = target.precisions

    def reasons(words, position):
        found = {}
        for word in words:
            usable = any(pair[position] == word for pair in pairs)
            probe = (word, "float") if position == 0 else ("int8", word)
            found[word] = "" if usable else target.precision_refusal(*probe) or ""
        return found

    return {"weights": reasons(PRECISION_WEIGHTS, 0), "activations": reasons(PRECISION_ACTIVATIONS, 1),
            "target": target.title}


def errors_state(frame, run: str = "") -> dict:
    """Each layer's error in the last converted file (a ``RunResult.layer_errors()`` DataFrame) for
    :attr:`LayerTable.layer_errors`: {"run", "samples", "ideal", "flagged_above", "layers": {layer: {"ratio" (error
    over the output's quantization step, None for a float output), "rms", "accumulated", "activations",
    "weights", "flagged"}}}; None or an empty frame gives {}."""
    if frame is None or not len(frame):
        return {}

    def number(value):
        value = float(value)
        return None if math.isnan(value) else round(value, 6)

    layers = {str(row.layer): {"ratio": number(row.error_over_scale), "rms": number(row.rms_error),
                               "accumulated": number(row.accumulated_rms_error), "activations": str(row.activations),
                               "weights": row.weights if isinstance(row.weights, str) else "",
                               "flagged": bool(row.flagged)} for row in frame.itertuples()}
    return {"run": run, "samples": int(frame.attrs.get("samples", 0)), "ideal": frame.attrs.get("ideal"),
            "flagged_above": frame.attrs.get("flagged_above"), "layers": layers}


def sensitivity_state(report) -> dict:
    """The heat map of a :class:`~tfopt_widgets.SensitivityReport` for :attr:`LayerTable.sensitivity`.

    ``columns``: {technique, level} per heat map column; ``drops``: {layer: [metric drop or None per column]};
    ``sizes``: {layer: {before: int8 gzip bytes of the kernel as it is, after: [the same after each column's change,
    or None]}}.
    """
    if report is None:
        return {}
    columns = [{"technique": technique, "level": level} for technique in ("quantize", "prune", "cluster")
               for level in report.levels.get(technique, ())]
    position = {(column["technique"], column["level"]): i for i, column in enumerate(columns)}
    drops, sizes = {}, {}

    def size(layer: str) -> dict:
        return sizes.setdefault(layer, {"before": None, "after": [None] * len(columns)})

    for row in report.rows:
        index = position[row.technique, row.level]
        drops.setdefault(row.layer, [None] * len(columns))[index] = round(float(row.drop), 5)
        if row.technique != "quantize" or row.level == "int4":
            size(row.layer)["after"][index] = row.size.get(row.level if row.level == "int4" else "int8")
    for entry in report.layers:
        size(entry.layer)["before"] = entry.size.get("int8")
    return {"metric": report.metric, "baseline": report.baseline, "samples": report.samples, "columns": columns,
            "drops": drops, "sizes": sizes}
