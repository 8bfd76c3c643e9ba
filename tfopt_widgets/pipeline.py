"""tw.run: the whole pipeline in one call: optimize with a plan, convert for a target, evaluate, beside a baseline.

>>> result = tw.run(model, plan, "edgetpu", (x_train, y_train), (x_test, y_test), baseline=True)
>>> result.metrics.accuracy, result.baseline.metrics.accuracy, result.drop
>>> result.tflite.save("model_edgetpu.tflite")
>>> result.notices                    # what was done to the model on the way (tw.ModelNotice warnings)

The Studio's "Optimize and convert", the ``tfopt-widgets`` command and ``SensitivityReport.verify`` all call
:func:`run`, so a rule fixed here (which data calibrates, how the baseline is made, what data is measured) holds
for all of them. Importing this module does not import TensorFlow; :func:`run` loads the engine.

Progress: :class:`Progress` follows a run for any view (the Studio's run panel, a text bar in scripts and the CLI)
and cancels it:

>>> progress = tw.Progress(text=True)    # a bar per stage on stderr
>>> result = tw.run(model, plan, "cpu", (x_train, y_train), progress=progress)
>>> progress.cancel()                    # from another thread: tw.run raises tw.Cancelled
"""

from __future__ import annotations

import inspect
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DataError, PlanError
from .plan import Plan, stages
from .progress import Progress, interruptible
from .targets import get_target

__all__ = ["RunResult", "plan_summary", "precision_mix", "run", "start_engine", "training_inputs", "write_atomically"]

BASELINE_LABEL = "float32 baseline"
# tw.run's own settings that tw.optimize takes too; the other tw.optimize keywords pass through **optimize_args.
_OWN_OPTIMIZE_ARGS = ("model", "plan", "train_data", "epochs", "validation_data", "learning_rate", "progress")


@dataclass
class RunResult:
    """What :func:`run` made and measured: one converted file for one target, and the float baseline if asked.

    ``optimized`` is ``tw.optimize``'s OptimizedModel (None when the plan needs no fine-tuning: empty, or only
    ``keep_float`` layers); ``tflite`` the TFLiteModel; ``metrics`` ``tw.evaluate``'s Metrics on the evaluation
    data; ``baseline`` the RunResult of the float32 file on the same data (None unless asked for); ``notices`` the
    ``tw.ModelNotice`` messages of the run (Keras 3 rebuilt, layers kept float, batch fixed to 1, ...).
    ``epochs`` is the fine-tuning epochs per stage (None when this run fine-tuned nothing); ``wall_s`` the seconds
    it took. :meth:`layer_errors` measures each layer's quantization error on the same data.
    """

    label: str
    plan: Plan
    target: str
    optimized: object | None
    tflite: object
    metrics: object
    notices: list[str] = field(default_factory=list)
    baseline: RunResult | None = None
    epochs: int | None = None
    wall_s: float = 0.0
    data: object = field(default=None, repr=False, compare=False)  # what metrics were measured on
    _errors: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def layer_errors(self, samples: int = 32):
        """Each layer's error in this file against the float model, on the first ``samples`` samples of the data
        the run was measured on: :meth:`TFLiteModel.layer_errors`'s DataFrame (``rms_error``, ``error_over_scale``
        against the 0.29 / 0.7 thresholds, ``flagged``, ...). None for the float32 baseline, which is the
        reference. Measured when first asked for, then kept."""
        if self.target == "float32":
            return None
        if samples not in self._errors:
            self._errors[samples] = self.tflite.layer_errors(self.data, samples=samples)
        return self._errors[samples]

    @property
    def drop(self) -> float | None:
        """The baseline's metric minus this file's (positive: worse); None without a baseline."""
        return None if self.baseline is None else self.baseline.metrics.value - self.metrics.value

    @property
    def accelerated_share(self) -> float | None:
        """The share of the file's ops on the target's accelerator (None for the float32 baseline)."""
        if self.target == "float32":
            return None
        return self.tflite.compatibility.summary.get("op_share")

    def to_row(self, label: str | None = None) -> dict:
        """One results-table row (the Studio's results, ``tw.report``'s runs): run, target, mode, size, gzip_size,
        metric, value, accuracy, latency_ms, accelerated_share, epochs and the plan's layers."""
        metrics = self.metrics
        return {"run": self.label if label is None else label, "target": self.tflite.target,
                "mode": self.tflite.quantization, "size": self.tflite.size, "gzip_size": self.tflite.gzip_size,
                "metric": metrics.metric, "value": metrics.value, "accuracy": metrics.accuracy,
                "latency_ms": metrics.latency_ms, "accelerated_share": self.accelerated_share,
                "epochs": self.epochs, "plan": self.plan.to_dict()["layers"]}

    def __repr__(self) -> str:
        drop = "" if self.drop is None else f" (drop {self.drop:+.4f} against float32)"
        return (f"<RunResult {self.label!r}: {self.tflite.size:,} B, {self.tflite.gzip_size:,} B gzipped, "
                f"{self.metrics.metric} {self.metrics.value:.4f}{drop}; {len(self.notices)} notices>")


def run(model, plan: Plan | None = None, target: str = "cpu", train_data=None, data=None, *,
        validation_data=None, quantization: str | None = None, epochs: int = 2, learning_rate: float | None = None,
        representative_data=None, keep_float=(), metric=None, runs: int = 50, warmup: int = 5,
        baseline: bool | RunResult = False, on_baseline: Callable[[RunResult], None] | None = None,
        optimized=None, progress: Callable[[str, int, int], None] | None = None, worker: bool = False,
        **optimize_args) -> RunResult:
    """Optimize ``model`` with ``plan`` (tw.optimize), convert it for ``target`` (tw.convert), measure it (tw.evaluate).

    ``train_data`` ``(x, y)`` fine-tunes (needed when the plan prunes, clusters or quantizes) and its inputs
    calibrate int8/int16x8 (``representative_data`` replaces them; tw.convert takes its usual number of samples,
    spread over them). ``data`` is what the file is measured on; by default ``validation_data``, else
    ``train_data``. ``validation_data`` is also what fine-tuning validates on. ``quantization`` overrides the
    target's mode; ``keep_float`` adds layers to the plan's kept-float ones. ``metric``, ``runs`` and ``warmup`` go
    to tw.evaluate; ``epochs``, ``learning_rate`` and ``**optimize_args`` (``batch_size``, ``loss``,
    ``callbacks``, ``strategy``, ...) to tw.optimize. ``optimized``: the OptimizedModel of this model and plan from
    an earlier run, converted again instead of fine-tuning again (another target, say).

    ``baseline=True`` also converts the user's model unoptimized (target "float32") and measures it on the same data
    first (``result.baseline``, ``result.drop``); ``on_baseline(baseline)`` gets it as soon as it is measured, so a
    view can show it while fine-tuning runs. Pass an earlier ``result.baseline`` to reuse it.

    ``progress``: a :class:`Progress` (``tw.Progress(text=True)`` for a text bar) or any ``progress(stage, step,
    total)`` callable. It is called at each stage ("baseline", tw.optimize's "prune", "cluster" and "quantize" after
    every training step, "convert", "evaluate"), and about every 0.2 s while a stage of unknown length (total 0)
    runs; raising ``tw.Cancelled`` from it stops the run. ``worker=True`` converts (and calibrates) in a worker
    process that a cancel kills at once (tflite/worker.py: the same file, byte for byte; about 5-7 s to start the
    process once, then a few tenths of a second per conversion on the digits demo); without it a conversion runs in
    this process and a cancel waits for it to end. The Studio uses the worker.
    The user's model is never changed. ``tw.ModelNotice`` warnings are collected into ``result.notices`` (and still
    shown once each).

    >>> result = tw.run(model, tw.Plan().prune("dense", sparsity=0.75), "cpu", (x_train, y_train),
    ...                 (x_test, y_test), baseline=True, epochs=1)
    >>> result.to_row()["gzip_size"], result.drop
    """
    try:
        return _run(model, plan, target, train_data, data, validation_data=validation_data,
                    quantization=quantization, epochs=epochs, learning_rate=learning_rate,
                    representative_data=representative_data, keep_float=keep_float, metric=metric, runs=runs,
                    warmup=warmup, baseline=baseline, on_baseline=on_baseline, optimized=optimized,
                    progress=progress, worker=worker, **optimize_args)
    finally:
        if isinstance(progress, Progress):
            progress.end()


def _run(model, plan, target, train_data, data, *, validation_data, quantization, epochs, learning_rate,
         representative_data, keep_float, metric, runs, warmup, baseline, on_baseline, optimized, progress, worker,
         **optimize_args) -> RunResult:
    start_engine()
    from .model.inspection import inspect as inspect_model
    from .techniques.optimization import optimize
    from .tflite.conversion import convert
    from .tflite.evaluation import evaluate
    from .tflite.worker import shared_worker

    started = time.perf_counter()
    plan = Plan() if plan is None else plan
    if not isinstance(plan, Plan):
        raise PlanError(f"Expected a tw.Plan, got {type(plan).__name__}.", field="plan")
    plan = plan.copy()
    target = get_target(target).name
    unknown = sorted(set(optimize_args) - (set(inspect.signature(optimize).parameters) - set(_OWN_OPTIMIZE_ARGS)))
    if unknown:
        raise TypeError(f"tw.run() got unexpected keyword argument {unknown[0]!r}; besides its own it takes "
                        "tw.optimize's (batch_size, loss, metrics, callbacks, steps_per_epoch, strategy).")
    evaluation = next((d for d in (data, validation_data, train_data) if d is not None), None)
    if evaluation is None:
        raise DataError("tw.run measures the converted file on labelled data: pass data=(x, y), "
                        "validation_data=(x, y) or train_data=(x, y).", field="data")
    trained = bool(stages(plan))  # keep-float marks alone need no fine-tuning
    if trained and optimized is None and train_data is None:
        raise DataError("Fine-tuning needs train_data: pass train_data=(x, y), or use an empty plan to convert the "
                        "model as it is.", field="train_data")
    if optimized is not None and optimized.plan != plan:
        raise PlanError("optimized= was made with another plan than this run's; pass the plan it was made with "
                        "(optimized.plan), or leave optimized out to fine-tune with this one.", field="optimized")
    step = progress or (lambda stage, done, total: None)
    if isinstance(progress, Progress):
        progress.epochs = epochs
    measure = {"metric": metric, "runs": runs, "warmup": warmup}
    conversions = shared_worker() if worker else None

    def converted(stage: str, source, target_name: str, **settings):
        if conversions is None:
            return convert(source, target_name, **settings)
        return conversions.convert(source, target_name, heartbeat=lambda: step(stage, 0, 0), **settings)

    def measured(stage: str, tflite):
        if progress is None:
            return evaluate(tflite, evaluation, **measure)
        return interruptible(lambda: evaluate(tflite, evaluation, **measure), lambda: step(stage, 0, 0))

    warned = []  # the notices of this call, warned once each at its end
    if baseline is True:
        step("baseline", 0, 0)
        with _collected_notices() as warned:
            float_file = converted("baseline", model, "float32")
            baseline = RunResult(BASELINE_LABEL, Plan(), "float32", None, float_file,
                                 measured("baseline", float_file), warned, data=evaluation)
        baseline.wall_s = time.perf_counter() - started
        if on_baseline is not None:
            on_baseline(baseline)
    baseline = baseline or None

    fine_tuned = trained and optimized is None
    with _collected_notices() as caught:
        if fine_tuned:
            optimized = optimize(model, plan, train_data, epochs=epochs, validation_data=validation_data,
                                 learning_rate=learning_rate, progress=progress, **optimize_args)
        source = optimized if trained else model
        step("convert", 0, 0)
        calibration = representative_data if representative_data is not None else training_inputs(train_data)
        tflite = converted("convert", source, target, representative_data=calibration, quantization=quantization,
                           plan=plan, keep_float=keep_float)
        step("evaluate", 0, 0)
        metrics = measured("evaluate", tflite)
    optimized = optimized if trained else None
    info = None
    if plan.layers("quantize"):  # which quantized layers fold into a convolution (its notices were given above)
        with _collected_notices():
            info = inspect_model(model)
    label = f"{get_target(target).title}, {tflite.quantization}, {plan_summary(plan, info)}"
    if any(entry.precision for entry in plan):  # the mix the file holds, read back from it
        label += f" ({precision_mix(tflite)})"
    # A reused OptimizedModel's notices (a Keras 3 model rebuilt) hold for this file too.
    notices = list(dict.fromkeys([*(optimized.notices if optimized is not None else ()), *caught]))
    result = RunResult(label, plan, target, optimized, tflite, metrics, notices, baseline,
                       epochs if fine_tuned else None, time.perf_counter() - started, data=evaluation)
    for notice in dict.fromkeys([*warned, *caught]):
        _warn(notice)
    return result


def plan_summary(plan: Plan, info=None) -> str:
    """The plan in the user's words, counting the layers they chose per technique: "5 layers quantized, 2 pruned",
    "1 layer kept float", "no plan". With ``info`` (tw.inspect's ModelInfo) the BatchNormalization and activation
    layers that quantization folds into a convolution are not counted: they follow the convolution's box."""

    def chosen(names):
        return [name for name in names if info is None or info.get(name) is None or info.get(name).group is None]

    counts = [(len(chosen(plan.layers("quantize"))), "quantized"), (len(plan.layers("prune")), "pruned"),
              (len(plan.layers("cluster")), "clustered"), (len(plan.float_layers), "kept float"),
              (sum(1 for entry in plan if entry.precision), "given a precision")]
    parts = [(n, words) for n, words in counts if n]
    if not parts:
        return "no plan"
    (first, words), rest = parts[0], parts[1:]
    return ", ".join([f"{first} layer{'s' if first != 1 else ''} {words}", *(f"{n} {w}" for n, w in rest)])


def precision_mix(tflite) -> str:
    """The weights' precision over the file's layers that have weights, as read back from it: "int4 x3, int8 x5,
    float x1" (float16 and float32 weights both count as float). A layer folded into another's op (a
    BatchNormalization into its convolution) is counted once, with that layer."""
    from .tflite.readback import main_ops

    ops = main_ops(tflite)
    counts: dict[str, int] = {}
    for layer, precision in tflite.precisions().items():
        if precision.weights is not None and ops[layer].layer == layer:
            word = precision.plan_words[0]
            counts[word] = counts.get(word, 0) + 1
    order = {"int4": 0, "int8": 1, "float": 2}
    return ", ".join(f"{word} x{n}" for word, n in sorted(counts.items(), key=lambda item: order.get(item[0], 3)))


def start_engine() -> None:
    """Load TensorFlow (once) with its start-up log lines (oneDNN, CUDA drivers, cuInit) kept out of the output: the
    engine's stack (model/stack.py) loads it so, whichever path comes first."""
    from .model import stack  # noqa: F401


def write_atomically(path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` (parent folders created) through a temporary file in the same folder, renamed
    into place at the end: a run cancelled or failing meanwhile leaves the old file or none, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    content = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(content)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def training_inputs(data):
    """The inputs of ``(x, y)`` training data, which calibrate int8; a tf.data dataset passes through (tw.convert
    takes the inputs of its ``(x, y)`` elements); None stays None."""
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return data[0]
    return data


@contextmanager
def _collected_notices():
    """Yields a list that receives the message of every ``tw.ModelNotice`` warned inside; other warnings are
    warned again as they were. (The warnings filters are process-wide: a warning another thread raises meanwhile
    is recorded and warned again too, not lost.)"""
    from .model.porting import ModelNotice

    notices: list[str] = []
    caught: list = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ModelNotice)
            yield notices
    finally:  # also when the run fails or is cancelled: other warnings are never swallowed
        for warning in caught:
            if not issubclass(warning.category, ModelNotice):
                warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno,
                                       source=warning.source)
            elif str(warning.message) not in notices:
                notices.append(str(warning.message))


def _warn(notice: str) -> None:
    from .model.porting import ModelNotice

    warnings.warn(notice, ModelNotice, stacklevel=3)
