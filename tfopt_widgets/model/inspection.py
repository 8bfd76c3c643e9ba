"""Inspect a model: every layer, its weights, and which techniques tfmot can apply to it (and why not).

>>> info = tw.inspect(model)
>>> info.layers[1].supports("cluster")
Support(ok=True, reason='')
>>> info.to_dataframe()

The module is called ``inspection`` rather than ``inspect`` so that importing it never shadows ``tw.inspect``.
"""

from __future__ import annotations

import difflib
import html
from dataclasses import dataclass, field

from ..errors import ModelError
from ..runtime import training as runtime
from ..runtime.training import QAT_ACTIVATIONS, QUANTIZE_CONFIGS
from . import stack
from .porting import prepare
from .stack import keras, tfmot

TECHNIQUES = ("quantize", "prune", "cluster")

# Why tfmot 0.8.1 cannot apply a technique to a layer class, where its own registries are wrong or silent about it.
# Checked on real layers (FIELD-NOTES): these are the cases that fail or silently do nothing.
_NOT_SUPPORTED = {
    "DepthwiseConv2D": {
        "prune": "tfmot 0.8.1 prunes no weights of a DepthwiseConv2D (its registry lists none); prune the "
                 "pointwise Conv2D that follows it, or quantize this layer.",
        "cluster": "tfmot deliberately does not cluster DepthwiseConv2D: per-channel 3x3 kernels have too few "
                   "weights to share; quantize this layer instead.",
    },
    "BatchNormalization": {
        "prune": "BatchNormalization holds per-channel scales, not a weight matrix; tfmot prunes none of them. "
                 "It folds into the preceding convolution when converted.",
        "cluster": "BatchNormalization holds per-channel scales, not a weight matrix; tfmot clusters none of them. "
                   "It folds into the preceding convolution when converted.",
    },
    "LayerNormalization": {
        "prune": "LayerNormalization holds per-channel scales; tfmot prunes none of them.",
        "cluster": "LayerNormalization holds per-channel scales; tfmot clusters none of them.",
    },
}
_NOT_IN_QAT_REGISTRY = ("{cls} is not in tfmot's default 8-bit quantization-aware-training registry. Prune or "
                        "cluster it, or leave it out of the plan and let tw.convert quantize it after training "
                        "(target 'cpu' with representative data, or quantization='int8').")
_PASSES_THROUGH_QAT = ("{cls} (no weights) is not in tfmot's 8-bit QAT registry, so QAT leaves it float and passes "
                       "it through while the layers around it are quantized; tw.convert then quantizes it from "
                       "representative data. Leave it out of the plan.")


# Whole-model transforms in quantize_apply handle these although the registry says no (checked: SeparableConv2D
# becomes a quantized DepthwiseConv2D + Conv2D pair).
_QUANTIZED_BY_TRANSFORM = {"SeparableConv2D"}
# tfmot's collaborative schemes keep pruning zeros (PQAT) and shared cluster values (CQAT) through quantization-aware
# training only on these layers' kernels (tfmot 0.8.1, collab_opts/*_quantize_registry.py, _LAYERS_CONFIG_MAP;
# DepthwiseConv2D is listed there with preservation disabled, and is neither prunable nor clusterable anyway).
# A SeparableConv2D's pointwise half becomes a Conv2D in QAT: its zeros survive (checked: 0.5 -> 0.5).
_PRESERVED_THROUGH_QAT = {"prune": ("Conv2D", "Dense", "SeparableConv2D"), "cluster": ("Conv2D", "Dense")}
_NOT_PRESERVED_THROUGH_QAT = {
    "prune": "tfmot's pruning-preserving QAT keeps zeros only in Conv2D, SeparableConv2D and Dense kernels; QAT "
             "of a {cls} would let its pruned weights grow back. Prune it and leave it float, or quantize it without pruning.",
    "cluster": "tfmot's cluster-preserving QAT keeps shared values only in Conv2D and Dense kernels; QAT of a "
               "{cls} would break its clusters. Cluster it and leave it float, or quantize it without clustering.",
}


@dataclass(frozen=True)
class Support:
    """Whether a technique can be applied to a layer; ``reason`` says why not and what to do instead."""

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True)
class WeightInfo:
    """One weight variable of a layer (no values: only what a table shows)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    bytes: int


@dataclass
class LayerInfo:
    """One layer of the model as the tool sees it."""

    name: str
    class_name: str
    params: int
    output_shape: tuple | None
    weights: list[WeightInfo]
    inbound: list[str] = field(default_factory=list)
    group: str | None = None  # the convolution a BatchNormalization/activation folds into when quantized
    support: dict[str, Support] = field(default_factory=dict)

    @property
    def weight_bytes(self) -> int:
        return sum(w.bytes for w in self.weights)

    def supports(self, *techniques: str) -> Support:
        """Can these techniques ("quantize", "prune", "cluster") be applied to this layer, together?

        ``supports("prune", "quantize")`` asks for pruning-preserving QAT: quantization-aware training keeps a
        layer's zeros and shared values only where tfmot's collaborative schemes cover its kernel.
        """
        if not techniques:
            raise ValueError("Name at least one technique: supports('quantize'), supports('prune', 'quantize').")
        for technique in techniques:
            if technique not in TECHNIQUES:
                raise ValueError(f"Unknown technique {technique!r}; use one of {', '.join(TECHNIQUES)}.")
            if not self.support[technique].ok:
                return self.support[technique]
        if "quantize" in techniques:
            for technique in ("prune", "cluster"):
                if technique in techniques and self.class_name not in _PRESERVED_THROUGH_QAT[technique]:
                    return Support(False, _NOT_PRESERVED_THROUGH_QAT[technique].format(cls=self.class_name))
        return self.support[techniques[0]] if len(techniques) == 1 else Support(True)


class ModelInfo:
    """Every layer of a model with its weights and per-technique support. Shows as a table in notebooks.

    ``params`` and ``weight_bytes`` (as stored in Keras, float32: 4 bytes a parameter) are for the whole model.
    """

    def __init__(self, name: str, layers: list[LayerInfo], input_shapes: list, params: int, weight_bytes: int,
                 notices: list[str] = ()):
        self.name = name
        self.notices = list(notices)  # what was done to the model to inspect it (Keras 3 rebuilt, nested inlined)
        self.layers = layers
        self.params = params
        self.weight_bytes = weight_bytes
        self.input_shapes = input_shapes
        self._by_name = {layer.name: layer for layer in layers}

    def get(self, name: str) -> LayerInfo | None:
        return self._by_name.get(name)

    def __getitem__(self, name: str) -> LayerInfo:
        layer = self._by_name.get(name)
        if layer is None:
            raise KeyError(f"Model {self.name!r} has no layer {name!r}")
        return layer

    def __iter__(self):
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def closest_names(self, name: str) -> list[str]:
        """Layer names that look like ``name``, for 'did you mean' hints."""
        return difflib.get_close_matches(name, list(self._by_name), n=3, cutoff=0.6)

    def quantize_group_head(self, name: str) -> str | None:
        """The convolution that layer ``name`` is quantized with (folded into), or None if it stands alone."""
        layer = self._by_name.get(name)
        return layer.group if layer is not None else None

    def group_members(self, head: str) -> list[str]:
        """The layers quantized together with convolution ``head`` (its BatchNormalization and activation)."""
        return [layer.name for layer in self.layers if layer.group == head]

    def to_dataframe(self):
        """One row per layer: name, type, output shape, params, weight bytes, and support per technique."""
        import pandas as pd

        rows = []
        for layer in self.layers:
            row = {"layer": layer.name, "type": layer.class_name, "output_shape": layer.output_shape,
                   "params": layer.params, "weight_bytes": layer.weight_bytes}
            for technique in TECHNIQUES:
                row[technique] = layer.supports(technique).ok
            rows.append(row)
        return pd.DataFrame(rows).set_index("layer")

    def __repr__(self) -> str:
        return f"<ModelInfo {self.name!r}: {len(self.layers)} layers, {self.params:,} params>"

    def _repr_html_(self) -> str:
        # Layer names come from the user's model and may contain markup: escape everything.
        esc = html.escape
        mark = {True: "&#10003;", False: "&ndash;"}
        head = "".join(f"<th>{h}</th>" for h in ("layer", "type", "output shape", "params", "weights", *TECHNIQUES))
        body = []
        for layer in self.layers:
            cells = [esc(layer.name), esc(layer.class_name), esc(str(layer.output_shape)), f"{layer.params:,}",
                     _format_bytes(layer.weight_bytes)]
            support = [f'<td title="{esc(s.reason, quote=True)}">{mark[s.ok]}</td>'
                       for s in (layer.supports(t) for t in TECHNIQUES)]
            body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "".join(support) + "</tr>")
        caption = (f"{esc(self.name)}: {len(self.layers)} layers, {self.params:,} params, "
                   f"{_format_bytes(self.weight_bytes)} of weights")
        notes = "".join(f"<p><em>{esc(notice)}</em></p>" for notice in self.notices)
        return (f"{notes}<table><caption>{caption}</caption><thead><tr>{head}</tr></thead>"
                f"<tbody>{''.join(body)}</tbody></table>")


def _format_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return str(n)


def inspect(model) -> ModelInfo:
    """Describe every layer of a model and what tfmot can do with it.

    A Keras 3 model is described as its tf_keras rebuild, and the layers of a model nested inside ``model`` are
    listed as ``outer/inner``, as :func:`tw.optimize` will see them; ``ModelInfo.notices`` says so.
    """
    notices = []
    if stack.is_keras3_model(model) or _has_nested_models(model):
        model, notices = prepare(model, purpose="inspect")
    if not isinstance(model, keras.Model):
        raise ModelError(f"tw.inspect expects a tf_keras Model, got {type(model).__name__}.", field="model")
    if not model.built:
        stack.check_model(model, purpose="inspect")
    subclassed = not (isinstance(model, keras.Sequential) or getattr(model, "_is_graph_network", False))
    inbound = {} if subclassed else runtime.inbound_names(model)
    layers = []
    for layer in model.layers:
        layers.append(_describe(layer, inbound.get(layer.name, []), subclassed=subclassed))
    _assign_groups(layers)
    for info in layers:
        if info.class_name == "BatchNormalization" and info.group is None and "/" not in info.name:
            info.support["quantize"] = Support(
                False, "A BatchNormalization is quantized only folded into a Conv2D or DepthwiseConv2D right "
                       "before it; this one follows no convolution. Leave it float.")
        elif info.group is not None:
            info.support["quantize"] = Support(
                True, f"Quantized folded into {info.group!r}: quantizing {info.group!r} includes it.")
    input_shapes = [tuple(t.shape.as_list()) for t in (model.inputs or [])]
    weight_bytes = sum(int(w.shape.num_elements() or 0) * w.dtype.size for w in model.weights)
    return ModelInfo(model.name, layers, input_shapes, model.count_params(), weight_bytes, notices)


def _has_nested_models(model) -> bool:
    graph = isinstance(model, keras.Sequential) or getattr(model, "_is_graph_network", False)
    return graph and any(isinstance(layer, keras.Model) for layer in model.layers)


def _describe(layer, inbound: list[str], *, subclassed: bool) -> LayerInfo:
    name = layer.name
    weights = [WeightInfo(w.name, tuple(w.shape.as_list()), w.dtype.name if hasattr(w.dtype, "name") else str(w.dtype),
                          int(w.shape.num_elements() or 0) * w.dtype.size) for w in layer.weights]
    info = LayerInfo(name, type(layer).__name__, layer.count_params(), _output_shape(layer), weights, inbound)
    if subclassed:
        reason = ("The model is subclassed; tfmot optimizes only Sequential or Functional models. Rebuild it "
                  "with the Functional API.")
        info.support = {t: Support(False, reason) for t in TECHNIQUES}
    else:
        info.support = {t: _support(layer, t) for t in TECHNIQUES}
    return info


def _output_shape(layer):
    try:
        shape = layer.output_shape
    except (AttributeError, RuntimeError):
        return None
    return tuple(shape) if isinstance(shape, tuple) else shape


def _support(layer, technique: str) -> Support:
    cls = type(layer).__name__
    if isinstance(layer, keras.layers.InputLayer):
        return Support(False, "The input layer has nothing to optimize.")
    if technique == "quantize":
        return _quantize_support(layer, cls)
    verb = {"prune": "prune", "cluster": "cluster"}[technique]
    if not layer.weights:
        return Support(False, f"{cls} has no weights to {verb}; only layers with kernels (Conv, Dense, ...) can be.")
    if layer.trainable and not layer.trainable_weights:
        return Support(False, f"{cls} holds no trainable weights (its weights are statistics or constants, not "
                              f"learned), so there is nothing to {verb}.")
    reason = _NOT_SUPPORTED.get(cls, {}).get(technique)
    if reason:
        return Support(False, reason)
    base = tfmot.sparsity.keras.PrunableLayer if technique == "prune" else tfmot.clustering.keras.ClusterableLayer
    if isinstance(layer, base):
        return Support(True)
    supported, weight_names = runtime.weights_in_registry(technique, layer)
    if not supported:
        return Support(False, f"tfmot 0.8.1 has no {verb} rule for {cls}. Leave it out of the plan, or make it a "
                              f"tfmot {base.__name__} (custom layer).")
    if weight_names == []:
        return Support(False, f"tfmot 0.8.1 {verb}s none of the weights of a {cls}.")
    return Support(True)


def _quantize_support(layer, cls: str) -> Support:
    if isinstance(layer, tfmot.quantization.keras.QuantizeWrapper):
        return Support(False, "Already wrapped for quantization-aware training.")
    if cls in _QUANTIZED_BY_TRANSFORM:
        return Support(True)
    if cls == "BatchNormalization":
        return Support(True)  # narrowed in inspect() once the layer's neighbours are known
    if not runtime.known_activation(layer):
        name = getattr(layer.activation, "__name__", repr(layer.activation))
        return Support(False, f"tfmot's 8-bit QAT knows no activation {name!r} (only {', '.join(QAT_ACTIVATIONS)}), "
                              "so QAT leaves this layer float and passes it through while the layers around it are "
                              "quantized; tw.convert then quantizes it from representative data. Leave it out of "
                              "the plan.")
    if runtime.qat_registry().supports(layer):
        return Support(True)
    if cls in QUANTIZE_CONFIGS:
        return Support(True, f"tfmot's registry lacks {cls}; tfopt-widgets quantizes it with an int8 kernel (per "
                             "tensor) and int8 activations.")
    if not layer.weights:
        return Support(False, _PASSES_THROUGH_QAT.format(cls=cls))
    return Support(False, _NOT_IN_QAT_REGISTRY.format(cls=cls))


def _assign_groups(layers: list[LayerInfo]) -> None:
    """Mark BatchNormalization (and the activation after it) that fold into the convolution before them."""
    by_name = {layer.name: layer for layer in layers}
    groups = runtime.fold_groups([(layer.name, layer.class_name, layer.inbound, layer.support["quantize"].ok)
                                     for layer in layers])
    for head, members in groups.items():
        for member in members:
            by_name[member].group = head
