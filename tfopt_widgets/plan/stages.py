"""How tw.optimize carries out a plan: pure decisions (which stages, which scheme, which layers are held still),
shared by tw.optimize and Plan.to_python's script. No TensorFlow; a plan is only read."""

from __future__ import annotations

from .specs import CENTROID_INITS, STAGES


def stages(plan) -> list[str]:
    """The stages tw.optimize runs for ``plan``, in order (a subset of :data:`STAGES`)."""
    return [stage for stage in STAGES if plan.layers(stage)]


def preserves_sparsity(plan, layer: str) -> bool:
    """Whether clustering ``layer`` keeps its zeros: asked for, or implied because the layer was pruned first."""
    entry = plan[layer]
    return bool(entry.cluster and (entry.cluster.preserve_sparsity or entry.prune))


def frozen_layers(plan, stage: str) -> set[str]:
    """Layers held still (trainable=False) while ``stage`` fine-tunes.

    A pruned or clustered layer that a later stage does not wrap would otherwise train freely there and lose its
    zeros or shared values.
    """
    if stage == "cluster":
        return {e.layer for e in plan if e.prune and not e.cluster}
    if stage == "quantize":
        return {e.layer for e in plan if (e.prune or e.cluster) and not e.quantize}
    return set()


def quantize_scheme(plan) -> tuple[str, dict]:
    """tfmot's QAT scheme for what the quantized layers went through before: (attribute path under tfmot, kwargs).

    tfmot applies one scheme to the whole model: cluster-preserving (CQAT, PCQAT with ``preserve_sparsity``) when
    any quantized layer is clustered, else pruning-preserving (PQAT) when any is pruned, else plain 8-bit QAT.
    """
    quantized = [entry for entry in plan if entry.quantize]
    if any(entry.cluster for entry in quantized):
        preserve = any(entry.prune for entry in quantized if entry.cluster)
        return "experimental.combine.Default8BitClusterPreserveQuantizeScheme", {"preserve_sparsity": preserve}
    if any(entry.prune for entry in quantized):
        return "experimental.combine.Default8BitPrunePreserveQuantizeScheme", {}
    return "quantization.keras.default_8bit.Default8BitQuantizeScheme", {}


def cluster_settings(plan) -> dict[str, dict]:
    """{layer: runtime.training.cluster_annotated's settings} for the clustered layers (a pruned one keeps its zeros)."""
    return {e.layer: {"number_of_clusters": e.cluster.clusters, "init": CENTROID_INITS[e.cluster.init],
                      "preserve_sparsity": preserves_sparsity(plan, e.layer)} for e in plan if e.cluster}


def clustered_and_quantized(plan) -> set[str]:
    """Layers whose shared values quantization-aware training must keep (CQAT, PCQAT)."""
    return {e.layer for e in plan if e.quantize and e.cluster}


def masked_layers(plan) -> set[str]:
    """Pruned, quantized, unclustered layers whose zeros QAT must re-apply after every step.

    The cluster-preserving scheme lets the zeros of a pruned-only layer grow back (measured: 0.75 -> 0.15 in one
    epoch), so under it their pruning masks are re-applied; under the other schemes nothing needs it.
    """
    if not quantize_scheme(plan)[0].endswith("ClusterPreserveQuantizeScheme"):
        return set()
    return {e.layer for e in plan if e.quantize and e.prune and not e.cluster}
