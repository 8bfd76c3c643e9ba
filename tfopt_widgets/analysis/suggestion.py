"""tw.suggest_plan: the plan that compresses most within a budget of metric drop, from a sensitivity report
(a multiple-choice knapsack over per-layer options), and the additive estimate of any plan."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import Error
from ..plan import Plan

# -- planning ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Profile:
    name: str
    quantized: bool  # the target's calibrated conversion is full int8
    float_allowed: bool  # a layer may stay float in it (no int8-only chip)
    weights: str  # how kernels are stored: int8, float16, float32


def target_profile(target, quantization: str | None = None) -> _Profile:
    from ..targets import get_target

    target = get_target(target)
    mode = target.quantization_for(quantization, calibrated=True)
    quantized = mode == "int8"
    floats = any(m in target.allowed_quantizations for m in ("none", "float16", "dynamic"))
    weights = {"int8": "int8", "int16x8": "int8", "dynamic": "int8", "float16": "float16"}.get(mode, "float32")
    return _Profile(target.name, quantized, quantized and floats, weights)


def _options(report, layer: str, profile: _Profile, quant_cost: float) -> list:
    """[(cost, size, technique, level, keep_float)] for one layer: every level, int8 or (where allowed) float."""
    sizes = report.layer_sizes[layer].size
    choices = [(0.0, sizes, None, None)]
    for row in report.rows:
        if row.layer == layer and row.technique in ("prune", "cluster"):
            choices.append((max(0.0, row.drop), row.size, row.technique, row.level))
    options = []
    for cost, size, technique, level in choices:
        if profile.quantized:
            options.append((cost + quant_cost, size["int8"], technique, level, False))
            if profile.float_allowed:
                options.append((cost, size["float32"], technique, level, True))
        else:
            options.append((cost, size[profile.weights], technique, level, False))
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
    float layers in an int8 file (cpu), keeping the layer float. Drops are assumed to add up (measured one layer
    at a time, without fine-tuning, so usually pessimistic); the int8 conversion's own drop is counted on
    targets that quantize. On int8-only targets (edgetpu, hexagon) no layer is kept float. Solved exactly as a
    multiple-choice knapsack over ``resolution`` steps of the budget. ``quantization`` is the conversion mode when
    not the target's own (as for ``tw.convert``): layers are kept float only in an int8 conversion. Check the plan
    with :meth:`SensitivityReport.verify`.
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
        cost, size, technique, level, keep = options[pick[remaining]]
        remaining -= math.ceil(cost / step - 1e-9) if cost > 0 else 0
        if technique == "prune":
            plan.prune(layer, sparsity=float(level), schedule="constant")
        elif technique == "cluster":
            plan.cluster(layer, clusters=int(level))
        if keep:
            plan.keep_float(layer)
    return Plan(reversed(list(plan)))


def estimate(report, plan: Plan, profile: _Profile) -> dict:
    costs, fixed = _quant_costs(report, profile)
    drop, size = fixed, 0
    for entry in report.layers:
        planned = plan[entry.layer]
        sizes = entry.size
        if planned.prune or planned.cluster:
            technique = "prune" if planned.prune else "cluster"
            level = planned.prune.sparsity if planned.prune else planned.cluster.clusters
            row = report.row(entry.layer, technique, level)
            if row is not None:
                drop += max(0.0, row.drop)
                sizes = row.size
        keep = planned.keep_float and profile.float_allowed
        if profile.quantized and not keep:
            drop += costs.get(entry.layer, 0.0)
        size += sizes["float32" if keep else ("int8" if profile.quantized else profile.weights)]
    return {"drop": float(drop), "size": int(size)}
