"""tw.sensitivity: how much each layer's metric drops when only that layer is compressed, and tw.suggest_plan.

Nothing is fine-tuned: each measurement is one file run on the data, so it shows which layers tolerate compression
before any training is spent. Every measurement starts from the model's float TFLite file:

* quantize: TFLite's ``QuantizationDebugger`` calibrates once; per layer it gives the int8 error of that layer's
  output (``quant_error``, the RMS of the difference to float), the metric with ONLY that layer int8 (the drop), and
  the metric of the full-int8 file with that layer kept float (``keep_float_value``);
* prune: the layer's kernel magnitude-pruned to each sparsity (numpy, on a copy of the weights);
* cluster: the layer's kernel clustered to each count (1-D k-means on a copy of the weights).

Each layer's gzip size as int8 (and after each technique) estimates the gain. The user's model is only read.
The variants are independent jobs for a ``concurrent.futures.Executor``: local threads or processes by default, or
e.g. a Dask ``Client.get_executor()``.

>>> report = tw.sensitivity(model, (x_test, y_test))
>>> report.to_dataframe()            # layer x (technique, level): metric drop
>>> plan = tw.suggest_plan(report, budget=0.01, target="cpu")
>>> check = report.verify(model, plan, (x_train, y_train), target="cpu")
>>> check.estimated_drop, check.measured_drop
"""

from __future__ import annotations

import functools
import gzip
import json
import math
import os
import pickle
import sys
import threading
import time
import warnings
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np

from ._sensitivity_jobs import Kernel, kernel_sizes, score_variants
from .errors import DataError, Error
from .plan import Plan

__all__ = ["DEFAULT_LEVELS", "PlanCheck", "SensitivityReport", "SensitivityRow", "sensitivity", "suggest_plan"]

TECHNIQUES = ("quantize", "prune", "cluster")
DEFAULT_LEVELS = {"quantize": ("int8",), "prune": (0.5, 0.75, 0.9), "cluster": (8, 16, 32)}
# Evaluation samples by default: enough to resolve a drop of 0.5 % on accuracy, few enough for hundreds of variants.
EVALUATION_SAMPLES = 500
# From this float file size on, a notebook scores variants in worker processes by default (MobileNetV2-0.35, 7 MB:
# 1.38x on 2 processes vs 1.12x on 2 threads; the digits CNN, 0.16 MB: threads, as processes take a second to start).
PROCESSES_FROM_BYTES = 1_000_000
# Samples the QuantizationDebugger runs its instrumented model on for the per-layer error statistics.
DEBUG_SAMPLES = 32
_WEIGHT_DTYPES = ("int8", "float16", "float32")


@dataclass(frozen=True)
class SensitivityRow:
    """One measurement: ``layer`` compressed alone with ``technique`` at ``level``.

    ``value`` is the metric of that file, ``drop`` the baseline's value minus it (positive: worse). ``size`` holds
    the estimated gzip bytes of the layer's kernel afterwards per weight encoding ("int8", "float16", "float32").
    Quantize rows add ``keep_float_value`` (the full-int8 file with this layer float) and ``quant_error`` (RMS
    int8 error of the layer's output, from the QuantizationDebugger).
    """

    layer: str
    technique: str
    level: object
    value: float
    drop: float
    size: dict = field(default_factory=dict)
    keep_float_value: float | None = None
    quant_error: float | None = None


@dataclass(frozen=True)
class LayerSize:
    """A layer's kernel: parameters, estimated gzip bytes per encoding, and its share of the int8 file's gzip size."""

    layer: str
    class_name: str
    params: int
    size: dict
    share: float


class SensitivityReport:
    """What :func:`sensitivity` measured. ``to_dataframe()`` is the layer x (technique, level) matrix of drops.

    ``baseline`` is the metric of the float file, ``int8_value`` of the full-int8 file, ``int8_gzip_size`` the
    gzip size of that file. ``layers`` holds each layer's size and share; ``rows`` every measurement.
    """

    def __init__(self, model_name: str, metric: str, baseline: float, int8_value: float | None, rows: list,
                 layers: list, int8_gzip_size: int | None, float_gzip_size: int, samples: int, levels: dict,
                 wall_s: float, workers: int | None, executor: str | None = None):
        self.model_name, self.metric, self.baseline, self.int8_value = model_name, metric, baseline, int8_value
        self.rows, self.layers = list(rows), list(layers)
        self.int8_gzip_size, self.float_gzip_size = int8_gzip_size, float_gzip_size
        self.samples, self.levels, self.wall_s, self.workers = samples, levels, wall_s, workers
        self.executor = executor  # what scored the variants: "threads", "processes" or the executor's class name
        self._layer = {entry.layer: entry for entry in self.layers}

    def row(self, layer: str, technique: str, level=None) -> SensitivityRow | None:
        """The measurement of ``layer`` under ``technique`` at ``level`` (the only level for quantize)."""
        for row in self.rows:
            if row.layer == layer and row.technique == technique and (level is None or row.level == level):
                return row
        return None

    def drop(self, layer: str, technique: str, level=None) -> float | None:
        row = self.row(layer, technique, level)
        return None if row is None else row.drop

    def to_dataframe(self, values: str = "drop"):
        """Layers x (technique, level) of ``values`` ("drop", "value", or a size encoding "int8"/"float32")."""
        import pandas as pd

        records = {}
        for row in self.rows:
            cell = getattr(row, values) if values in ("drop", "value") else row.size.get(values)
            records.setdefault(row.layer, {})[(row.technique, row.level)] = cell
        order = [entry.layer for entry in self.layers] + [n for n in records if n not in self._layer]
        frame = pd.DataFrame.from_dict({n: records[n] for n in order if n in records}, orient="index")
        columns = [(t, lv) for t in TECHNIQUES for lv in self.levels.get(t, ()) if (t, lv) in frame.columns]
        frame = frame[columns]
        frame.columns = pd.MultiIndex.from_tuples(columns, names=["technique", "level"])
        frame.index.name = "layer"
        return frame

    def layers_dataframe(self):
        """One row per layer: type, params, int8 gzip bytes, share of the int8 file, quant error, keep-float gain."""
        import pandas as pd

        rows = []
        for entry in self.layers:
            quant = self.row(entry.layer, "quantize")
            rows.append({"layer": entry.layer, "type": entry.class_name, "params": entry.params,
                         "int8_gzip_bytes": entry.size.get("int8"), "share": entry.share,
                         "quant_error": quant.quant_error if quant else None,
                         "keep_float_gain": (quant.keep_float_value - self.int8_value)
                         if quant and quant.keep_float_value is not None and self.int8_value is not None else None})
        return pd.DataFrame(rows).set_index("layer")

    def plot(self, ax=None):
        """A heat map of the drops (matplotlib); returns the figure."""
        import matplotlib.pyplot as plt

        frame = self.to_dataframe()
        if ax is None:
            _, ax = plt.subplots(figsize=(1.0 + 0.7 * frame.shape[1], 1.0 + 0.28 * frame.shape[0]))
        data = frame.to_numpy(dtype=float)
        limit = max(1e-6, float(np.nanmax(np.abs(data))) if np.isfinite(data).any() else 1.0)
        image = ax.imshow(data, cmap="RdYlGn_r", vmin=-limit, vmax=limit, aspect="auto")
        ax.set_xticks(range(frame.shape[1]), [f"{t}\n{lv}" for t, lv in frame.columns], fontsize=8)
        ax.set_yticks(range(frame.shape[0]), frame.index, fontsize=8)
        ax.set_title(f"{self.model_name}: {self.metric} drop per layer (baseline {self.baseline:.4f})", fontsize=9)
        ax.figure.colorbar(image, ax=ax, label=f"{self.metric} drop")
        ax.figure.tight_layout()
        return ax.figure

    def estimate(self, plan: Plan, target="cpu", quantization: str | None = None) -> dict:
        """The additive estimate for ``plan`` on ``target``: ``drop`` and ``size`` (gzip bytes of the kernels)."""
        return _estimate(self, plan, _target_profile(target, quantization))

    def verify(self, model, plan: Plan, train_data, data=None, *, target="cpu", representative_data=None,
               epochs: int = 1, metric=None, budget: float | None = None, **optimize_args) -> PlanCheck:
        """Carry ``plan`` out with :func:`tw.run <tfopt_widgets.run>` (tw.optimize, tw.convert for ``target``,
        tw.evaluate, beside the float32 baseline) and compare.

        ``data`` is what the drop is measured on (default: the training data's first 500 samples); the baseline
        is the float file on the same data. ``representative_data`` calibrates (default: the training inputs);
        ``optimize_args`` go to tw.run (``learning_rate``, ``progress``, ``loss``, ...). The result holds the
        estimate, the measurement, and by how much a ``budget`` was missed (0 when met).
        """
        from .pipeline import run

        start = time.perf_counter()
        if data is None:
            if not isinstance(train_data, (tuple, list)):
                raise DataError("verify needs data=(x, y) to measure on when train_data is a dataset.", field="data")
            keras_model = model if hasattr(model, "inputs") else getattr(model, "model", model)
            data = (_head(train_data[0], EVALUATION_SAMPLES, len(keras_model.inputs) > 1),
                    _head(train_data[1], EVALUATION_SAMPLES, len(keras_model.outputs) > 1))
        result = run(model, plan, target, train_data, data, representative_data=representative_data, epochs=epochs,
                     metric=metric, runs=1, warmup=0, baseline=True, **optimize_args)
        estimate = self.estimate(plan, target)
        baseline = result.baseline.metrics
        missed = None if budget is None else max(0.0, result.drop - budget)
        return PlanCheck(estimated_drop=estimate["drop"], measured_drop=result.drop, budget=budget, missed_by=missed,
                         baseline=baseline.value, value=result.metrics.value, estimated_size=estimate["size"],
                         gzip_size=result.metrics.gzip_size, float_gzip_size=baseline.gzip_size,
                         float_layers=result.tflite.float_layers(), wall_s=time.perf_counter() - start)

    def to_dict(self) -> dict:
        return {"model": self.model_name, "metric": self.metric, "baseline": self.baseline,
                "int8_value": self.int8_value, "int8_gzip_size": self.int8_gzip_size,
                "float_gzip_size": self.float_gzip_size, "samples": self.samples, "wall_s": self.wall_s,
                "workers": self.workers, "executor": self.executor, "levels": {k: list(v) for k, v in self.levels.items()},
                "layers": [asdict(entry) for entry in self.layers], "rows": [asdict(row) for row in self.rows]}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=float)

    def __repr__(self) -> str:
        return (f"<SensitivityReport {self.model_name!r}: {len(self.rows)} measurements over {len(self.layers)} "
                f"layers; float {self.metric} {self.baseline:.4f}"
                + (f", int8 {self.int8_value:.4f}" if self.int8_value is not None else "") + ">")

    def _repr_html_(self) -> str:
        return self.to_dataframe().style.format("{:+.4f}", na_rep="").background_gradient(
            cmap="RdYlGn_r", axis=None).to_html()


def _head(value, count: int, several: bool):
    """The first ``count`` samples of an array, or with ``several`` (inputs or outputs) of each array of a list,
    tuple or dict."""
    if isinstance(value, dict):
        return {key: item[:count] for key, item in value.items()}
    if several and isinstance(value, (list, tuple)):
        return [item[:count] for item in value]
    return value[:count]


@dataclass(frozen=True)
class PlanCheck:
    """Estimate vs measurement of a plan (:meth:`SensitivityReport.verify`)."""

    estimated_drop: float
    measured_drop: float
    budget: float | None
    missed_by: float | None  # how far the measured drop is over the budget (0.0: within it)
    baseline: float
    value: float
    estimated_size: int
    gzip_size: int
    float_gzip_size: int
    float_layers: list
    wall_s: float

    @property
    def within_budget(self) -> bool | None:
        return None if self.missed_by is None else self.missed_by == 0.0

    def __str__(self) -> str:
        verdict = "" if self.budget is None else (
            f"; within the budget of {self.budget:.4f}" if self.within_budget
            else f"; missed the budget of {self.budget:.4f} by {self.missed_by:.4f}")
        return (f"drop estimated {self.estimated_drop:+.4f}, measured {self.measured_drop:+.4f} "
                f"({self.baseline:.4f} -> {self.value:.4f}){verdict}; gzip {self.float_gzip_size:,} -> "
                f"{self.gzip_size:,} B")


# -- measuring -----------------------------------------------------------------------------------------------------

def sensitivity(model, data, techniques=TECHNIQUES, levels=None, executor: Executor | str | None = None,
                metric=None, *, representative_data=None, samples: int = EVALUATION_SAMPLES,
                workers: int | None = None, progress=None) -> SensitivityReport:
    """Per layer and technique, the metric drop when only that layer is compressed (no fine-tuning).

    ``data``: ``(x, y)`` arrays to measure on (at most ``samples`` of them, evenly spread), or a tf.data dataset of
    ``(x, y)`` (batched or not; its first ``samples``). Several inputs: x as a list of arrays in the model's input
    order or a dict keyed by input name; several outputs: y likewise (the default metric is then the accuracy of
    the first output). ``levels``: per
    technique, e.g. ``{"prune": (0.5, 0.9), "cluster": (16,)}`` (defaults: :data:`DEFAULT_LEVELS`).
    ``metric(y_true, y_pred) -> float`` (higher is better) replaces accuracy; with a process executor it must be
    picklable (a module-level function). ``representative_data`` calibrates int8 (default: the measured inputs).
    ``executor``: a ``concurrent.futures.Executor`` the jobs are submitted to (e.g. Dask's
    ``Client.get_executor()``), "threads", "processes" (spawned, ``workers`` of them, default one per core up to
    2), or None: in a notebook, processes for a model whose float file reaches :data:`PROCESSES_FROM_BYTES` (each
    has its own GIL, so scoring does not queue behind this process's TensorFlow work) when ``metric`` can be sent
    to them; threads otherwise, and always in a script (a spawned worker would run an unguarded script again).
    ``progress("sensitivity", scored, submitted)`` is called as variants are made and scored; raising
    ``tw.Cancelled`` from it stops: jobs not started are dropped, the running ones finish first.
    """
    from .model.inspection import inspect
    from .runtime.ops import user_layers
    from .tflite.conversion import convert
    from .tflite.converter import prepared_model
    from .tflite.evaluation import default_metric_name

    start = time.perf_counter()
    unknown = set(techniques) - set(TECHNIQUES)
    if unknown or not techniques:
        raise Error(f"Unknown technique {min(unknown) if unknown else None!r}; use some of "
                    f"{', '.join(TECHNIQUES)}.", field="techniques")
    levels = {t: tuple((levels or {}).get(t, DEFAULT_LEVELS[t])) for t in techniques}
    _check_levels(levels)
    keras_model = prepared_model(model)
    x, y = _evaluation_data(keras_model, data, samples)
    count = len(next(iter(x.values()))) if isinstance(x, dict) else len(x)
    calibration = x if representative_data is None else representative_data
    outputs = list(keras_model.output_names) if len(keras_model.outputs) > 1 else None
    info = inspect(keras_model)
    origins = user_layers(keras_model)

    float_file = convert(keras_model, "float32")
    kernels = _kernels(keras_model, float_file, info)
    sizes = {name: kernel_sizes(kernel.tflite) for name, kernel in kernels.items()}
    pending = []  # (variant name, layer, technique, level, extra)
    int8_file, debug = None, {}
    if executor is None:
        executor = _default_executor(float_file.content, metric, workers)
    with _Jobs(float_file.content, x, y, metric, executor, workers, progress, outputs) as jobs:
        jobs.submit([("float", None, None)])
        changes = []
        for technique in ("prune", "cluster"):
            for name, kernel in kernels.items():
                if technique in levels and info[name].supports(technique).ok:
                    for level in levels[technique]:
                        key = f"{technique}|{name}|{level}"
                        changes.append((key, None, (kernel, technique, level)))
                        pending.append((key, name, technique, level, {}))
        jobs.submit(changes)
        if "quantize" in levels:
            # Quantized variants are made here (TensorFlow) while the workers already score the ones above.
            quantizer = _Quantizer(keras_model, calibration, origins)
            int8_file = quantizer.quantize(exclude=())
            jobs.submit([("int8", int8_file, None)], chunks=1)
            debug = quantizer.layer_errors()
            for name in quantizer.layers:
                if not info[name].supports("quantize").ok:
                    continue
                only = quantizer.quantize(exclude=[n for n in quantizer.layers if n != name], unnamed=True)
                kept = quantizer.quantize(exclude=[name])
                jobs.submit([(f"quantize|{name}|only", only, None), (f"quantize|{name}|keep_float", kept, None)],
                            chunks=1)
                pending.append((f"quantize|{name}|only", name, "quantize", "int8",
                                {"keep_float": f"quantize|{name}|keep_float", "quant_error": debug.get(name)}))
        scores = jobs.results()
    baseline = scores["float"][0]
    int8_value = scores["int8"][0] if "int8" in scores else None
    rows = []
    for key, name, technique, level, extra in pending:
        value, size = scores[key]
        kept = scores[extra["keep_float"]][0] if "keep_float" in extra else None
        rows.append(SensitivityRow(name, technique, level, value, baseline - value, size or sizes.get(name, {}),
                                   keep_float_value=kept, quant_error=extra.get("quant_error")))
    int8_gzip = len(gzip.compress(int8_file, 9, mtime=0)) if int8_file is not None else None
    total = int8_gzip or float_file.gzip_size
    layers = [LayerSize(name, info[name].class_name, int(kernels[name].keras.size), sizes[name],
                        sizes[name]["int8"] / total) for name in kernels]
    if metric is not None:
        metric_name = getattr(metric, "__name__", type(metric).__name__)
    else:
        metric_name = default_metric_name(origins.get(outputs[0], outputs[0]) if outputs else None)
    return SensitivityReport(keras_model.name, metric_name, baseline, int8_value, rows, layers, int8_gzip,
                             float_file.gzip_size, count, levels, time.perf_counter() - start,
                             _worker_count(executor, workers),
                             executor if isinstance(executor, str) else type(executor).__name__)


def _check_levels(levels: dict) -> None:
    for level in levels.get("prune", ()):
        if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
            raise Error(f"Pruning levels are sparsities strictly between 0 and 1; got {level!r}.", field="levels")
    for level in levels.get("cluster", ()):
        if isinstance(level, bool) or not isinstance(level, int) or level < 2:
            raise Error(f"Clustering levels are cluster counts of at least 2; got {level!r}.", field="levels")
    if tuple(levels.get("quantize", ("int8",))) != ("int8",):
        raise Error("The quantize technique has one level, 'int8' (post-training, per layer).", field="levels")


def _evaluation_data(model, data, samples: int):
    """Checked ``(x, y)``, at most ``samples`` of them (evenly spread over arrays; the first ones of a tf.data
    dataset). Several inputs: x as {input name: array} in the model's input order; several outputs: y a list."""
    from .data import checks as data_checks
    from .model.stack import tf

    if isinstance(data, tf.data.Dataset):
        data = data_checks.dataset_samples(data, model, "data", samples)
    x, y = data_checks.check_labelled(data, model, "data")
    count = data_checks.samples_in(x)
    if count > samples:
        pick = np.linspace(0, count - 1, samples).round().astype(int)
        x, y = data_checks.take(x, pick), data_checks.take(y, pick)
    x = data_checks.as_input_dtypes(x, model)
    if isinstance(x, list):
        return dict(zip(model.input_names, x)), y
    return x, np.asarray(y)


def _kernels(keras_model, tfl, info) -> dict[str, Kernel]:
    """The main kernel of every layer that supports pruning or clustering, found in the float file."""
    from .tflite.file import KERNELS

    by_layer = {}
    for op in tfl.ops:
        if op.layer is not None and op.op in KERNELS and len(op.inputs) > KERNELS[op.op][0]:
            by_layer.setdefault(op.layer, []).append((op, op.inputs[KERNELS[op.op][0]]))
    offsets = _buffer_offsets(tfl.content)
    result = {}
    for layer in keras_model.layers:
        entry = info.get(layer.name)
        if entry is None or not (entry.supports("prune").ok or entry.supports("cluster").ok):
            continue
        # tfmot prunes and clusters a SeparableConv2D's pointwise kernel; Conv and Dense layers have one kernel,
        # an Embedding its table.
        variable = next((v for v in (getattr(layer, name, None) for name in ("pointwise_kernel", "kernel",
                                                                              "embeddings")) if v is not None), None)
        if variable is None:
            continue
        keras_kernel = np.array(variable.numpy(), dtype=np.float32)
        for op, index in by_layer.get(layer.name, []):
            values = tfl.tensor_data(index)
            if values is None or values.dtype != np.float32 or values.size != keras_kernel.size \
                    or index not in offsets:
                continue
            order = KERNELS[op.op][1]
            layout = tuple(int(a) for a in np.argsort(order)) if order and keras_kernel.ndim == len(order) else None
            scale = None
            if layout is not None and keras_kernel.transpose(layout).shape == values.shape:
                source = keras_kernel.transpose(layout)
                axes = tuple(range(1, values.ndim))  # the output channel is axis 0 in CONV_2D and FULLY_CONNECTED
                denominator = np.sum(source * source, axis=axes, keepdims=True)
                scale = np.where(denominator > 0, np.sum(source * values, axis=axes, keepdims=True)
                                 / np.maximum(denominator, 1e-30), 1.0).astype(np.float32)
            else:
                layout = None
            result[layer.name] = Kernel(keras_kernel, values, offsets[index], layout, scale)
            break
    return result


def _buffer_offsets(content: bytes) -> dict[int, int]:
    """{tensor index: byte offset of its data in the file} for constant tensors of the main graph."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(content, 0)
    graph = model.Subgraphs(0)
    offsets = {}
    for index in range(graph.TensorsLength()):
        buffer = model.Buffers(graph.Tensors(index).Buffer())
        if buffer is None or buffer.DataLength() == 0:
            continue
        # The flatbuffer vector of field 4 (data) starts here; files over 2 GB keep data elsewhere (not patched).
        offsets[index] = buffer._tab.Vector(buffer._tab.Offset(4))
    return offsets


class _Quantizer:
    """Selective int8 post-training quantization of one model, with TFLite's QuantizationDebugger for the errors.

    The debugger calibrates once and builds its instrumented model once, for the error statistics; each variant
    then quantizes the calibrated file with ``denylisted_nodes`` (the output tensor names of the ops to keep float)
    as ``tw.convert`` does for keep_float layers, a fraction of a full conversion. Inputs and outputs stay float
    (``fully_quantize=False``): with int8 ones, every "only this layer" variant would also round the model's output
    to int8 (a softmax to steps of 1/256), charging each layer for the output's error.
    """

    def __init__(self, keras_model, calibration, origins):
        from .model.porting import ModelNotice
        from .model.stack import tf
        from .quiet import captured_stderr
        from .runtime.tflite import CALIBRATION_SAMPLES, configure_converter
        from .targets import get_target
        from .tflite.converter import converter_for, recurrent_layers, representative_samples
        from .tflite.file import TFLiteModel
        from .tflite.recurrent import calibratable

        notices: list[str] = []
        samples = representative_samples(keras_model, calibration, CALIBRATION_SAMPLES)
        # As tw.convert does: recurrent layers that would become WHILE loops are unrolled first, since TFLite's
        # calibrator crashes the process on a WHILE op; a loop that cannot be unrolled raises ConversionError.
        keras_model, _, samples = calibratable(
            keras_model, get_target("cpu"), "int8", samples, recurrent_layers(keras_model), "int8", [],
            notices)
        for notice in notices:
            warnings.warn(notice, ModelNotice, stacklevel=3)
        self._converter = converter = converter_for(keras_model, fixed_batch=False)
        configure_converter(converter, "int8", samples, False)
        if isinstance(samples, dict):  # several inputs: the debugger feeds a list in the file's input order
            count = len(next(iter(samples.values())))
            pick = np.linspace(0, count - 1, min(DEBUG_SAMPLES, count)).astype(int)
            order: list[str] = []  # read from the calibrated file below, before the debugger first runs
            debug_dataset = lambda: ([samples[name][i:i + 1] for name in order] for i in pick)
        else:
            debug_samples = samples[np.linspace(0, len(samples) - 1, min(DEBUG_SAMPLES, len(samples))).astype(int)]
            debug_dataset = lambda: ([debug_samples[i:i + 1]] for i in range(len(debug_samples)))
        with captured_stderr("Statistics for quantized inputs", r"\s*Warning: tf.lite.Interpreter is deprecated"):
            self.debugger = tf.lite.experimental.QuantizationDebugger(
                converter=converter, debug_dataset=debug_dataset,
                debug_options=tf.lite.experimental.QuantizationDebugOptions(fully_quantize=False))
        calibrated = TFLiteModel(self.debugger.calibrated_model, layer_origins=origins)
        if isinstance(samples, dict):
            order.extend(calibrated.input_names)  # the file's own order (no Keras order given), as the debugger's
        self.nodes: dict[str, list[str]] = {}
        self.unnamed: list[str] = []
        for op in calibrated.ops:
            names = [calibrated.tensors[i].name for i in op.outputs]
            if op.layer is None:
                self.unnamed.extend(names)
            else:
                self.nodes.setdefault(op.layer, []).extend(names)
        self.layers = list(self.nodes)
        self._owner = {name: layer for layer, names in self.nodes.items() for name in names}

    def quantize(self, exclude, unnamed: bool = False) -> bytes:
        """The int8 file with the layers in ``exclude`` (and with ``unnamed``, ops of no layer) kept float."""
        from .quiet import captured_stderr
        from .runtime.ops import quantize_calibrated

        denylist = [name for layer in exclude for name in self.nodes[layer]] + (self.unnamed if unnamed else [])
        with captured_stderr():
            return quantize_calibrated(self._converter, self.debugger.calibrated_model, denylist)

    def layer_errors(self) -> dict[str, float]:
        """{layer: RMS difference between its int8 output and the float one}, from the debugger's statistics."""
        from .quiet import captured_stderr

        with captured_stderr():
            self.debugger.run()
        errors = {}
        prefix = "NumericVerify/"
        for key, stats in (self.debugger.layer_statistics or {}).items():
            name = key[len(prefix):].rsplit(":", 1)[0] if key.startswith(prefix) else key
            layer = self._owner.get(name) or self._owner.get(name[:-1])  # the verified copy's name gains a digit
            if layer is not None and layer not in errors:
                errors[layer] = float(math.sqrt(max(0.0, float(stats["mean_squared_error"]))))
        return errors


def _default_executor(base: bytes, metric, workers: int | None, interactive: bool | None = None) -> str:
    """"processes" where they are both faster and safe to start, else "threads".

    Spawned workers import the main module again: a script without an ``if __name__ == "__main__":`` guard would
    run once more in each of them, so only an interactive session (a notebook, IPython: no main file) gets them.
    The metric must reach the workers too: picklable, and not defined in ``__main__`` (a notebook cell).
    """
    if interactive is None:
        interactive = getattr(sys.modules.get("__main__"), "__file__", None) is None
    if not interactive or (workers or min(2, os.cpu_count() or 1)) < 2 or len(base) < PROCESSES_FROM_BYTES:
        return "threads"
    if metric is not None:
        if getattr(metric, "__module__", None) == "__main__":
            return "threads"
        try:
            pickle.dumps(metric)
        except Exception:  # noqa: BLE001 -- a lambda or a closure: pickling fails with several exception types
            return "threads"
    return "processes"


def _worker_count(executor, workers) -> int | None:
    if isinstance(executor, Executor):
        return getattr(executor, "_max_workers", None)
    return workers or min(2, os.cpu_count() or 1)


class _Jobs:
    """Variants submitted to an executor as they are made, in chunks; ``results()`` waits for all of them."""

    def __init__(self, base: bytes, x, y, metric, executor, workers, progress=None, outputs=None):
        from ai_edge_litert.interpreter import Interpreter

        from .quiet import captured_stderr

        with captured_stderr():  # LiteRT prints its delegate banner once per process: here, not inside the jobs
            Interpreter(model_content=base).allocate_tensors()
        self.base, self.x, self.y, self.metric = base, x, y, metric
        self.outputs = outputs  # several outputs: their names in the Keras order
        self.workers = workers or min(2, os.cpu_count() or 1)
        self.own = None
        if executor == "threads":
            self.own = executor = ThreadPoolExecutor(max_workers=self.workers)
        elif executor == "processes":
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn, never fork: a forked TensorFlow runtime deadlocks; the jobs' module imports no TensorFlow.
            self.own = executor = ProcessPoolExecutor(max_workers=self.workers,
                                                      mp_context=multiprocessing.get_context("spawn"))
        elif not hasattr(executor, "submit"):
            raise Error(f"executor must be a concurrent.futures.Executor, 'threads' or 'processes'; got "
                        f"{executor!r}.", field="executor")
        self.executor = executor
        self.futures = []  # (future, number of variants in it)
        self.progress = progress
        self.submitted = self.scored = 0
        self._lock = threading.Lock()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:
            for future, _ in self.futures:
                future.cancel()
        if self.own is not None:
            self.own.shutdown(wait=True)

    def submit(self, variants: list, chunks: int | None = None) -> None:
        # Local threads share the data: one job per variant, so a cancel waits for one variant at most. Elsewhere a
        # few chunks per worker: fewer transfers of the data and the base file, still balanced.
        default = len(variants) if isinstance(self.own, ThreadPoolExecutor) else 4 * self.workers
        chunks = max(1, min(len(variants), chunks or default))
        for i in range(chunks):
            part = variants[i::chunks]
            future = self.executor.submit(score_variants, self.base, part, self.x, self.y, self.metric,
                                          outputs=self.outputs)
            self.futures.append((future, len(part)))
            future.add_done_callback(functools.partial(self._done, count=len(part)))
        self.submitted += len(variants)
        self.report()

    def _done(self, future, count: int) -> None:  # called in a worker's thread
        if not future.cancelled() and future.exception() is None:
            with self._lock:
                self.scored += count

    def report(self) -> None:
        """Tell ``progress`` how far the scoring is (from the submitting thread: it may raise Cancelled)."""
        if self.progress is not None:
            self.progress("sensitivity", self.scored, self.submitted)

    def results(self) -> dict[str, tuple[float, dict | None]]:
        """{variant name: (metric value, sizes of its changed kernel or None)}, as the jobs finish."""
        from concurrent.futures import FIRST_COMPLETED, wait

        waiting = {future for future, _ in self.futures}
        while waiting:
            _, waiting = wait(waiting, timeout=None if self.progress is None else 0.5, return_when=FIRST_COMPLETED)
            self.report()
        return {name: (value, sizes) for future, _ in self.futures for name, value, sizes in future.result()}


# -- planning ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Profile:
    name: str
    quantized: bool  # the target's calibrated conversion is full int8
    float_allowed: bool  # a layer may stay float in it (no int8-only chip)
    weights: str  # how kernels are stored: int8, float16, float32


def _target_profile(target, quantization: str | None = None) -> _Profile:
    from .targets import get_target

    target = get_target(target)
    mode = target.quantization_for(quantization, calibrated=True)
    quantized = mode == "int8"
    floats = any(m in target.allowed_quantizations for m in ("none", "float16", "dynamic"))
    weights = {"int8": "int8", "int16x8": "int8", "dynamic": "int8", "float16": "float16"}.get(mode, "float32")
    return _Profile(target.name, quantized, quantized and floats, weights)


def _options(report: SensitivityReport, layer: str, profile: _Profile, quant_cost: float) -> list:
    """[(cost, size, technique, level, keep_float)] for one layer: every level, int8 or (where allowed) float."""
    sizes = report._layer[layer].size
    choices = [(0.0, sizes, None, None)]
    for row in report.rows:
        if row.layer == layer and row.technique in ("prune", "cluster"):
            choices.append((max(0.0, row.drop), row.size, row.technique, row.level))
    options = []
    for cost, size, technique, level in choices:
        if profile.quantized:
            options.append((cost + quant_cost, size["int8"], technique, level, False))
            if profile.float_allowed:
                options.append((cost, size["float32"], technique, level, True))
        else:
            options.append((cost, size[profile.weights], technique, level, False))
    return options


def _quant_costs(report: SensitivityReport, profile: _Profile) -> tuple[dict, float]:
    """Each layer's share of the int8 drop (its keep-float gain), and the rest of the int8 drop (fixed)."""
    if not profile.quantized or report.int8_value is None:
        return {}, 0.0
    total = max(0.0, report.baseline - report.int8_value)
    costs = {}
    for row in report.rows:
        if row.technique == "quantize" and row.keep_float_value is not None and row.layer in report._layer:
            costs[row.layer] = max(0.0, row.keep_float_value - report.int8_value)
    if not profile.float_allowed:
        return {}, total
    return costs, max(0.0, total - sum(costs.values()))


def suggest_plan(report: SensitivityReport, budget: float = 0.01, target="cpu", *, quantization: str | None = None,
                 resolution: int = 400) -> Plan:
    """The plan with the smallest estimated compressed size whose estimated metric drop stays within ``budget``.

    Per layer it picks one of: nothing, pruning or clustering at a measured level, and, where ``target`` allows
    float layers in an int8 file (cpu), keeping the layer float. Drops are assumed to add up (measured one layer
    at a time, without fine-tuning, so usually pessimistic); the int8 conversion's own drop is counted on
    targets that quantize. On int8-only targets (edgetpu, hexagon) no layer is kept float. Solved exactly as a
    multiple-choice knapsack over ``resolution`` steps of the budget. ``quantization`` is the conversion mode when
    not the target's own (as for ``tw.convert``): layers are kept float only in an int8 conversion. Check the plan
    with :meth:`SensitivityReport.verify`.
    """
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget < 0:
        raise Error(f"budget is the largest acceptable metric drop, e.g. 0.01; got {budget!r}.", field="budget")
    profile = _target_profile(target, quantization)
    costs, fixed = _quant_costs(report, profile)
    capacity = budget - fixed
    plan = Plan()
    if capacity < 0:
        return plan  # even the bare int8 conversion is over budget: nothing else fits
    step = max(capacity, 1e-12) / resolution
    bins = resolution
    best = np.zeros(bins + 1)  # best[b]: smallest total size with total cost <= b steps
    choices = []
    for entry in report.layers:
        options = _options(report, entry.layer, profile, costs.get(entry.layer, 0.0))
        table = np.full((len(options), bins + 1), np.inf)
        for k, (cost, size, *_rest) in enumerate(options):
            steps = math.ceil(cost / step - 1e-9) if cost > 0 else 0
            if steps <= bins:
                table[k, steps:] = best[:bins + 1 - steps] + size
        pick = np.argmin(table, axis=0)
        best = table[pick, np.arange(bins + 1)]
        choices.append((entry.layer, options, pick))
    remaining = int(np.argmin(best)) if not np.isfinite(best[bins]) else bins
    for layer, options, pick in reversed(choices):
        cost, size, technique, level, keep = options[pick[remaining]]
        remaining -= math.ceil(cost / step - 1e-9) if cost > 0 else 0
        if technique == "prune":
            plan.prune(layer, sparsity=float(level), schedule="constant")
        elif technique == "cluster":
            plan.cluster(layer, clusters=int(level))
        if keep:
            plan.keep_float(layer)
    return Plan(reversed(list(plan)))


def _estimate(report: SensitivityReport, plan: Plan, profile: _Profile) -> dict:
    costs, fixed = _quant_costs(report, profile)
    drop, size = fixed, 0
    for entry in report.layers:
        planned = plan[entry.layer]
        sizes = entry.size
        if planned.prune or planned.cluster:
            technique = "prune" if planned.prune else "cluster"
            level = planned.prune.sparsity if planned.prune else planned.cluster.clusters
            row = report.row(entry.layer, technique, level)
            if row is not None:
                drop += max(0.0, row.drop)
                sizes = row.size
        keep = planned.keep_float and profile.float_allowed
        if profile.quantized and not keep:
            drop += costs.get(entry.layer, 0.0)
        size += sizes["float32" if keep else ("int8" if profile.quantized else profile.weights)]
    return {"drop": float(drop), "size": int(size)}
