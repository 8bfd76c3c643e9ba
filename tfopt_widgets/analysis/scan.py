"""tw.sensitivity: how much each layer's metric drops when only that layer is compressed, and tw.suggest_plan.

Nothing is fine-tuned: each measurement is one file run on the data, so it shows which layers tolerate compression
before any training is spent. Every measurement starts from the model's float TFLite file:

* quantize: TFLite's ``QuantizationDebugger`` calibrates once; per layer it gives the int8 error of that layer's
  output (``quant_error``, the RMS of the difference to float), the metric with ONLY that layer int8 (the drop), and
  the metric of the full-int8 file with that layer kept float (``keep_float_value``); with the level "int4"
  (``levels={"quantize": ("int8", "int4")}``), the metric with ONLY that layer's weights int4 (LiteRT Quantizer, as
  tw.convert gives plan.precision(layer, weights="int4")), for each layer LiteRT can give int4 weights;
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

import gzip
import time
from concurrent.futures import Executor

import numpy as np

from ..errors import Error
from . import findings
from .findings import DEFAULT_LEVELS, EVALUATION_SAMPLES, TECHNIQUES, LayerSize, SensitivityReport, SensitivityRow
from .jobs import Jobs, default_executor, int4_size, kernel_sizes, worker_count
from .variants import Quantizer, int4_files, layer_kernels

# -- measuring -----------------------------------------------------------------------------------------------------

def sensitivity(model, data, techniques=TECHNIQUES, levels=None, executor: Executor | str | None = None,
                metric=None, *, representative_data=None, samples: int = EVALUATION_SAMPLES,
                workers: int | None = None, progress=None) -> SensitivityReport:
    """Per layer and technique, the metric drop when only that layer is compressed (no fine-tuning).

    ``data``: ``(x, y)`` arrays to measure on (at most ``samples`` of them, evenly spread), or a tf.data dataset of
    ``(x, y)`` (batched or not; its first ``samples``). Several inputs: x as a list of arrays in the model's input
    order or a dict keyed by input name; several outputs: y likewise (the default metric is then the accuracy of
    the first output). ``levels``: per
    technique, e.g. ``{"prune": (0.5, 0.9), "cluster": (16,)}`` (defaults: :data:`DEFAULT_LEVELS`); quantize takes
    "int8" and "int4" (int4 weights, layer by layer: ``{"quantize": ("int8", "int4")}``).
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
    from ..model.inspection import inspect
    from ..runtime.ops import user_layers
    from ..tflite.conversion import convert
    from ..tflite.converter import prepared_model
    from ..tflite.evaluation import default_metric_name

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
    kernels = layer_kernels(keras_model, float_file, info)
    sizes = {name: kernel_sizes(kernel.tflite) for name, kernel in kernels.items()}
    pending = []  # (variant name, layer, technique, level, extra)
    int8_file, debug = None, {}
    if executor is None:
        executor = default_executor(float_file.content, metric, workers)
    with Jobs(float_file.content, x, y, metric, executor, workers, progress, outputs) as jobs:
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
        if "int8" in levels.get("quantize", ()):
            # Quantized variants are made here (TensorFlow) while the workers already score the ones above.
            quantizer = Quantizer(keras_model, calibration, origins)
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
        if "int4" in levels.get("quantize", ()):
            wanted = [name for name in kernels if info[name].supports("quantize").ok]
            int4 = int4_files(float_file, wanted)
            jobs.submit([(f"quantize|{name}|int4", content, None) for name, content in int4.items()])
            for name in int4:
                sizes[name] = {**sizes[name], "int4": int4_size(kernels[name].tflite)}
                pending.append((f"quantize|{name}|int4", name, "quantize", "int4", {}))
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
                             worker_count(executor, workers),
                             executor if isinstance(executor, str) else type(executor).__name__)


def _check_levels(levels: dict) -> None:
    for level in levels.get("prune", ()):
        if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
            raise Error(f"Pruning levels are sparsities strictly between 0 and 1; got {level!r}.", field="levels")
    for level in levels.get("cluster", ()):
        if isinstance(level, bool) or not isinstance(level, int) or level < 2:
            raise Error(f"Clustering levels are cluster counts of at least 2; got {level!r}.", field="levels")
    quantize = tuple(levels.get("quantize", ("int8",)))
    if not quantize or set(quantize) - set(findings.QUANTIZE_LEVELS) or len(set(quantize)) != len(quantize):
        raise Error(f"The quantize technique's levels are some of {', '.join(map(repr, findings.QUANTIZE_LEVELS))} "
                    f"(post-training, per layer); got {quantize!r}.", field="levels")


def _evaluation_data(model, data, samples: int):
    """Checked ``(x, y)``, at most ``samples`` of them (evenly spread over arrays; the first ones of a tf.data
    dataset). Several inputs: x as {input name: array} in the model's input order; several outputs: y a list."""
    from ..data import checks as data_checks
    from ..model.stack import tf

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
