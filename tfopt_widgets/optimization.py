"""Apply a Plan with tfmot: prune, then cluster, then quantization-aware training, fine-tuning after each.

The order follows tfmot's collaborative-optimization guides: pruning first (its zeros are preserved by the later
stages), clustering next (sparsity-preserving on pruned layers), and QAT last with the scheme that preserves what
came before (PQAT, CQAT or PCQAT). The user's model is copied first and never touched.

>>> opt = tw.optimize(model, plan, (x_train, y_train), epochs=2)
>>> opt.model            # ready for tw.convert
>>> opt.layer_stats()    # sparsity and unique values per planned layer
"""

from __future__ import annotations

import contextlib
import copy
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

from . import _keras
from ._data import TrainingData, training_data
from ._keras import keras, np, tf, tfmot
from .errors import Error, ModelError, PlanError
from .inspection import QAT_ACTIVATIONS, QUANTIZE_CONFIGS
from .plan import (
    CENTROID_INITS,
    Plan,
    PruneSpec,
    clustered_and_quantized,
    frozen_layers,
    masked_layers,
    preserves_sparsity,
    pruning_steps,
    quantize_scheme,
    stages,
)
from .porting import prepare

KERNEL_ATTRIBUTES = ("kernel", "depthwise_kernel", "pointwise_kernel", "embeddings")

Progress = Callable[[str, int, int], None]


@dataclass
class OptimizedModel:
    """The result of :func:`optimize`.

    ``model`` is stripped of pruning/clustering wrappers and ready for ``tw.convert`` (QAT wrappers stay: the
    converter needs them). ``layer_origins`` maps each of its layer names to the user's layer name (QAT renames
    ``dense`` to ``quant_dense`` and splits a SeparableConv2D in two). ``history`` holds each stage's Keras history.
    """

    model: object
    plan: Plan
    history: dict[str, dict] = field(default_factory=dict)
    layer_origins: dict[str, str] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)  # e.g. "a Keras 3 model was rebuilt with tf_keras"

    def weights(self) -> dict[str, np.ndarray]:
        """{user layer name: main kernel as a float32 array}, for layers that have one."""
        return kernels(self.model, self.layer_origins)

    def layer_stats(self):
        """A DataFrame per planned layer: techniques, kernel sparsity and number of unique values."""
        import pandas as pd

        weights = self.weights()
        rows = []
        for entry in self.plan:
            kernel = weights.get(entry.layer)
            rows.append({
                "layer": entry.layer,
                "scheme": entry.scheme,
                "sparsity": float(np.mean(kernel == 0)) if kernel is not None else None,
                "unique_values": int(np.unique(kernel).size) if kernel is not None else None,
            })
        return pd.DataFrame(rows).set_index("layer")

    def __repr__(self) -> str:
        stages = ", ".join(self.history) or "none"
        return f"<OptimizedModel {self.model.name!r}: {len(self.plan)} planned layers; stages: {stages}>"


def kernels(model, origins: dict[str, str] | None = None) -> dict[str, np.ndarray]:
    """{user layer name: the layer's main kernel as the model computes with it} for layers that have one.

    For a QAT layer that is the fake-quantized kernel (for CQAT/PCQAT: centroids gathered and masked), which is
    what the int8 file will hold; its ``kernel`` variable alone is stale there.
    """
    origins = origins or _keras.layer_origins(model)
    quantize_wrapper = tfmot.quantization.keras.QuantizeWrapper
    if any(isinstance(layer, quantize_wrapper) for layer in model.layers):
        # An eager forward pass makes each wrapper set its inner layer's kernel to the quantized tensor.
        model(zero_inputs(model), training=False)
    result = {}
    for layer in model.layers:
        inner = layer.layer if isinstance(layer, quantize_wrapper) else layer
        for attribute in KERNEL_ATTRIBUTES:
            value = getattr(inner, attribute, None)
            if value is not None and hasattr(value, "numpy"):
                # A SeparableConv2D has two kernels; the pointwise one, listed later, holds most weights.
                result[origins.get(layer.name, layer.name)] = np.asarray(value.numpy(), dtype="float32")
    return result


def zero_inputs(model):
    """One sample of zeros for each of ``model``'s inputs, in its dtype (1 for unknown sizes): one array for a
    single input, else a list in input order. Plan.to_python's script runs a copy of this function."""
    zeros = [np.zeros([1, *[d or 1 for d in tensor.shape[1:]]], tensor.dtype.as_numpy_dtype)
             for tensor in model.inputs]
    return zeros[0] if len(zeros) == 1 else zeros


def optimize(model, plan: Plan, train_data, epochs: int = 2, validation_data=None, callbacks=None,
             learning_rate: float | None = None, progress: Progress | None = None, batch_size: int = 32,
             loss=None, metrics=None, steps_per_epoch: int | None = None, strategy=None) -> OptimizedModel:
    """Apply ``plan`` to a copy of ``model`` with tfmot, fine-tune, strip, and return the result.

    ``train_data`` is ``(x, y)`` numpy arrays or a batched ``tf.data.Dataset`` of ``(x, y)`` (several inputs: x as
    a list of arrays in the model's input order or a dict keyed by input name; several outputs: y likewise); each
    stage (prune, cluster, quantize: those the plan uses) fine-tunes for ``epochs``. The model's compiled loss, metrics
    and optimizer are reused (``loss=``/``metrics=``/``learning_rate=`` override them). ``progress(stage, step,
    total)`` is called after every training step; raising ``tw.Cancelled`` from it stops cleanly.
    ``strategy``: a ``tf.distribute.Strategy`` (e.g. ``MirroredStrategy``) to fine-tune with; the copy of the
    model, tfmot's wrappers, the optimizer and training are all created under its scope.
    """
    if strategy is not None:
        # Every variable must be made under the scope: the copy, the wrapped clones and the optimizers' slots.
        with strategy.scope():
            return optimize(model, plan, train_data, epochs, validation_data, callbacks, learning_rate, progress,
                            batch_size, loss, metrics, steps_per_epoch)
    prepared, notices = prepare(model, purpose="optimize")
    if not isinstance(plan, Plan):
        raise PlanError(f"Expected a tw.Plan, got {type(plan).__name__}.", field="plan")
    if len(plan) == 0:
        raise PlanError("The plan is empty: nothing to optimize. Add layers with plan.quantize(...), "
                        "plan.prune(...) or plan.cluster(...); for a baseline, call tw.convert(model) directly.",
                        field="plan")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise Error(f"epochs must be a positive integer (fine-tuning is what makes the plan work: quantization "
                    f"ranges and pruning masks are learned); got {epochs!r}.", field="epochs")
    plan.validate(prepared)
    plan = plan.copy()
    train = training_data(train_data, prepared, "train_data", batch_size, steps_per_epoch)
    validation = training_data(validation_data, prepared, "validation_data", batch_size) \
        if validation_data is not None else None
    compile_args = _compile_args(prepared, loss, metrics, learning_rate)

    runner = _Stages(train, validation, epochs, callbacks or [], progress, compile_args)
    # prepare() already built new layers for a Keras 3 or nested model; otherwise copy the user's model.
    work = prepared if prepared is not model else _keras.copy_model(model)
    user_names = [layer.name for layer in prepared.layers]
    # The stage decisions (order, schemes, frozen layers) are plan.py's, shared with Plan.to_python's script.
    for stage in stages(plan):
        with _tfmot_errors(stage, prepared.name, plan):
            work = getattr(runner, stage)(work, plan)
    origins = _origins(work, user_names)
    _keras.record_origins(work, origins)
    return OptimizedModel(work, plan, runner.history, origins, notices)


@contextlib.contextmanager
def _tfmot_errors(stage: str, model_name: str, plan: Plan):
    """tfmot's and TensorFlow's own exceptions from one stage, as a ModelError naming the layer where they do.

    tw.inspect and plan.validate refuse what is known not to work; this is for what they could not foresee, so
    the user still gets our error type, the layer and what to try, with tfmot's exception chained.
    """
    try:
        yield
    except (Error, KeyboardInterrupt):
        raise
    except Exception as exc:  # tfmot raises ValueError, RuntimeError, AttributeError, TypeError...
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        layer = next((name for name in sorted(plan.layers(stage) or [e.layer for e in plan], key=len, reverse=True)
                      if re.search(rf"(?<![\w/]){re.escape(name)}(?![\w/])", str(exc))), None)
        where = f" at layer {layer!r}" if layer else ""
        raise ModelError(f"tfmot could not {stage} model {model_name!r}{where}: {type(exc).__name__}: {text[:400]}. "
                         f"Leave {'that layer' if layer else 'the layers named above'} out of the {stage} step of "
                         "the plan (tw.inspect(model) lists what each layer supports).",
                         layer=layer, field=stage) from exc


class _Stages:
    """Runs the annotate -> fine-tune -> strip stages on our own copy of the model."""

    def __init__(self, train: TrainingData, validation: TrainingData | None, epochs: int, callbacks: list,
                 progress: Progress | None, compile_args: dict):
        self.train = train
        self.validation = validation
        self.epochs = epochs
        self.callbacks = callbacks
        self.progress = progress
        self.compile_args = compile_args
        self.history: dict[str, dict] = {}

    @property
    def total_steps(self) -> int:
        return self.train.steps_per_epoch * self.epochs

    def prune(self, model, plan: Plan):
        sparsity = tfmot.sparsity.keras
        specs = {e.layer: e.prune for e in plan if e.prune}

        def annotate(layer):
            spec = specs.get(layer.name)
            if spec is None:
                return layer
            return sparsity.prune_low_magnitude(layer, pruning_schedule=self._schedule(spec),
                                                block_size=spec.block_size)

        annotated = keras.models.clone_model(model, clone_function=annotate)
        self._fit("prune", annotated, [sparsity.UpdatePruningStep()])
        return sparsity.strip_pruning(annotated)

    def _schedule(self, spec: PruneSpec):
        begin, end, frequency = pruning_steps(spec, self.total_steps)
        schedules = tfmot.sparsity.keras
        if spec.schedule == "constant":
            return schedules.ConstantSparsity(spec.sparsity, begin_step=begin, end_step=end, frequency=frequency)
        return schedules.PolynomialDecay(initial_sparsity=0.0, final_sparsity=spec.sparsity, begin_step=begin,
                                         end_step=end, frequency=frequency)

    def cluster(self, model, plan: Plan):
        clustering = tfmot.clustering.keras
        specs = {e.layer: e.cluster for e in plan if e.cluster}

        def annotate(layer):
            spec = specs.get(layer.name)
            if spec is None:
                return layer
            init = getattr(clustering.CentroidInitialization, CENTROID_INITS[spec.init])
            return clustering.cluster_weights(layer, number_of_clusters=spec.clusters,
                                              cluster_centroids_init=init,
                                              preserve_sparsity=preserves_sparsity(plan, layer.name))

        annotated = keras.models.clone_model(model, clone_function=annotate)
        self._fit("cluster", annotated, [], freeze=frozen_layers(plan, "cluster"))
        return clustering.strip_clustering(annotated)

    def quantize(self, model, plan: Plan):
        from .inspection import inspect

        quantization = tfmot.quantization.keras
        info = inspect(model)
        names = set()
        for layer in plan.layers("quantize"):
            names.add(layer)
            names.update(info.group_members(layer))
        annotated = keras.models.clone_model(model, clone_function=lambda layer: _annotate_for_qat(layer, names))
        with quantization.quantize_scope(_keras.application_layers()), warnings.catch_warnings():
            # Expected under the cluster-preserving scheme for layers that were not clustered (FIELD-NOTES).
            warnings.filterwarnings("ignore", message="No clustering performed on layer")
            quantized = quantization.quantize_apply(annotated, scheme=_quantize_scheme(plan))
        extra = []
        masked = masked_layers(plan)  # pruned-only layers whose zeros the cluster-preserving scheme lets grow back
        if masked:
            origins = _keras.layer_origins(quantized)
            extra.append(_KeepZeros([layer for layer in quantized.layers if origins[layer.name] in masked]))
        self._fit("quantize", quantized, extra, freeze=frozen_layers(plan, "quantize"))
        return quantized

    def _fit(self, stage: str, model, extra_callbacks: list, freeze: set[str] = frozenset()):
        """Compile and fine-tune ``model``; layers in ``freeze`` are held still.

        A pruned or clustered layer that a later stage does not wrap would otherwise train freely there and lose
        its zeros or shared values; freezing it keeps what the plan promised.
        """
        frozen = [layer for layer in model.layers if layer.name in freeze and layer.trainable]
        for layer in frozen:
            layer.trainable = False
        try:
            self._compile_and_fit(stage, model, extra_callbacks)
        except (Error, KeyboardInterrupt):
            raise
        except Exception as exc:  # Keras raises ValueError, InvalidArgumentError, ...
            text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"Fine-tuning ({stage} stage) failed: {type(exc).__name__}: {text[:400]}. Check that "
                             "train_data and validation_data fit the model's inputs, outputs and loss (labels as "
                             "the loss expects them), or pass loss= to tw.optimize.", field="train_data") from exc
        finally:
            for layer in frozen:
                layer.trainable = True

    def _compile_and_fit(self, stage: str, model, extra_callbacks: list):
        args = dict(self.compile_args)
        args["optimizer"] = args["optimizer"]()
        model.compile(**args)
        callbacks = [*extra_callbacks, *self.callbacks]
        if self.progress is not None:
            callbacks.append(_ProgressCallback(stage, self.train.steps_per_epoch, self.total_steps, self.progress))
        logger = tf.get_logger()
        level = logger.level
        if stage == "quantize":
            # CQAT trains centroids, not kernels, so TF warns "Gradients do not exist for variables [...kernel...]"
            # on every run: expected (FIELD-NOTES), and noise to a user.
            logger.setLevel("ERROR")
        try:
            history = model.fit(self.train.dataset, epochs=self.epochs, steps_per_epoch=self.train.fit_steps,
                                validation_data=self.validation.dataset if self.validation else None,
                                callbacks=callbacks, verbose=0)
        finally:
            logger.setLevel(level)
        self.history[stage] = dict(history.history)


def _annotate_for_qat(layer, names):
    """``layer`` marked for quantization-aware training if it is one of ``names``, else ``layer`` itself.

    Layers outside tfmot's QAT registry get the QuantizeConfig made here (``inspection.QUANTIZE_CONFIGS``).
    Plan.to_python's script runs a copy of this function.
    """
    if layer.name not in names:
        return layer
    config = QUANTIZE_CONFIGS.get(type(layer).__name__)
    return tfmot.quantization.keras.quantize_annotate_layer(layer, quantize_config=config() if config else None)


def _quantize_scheme(plan: Plan):
    """tfmot's QAT scheme for what the quantized layers went through before (see plan.py)."""
    path, kwargs = quantize_scheme(plan)
    return _scheme(path, kwargs, sorted(clustered_and_quantized(plan)))


def _scheme(path: str, kwargs: dict, clustered: list[str]):
    """tfmot's QAT scheme at ``path`` (8-bit, PQAT, CQAT/PCQAT) with a registry that handles real models.

    ``clustered``: the layers whose shared values QAT must keep. tfmot 0.8.1's registries break on real models:
    - an Activation layer with a function outside :data:`inspection.QAT_ACTIVATIONS` (MobileNetV3's hard-swish
      from Keras 3) makes quantize_apply raise whenever it feeds a quantized layer: it now passes through float;
    - the collaborative registries claim every layer without trainable weights and then ask the default registry
      for its config, which refuses layers it does not know (a Rescaling right before a quantized layer): those
      now pass through float;
    - they refuse trainable layers outside their Conv2D / Dense map (Conv2DTranspose): those get plain 8-bit QAT,
      which is right when they are not pruned or clustered (tw.inspect refuses that combination up front);
    - they assume every config has a weight quantizer (an Activation's has none);
    - the cluster-preserving one treats every Conv2D / Dense kernel with at most 1,024 distinct values as
      clustered, one centroid per value, and builds a per-channel lookup into the training graph for each: on
      MobileNetV2 that graph took minutes to trace. Only ``clustered`` layers get it; other kernels with zeros
      (pruned layers, the split halves of a SeparableConv2D) get the pruning-preserving quantizer, the rest plain QAT;
    - they share one weight quantizer between all Dense (or all Conv) layers, and building one layer that has no
      zeros switches the shared quantizer's preserve_sparsity off for all of them (measured on the digits demo:
      a PCQAT layer's sparsity 0.75 -> 0.0): each layer gets its own copy.
    Plan.to_python's script runs a copy of this function.
    """
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry,
    )

    scheme_class = tfmot
    for attribute in path.split("."):
        scheme_class = getattr(scheme_class, attribute)
    collaborative = path.startswith("experimental.combine.")
    keep_clusters = scheme_class(**kwargs).get_quantize_registry() if collaborative and clustered else None
    keep_zeros = (tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme().get_quantize_registry()
                  if collaborative else None)
    plain = default_8bit_quantize_registry.Default8BitQuantizeRegistry()

    def known_activation(layer) -> bool:
        return type(layer).__name__ != "Activation" or getattr(layer.activation, "__name__", None) in QAT_ACTIVATIONS

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


class _KeepZeros(keras.callbacks.Callback):
    """Keeps the zeros of these layers' kernels at zero after every training step (a fixed pruning mask)."""

    def __init__(self, layers):
        super().__init__()
        self.masked = []
        for layer in layers:
            for variable in layer.weights:
                if variable.name.split("/")[-1].split(":")[0] in KERNEL_ATTRIBUTES:
                    self.masked.append((variable, tf.cast(tf.not_equal(variable, 0), variable.dtype)))

    def on_train_batch_end(self, batch, logs=None):
        for variable, mask in self.masked:
            variable.assign(variable * mask)


class _ProgressCallback(keras.callbacks.Callback):
    def __init__(self, stage: str, steps_per_epoch: int, total: int, progress: Progress):
        super().__init__()
        self.stage, self.steps_per_epoch, self.total, self.progress = stage, steps_per_epoch, total, progress
        self.epoch = 0

    def on_train_begin(self, logs=None):
        self.progress(self.stage, 0, self.total)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self.progress(self.stage, min(self.epoch * self.steps_per_epoch + batch + 1, self.total), self.total)


def _compile_args(model, loss, metrics, learning_rate) -> dict:
    """Loss, metrics and an optimizer factory for fine-tuning, taken from the user's compiled model."""
    compiled = {}
    if getattr(model, "optimizer", None) is not None and getattr(model, "compiled_loss", None) is not None:
        try:
            compiled = model._get_compile_args(user_metrics=True)
        except (AttributeError, TypeError):
            compiled = {}
    loss = loss if loss is not None else compiled.get("loss")
    if loss is None:
        raise ModelError(f"Model {model.name!r} is not compiled, so the loss for fine-tuning is unknown. Compile it "
                         "first (model.compile(loss=...)) or pass loss= to tw.optimize.", field="loss")
    metrics = metrics if metrics is not None else compiled.get("metrics")
    source = compiled.get("optimizer")
    config = source.get_config() if source is not None and hasattr(source, "get_config") else None
    optimizer_class = type(source) if config is not None else keras.optimizers.Adam

    def make_optimizer():
        settings = dict(config) if config is not None else {}
        if learning_rate is not None:
            settings["learning_rate"] = float(learning_rate)
        settings.pop("name", None)
        return optimizer_class.from_config(settings) if settings else optimizer_class()

    outputs = list(model.output_names)
    settings = {"loss": loss, "metrics": metrics, "loss_weights": compiled.get("loss_weights"),
                "weighted_metrics": compiled.get("weighted_metrics")}
    return {"optimizer": make_optimizer,
            **{key: _by_output(settings[key], outputs, missing) for key, missing in _PER_OUTPUT}}


# Compile settings that may be keyed by output name, and what an output left out of such a dict gets.
# Plan.to_python's script runs a copy of this and of _by_output.
_PER_OUTPUT = (("loss", None), ("metrics", []), ("loss_weights", 0.0), ("weighted_metrics", []))


def _by_output(setting, output_names: list[str], missing):
    """A compile setting keyed by output layer name, as a list in output order.

    tfmot's wrappers rename the output layers (``label`` -> ``prune_low_magnitude_label``, ``quant_label``), so a
    dict keyed by the old names no longer matches any output ("Found unexpected losses"); a list matches by position.
    """
    if not isinstance(setting, dict) or not set(setting) <= set(output_names):
        return setting
    return [setting.get(name, missing) for name in output_names]


def _origins(model, user_names: list[str]) -> dict[str, str]:
    """Map each layer of the optimized model back to the user's layer name.

    Wrappers name their inner layer; layers tfmot created by splitting one (SeparableConv2D becomes a
    DepthwiseConv2D + Conv2D pair with new names) sit where the user's layer that disappeared used to be.
    """
    known = set(user_names)
    order = {name: i for i, name in enumerate(user_names)}
    present = set()
    origins = {}
    for layer in model.layers:
        inner = getattr(layer, "layer", None)
        for candidate in (layer.name, getattr(inner, "name", None)):
            if candidate in known:
                origins[layer.name] = candidate
                present.add(candidate)
                break
    missing = [name for name in user_names if name not in present]
    last_position = -1
    for layer in model.layers:
        if layer.name in origins:
            last_position = order[origins[layer.name]]
            continue
        after = [name for name in missing if order[name] > last_position]
        if after and isinstance(layer, tfmot.quantization.keras.QuantizeWrapper):
            origins[layer.name] = after[0]
    return origins
