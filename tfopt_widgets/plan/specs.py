"""The parts of a plan: per-layer specs (prune, cluster, precision, the whole entry of one layer), the names they
accept, and the checks that make a spec only from valid settings (each raises PlanError naming the layer and field)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import PlanError
from ..runtime import precision as litert

TECHNIQUES = ("quantize", "prune", "cluster")
SCHEDULES = ("polynomial", "constant")
CLUSTER_INITS = ("kmeans++", "linear", "density", "random")
# Plan name of a centroid initialization -> the member of tfmot's clustering.keras.CentroidInitialization.
CENTROID_INITS = {"kmeans++": "KMEANS_PLUS_PLUS", "linear": "LINEAR", "density": "DENSITY_BASED", "random": "RANDOM"}
# The order tw.optimize runs the stages in (tfmot's collaborative-optimization guides): each preserves the last.
STAGES = ("prune", "cluster", "quantize")
# Post-training precision per layer (plan.precision), carried out by LiteRT Quantizer on the converted file.
WEIGHT_PRECISIONS = ("int4", "int8", "float")
ACTIVATION_PRECISIONS = ("float", "int8", "int16")
GRANULARITIES = ("channel", "block32", "block64")
# How weights are quantized (LiteRT Quantizer 0.11.0's algorithms; activation ranges are always min-max calibrated).
# Measured on the digits demo's ops: minmax and octav quantize every op LiteRT Quantizer handles, mse conv and dense
# kernels (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, TRANSPOSE_CONV, EMBEDDING_LOOKUP), gptq and hadamard only
# FULLY_CONNECTED (and EMBEDDING_LOOKUP for hadamard); gptq calibrates on representative data, hadamard leaves
# activations float whatever is asked.
ALGORITHMS = ("minmax", "mse", "octav", "gptq", "hadamard")

FORMAT = "tfopt-widgets/plan"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class PruneSpec:
    """Magnitude pruning of one layer's weights to ``sparsity`` (the fraction of zeros).

    The schedule runs over the fine-tuning: from ``begin`` to ``end`` as fractions of the training steps, or from
    ``begin_step`` to ``end_step`` when those are given. ``polynomial`` ramps sparsity up from 0; ``constant``
    prunes to the target at once. ``block_size`` prunes blocks of weights together (e.g. (1, 4)).
    """

    sparsity: float
    schedule: str = "polynomial"
    begin: float = 0.0
    end: float = 0.8
    begin_step: int | None = None
    end_step: int | None = None
    block_size: tuple[int, int] = (1, 1)


@dataclass(frozen=True)
class ClusterSpec:
    """Weight clustering (sharing) of one layer into ``clusters`` distinct values.

    ``init`` is how centroids start: kmeans++, linear, density or random. ``preserve_sparsity`` keeps zeros at
    zero; it is implied when the same layer is also pruned.
    """

    clusters: int
    init: str = "kmeans++"
    preserve_sparsity: bool = False


@dataclass(frozen=True)
class PrecisionSpec:
    """Post-training precision of one layer: what ``tw.convert`` gives its ops with LiteRT Quantizer.

    ``weights``: "int4", "int8" or "float"; None (left out) means int8 when activations are integer and float
    otherwise, and is what a layer without weights takes. ``activations``: "float" (with integer weights: dynamic
    range, the kernel quantizes its input on the fly), "int8" or "int16" (calibrated on representative data).
    ``granularity`` of the weight scales: "channel" (per output channel), "block32" or "block64" (int4 weights with
    float activations, Dense layers only). ``algorithm`` picks the weights' quantization parameters: "minmax",
    "mse", "octav", "gptq" (Dense only, needs representative data) or "hadamard" (a rotation first; Dense only,
    float activations).
    """

    weights: str | None = None
    activations: str = "float"
    granularity: str = "channel"
    algorithm: str = "minmax"

    def weights_for(self, has_weights: bool) -> str:
        """The weight precision a layer with (or without) weights gets: "int4", "int8" or "float"."""
        return litert.weights_for(asdict(self), has_weights)

    @property
    def is_float(self) -> bool:
        """True when the layer stays float (float weights, float activations)."""
        return litert.is_float(asdict(self))

    def describe(self) -> str:
        """In words: "int4 weights, float activations", "int8 weights (mse), int8 activations", "int16 activations"
        (weights left out) or "float"."""
        if self.is_float:
            return "float"
        settings = [value for value, default in ((self.granularity, "channel"), (self.algorithm, "minmax"))
                    if value != default]
        weights = f"{self.weights} weights" + (f" ({', '.join(settings)})" if settings else "")
        return f"{weights}, {self.activations} activations" if self.weights else f"{self.activations} activations"


@dataclass(frozen=True)
class LayerPlan:
    """What the plan does to one layer."""

    layer: str
    quantize: bool = False
    prune: PruneSpec | None = None
    cluster: ClusterSpec | None = None
    # Stays float in a post-training int8 conversion (tw.convert denylists its ops); not a tfmot technique.
    keep_float: bool = False
    # Post-training precision of its ops (LiteRT Quantizer in tw.convert); not a tfmot technique either.
    precision: PrecisionSpec | None = None

    @property
    def techniques(self) -> tuple[str, ...]:
        """The techniques planned for this layer, in the order they are applied."""
        return tuple(t for t, on in (("prune", self.prune), ("cluster", self.cluster), ("quantize", self.quantize))
                     if on)

    @property
    def scheme(self) -> str:
        """The tfmot name of this layer's combination: QAT, PQAT, CQAT, PCQAT, pruning, clustering, ..."""
        return {
            ("quantize",): "QAT",
            ("prune",): "pruning",
            ("cluster",): "clustering",
            ("prune", "quantize"): "PQAT",
            ("cluster", "quantize"): "CQAT",
            ("prune", "cluster"): "sparsity-preserving clustering",
            ("prune", "cluster", "quantize"): "PCQAT",
        }.get(self.techniques, "none")

    def is_empty(self) -> bool:
        return not self.techniques and not self.keep_float and self.precision is None

    def describe(self) -> list[str]:
        """The planned techniques with their settings, in words ("prune 0.75 (polynomial)", "quantize int8")."""
        parts = []
        if self.prune:
            parts.append(f"prune {self.prune.sparsity:g} ({self.prune.schedule})")
        if self.cluster:
            parts.append(f"cluster {self.cluster.clusters} ({self.cluster.init})")
        if self.quantize:
            parts.append("quantize int8")
        if self.keep_float:
            parts.append("keep float")
        if self.precision:
            parts.append(f"precision {self.precision.describe()}")
        return parts

    def precision_conflict(self) -> PlanError | None:
        """The PlanError for a precision this entry also settles otherwise (QAT's int8, keep_float), or None."""
        if self.precision is None:
            return None
        if self.quantize:
            return PlanError(f"Layer {self.layer!r} is marked both quantize (quantization-aware training decides its "
                             "int8 precision) and precision; pick one (plan.remove(layer, 'precision') or "
                             "plan.remove(layer, 'quantize')).", layer=self.layer, field="precision")
        if self.keep_float:
            return PlanError(f"Layer {self.layer!r} is marked both keep_float and precision; pick one: "
                             "plan.precision(layer, weights='float') keeps it float too.",
                             layer=self.layer, field="precision")
        return None


def check_layer_names(layers: tuple, technique: str) -> None:
    if not layers:
        raise PlanError(f"plan.{technique}() needs at least one layer name, e.g. plan.{technique}('dense').",
                        field="layers")
    for name in layers:
        if not isinstance(name, str) or not name:
            raise PlanError(f"Layer names are non-empty strings; plan.{technique}() got {name!r}.", field="layers")


def prune_spec(sparsity, schedule, begin, end, begin_step, end_step, block_size, layer=None) -> PruneSpec:
    def fail(message, field):
        raise PlanError(message, layer=layer, field=field)

    where = f" for layer {layer!r}" if layer else ""
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0.0 < sparsity < 1.0:
        fail(f"sparsity{where} must be a fraction of zeros strictly between 0 and 1 (e.g. 0.75); got {sparsity!r}.",
             "sparsity")
    if schedule not in SCHEDULES:
        fail(f"schedule{where} must be one of {', '.join(SCHEDULES)}; got {schedule!r}.", "schedule")
    for name, value in (("begin", begin), ("end", end)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            fail(f"{name}{where} is a fraction of the training steps between 0 and 1; got {value!r}. "
                 f"Use {name}_step= for an absolute step.", name)
    if begin >= end:
        fail(f"begin ({begin}) must come before end ({end}){where}.", "begin")
    for name, value in (("begin_step", begin_step), ("end_step", end_step)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            fail(f"{name}{where} must be a non-negative integer step or None; got {value!r}.", name)
    if begin_step is not None and end_step is not None and begin_step >= end_step:
        fail(f"begin_step ({begin_step}) must be smaller than end_step ({end_step}){where}.", "begin_step")
    try:
        block = tuple(int(b) for b in block_size)
    except (TypeError, ValueError):
        block = ()
    if len(block) != 2 or min(block) < 1 or tuple(block_size) != block:
        fail(f"block_size{where} must be two positive integers such as (1, 1) or (1, 4); got {block_size!r}.",
             "block_size")
    return PruneSpec(float(sparsity), schedule, float(begin), float(end), begin_step, end_step, block)


def cluster_spec(clusters, init, preserve_sparsity, layer=None) -> ClusterSpec:
    where = f" for layer {layer!r}" if layer else ""
    if isinstance(clusters, bool) or not isinstance(clusters, int) or clusters < 2:
        raise PlanError(f"clusters{where} must be an integer of at least 2 (e.g. 16); got {clusters!r}.",
                        layer=layer, field="clusters")
    if init not in CLUSTER_INITS:
        raise PlanError(f"init{where} must be one of {', '.join(CLUSTER_INITS)}; got {init!r}.",
                        layer=layer, field="init")
    if not isinstance(preserve_sparsity, bool):
        raise PlanError(f"preserve_sparsity{where} must be True or False; got {preserve_sparsity!r}.",
                        layer=layer, field="preserve_sparsity")
    return ClusterSpec(clusters, init, preserve_sparsity)


def precision_spec(weights, activations, granularity, algorithm, layer=None) -> PrecisionSpec:
    def fail(message, field):
        raise PlanError(message, layer=layer, field=field)

    where = f" for layer {layer!r}" if layer else ""
    if weights is not None and weights not in WEIGHT_PRECISIONS:
        fail(f"weights{where} must be one of {', '.join(WEIGHT_PRECISIONS)} (or left out); got {weights!r}.",
             "weights")
    if activations not in ACTIVATION_PRECISIONS:
        fail(f"activations{where} must be one of {', '.join(ACTIVATION_PRECISIONS)}; got {activations!r}.",
             "activations")
    if granularity not in GRANULARITIES:
        fail(f"granularity{where} must be one of {', '.join(GRANULARITIES)}; got {granularity!r}.", "granularity")
    if algorithm not in ALGORITHMS:
        fail(f"algorithm{where} must be one of {', '.join(ALGORITHMS)}; got {algorithm!r}.", "algorithm")
    spec = PrecisionSpec(weights, activations, granularity, algorithm)
    if spec.is_float and (granularity != "channel" or algorithm != "minmax"):
        fail(f"granularity and algorithm{where} say how weights are quantized; float weights with float activations "
             "take neither.", "granularity" if granularity != "channel" else "algorithm")
    # LiteRT Quantizer's policy (default_policy.py, 0.11.0): blocks only for int4 weights with float activations.
    if granularity != "channel" and (weights != "int4" or activations != "float"):
        fail(f"granularity={granularity!r}{where} needs weights='int4' and activations='float' (LiteRT Quantizer "
             f"quantizes blocks only for int4 dynamic-range weights); got weights={weights!r}, "
             f"activations={activations!r}.", "granularity")
    if algorithm == "hadamard" and activations != "float":
        fail(f"algorithm='hadamard'{where} leaves activations float (LiteRT Quantizer's Hadamard rotation quantizes "
             f"weights only); got activations={activations!r}.", "algorithm")
    if weights == "float" and algorithm != "minmax":
        fail(f"algorithm={algorithm!r}{where} quantizes weights, and weights='float' keeps them float.", "algorithm")
    return spec
