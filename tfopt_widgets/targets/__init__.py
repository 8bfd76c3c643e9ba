"""Hardware targets: one module per target, each a :class:`Target` record of converter settings (and, later, op rules).

>>> from tfopt_widgets.targets import TARGETS, get_target
>>> sorted(TARGETS)
['cpu', 'edgetpu', 'float32', 'gpu', 'hexagon']
>>> get_target("gpu").default_quantization
'float16'
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from ..errors import TargetError
from . import cpu, edgetpu, float32, gpu, hexagon
from .target import PRECISION_ACTIVATIONS, PRECISION_WEIGHTS, QUANTIZATIONS, Target

__all__ = ["PRECISION_ACTIVATIONS", "PRECISION_WEIGHTS", "QUANTIZATIONS", "TARGETS", "Target", "get_target"]

TARGETS: Mapping[str, Target] = MappingProxyType({
    module.TARGET.name: module.TARGET for module in (float32, cpu, gpu, edgetpu, hexagon)
})


def get_target(target: str | Target) -> Target:
    """The :class:`Target` called ``target`` (a Target passes through); TargetError listing valid names otherwise.

    Spelling is forgiving about case, spaces, dashes and underscores ("Edge TPU", "edge_tpu").
    """
    if isinstance(target, Target):
        return target
    key = "".join(ch for ch in str(target).lower() if ch not in " -_")
    if key in TARGETS:
        return TARGETS[key]
    raise TargetError(f"Unknown target {target!r}. Use one of: {', '.join(TARGETS)}.", field="target")
