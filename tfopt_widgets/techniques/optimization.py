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
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from ..data.checks import TrainingData, training_data
from ..errors import Error, ModelError, PlanError
from ..model import stack
from ..model.porting import prepare
from ..model.stack import keras, np, tf, tfmot
from ..plan import Plan
from ..plan.stages import (
    cluster_settings,
    clustered_and_quantized,
    frozen_layers,
    masked_layers,
    quantize_scheme,
    stages,
)
from ..quiet import stderr_without
from ..runtime import training as runtime

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
        return runtime.kernels(self.model, self.layer_origins)

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


def kernels(model) -> dict[str, np.ndarray]:
    """{user layer name: main kernel as the model computes with it} of any tf_keras model (see runtime.training)."""
    return runtime.kernels(model, stack.layer_origins(model))


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
    work = prepared if prepared is not model else stack.copy_model(model)
    user_names = [layer.name for layer in prepared.layers]
    # The stage decisions (order, schemes, frozen layers) are plan/stages.py's, shared with Plan.to_python's script.
    for stage in stages(plan):
        # TensorFlow's C++ kernels log past TF_CPP_MIN_LOG_LEVEL on the way (quiet.HARMLESS_LINES: clustering's
        # int32 ops): those lines are left out, any other is written after the stage.
        with _tfmot_errors(stage, prepared.name, plan), stderr_without():
            work = getattr(runner, stage)(work, plan)
    origins = _origins(work, user_names)
    stack.record_origins(work, origins)
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
        annotated = runtime.prune_annotated(model, {e.layer: e.prune for e in plan if e.prune}, self.total_steps)
        self._fit("prune", annotated, [tfmot.sparsity.keras.UpdatePruningStep()])
        return tfmot.sparsity.keras.strip_pruning(annotated)

    def cluster(self, model, plan: Plan):
        annotated = runtime.cluster_annotated(model, cluster_settings(plan))
        self._fit("cluster", annotated, [], freeze=frozen_layers(plan, "cluster"))
        return tfmot.clustering.keras.strip_clustering(annotated)

    def quantize(self, model, plan: Plan):
        from ..model.inspection import inspect

        info = inspect(model)
        names = {name for layer in plan.layers("quantize") for name in (layer, *info.group_members(layer))}
        path, kwargs = quantize_scheme(plan)
        quantized = runtime.quantize_applied(
            model, names, runtime.quantize_scheme(path, kwargs, sorted(clustered_and_quantized(plan))))
        masked = masked_layers(plan)  # pruned-only layers whose zeros the cluster-preserving scheme lets grow back
        self._fit("quantize", quantized, [runtime.KeepZeros(quantized, masked)] if masked else [],
                  freeze=frozen_layers(plan, "quantize"))
        return quantized

    def _fit(self, stage: str, model, extra_callbacks: list, freeze: set[str] = frozenset()):
        """Compile and fine-tune ``model``; layers in ``freeze`` are held still (see runtime.training.fine_tune)."""
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
            self.history[stage] = runtime.fine_tune(
                model, self.compile_args, self.train.dataset, self.epochs, callbacks, freeze,
                steps_per_epoch=self.train.fit_steps, verbose=0,
                validation_data=self.validation.dataset if self.validation else None)
        except (Error, KeyboardInterrupt):
            raise
        except Exception as exc:  # Keras raises ValueError, InvalidArgumentError, ...
            text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"Fine-tuning ({stage} stage) failed: {type(exc).__name__}: {text[:400]}. Check that "
                             "train_data and validation_data fit the model's inputs, outputs and loss (labels as "
                             "the loss expects them), or pass loss= to tw.optimize.", field="train_data") from exc
        finally:
            logger.setLevel(level)


class _ProgressCallback(keras.callbacks.Callback):
    def __init__(self, stage: str, steps_per_epoch: int, total: int, progress: Progress):
        super().__init__()
        self.stage, self.steps_per_epoch, self.total, self.progress = stage, steps_per_epoch, total, progress
        self.epoch = self.step = 0

    def on_train_begin(self, logs=None):
        self.progress(self.stage, 0, self.total)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self.step = min(self.epoch * self.steps_per_epoch + batch + 1, self.total)
        self.progress(self.stage, self.step, self.total)

    def on_test_batch_end(self, batch, logs=None):
        # Validation at an epoch's end: the same step again, so that a cancel is seen there too.
        self.progress(self.stage, self.step, self.total)


def optimizer_setting(model) -> str | None:
    """What fine-tuning uses when no learning rate is given, in words: "Adam at learning rate 0.001" (the model's
    own optimizer, as it was compiled); None for a model that is not compiled."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return None
    rate = getattr(optimizer, "learning_rate", None)
    try:
        rate = f"learning rate {float(np.asarray(rate)):g}"
    except (TypeError, ValueError):  # a schedule: its class says what it does
        rate = f"a {type(rate).__name__} learning rate" if rate is not None else "its learning rate"
    return f"{type(optimizer).__name__} at {rate}"


def _compile_args(model, loss, metrics, learning_rate) -> dict:
    """model.compile() arguments for fine-tuning, taken from the user's compiled model (loss, metrics, optimizer)."""
    settings = runtime.compile_settings(model, loss, metrics, learning_rate)
    if settings["loss"] is None:
        raise ModelError(f"Model {model.name!r} is not compiled, so the loss for fine-tuning is unknown. Compile it "
                         "first (model.compile(loss=...)) or pass loss= to tw.optimize.", field="loss")
    return settings


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
