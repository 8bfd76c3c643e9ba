"""Plan: which layers to quantize, prune or cluster, and how.

A plan is the spec; ``tw.optimize`` carries it out and the widgets only show and edit it. It is keyed by the
user's layer names, holds no TensorFlow objects, and round-trips through JSON.

>>> plan = Plan().quantize("conv1", "dense").prune("dense", sparsity=0.75)
>>> plan.cluster("conv2", clusters=16)
>>> Plan.from_json(plan.to_json()) == plan
True

Techniques on one layer combine into tfmot's collaborative schemes: prune + quantize is pruning-preserving QAT
(PQAT), cluster + quantize is cluster-preserving QAT (CQAT), prune + cluster is sparsity-preserving clustering, and
all three is PCQAT. ``plan.precision`` sets a layer's post-training precision (int4 / int8 / float weights, float /
int8 / int16 activations), which ``tw.convert`` carries out with LiteRT Quantizer; it combines with pruning and
clustering (their zeros and shared values survive), not with quantize (QAT decides int8) or keep_float.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import MISSING, asdict, replace

from ..errors import PlanError
from .specs import (
    FORMAT,
    FORMAT_VERSION,
    TECHNIQUES,
    ClusterSpec,
    LayerPlan,
    PrecisionSpec,
    PruneSpec,
    check_layer_names,
    cluster_spec,
    precision_spec,
    prune_spec,
)

# Plan entries that are not tfmot techniques, with the value remove() resets them to.
_MARKS = {"keep_float": False, "precision": None}


class Plan:
    """Per-layer optimization choices, keyed by the user's layer names.

    Methods that change the plan return the plan, so calls chain. ``on_change`` lets views follow edits.
    """

    def __init__(self, entries: Iterator[LayerPlan] | None = None):
        self._entries: dict[str, LayerPlan] = {}
        self._observers: list[Callable[[Plan], None]] = []
        # Widget callbacks may arrive on another thread (JupyterLab comm subshells) while a cell edits the plan.
        self._lock = threading.RLock()
        for entry in entries or ():
            self._entries[entry.layer] = entry

    # -- editing ---------------------------------------------------------------------------------------------
    def quantize(self, *layers: str, enabled: bool = True) -> Plan:
        """Quantization-aware training (int8) on these layers."""
        check_layer_names(layers, "quantize")
        return self._update(layers, quantize=bool(enabled))

    def prune(self, *layers: str, sparsity: float, schedule: str = "polynomial", begin: float = 0.0,
              end: float = 0.8, begin_step: int | None = None, end_step: int | None = None,
              block_size: tuple[int, int] = (1, 1)) -> Plan:
        """Magnitude pruning of these layers to ``sparsity``; see :class:`PruneSpec` for the schedule."""
        check_layer_names(layers, "prune")
        spec = prune_spec(sparsity, schedule, begin, end, begin_step, end_step, block_size)
        return self._update(layers, prune=spec)

    def cluster(self, *layers: str, clusters: int, init: str = "kmeans++", preserve_sparsity: bool = False) -> Plan:
        """Weight clustering of these layers into ``clusters`` shared values."""
        check_layer_names(layers, "cluster")
        return self._update(layers, cluster=cluster_spec(clusters, init, preserve_sparsity))

    def keep_float(self, *layers: str, enabled: bool = True) -> Plan:
        """Keep these layers float when ``tw.convert`` quantizes the rest to int8 after training (selective PTQ).

        For layers whose int8 error costs accuracy (see ``tw.sensitivity``); on an int8-only target (Edge TPU,
        Hexagon) such a layer and what follows it run on the CPU, which ``tfl.compatibility`` shows.
        """
        check_layer_names(layers, "keep_float")
        return self._update(layers, keep_float=bool(enabled))

    @property
    def float_layers(self) -> list[str]:
        """Names of the layers marked :meth:`keep_float`, in plan order."""
        return [e.layer for e in self if e.keep_float]

    def precision(self, *layers: str, weights: str | None = None, activations: str = "float",
                  granularity: str = "channel", algorithm: str = "minmax") -> Plan:
        """Post-training precision of these layers, which ``tw.convert`` gives their ops with LiteRT Quantizer.

        ``weights``: "int4", "int8" or "float" (leave it out for a layer without weights: int8 when activations
        are integer, else float). ``activations``: "float", "int8" or "int16" (integer activations calibrate on
        ``representative_data``). ``granularity``: "channel", or "block32" / "block64" for int4 weights with float
        activations. ``algorithm``: "minmax", "mse", "octav", "gptq" or "hadamard" (see
        :class:`tfopt_widgets.plan.specs.PrecisionSpec`). The other layers get the conversion's own mode (e.g. int8
        on the cpu target with representative data); a target that cannot run a combination refuses it
        (``plan.validate(model, target=...)``, ``tw.convert``). ``tfl.precisions()`` reads back what each layer got.

        >>> plan.precision("conv2", weights="int4").precision("dense", activations="int16")
        >>> plan.precision("classifier", weights="float")
        """
        check_layer_names(layers, "precision")
        return self._update(layers, precision=precision_spec(weights, activations, granularity, algorithm))

    @property
    def precisions(self) -> dict[str, PrecisionSpec]:
        """{layer: its :class:`PrecisionSpec`} for the layers given a :meth:`precision`, in plan order."""
        return {e.layer: e.precision for e in self if e.precision is not None}

    def remove(self, layer: str, technique: str | None = None) -> Plan:
        """Drop ``technique`` (or everything) planned for ``layer``; removing what is not planned is a no-op.

        ``technique="keep_float"`` drops the keep-float mark, ``"precision"`` the layer's precision.
        """
        if technique is not None and technique not in (*TECHNIQUES, *_MARKS):
            raise PlanError(f"Unknown technique {technique!r}; use one of {', '.join((*TECHNIQUES, *_MARKS))}.",
                            layer=layer, field="technique")
        with self._lock:
            entry = self._entries.get(layer)
            if entry is None:
                return self
            if technique is None:
                del self._entries[layer]
            else:
                reset = _MARKS.get(technique, False if technique == "quantize" else None)
                self._set(replace(entry, **{technique: reset}))
        self._notify()
        return self

    def clear(self) -> Plan:
        """Remove every entry."""
        with self._lock:
            self._entries.clear()
        self._notify()
        return self

    def assign(self, other: Plan) -> Plan:
        """Hold exactly ``other``'s entries from now on (one change: views that follow this plan show ``other``)."""
        if not isinstance(other, Plan):
            raise PlanError(f"Plan.assign takes a tw.Plan, got {type(other).__name__}.", field="plan")
        with self._lock:
            self._entries = {entry.layer: entry for entry in other}
        self._notify()
        return self

    def _update(self, layers, **changes) -> Plan:
        with self._lock:
            for name in layers:
                self._set(replace(self._entries.get(name, LayerPlan(name)), **changes))
        self._notify()
        return self

    def _set(self, entry: LayerPlan) -> None:
        if entry.is_empty():
            self._entries.pop(entry.layer, None)
        else:
            self._entries[entry.layer] = entry

    # -- reading ---------------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[LayerPlan]:
        with self._lock:
            return iter(list(self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, layer: str) -> bool:
        return layer in self._entries

    def __getitem__(self, layer: str) -> LayerPlan:
        """The entry for ``layer`` (an empty LayerPlan when nothing is planned for it)."""
        return self._entries.get(layer, LayerPlan(layer))

    def __eq__(self, other) -> bool:
        return isinstance(other, Plan) and self._entries == other._entries

    def layers(self, technique: str) -> list[str]:
        """Names of the layers that ``technique`` is planned for, in plan order."""
        return [e.layer for e in self if technique in e.techniques]

    def copy(self) -> Plan:
        """An independent plan with the same entries (and no observers)."""
        return Plan(iter(self))

    def __repr__(self) -> str:
        if not self._entries:
            return "Plan()"
        lines = [f"  {e.layer}: {' + '.join(e.describe())}" for e in self]
        return "Plan(\n" + "\n".join(lines) + "\n)"


    # -- observers -------------------------------------------------------------------------------------------
    def on_change(self, callback: Callable[[Plan], None], remove: bool = False) -> None:
        """Call ``callback(plan)`` after every edit (or stop calling it with ``remove=True``)."""
        if remove:
            self._observers = [c for c in self._observers if c is not callback]
        else:
            self._observers.append(callback)

    def _notify(self) -> None:
        for callback in list(self._observers):
            callback(self)

    # -- validation ------------------------------------------------------------------------------------------
    def validate(self, model, target=None) -> None:
        """Raise :class:`PlanError` naming the first layer the plan cannot be applied to, and why.

        Checks that every layer exists in ``model`` and supports each technique planned for it, and that a
        precision gives weights only to a layer with weights. With ``target`` (a name or Target), also that the
        target runs each layer's precision.
        """
        from ..model.inspection import inspect

        info = inspect(model)
        if target is not None:
            from ..targets import get_target

            target = get_target(target)
        for entry in self:
            layer = info.get(entry.layer)
            if layer is None:
                close = info.closest_names(entry.layer)
                hint = f" Did you mean {', '.join(repr(n) for n in close)}?" if close else ""
                raise PlanError(f"The plan names layer {entry.layer!r}, which model {info.name!r} does not have."
                                f"{hint} See tw.inspect(model).layers for the names.",
                                layer=entry.layer, field="layer")
            if entry.keep_float and entry.quantize:
                raise PlanError(f"Layer {entry.layer!r} is marked both quantize (int8 quantization-aware training) "
                                "and keep_float; pick one (plan.remove(layer, 'keep_float') or "
                                "plan.remove(layer, 'quantize')).", layer=entry.layer, field="keep_float")
            if entry.precision is not None:
                check_precision(entry, layer, target)
            for technique in entry.techniques:
                support = layer.supports(technique)
                if not support.ok:
                    raise PlanError(f"Cannot {technique} layer {entry.layer!r} ({layer.class_name}): "
                                    f"{support.reason}", layer=entry.layer, field=technique)
            if len(entry.techniques) > 1 and not (support := layer.supports(*entry.techniques)).ok:
                raise PlanError(f"Cannot combine {' + '.join(entry.techniques)} ({entry.scheme}) on layer "
                                f"{entry.layer!r} ({layer.class_name}): {support.reason}",
                                layer=entry.layer, field="quantize")
            if entry.cluster:
                _check_cluster_count(entry, layer)
            if entry.quantize:
                group = info.quantize_group_head(entry.layer)
                if group is not None and not self[group].quantize:
                    raise PlanError(
                        f"Layer {entry.layer!r} ({layer.class_name}) is quantized only folded into {group!r}; "
                        f"quantize {group!r} too (its BatchNormalization and activation follow it).",
                        layer=entry.layer, field="quantize")

    # -- JSON ------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """A JSON-ready dict with the format name and version."""
        layers = {}
        for entry in self:
            item = {}
            if entry.quantize:
                item["quantize"] = True
            if entry.prune:
                item["prune"] = {**asdict(entry.prune), "block_size": list(entry.prune.block_size)}
            if entry.cluster:
                item["cluster"] = asdict(entry.cluster)
            if entry.keep_float:  # an optional key: version-1 readers that predate it never see it on other plans
                item["keep_float"] = True
            if entry.precision is not None:  # optional too, written only for layers given a precision
                item["precision"] = {k: v for k, v in asdict(entry.precision).items() if v is not None}
            layers[entry.layer] = item
        return {"format": FORMAT, "version": FORMAT_VERSION, "layers": layers}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict) -> Plan:
        """Build a plan from :meth:`to_dict` output; raises :class:`PlanError` on anything malformed."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise PlanError(f"Not a tfopt-widgets plan: expected an object with \"format\": \"{FORMAT}\".",
                            field="format")
        version = data.get("version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise PlanError("The plan has no integer \"version\".", field="version")
        if version > FORMAT_VERSION:
            raise PlanError(f"This plan has format version {version}, newer than this tfopt-widgets understands "
                            f"({FORMAT_VERSION}). Upgrade tfopt-widgets to read it.", field="version")
        layers = data.get("layers")
        if not isinstance(layers, dict):
            raise PlanError("The plan's \"layers\" must be an object keyed by layer name.", field="layers")
        entries = []
        for name, item in layers.items():
            if not isinstance(item, dict):
                raise PlanError(f"The entry for layer {name!r} must be an object.", layer=name, field="layers")
            unknown = set(item) - {*TECHNIQUES, *_MARKS}
            if unknown:
                raise PlanError(f"Unknown technique {min(unknown)!r} for layer {name!r}; use "
                                f"{', '.join(TECHNIQUES)}.", layer=name, field=min(unknown))
            entries.append(LayerPlan(name, quantize=cls._read_quantize(name, item.get("quantize", False)),
                                     prune=cls._read_spec(name, "prune", item.get("prune")),
                                     cluster=cls._read_spec(name, "cluster", item.get("cluster")),
                                     keep_float=cls._read_quantize(name, item.get("keep_float", False),
                                                                   "keep_float"),
                                     precision=cls._read_spec(name, "precision", item.get("precision"))))
        return cls(e for e in entries if not e.is_empty())

    @staticmethod
    def _read_quantize(name, value, key: str = "quantize") -> bool:
        if not isinstance(value, bool):
            raise PlanError(f"\"{key}\" for layer {name!r} must be true or false; got {value!r}.",
                            layer=name, field=key)
        return value

    @staticmethod
    def _read_spec(name, technique, value):
        if value is None:
            return None
        if not isinstance(value, dict):
            raise PlanError(f"\"{technique}\" for layer {name!r} must be an object.", layer=name, field=technique)
        make, spec_type = {"prune": (prune_spec, PruneSpec), "cluster": (cluster_spec, ClusterSpec),
                           "precision": (precision_spec, PrecisionSpec)}[technique]
        fields = spec_type.__dataclass_fields__
        unknown = set(value) - set(fields)
        if unknown:
            raise PlanError(f"Unknown {technique} setting {min(unknown)!r} for layer {name!r}; "
                            f"known: {', '.join(fields)}.", layer=name, field=min(unknown))
        required = [f for f, d in fields.items() if d.default is MISSING and d.default_factory is MISSING]
        for f in required:
            if f not in value:
                raise PlanError(f"\"{technique}\" for layer {name!r} needs \"{f}\".", layer=name, field=f)
        settings = {f: value.get(f, d.default) for f, d in fields.items()}
        return make(*settings.values(), layer=name)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        """Parse :meth:`to_json` output."""
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise PlanError(f"The plan is not valid JSON: {exc}.", field="json") from None
        return cls.from_dict(data)

    def save(self, path) -> None:
        """Write the plan as JSON to ``path``."""
        from pathlib import Path

        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path) -> Plan:
        """Read a plan written by :meth:`save`."""
        from pathlib import Path

        return cls.from_json(Path(path).read_text(encoding="utf-8"))

    # -- code export -----------------------------------------------------------------------------------------
    def to_python(self, model_path: str = "model.keras", target: str = "cpu", *, model=None,
                  quantization: str | None = None, epochs: int = 2, batch_size: int = 32,
                  learning_rate: float | None = None, output_path: str | None = None) -> str:
        """A standalone script (tf_keras, tfmot and TensorFlow only) that carries out this plan like tw.optimize.

        The script loads ``model_path`` (a tf_keras .keras/.h5 file), applies the plan's per-layer annotations
        stage by stage (same schemes, pruning schedule, frozen layers), fine-tunes for ``epochs`` on data you
        load in its ``load_training_data()``, strips, and converts for ``target`` with tw.convert's settings.
        Layers marked :meth:`keep_float` stay float in an int8 file as with ``tw.convert(..., plan=plan)``
        (selective int8: the script denylists their ops in TFLite's quantizer); a plan that only keeps
        layers float fine-tunes nothing and just converts. In a float file (e.g. ``target="gpu"``, float16) every
        layer is float anyway; ``quantization="dynamic"`` or ``"int16x8"`` with keep_float raises TargetError.
        With ``model``, the plan is validated against it and the layers quantized together with a convolution
        (its BatchNormalization and activation) are listed by name; without, the script finds them itself.
        An empty plan raises PlanError.

        >>> code = tw.Plan().prune("dense", sparsity=0.75).quantize("dense").to_python("digits.keras", "edgetpu")
        >>> Path("reproduce.py").write_text(code)   # fill in load_training_data(), then: python reproduce.py
        """
        from .script import plan_to_python

        return plan_to_python(self, model_path=model_path, target=target, model=model, quantization=quantization,
                              epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                              output_path=output_path)


def _check_cluster_count(entry: LayerPlan, layer) -> None:
    """PlanError when a layer has fewer (non-zero) weights than clusters: tfmot's k-means++ cannot pick that many
    centroids ("Expected num_to_sample <= points.rows()"), and no init can share fewer values than it has."""
    sizes = [math.prod(w.shape) for w in layer.weights
             if w.name.rsplit("/", 1)[-1].split(":")[0] in ("kernel", "pointwise_kernel", "embeddings")]
    if not sizes:
        return
    weights = sizes[-1]  # a SeparableConv2D's pointwise kernel comes after its depthwise one
    available = math.floor(weights * (1 - entry.prune.sparsity)) if entry.prune else weights
    if entry.cluster.clusters > available:
        after = f", {available:,} of them left after pruning to {entry.prune.sparsity:.0%}" if entry.prune else ""
        raise PlanError(f"Layer {entry.layer!r} has {weights:,} kernel weights{after}: too few for "
                        f"{entry.cluster.clusters} clusters. Use clusters={max(2, available)} or fewer, or leave "
                        "the layer unclustered.", layer=entry.layer, field="clusters")


# Keras weights that become a layer's main kernel in the converted file: what a weight precision applies to.
_KERNEL_WEIGHTS = ("kernel", "depthwise_kernel", "pointwise_kernel", "embeddings")


def has_kernel(layer) -> bool:
    """True when ``layer`` (tw.inspect's LayerInfo) has weights a precision can apply to: a kernel or an embedding."""
    return any(w.name.rsplit("/", 1)[-1].split(":")[0] in _KERNEL_WEIGHTS for w in layer.weights)


def check_precision(entry: LayerPlan, layer, target=None) -> None:
    """PlanError when ``entry``'s precision conflicts with its other marks, gives weights to ``layer`` (its
    LayerInfo) when it has no kernel, or is one ``target`` (a Target or None) cannot run."""
    conflict = entry.precision_conflict()
    if conflict is not None:
        raise conflict
    kernel = has_kernel(layer)
    if not kernel and entry.precision.weights not in (None, "float"):
        raise PlanError(f"Layer {entry.layer!r} ({layer.class_name}) has no weights to give "
                        f"weights={entry.precision.weights!r}; leave weights out (or 'float') and set only its "
                        "activations.", layer=entry.layer, field="weights")
    if kernel and entry.precision.weights == "float" and entry.precision.activations != "float":
        raise PlanError(f"Layer {entry.layer!r} ({layer.class_name}): integer activations "
                        f"({entry.precision.activations}) need integer weights (LiteRT's integer kernels take no float "
                        "weights); use weights='int8' or 'int4', or activations='float'.",
                        layer=entry.layer, field="weights")
    if target is not None:
        target.check_precision(entry.layer, entry.precision.weights_for(kernel), entry.precision.activations)
