"""The script runtime's training half: layer names, fine-tuning, each stage's annotation, QAT schemes, kernels.

Imports numpy, TensorFlow, tf_keras and tfmot only, and holds every private path of the stack the package uses
(tfmot's registries, tf_keras internals): see the end of the file."""

import contextlib
import copy
import logging
import warnings

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras as keras
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
    default_8bit_quantize_registry,
)

# Weight attributes that hold a layer's main kernel (a SeparableConv2D has two; the pointwise one comes later).
KERNEL_ATTRIBUTES = ("kernel", "depthwise_kernel", "pointwise_kernel", "embeddings")
# The activations tfmot 0.8.1's Default8BitActivationQuantizeConfig accepts in an Activation layer (any other raises
# "Activation ... not supported by Default8BitActivationQuantizeConfig" inside quantize_apply).
QAT_ACTIVATIONS = ("relu", "swish", "gelu", "relu6", "linear", "softmax", "sigmoid", "tanh")
# A BatchNormalization (and an activation right after it) is quantized only folded into the convolution before it.
FOLDING_HEADS = ("Conv2D", "DepthwiseConv2D")
FOLDED_ACTIVATIONS = ("ReLU", "Activation")


# -- layers -----------------------------------------------------------------------------------------------------
def inbound_names(model) -> dict:
    """{layer name: names of the layers feeding it} from the model's own config (Sequential: the previous one)."""
    if isinstance(model, keras.Sequential):
        names = [layer.name for layer in model.layers]
        return {name: names[i - 1:i] for i, name in enumerate(names)}
    result = {}
    for entry in model.get_config()["layers"]:
        nodes = [node for node in entry.get("inbound_nodes") or [] if isinstance(node, list)]
        result[entry["name"]] = [item[0] for node in nodes for item in node
                                 if isinstance(item, list) and item and isinstance(item[0], str)]
    return result


def fold_groups(layers) -> dict:
    """{convolution: [its BatchNormalization, and the activation after it]}: QAT folds them into the convolution.

    ``layers``: (name, class name, inbound names, quantizable) for every layer, in model order.
    """
    kinds = {name: (kind, ok) for name, kind, _, ok in layers}
    consumers = {}
    for name, _, sources, _ in layers:
        for source in sources:
            consumers.setdefault(source, []).append(name)
    groups = {}
    for name, kind, sources, _ in layers:
        if kind != "BatchNormalization" or len(sources) != 1:
            continue
        head = sources[0]
        if kinds.get(head, ("",))[0] not in FOLDING_HEADS or len(consumers.get(head, [])) != 1:
            continue
        groups.setdefault(head, []).append(name)
        after = consumers.get(name, [])
        if len(after) == 1 and kinds[after[0]][0] in FOLDED_ACTIVATIONS and kinds[after[0]][1]:
            groups[head].append(after[0])
    return groups


def quantized_with(model) -> dict:
    """:func:`fold_groups` of a model (an activation folds in when tfmot's QAT knows its function)."""
    inbound = inbound_names(model)
    return fold_groups([(layer.name, type(layer).__name__, inbound.get(layer.name, []), known_activation(layer))
                        for layer in model.layers])


def known_activation(layer) -> bool:
    """False for an Activation layer whose function tfmot's 8-bit QAT does not know (it passes through float)."""
    return type(layer).__name__ != "Activation" or getattr(layer.activation, "__name__", None) in QAT_ACTIVATIONS


def zero_inputs(model):
    """One sample of zeros per input of ``model``, in its dtype (1 for unknown sizes): an array, or a list."""
    zeros = [np.zeros([1, *[d or 1 for d in tensor.shape[1:]]], tensor.dtype.as_numpy_dtype)
             for tensor in model.inputs]
    return zeros[0] if len(zeros) == 1 else zeros


def kernels(model, origins) -> dict:
    """{user layer name (``origins``: the model's layer names to them): main kernel as the model computes with it
    (float32)} for the layers that have one.

    For a QAT layer that is the fake-quantized kernel (CQAT/PCQAT: centroids gathered and masked), which is what
    the int8 file will hold; its ``kernel`` variable alone is stale until a forward pass sets it.
    """
    wrapper = tfmot.quantization.keras.QuantizeWrapper
    if any(isinstance(layer, wrapper) for layer in model.layers):
        model(zero_inputs(model), training=False)
    result = {}
    for layer in model.layers:
        inner = layer.layer if isinstance(layer, wrapper) else layer
        for attribute in KERNEL_ATTRIBUTES:
            value = getattr(inner, attribute, None)
            if value is not None and hasattr(value, "numpy"):
                result[origins.get(layer.name, layer.name)] = np.asarray(value.numpy(), dtype="float32")
    return result


def layer_summary(model, names, origins) -> dict:
    """{layer: (kernel sparsity, unique kernel values)} for the layers ``names``, as the model computes with them."""
    return {name: (float(np.mean(kernel == 0)), int(np.unique(kernel).size))
            for name, kernel in kernels(model, origins).items() if name in names}


# -- fine-tuning -----------------------------------------------------------------------------------------------------
# Compile settings that may be keyed by output name, and what an output left out of such a dict gets.
PER_OUTPUT = (("loss", None), ("metrics", []), ("loss_weights", 0.0), ("weighted_metrics", []))


def by_output(setting, output_names, missing):
    """A compile setting keyed by output layer name, as a list in output order.

    tfmot's wrappers rename the output layers (``label`` -> ``quant_label``), so a dict keyed by the old names
    no longer matches any output ("Found unexpected losses"); a list matches by position.
    """
    if not isinstance(setting, dict) or not set(setting) <= set(output_names):
        return setting
    return [setting.get(name, missing) for name in output_names]


def compile_settings(model, loss=None, metrics=None, learning_rate=None) -> dict:
    """model.compile() arguments for fine-tuning a copy of ``model``, taken from its own compile settings.

    ``optimizer`` is a factory (every stage needs a fresh optimizer); ``loss`` is None for an uncompiled model.
    """
    compiled = {}
    if getattr(model, "optimizer", None) is not None and getattr(model, "compiled_loss", None) is not None:
        try:
            compiled = model._get_compile_args(user_metrics=True)
        except (AttributeError, TypeError):
            compiled = {}
    source = compiled.get("optimizer")
    config = source.get_config() if source is not None and hasattr(source, "get_config") else None
    optimizer_class = type(source) if config is not None else keras.optimizers.Adam

    def make_optimizer():
        settings = dict(config) if config is not None else {}
        if learning_rate is not None:
            settings["learning_rate"] = float(learning_rate)
        settings.pop("name", None)
        return optimizer_class.from_config(settings) if settings else optimizer_class()

    given = {"loss": loss if loss is not None else compiled.get("loss"),
             "metrics": metrics if metrics is not None else compiled.get("metrics"),
             "loss_weights": compiled.get("loss_weights"), "weighted_metrics": compiled.get("weighted_metrics")}
    outputs = list(model.output_names)
    return {"optimizer": make_optimizer, **{key: by_output(given[key], outputs, none) for key, none in PER_OUTPUT}}


def fine_tune(model, settings, dataset, epochs, callbacks=(), freeze=(), **fit) -> dict:
    """Compile ``model`` with :func:`compile_settings`' ``settings``, train it for ``epochs``, return the history.

    Layers named in ``freeze`` are held still (a pruned or clustered layer that this stage does not wrap would
    otherwise lose its zeros or shared values); ``fit``: more model.fit arguments.
    """
    frozen = [layer for layer in model.layers if layer.name in freeze and layer.trainable]
    for layer in frozen:
        layer.trainable = False
    try:
        model.compile(**{**settings, "optimizer": settings["optimizer"]()})
        return dict(model.fit(dataset, epochs=epochs, callbacks=list(callbacks), **fit).history)
    finally:
        for layer in frozen:
            layer.trainable = True


# -- the stages: annotate (this module) -> fine-tune -> strip ---------------------------------------------------------
def pruning_steps(spec, total_steps: int) -> tuple:
    """``(begin_step, end_step, frequency)`` of tfmot's schedule for a prune spec over ``total_steps``.

    tfmot prunes only on steps ``begin + k * frequency``; the end step is put on that grid so the last pruning
    step reaches the target sparsity exactly.
    """
    total_steps = max(int(total_steps), 1)
    begin = spec.begin_step if spec.begin_step is not None else int(spec.begin * total_steps)
    end = spec.end_step if spec.end_step is not None else max(begin + 1, int(np.ceil(spec.end * total_steps)) - 1)
    end = min(end, max(total_steps - 1, begin + 1))
    frequency = max(1, min(100, (end - begin) // 10 or 1))
    return begin, begin + frequency * max(1, (end - begin) // frequency), frequency


def prune_annotated(model, specs: dict, total_steps: int):
    """A clone of ``model`` with the layers of ``specs`` ({name: spec with sparsity, schedule, begin, end, begin_step,
    end_step, block_size}) wrapped for magnitude pruning over ``total_steps``."""
    sparsity = tfmot.sparsity.keras

    def annotate(layer):
        spec = specs.get(layer.name)
        if spec is None:
            return layer
        begin, end, frequency = pruning_steps(spec, total_steps)
        if spec.schedule == "constant":
            schedule = sparsity.ConstantSparsity(spec.sparsity, begin_step=begin, end_step=end, frequency=frequency)
        else:
            schedule = sparsity.PolynomialDecay(initial_sparsity=0.0, final_sparsity=spec.sparsity,
                                                begin_step=begin, end_step=end, frequency=frequency)
        return sparsity.prune_low_magnitude(layer, pruning_schedule=schedule, block_size=tuple(spec.block_size))

    return keras.models.clone_model(model, clone_function=annotate)


def cluster_annotated(model, settings: dict):
    """A clone of ``model`` with the layers of ``settings`` ({name: dict(number_of_clusters=, init= the name of a
    tfmot CentroidInitialization member, preserve_sparsity=)}) wrapped for weight clustering."""
    clustering = tfmot.clustering.keras

    def annotate(layer):
        setting = settings.get(layer.name)
        if setting is None:
            return layer
        return clustering.cluster_weights(
            layer, number_of_clusters=setting["number_of_clusters"], preserve_sparsity=setting["preserve_sparsity"],
            cluster_centroids_init=getattr(clustering.CentroidInitialization, setting["init"]))

    return keras.models.clone_model(model, clone_function=annotate)


# Layers quantized with a QuantizeConfig made here instead of tfmot's registry's (or in place of a missing one).
# Conv1D (TF issue #58783): tfmot's per-channel fake-quant handles only 2-D and 4-D kernels, so its kernel is
# quantized per tensor, as Dense's is. AveragePooling: TFLite's int8 AVERAGE_POOL_2D needs its output scale equal to
# its input's, but tfmot fake-quantizes the output on its own range and the converter then refuses the file (DenseNet121
# 'pool2_pool': scale 0.047019 vs 0.047001); without an output quantizer the pooled values keep the input's range.
QUANTIZE_CONFIGS = {"Conv1D": (["kernel"], ["activation"]), "AveragePooling1D": ([], []), "AveragePooling2D": ([], [])}


def quantize_config(class_name: str):
    """The QuantizeConfig of :data:`QUANTIZE_CONFIGS` for a layer class, or None (tfmot's registry decides)."""
    attributes = QUANTIZE_CONFIGS.get(class_name)
    return None if attributes is None else default_8bit_quantize_registry.Default8BitQuantizeConfig(*attributes, False)


def quantize_applied(model, names, scheme):
    """``model`` with the layers ``names`` (folded BatchNormalization/activations included) wrapped for QAT."""
    quantization = tfmot.quantization.keras

    def annotate(layer):
        if layer.name not in names:
            return layer
        return quantization.quantize_annotate_layer(layer, quantize_config=quantize_config(type(layer).__name__))

    annotated = keras.models.clone_model(model, clone_function=annotate)
    with quantization.quantize_scope(application_layers()), warnings.catch_warnings(), \
            root_log_without(NO_ZEROS_NOTE):
        # Expected under the cluster-preserving scheme for layers that were not clustered (FIELD-NOTES).
        warnings.filterwarnings("ignore", message="No clustering performed on layer")
        return quantization.quantize_apply(annotated, scheme=scheme)


# tfmot's cluster-preserving quantizer logs this on the root logger, once per build of each clustered layer that has
# no zero weights (three times per layer in quantize_apply), when the scheme preserves sparsity (PCQAT): that layer
# then keeps its shared values only, which is all a clustered layer that was not pruned has to keep. Each layer gets
# its own quantizer (quantize_scheme), so the others still keep their zeros.
NO_ZEROS_NOTE = "Input layer does not contain zero weights, so apply CQAT instead."


class _WithoutMessage(logging.Filter):
    def __init__(self, message):
        super().__init__()
        self.message = message

    def filter(self, record):
        return record.getMessage() != self.message


@contextlib.contextmanager
def root_log_without(message):
    """Leave records of exactly ``message`` logged on the root logger out, inside the block; every other record
    is handled as before (a filter on the root logger sees only what is logged on the root logger itself)."""
    root = logging.getLogger()
    drop = _WithoutMessage(message)
    # logging.warning() configures the root logger (basicConfig: "WARNING:root:..." on stderr from then on) when it
    # has no handler; Python's own last-resort handler, lent meanwhile, keeps the user's logging as it was.
    lent = logging.lastResort if not root.handlers and logging.lastResort is not None else None
    root.addFilter(drop)
    if lent is not None:
        root.addHandler(lent)
    try:
        yield
    finally:
        root.removeFilter(drop)
        if lent is not None:
            root.removeHandler(lent)


def quantize_scheme(path: str, kwargs: dict, clustered):
    """tfmot's QAT scheme at ``path`` (8-bit, PQAT, CQAT/PCQAT) with a registry that handles real models.

    ``clustered``: the layers whose shared values QAT must keep. tfmot 0.8.1's registries break on real models:
    - an Activation with a function outside :data:`QAT_ACTIVATIONS` (Keras 3 MobileNetV3's hard-swish) makes
      quantize_apply raise when it feeds a quantized layer: it passes through float;
    - the collaborative registries claim every layer without trainable weights, then ask the default registry,
      which refuses layers it does not know (a Rescaling before a quantized layer): those pass through float;
    - they refuse trainable layers outside their Conv2D / Dense map (Conv2DTranspose): those get plain 8-bit QAT,
      right when they are neither pruned nor clustered (tw.inspect refuses that combination up front);
    - they assume every config has a weight quantizer (an Activation's has none);
    - the cluster-preserving one treats every Conv2D / Dense kernel with at most 1,024 distinct values as
      clustered and traces a per-channel lookup for each (minutes on MobileNetV2): only ``clustered`` layers get
      it; other kernels with zeros get the pruning-preserving quantizer, the rest plain QAT;
    - they share one weight quantizer between all Dense (or Conv) layers, and a layer without zeros switches its
      preserve_sparsity off for all (a PCQAT layer's sparsity 0.75 -> 0.0 on the digits demo): each gets a copy.
    """
    scheme_class = tfmot
    for attribute in path.split("."):
        scheme_class = getattr(scheme_class, attribute)
    collaborative = path.startswith("experimental.combine.")
    keep_clusters = scheme_class(**kwargs).get_quantize_registry() if collaborative and clustered else None
    keep_zeros = (tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme().get_quantize_registry()
                  if collaborative else None)
    plain = default_8bit_quantize_registry.Default8BitQuantizeRegistry()

    def has_zeros(layer) -> bool:
        kernel = getattr(layer, "kernel", None)
        return kernel is not None and bool(np.any(kernel.numpy() == 0))

    class Registry:
        def supports(self, layer):
            return known_activation(layer) and plain.supports(layer)

        def get_quantize_config(self, layer):
            if not layer.trainable_weights:
                return plain.get_quantize_config(layer)
            if keep_clusters is not None and layer.name in clustered and keep_clusters.supports(layer):
                config = keep_clusters.get_quantize_config(layer)
            elif keep_zeros is not None and keep_zeros.supports(layer) and has_zeros(layer):
                config = keep_zeros.get_quantize_config(layer)
            else:
                return plain.get_quantize_config(layer)
            if getattr(config, "weight_quantizer", None) is not None:
                config.weight_quantizer = copy.copy(config.weight_quantizer)
            return config

    class Scheme(scheme_class):
        def get_quantize_registry(self):
            return Registry()

    return Scheme(**kwargs)


class KeepZeros(keras.callbacks.Callback):
    """Keeps the zeros of these layers' kernels at zero after every training step (a fixed pruning mask): the
    cluster-preserving scheme would let the zeros of a pruned-only layer grow back (0.75 -> 0.15 in one epoch)."""

    def __init__(self, model, names):
        super().__init__()
        self.masked = []
        for layer in model.layers:
            if getattr(layer, "layer", layer).name in names:
                for variable in layer.weights:
                    if variable.name.split("/")[-1].split(":")[0] in KERNEL_ATTRIBUTES:
                        self.masked.append((variable, tf.cast(tf.not_equal(variable, 0), variable.dtype)))

    def on_train_batch_end(self, batch, logs=None):
        for variable, mask in self.masked:
            variable.assign(variable * mask)


# -- the stack's internals, each in one place ------------------------------------------------------------------------
def application_layers() -> dict:
    """{class name: class} of the layers Keras applications define for themselves (ConvNeXt's LayerScale).

    Keras 3's applications define the same layers with the same settings and weights, so a ported model gets
    tf_keras's class. They are not registered with Keras: quantize_apply, which rebuilds the model from its
    config, needs them as custom objects ("'str' object is not callable" otherwise).
    """
    from tf_keras.src.applications import convnext

    return {"LayerScale": convnext.LayerScale}


def skips_first_node(layer) -> bool:
    """Whether a Functional config numbers ``layer``'s calls from 1: a nested model built on its own Input has a
    node 0 of its own construction, which the outer model's config leaves out (ConvNeXt's Sequential stem)."""
    from tf_keras.src.engine import functional

    return functional._should_skip_first_node(layer)


def is_keras3_functional(model) -> bool:
    """Whether a Keras 3 model is Functional (Keras 3 does not export the class)."""
    from keras.src.models.functional import Functional

    return isinstance(model, Functional)


def qat_registry():
    """tfmot's default 8-bit QAT registry: what quantize_apply wraps by itself."""
    return default_8bit_quantize_registry.Default8BitQuantizeRegistry()


def weights_in_registry(technique: str, layer):
    """tfmot's prune ("prune") or clustering ("cluster") registry: (whether it supports ``layer``, the weight
    attributes it names for the layer's class, None where it decides otherwise: RNN, MultiHeadAttention)."""
    if technique == "prune":
        from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import PruneRegistry as registry
    else:
        from tensorflow_model_optimization.python.core.clustering.keras.clustering_registry import (
            ClusteringRegistry as registry,
        )
    return registry.supports(layer), registry._LAYERS_WEIGHTS_MAP.get(layer.__class__)
