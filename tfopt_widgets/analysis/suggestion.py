"""tw.suggest_plan: the plan that compresses most within a budget of metric drop, from a sensitivity report
(a multiple-choice knapsack over per-layer options), and the additive estimate of any plan."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import Error
from ..plan import Plan

# -- planning ------------------------------------------------------------------------------------------------------

# Conversion modes tw.convert makes as float32 and finishes with LiteRT Quantizer: a plan.precision layer can get int4
# weights in them (int16x8 takes no precisions; in int8 the layer is left out of the converter's int8 instead).
_INT4_MODES = ("none", "dynamic", "float16")


@dataclass(frozen=True)
class _Profile:
    name: str
    quantized: bool  # the target's calibrated conversion is full int8
    float_allowed: bool  # a layer may stay float in it (no int8-only chip)
    weights: str  # how kernels are stored: int8, float16, float32
    int4: bool = False  # a layer may get int4 weights with float activations (plan.precision) in that conversion


def target_profile(target, quantization: str | None = None) -> _Profile:
    from ..targets import get_target

    target = get_target(target)
    mode = target.quantization_for(quantization, calibrated=True)
    quantized = mode == "int8"
    floats = any(m in target.allowed_quantizations for m in ("none", "float16", "dynamic"))
    weights = {"int8": "int8", "int16x8": "int8", "dynamic": "int8", "float16": "float16"}.get(mode, "float32")
    int4 = target.precision_refusal("int4", "float") is None and (mode in _INT4_MODES or (quantized and floats))
    return _Profile(target.name, quantized, quantized and floats, weights, int4)


def _int4_size(layer_sizes: dict, sizes: dict, technique: str | None = None, level=None) -> int:
    """Gzip bytes of a layer's kernel as int4: ``layer_sizes["int4"]`` (measured), or after pruning or clustering,
    whose measured ``sizes`` hold no int4 size, an estimate. Pruned to sparsity s: the pruned int8 size less what
    int4 saves on the layer's int8 size, for the (1 - s) weights left (the zeros cost the same in both). Clustered:
    the layer's int4 size (a clustered kernel's int4 codes still take up to 16 values). On the digits demo's kernels
    these came to 1.07-1.16x (pruned to 0.5-0.9) and 0.95-1.22x (8-32 clusters) of the real int4 gzip size."""
    if "int4" in sizes:
        return int(sizes["int4"])
    if technique == "prune":
        saved = (1.0 - float(level)) * (layer_sizes["int8"] - layer_sizes["int4"])
        return max(1, min(int(layer_sizes["int4"]), round(sizes["int8"] - saved)))
    return int(layer_sizes["int4"])


def _options(report, layer: str, profile: _Profile, quant_cost: float) -> list:
    """[(cost, size, technique, level, mark)] for one layer: every level, int8 or (where allowed) kept float or int4
    weights; ``mark`` is None, "keep_float" or "int4" (plan.precision(layer, weights="int4"))."""
    sizes = report.layer_sizes[layer].size
    choices = [(0.0, sizes, None, None)]
    for row in report.rows:
        if row.layer == layer and row.technique in ("prune", "cluster"):
            choices.append((max(0.0, row.drop), row.size, row.technique, row.level))
    int4 = report.row(layer, "quantize", "int4") if profile.int4 and "int4" in sizes else None
    options = []
    for cost, size, technique, level in choices:
        if profile.quantized:
            options.append((cost + quant_cost, size["int8"], technique, level, None))
            if profile.float_allowed:
                options.append((cost, size["float32"], technique, level, "keep_float"))
        else:
            options.append((cost, size[profile.weights], technique, level, None))
        if int4 is not None:  # not int8 (nor the conversion's mode): no share of its drop, the int4 drop instead
            options.append((cost + max(0.0, int4.drop), _int4_size(sizes, size, technique, level), technique, level,
                            "int4"))
    return options


def _quant_costs(report, profile: _Profile) -> tuple[dict, float]:
    """Each layer's share of the int8 drop (its keep-float gain), and the rest of the int8 drop (fixed)."""
    if not profile.quantized or report.int8_value is None:
        return {}, 0.0
    total = max(0.0, report.baseline - report.int8_value)
    costs = {}
    for row in report.rows:
        if row.technique == "quantize" and row.keep_float_value is not None and row.layer in report.layer_sizes:
            costs[row.layer] = max(0.0, row.keep_float_value - report.int8_value)
    if not profile.float_allowed:
        return {}, total
    return costs, max(0.0, total - sum(costs.values()))


def suggest_plan(report, budget: float = 0.01, target="cpu", *, quantization: str | None = None,
                 resolution: int = 400) -> Plan:
    """The plan with the smallest estimated compressed size whose estimated metric drop stays within ``budget``.

    Per layer it picks one of: nothing, pruning or clustering at a measured level, and, where ``target`` allows
    float layers in an int8 file (cpu), keeping the layer float. With int4 rows in the report
    (``tw.sensitivity(..., levels={"quantize": ("int8", "int4"), ...})``) and a target that runs int4 weights (cpu;
    not gpu, edgetpu or hexagon), a layer may also get int4 weights with float activations
    (``plan.precision(layer, weights="int4")``), alone or after its pruning or clustering: it then costs its int4
    drop (plus the technique's) instead of its share of the int8 drop. The int4 size of a pruned kernel is estimated
    from the measured sizes; clustering is counted as saving nothing on int4 (the clustered kernel's int4 codes still
    take up to 16 values), so it is not picked with it. Drops are assumed to add up (measured one layer at a time,
    without fine-tuning, so usually pessimistic, though int4 on several layers at once can cost more than the sum);
    the int8 conversion's own drop is counted on targets that quantize. On int8-only targets (edgetpu, hexagon) no
    layer is kept float or int4. Solved exactly as a multiple-choice knapsack over ``resolution`` steps of the budget.
    ``quantization`` is the conversion mode when not the target's own (as for ``tw.convert``): layers are kept float
    only in an int8 conversion, and get int4 weights in int8, float32 ("none"), dynamic and float16 conversions (not
    int16x8). Check the plan with :meth:`SensitivityReport.verify`.
    """
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget < 0:
        raise Error(f"budget is the largest acceptable metric drop, e.g. 0.01; got {budget!r}.", field="budget")
    profile = target_profile(target, quantization)
    costs, fixed = _quant_costs(report, profile)
    capacity = budget - fixed
    plan = Plan()
    if capacity < 0:
        return plan  # even the bare int8 conversion is over budget: nothing else fits
    step = max(capacity, 1e-12) / resolution
    bins = resolution
    best = np.zeros(bins + 1)  # best[b]: smallest total size with total cost <= b steps
    choices = []
    for entry in report.layers:
        options = _options(report, entry.layer, profile, costs.get(entry.layer, 0.0))
        table = np.full((len(options), bins + 1), np.inf)
        for k, (cost, size, *_rest) in enumerate(options):
            steps = math.ceil(cost / step - 1e-9) if cost > 0 else 0
            if steps <= bins:
                table[k, steps:] = best[:bins + 1 - steps] + size
        pick = np.argmin(table, axis=0)
        best = table[pick, np.arange(bins + 1)]
        choices.append((entry.layer, options, pick))
    remaining = int(np.argmin(best)) if not np.isfinite(best[bins]) else bins
    for layer, options, pick in reversed(choices):
        cost, size, technique, level, mark = options[pick[remaining]]
        remaining -= math.ceil(cost / step - 1e-9) if cost > 0 else 0
        if technique == "prune":
            plan.prune(layer, sparsity=float(level), schedule="constant")
        elif technique == "cluster":
            plan.cluster(layer, clusters=int(level))
        if mark == "keep_float":
            plan.keep_float(layer)
        elif mark == "int4":
            plan.precision(layer, weights="int4")
    return Plan(reversed(list(plan)))


def estimate(report, plan: Plan, profile: _Profile) -> dict:
    """The additive estimate of ``plan``: ``drop`` (each planned layer's measured drop, the int8 conversion's share
    of the layers it quantizes) and ``size`` (gzip bytes of the kernels in the profile's encoding).

    A layer given int4 weights (plan.precision) counts its int4 row's drop and int4 size (estimated after pruning or
    clustering, see ``_int4_size``), plus its int8 share when its activations are integer; without an int4 row
    in the report it counts as the conversion's own mode. A precision that keeps a layer float counts as keep_float.
    """
    costs, fixed = _quant_costs(report, profile)
    drop, size = fixed, 0
    for entry in report.layers:
        planned = plan[entry.layer]
        sizes = entry.size
        technique = level = None
        if planned.prune or planned.cluster:
            technique = "prune" if planned.prune else "cluster"
            level = planned.prune.sparsity if planned.prune else planned.cluster.clusters
            row = report.row(entry.layer, technique, level)
            if row is not None:
                drop += max(0.0, row.drop)
                sizes = row.size
        precision = planned.precision
        int4 = report.row(entry.layer, "quantize", "int4") \
            if precision is not None and precision.weights == "int4" and "int4" in entry.size else None
        if int4 is not None:
            drop += max(0.0, int4.drop) + (costs.get(entry.layer, 0.0) if precision.activations != "float" else 0.0)
            size += _int4_size(entry.size, sizes, technique, level)
            continue
        keep = (planned.keep_float and profile.float_allowed) or (precision is not None and precision.is_float)
        if profile.quantized and not keep:
            drop += costs.get(entry.layer, 0.0)
        size += sizes["float32" if keep else ("int8" if profile.quantized else profile.weights)]
    return {"drop": float(drop), "size": int(size)}
