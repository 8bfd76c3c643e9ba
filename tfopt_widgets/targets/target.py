"""The :class:`Target` record and the quantization modes a target can be asked for.

A target is data: converter settings plus its op rules (``ops``: TFLite op name -> rules, see ``rules.py``), how its
runtime places ops (``placement``) and the source the rules were read from. Functions that read targets live next to
the data (``Target.quantization_for``) or in ``tfopt_widgets.targets.compatibility``, so ``tw.convert`` holds no per-target
branches.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..errors import PlanError, TargetError

# How a runtime splits a graph between its accelerator and the CPU.
PLACEMENTS: Mapping[str, str] = MappingProxyType({
    "cpu": "every op runs on the CPU (no accelerator)",
    "partition": "every supported op runs on the accelerator; the others are partitioned out to the CPU",
    "prefix": "ops run on the accelerator in order until the first unsupported one; it and every later op run on "
              "the CPU (one accelerator subgraph)",
})

# The post-training modes of the TFLite converter, in the words a UI shows next to them.
QUANTIZATIONS: Mapping[str, str] = MappingProxyType({
    "none": "float32 weights and activations (no quantization)",
    "dynamic": "int8 weights, float activations quantized on the fly (dynamic range)",
    "float16": "float16 weights, float32 activations",
    "int8": "int8 weights and activations (full integer; needs representative data unless the model is QAT)",
    "int16x8": "int8 weights, int16 activations (needs representative data; slow on CPU)",
})

# What plan.precision can give a layer, in the plan's words: weights x activations. A layer without weights counts
# as "float" weights.
PRECISION_WEIGHTS = ("int4", "int8", "float")
PRECISION_ACTIVATIONS = ("float", "int8", "int16")


@dataclass(frozen=True)
class Target:
    """A hardware target: what a converted file must look like to run there.

    >>> from tfopt_widgets.targets import get_target
    >>> get_target("edgetpu").allowed_quantizations
    ('int8',)

    ``refusals`` says, per mode the target cannot run, why not. ``ops`` is the accelerator's op table: TFLite
    builtin op name -> tuple of rules (``tfopt_widgets.targets.rules``) the op must pass; an op missing from it falls
    back to the CPU. ``tensor_rules`` apply to every op (e.g. fixed sizes, at most 4-D). ``placement`` is one of
    :data:`PLACEMENTS`; ``accelerator`` names the chip ("Edge TPU"), None for CPU targets. ``parameter_cache`` is
    the on-chip parameter memory in bytes, where the chip has one. ``ops_source`` names the document the op table
    was read from, with the date.

    ``precisions`` lists the (weights, activations) pairs of ``plan.precision`` a layer may get here;
    ``precision_refusals`` says why another is refused, keyed "int4/float" (a pair), "weights=int4" or
    "activations=int16"; ``precisions_source`` names where that support was read or measured.
    """

    name: str
    title: str
    summary: str
    default_quantization: str
    allowed_quantizations: tuple[str, ...]
    int8_io: bool = False  # True: the file's inputs and outputs are int8 (the caller quantizes); False: float32
    fixed_batch: bool = False  # True: the batch dimension is fixed to 1 in the file
    calibrated_quantization: str | None = None  # mode used instead of the default when calibration is possible
    refusals: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    source: str = ""
    ops: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    tensor_rules: tuple = field(default=(), compare=False, repr=False)
    placement: str = "cpu"
    accelerator: str | None = None
    parameter_cache: int | None = None
    ops_source: str = ""
    precisions: tuple[tuple[str, str], ...] = (("float", "float"),)
    precision_refusals: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    precisions_source: str = ""

    def __post_init__(self):
        for mode in (self.default_quantization, *self.allowed_quantizations, *self.refusals):
            if mode not in QUANTIZATIONS:
                raise ValueError(f"target {self.name!r}: unknown quantization mode {mode!r}")
        if self.default_quantization not in self.allowed_quantizations:
            raise ValueError(f"target {self.name!r}: default {self.default_quantization!r} is not allowed")
        if self.placement not in PLACEMENTS:
            raise ValueError(f"target {self.name!r}: unknown placement {self.placement!r}")
        if (self.placement == "cpu") != (self.accelerator is None):
            raise ValueError(f"target {self.name!r}: an accelerator needs a placement other than 'cpu', and back")
        for weights, activations in self.precisions:
            if weights not in PRECISION_WEIGHTS or activations not in PRECISION_ACTIVATIONS:
                raise ValueError(f"target {self.name!r}: unknown precision {weights}/{activations}")
        # Read-only views, so a shared TARGETS entry cannot be edited by accident.
        object.__setattr__(self, "refusals", MappingProxyType(dict(self.refusals)))
        object.__setattr__(self, "precision_refusals", MappingProxyType(dict(self.precision_refusals)))
        object.__setattr__(self, "ops", MappingProxyType(dict(self.ops)))

    def quantization_for(self, requested: str | None, *, calibrated: bool, quantization_aware: bool = False) -> str:
        """The mode to convert with: ``requested`` if this target runs it, else the target's default.

        ``calibrated`` is True when int8 ranges are available (representative data, or a fully
        quantization-aware-trained model); it switches a target with ``calibrated_quantization`` to that mode.
        ``quantization_aware``: the model has quantization-aware-trained layers, whose fake-quant ranges make the
        file int8 whatever float mode is asked for, so int8 is the default wherever the target allows it.
        Raises :class:`TargetError` for an unknown mode or one this target cannot run, with the reason.
        """
        if requested is None and quantization_aware and "int8" in self.allowed_quantizations:
            return "int8"
        if requested is None:
            if calibrated and self.calibrated_quantization:
                return self.calibrated_quantization
            return self.default_quantization
        mode = str(requested).lower()
        if mode not in QUANTIZATIONS:
            raise TargetError(f"Unknown quantization {requested!r}. Use one of: {', '.join(QUANTIZATIONS)}.",
                              field="quantization")
        if mode not in self.allowed_quantizations:
            reason = self.refusals.get(mode, f"{self.title} does not run {QUANTIZATIONS[mode]}")
            raise TargetError(f"Target {self.name!r} cannot use quantization={mode!r}: {reason}. Allowed here: "
                              f"{', '.join(self.allowed_quantizations)}.", field="quantization")
        return mode

    def precision_refusal(self, weights: str, activations: str) -> str | None:
        """Why this target cannot run a layer with ``weights`` / ``activations`` (plan words; "float" weights for a
        layer without any), or None when it can."""
        if (weights, activations) in self.precisions:
            return None
        for key in (f"{weights}/{activations}", f"weights={weights}", f"activations={activations}"):
            if key in self.precision_refusals:
                return self.precision_refusals[key]
        return f"{self.title} does not run {weights} weights with {activations} activations"

    def check_precision(self, layer: str, weights: str, activations: str) -> None:
        """Raise :class:`PlanError` naming ``layer`` when this target cannot run that precision, with the reason."""
        reason = self.precision_refusal(weights, activations)
        if reason is not None:
            allowed = ", ".join(f"{w} weights / {a} activations" for w, a in self.precisions)
            raise PlanError(f"Target {self.name!r} cannot run layer {layer!r} with {weights} weights and {activations} "
                            f"activations: {reason}. Allowed here: {allowed}.", layer=layer, field="precision")
