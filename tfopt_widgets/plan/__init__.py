"""The plan: which layers to quantize, prune or cluster and how, and each layer's post-training precision (``specs``,
``plan``: tw.Plan, its JSON and its validation), the decisions that carry it out (``stages``, shared by tw.optimize
and the script), and the plan as a standalone script (``script``: Plan.to_python, which inlines the runtime).

Imports ``model`` (to validate against tw.inspect), ``targets`` and ``tflite`` (the script's converter mode and
recurrent layers), the runtime and ``errors``; never ``techniques`` or anything above. Nothing here loads TensorFlow
until a plan is validated or exported.
"""

from .plan import Plan, check_precision, has_kernel
from .specs import CLUSTER_INITS, TECHNIQUES, ClusterSpec, LayerPlan, PrecisionSpec, PruneSpec
from .stages import stages

__all__ = ["CLUSTER_INITS", "TECHNIQUES", "ClusterSpec", "LayerPlan", "Plan", "PrecisionSpec", "PruneSpec", "check_precision",
           "has_kernel", "stages"]
