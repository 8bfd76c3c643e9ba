"""tw.evaluate: accuracy (or the user's metric), latency and size of a converted file, measured with LiteRT.

>>> import tfopt_widgets as tw
>>> m = tw.evaluate(tw.convert(model, "edgetpu", representative_data=x_train), data=(x_test, y_test))
>>> m.accuracy, m.latency_ms, m.size, m.gzip_size

The file runs in the LiteRT interpreter (``ai_edge_litert``) on this machine's CPU, so latency compares files with
each other here; it is not the latency on the target's chip. Int8/uint8 inputs are quantized and outputs
dequantized with the file's own scale and zero point, so ``data`` is always the float data the Keras model takes.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from ..data import nested
from ..data.finite import check_finite
from ..errors import DataError, Error
from ..quiet import captured_stderr
from .file import TFLiteModel
from .readback import in_input_type

__all__ = ["Metrics", "evaluate"]

# Samples per interpreter call when the file's batch is dynamic: fast, and small enough for any digits-sized model.
_CHUNK = 256
# The default metric's name for a file with several outputs: "accuracy (output 'label')".
_FIRST_OUTPUT_ACCURACY = "accuracy (output "


@dataclass(frozen=True)
class Metrics:
    """What ``tw.evaluate`` measured for one file.

    ``metric`` names what ``value`` is ("accuracy", "accuracy (output 'label')" for a file with several outputs,
    or the user's callable's name); ``accuracy`` is ``value`` for the default metric and None for a user metric.
    ``latency_ms`` is the median of batch-1 runs on this machine.
    """

    target: str | None
    quantization: str | None
    size: int
    gzip_size: int
    metric: str
    value: float
    latency_ms: float
    samples: int

    @property
    def accuracy(self) -> float | None:
        """Classification accuracy, when that was the metric."""
        return self.value if self.metric == "accuracy" or self.metric.startswith(_FIRST_OUTPUT_ACCURACY) else None

    def as_dict(self) -> dict:
        """A plain dict of every field plus ``accuracy``: for tables, JSON and the widgets."""
        return {**asdict(self), "accuracy": self.accuracy}


def evaluate(tflite_model, data, metric=None, runs: int = 50, warmup: int = 5, *,
             num_threads: int | None = None) -> Metrics:
    """Run ``tflite_model`` on ``data`` with LiteRT and measure it.

    ``tflite_model``: a :class:`TFLiteModel` (``tw.convert``'s result), the file's bytes or a path to it.
    ``data``: ``(x, y)`` numpy arrays, or a tf.data dataset yielding ``(x, y)`` (batched or single samples).
    A file with several inputs takes ``x`` as a list of arrays in the Keras model's input order, or a dict keyed by
    input name; one with several outputs takes ``y`` as a list in the Keras output order, or a dict keyed by output
    name. (The file's own order of inputs and outputs is the converter's, often not the Keras one: a ``TFLiteModel``
    from ``tw.convert`` knows the Keras order; for bytes or a path a list is taken in the file's order,
    ``TFLiteModel.input_names``, so pass dicts there.)
    ``metric``: ``callable(y_true, y_pred) -> float`` with ``y_pred`` the float outputs (for several outputs, lists
    of arrays for both, in the Keras output order); by default accuracy (argmax of the outputs against integer
    labels or one-hot rows; one sigmoid output counts above 0.5 as class 1), for several outputs the accuracy of
    the first one, named so: "accuracy (output 'label')".
    Latency: median milliseconds of ``runs`` single-sample invocations after ``warmup`` unmeasured ones.
    """
    model = _as_tflite_model(tflite_model)
    if int(runs) < 1:
        raise Error(f"runs={runs}: at least one timed run is needed.", field="runs")
    if int(warmup) < 0:
        raise Error(f"warmup={warmup}: use 0 or more.", field="warmup")
    interpreter = _interpreter(model, num_threads)
    details = interpreter.get_input_details()
    if len(details) == 1:
        x, y = _labelled(data, len(details[0]["shape_signature"]))
        _check_samples(x, y, details[0])
    else:
        x, y = _labelled_inputs(data, model, interpreter)
    outputs = None  # one output: no names needed (reading them parses the whole file)
    if len(interpreter.get_output_details()) > 1:
        outputs = model.output_names
        y = _output_labels(y, outputs, [model.layer_origins.get(name, name) for name in outputs], _samples(x))
    with captured_stderr():  # LiteRT announces its XNNPACK delegate on stderr when it first applies it
        predictions = predict(interpreter, x, outputs)
        latency_ms = _latency(model, _first(x), int(runs), int(warmup), num_threads)
    if metric is not None:
        name = getattr(metric, "__name__", type(metric).__name__)
    else:
        name = default_metric_name(model.layer_origins.get(outputs[0], outputs[0]) if outputs else None)
    return Metrics(target=model.target, quantization=model.quantization, size=model.size, gzip_size=model.gzip_size,
                   metric=name, value=score(y, predictions, metric), latency_ms=latency_ms, samples=_samples(x))


def default_metric_name(first_output: str | None = None) -> str:
    """The default metric's name: "accuracy", or for several outputs "accuracy (output 'label')"."""
    return "accuracy" if first_output is None else f"{_FIRST_OUTPUT_ACCURACY}{first_output!r})"


def score(y, predictions, metric) -> float:
    """``metric(y, predictions)``, or accuracy: of the first output when there are several (lists, in order)."""
    if metric is not None:
        return float(metric(y, predictions))
    if isinstance(predictions, list):
        return _accuracy(np.asarray(y[0]), predictions[0])
    return _accuracy(y, predictions)


def _samples(x) -> int:
    """Samples in the inputs: one array, or {input name: array} for several inputs."""
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def _first(x):
    """The first sample of the inputs, batch axis kept."""
    return {name: values[:1] for name, values in x.items()} if isinstance(x, dict) else x[:1]


def _as_tflite_model(value) -> TFLiteModel:
    if isinstance(value, TFLiteModel):
        return value
    if isinstance(value, (bytes, bytearray)):
        return TFLiteModel(value)
    if isinstance(value, (str, Path)):
        return TFLiteModel.load(value)
    raise Error(f"Expected a TFLiteModel (tw.convert's result), .tflite bytes or a path; got {type(value).__name__}.",
                field="tflite_model")


def _interpreter(model: TFLiteModel, num_threads: int | None) -> Interpreter:
    try:
        return Interpreter(model_content=model.content, num_threads=num_threads)
    except (ValueError, RuntimeError) as exc:
        raise Error(f"LiteRT could not load the file: {exc}", field="tflite_model") from exc


def _labelled(data, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` numpy arrays from a pair of arrays or a dataset of (x, y) pairs; ``rank`` is the file's input rank."""
    if hasattr(data, "as_numpy_iterator"):  # tf.data, without importing TensorFlow here
        xs, ys = [], []
        for element in data.as_numpy_iterator():
            if not isinstance(element, (tuple, list)) or len(element) < 2:
                raise DataError("data must yield (x, y) pairs; it yields single tensors.", field="data")
            x, y = np.asarray(element[0]), np.asarray(element[1])
            batched = x.ndim == rank
            xs.append(x if batched else x[None])
            ys.append(y if batched else y[None])
        if not xs:
            raise DataError("data is an empty dataset; it needs at least one (x, y) sample.", field="data")
        try:
            return np.concatenate(xs), np.concatenate(ys)
        except ValueError as exc:
            raise DataError(f"data yields samples of different shapes: {exc}.", field="data") from None
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise DataError(f"data must be an (x, y) pair or a tf.data dataset of (x, y); got {type(data).__name__}.",
                        field="data")
    return np.asarray(data[0]), np.asarray(data[1])


def _labelled_inputs(data, model: TFLiteModel, interpreter: Interpreter):
    """({input name: array} in the Keras input order, y) for a file with several inputs, each input checked
    against the file's: ``data`` is an (x, y) pair or a dataset of them, x a list in ``model.input_names`` order
    or a dict keyed by input name."""
    names = model.input_names
    details = _input_details(interpreter, names)
    if hasattr(data, "as_numpy_iterator"):  # tf.data, without importing TensorFlow here
        x, y = _dataset_pairs(data, names, len(details[0]["shape_signature"]))
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
    else:
        raise DataError(f"data must be an (x, y) pair or a tf.data dataset of (x, y); got {type(data).__name__}.",
                        field="data")
    listed = ", ".join(map(repr, names))
    if isinstance(x, dict):
        if set(x) != set(names):
            raise DataError(f"data: x is a dict keyed {', '.join(map(repr, x))}, but the file's inputs are {listed}.",
                            field="data")
        x = [x[name] for name in names]
    elif not isinstance(x, (tuple, list)) or len(x) != len(names):
        raise DataError(f"data: the file has {len(names)} inputs ({listed}), so x must be a list of {len(names)} "
                        f"arrays in that order or a dict keyed by input name; got {type(x).__name__}.", field="data")
    arrays = {}
    for name, values, detail in zip(names, x, details):
        values = np.asarray(values)
        if values.ndim == 0 or len(values) == 0:
            raise DataError(f"data is empty: input {name!r} has no samples.", field="data")
        _check_shape(values, detail, f"input {name!r}")
        check_finite(values, "data", f"input {name!r} values")
        arrays[name] = values
    counts = {name: len(values) for name, values in arrays.items()}
    if len(set(counts.values())) > 1:
        raise DataError("data: the inputs hold different numbers of samples ("
                        + ", ".join(f"{name!r}: {n}" for name, n in counts.items()) + ").", field="data")
    return arrays, y


def _dataset_pairs(data, names: list[str], rank: int):
    """(x, y) of a dataset of (x, y) pairs with several inputs: x a list (or dict) of arrays, y as it is yielded
    (an array, or a list/dict of arrays); ``rank`` is the first input's rank in the file."""
    xs, ys = [], []
    for element in data.as_numpy_iterator():
        if not isinstance(element, (tuple, list)) or len(element) < 2:
            raise DataError("data must yield (x, y) pairs; it yields single tensors.", field="data")
        x, y = element[0], element[1]
        first = x.get(names[0]) if isinstance(x, dict) else x[0] if isinstance(x, (tuple, list)) else x
        batched = np.ndim(first) == rank
        xs.append(nested.batched(x, batched))
        ys.append(nested.batched(y, batched))
    if not xs:
        raise DataError("data is an empty dataset; it needs at least one (x, y) sample.", field="data")
    try:
        return nested.concatenated(xs), nested.concatenated(ys)
    except (ValueError, KeyError, IndexError) as exc:
        raise DataError(f"data yields samples of different shapes or structures: {exc}.", field="data") from None


def _output_labels(y, names: list[str], shown: list[str], samples: int) -> list[np.ndarray]:
    """Labels for a file with several outputs as a list in ``names`` order: from a list/tuple in that order or a
    dict keyed by output name (``names``: the file's, ``shown``: the user's layer names, e.g. label for
    quant_label)."""
    listed = ", ".join(map(repr, shown))
    if isinstance(y, dict):
        keys = {**dict(zip(names, names)), **dict(zip(shown, names))}
        unknown = [key for key in y if key not in keys]
        chosen = {keys[key]: value for key, value in y.items() if key in keys}
        if unknown or set(chosen) != set(names):
            raise DataError(f"data: y is a dict keyed {', '.join(map(repr, y))}, but the file's outputs are "
                            f"{listed}.", field="data")
        y = [chosen[name] for name in names]
    elif not isinstance(y, (tuple, list)) or len(y) != len(names):
        raise DataError(f"data: the file has {len(names)} outputs ({listed}), so y must be a list of {len(names)} "
                        "label arrays in that order or a dict keyed by output name; got "
                        f"{type(y).__name__}.", field="data")
    labels = []
    for name, values in zip(shown, y):
        values = np.asarray(values)
        if values.ndim == 0 or len(values) != samples:
            raise DataError(f"data has {samples} inputs (x) but {0 if values.ndim == 0 else len(values)} labels for "
                            f"output {name!r}; one label per sample is needed.", field="data")
        labels.append(values)
    return labels


def _input_details(interpreter: Interpreter, names: list[str]) -> list[dict]:
    """The interpreter's input details for the signature input ``names``, in that order."""
    return _details(interpreter, names, "inputs")


def _details(interpreter: Interpreter, names: list[str], kind: str) -> list[dict]:
    """The interpreter's details of its ``kind`` ("inputs", "outputs") with signature names ``names``, in that
    order: the file's own order need not be the Keras model's. Without a signature, tensor names stand in."""
    details = interpreter.get_input_details() if kind == "inputs" else interpreter.get_output_details()
    by_index = {int(detail["index"]): detail for detail in details}
    signatures = interpreter.get_signature_list()
    indices = {}
    if len(signatures) == 1:
        runner = interpreter.get_signature_runner(next(iter(signatures)))
        named = runner.get_input_details() if kind == "inputs" else runner.get_output_details()
        indices = {name: int(detail["index"]) for name, detail in named.items()}
    indices = {**{detail["name"]: int(detail["index"]) for detail in details}, **indices}
    missing = [name for name in names if indices.get(name) not in by_index]
    if missing:
        raise Error(f"The file has no {kind[:-1]} named {', '.join(map(repr, missing))} (its {kind}: "
                    f"{', '.join(map(repr, indices))}).", field="tflite_model")
    return [by_index[indices[name]] for name in names]


def _check_samples(x: np.ndarray, y: np.ndarray, detail: dict) -> None:
    """DataError unless x is non-empty, has one y per sample and samples shaped like the file's input."""
    if x.ndim == 0 or len(x) == 0:
        raise DataError("data is empty: x has no samples.", field="data")
    if y.ndim == 0 or len(y) != len(x):
        raise DataError(f"data has {len(x)} inputs (x) but {0 if y.ndim == 0 else len(y)} labels (y); one label per "
                        "sample is needed.", field="data")
    _check_shape(x, detail, "x")
    check_finite(x, "data", "inputs")


def _check_shape(values: np.ndarray, detail: dict, what: str) -> None:
    """DataError unless the samples of ``values`` have the shape of the file's input ``detail`` (-1: any size)."""
    wanted = tuple(int(d) for d in detail["shape_signature"][1:])
    sample = values.shape[1:]
    if len(sample) != len(wanted) or any(w >= 0 and w != got for got, w in zip(sample, wanted)):
        shown = "(n, " + ", ".join("?" if w < 0 else str(w) for w in wanted) + ")"
        raise DataError(f"data: {what} has shape {values.shape}, but the file's input {detail['name']!r} takes "
                        f"{shown}. Pass inputs shaped like the Keras model's inputs.", field="data")


def _quantize(values: np.ndarray, detail: dict) -> np.ndarray:
    """Float data in the input's type: int8/uint8 inputs with the file's scale and zero point."""
    return in_input_type(values, detail["dtype"], *detail["quantization"])


def _dequantize(values: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    if np.issubdtype(values.dtype, np.integer) and scale:
        return (values.astype(np.float32) - zero_point) * np.float32(scale)
    return values


def predict(interpreter: Interpreter, x, outputs: list[str] | None = None):
    """Float outputs for every sample: one array, or a list for several outputs (in ``outputs`` order: their
    signature names; None: the file's order). ``x``: one array, or {signature input name: array} for several
    inputs."""
    if isinstance(x, dict):
        feeds = list(zip([d["index"] for d in _input_details(interpreter, list(x))], x.values()))
    else:
        feeds = [(interpreter.get_input_details()[0]["index"], x)]
    total = len(feeds[0][1])
    detail = _detail(interpreter, feeds[0][0])
    dynamic = detail["shape_signature"][0] < 0
    batch = min(total, _CHUNK) if dynamic else int(detail["shape"][0])
    for index, values in feeds:
        if dynamic or any(d < 0 for d in _detail(interpreter, index)["shape_signature"][1:]):
            interpreter.resize_tensor_input(index, [batch, *values.shape[1:]])
    interpreter.allocate_tensors()
    (detail, x), *others = [(_detail(interpreter, index), values) for index, values in feeds]
    outputs = interpreter.get_output_details() if outputs is None else _details(interpreter, outputs, "outputs")
    results = [[] for _ in outputs]
    for start in range(0, total, batch):
        chunk = x[start:start + batch]
        count = len(chunk)
        if count < batch:  # pad the last chunk instead of resizing (and re-allocating) the interpreter
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - count, axis=0)])
        interpreter.set_tensor(detail["index"], _quantize(chunk, detail))
        for other, values in others:  # the other inputs of a file with several
            part = values[start:start + batch]
            if count < batch:
                part = np.concatenate([part, np.repeat(part[-1:], batch - count, axis=0)])
            interpreter.set_tensor(other["index"], _quantize(part, other))
        # A fused LSTM keeps its state in variable tensors between invokes: every chunk starts a new sequence.
        interpreter.reset_all_variables()
        interpreter.invoke()
        for result, output in zip(results, outputs):
            result.append(_dequantize(interpreter.get_tensor(output["index"]), output)[:count])
    arrays = [np.concatenate(result) for result in results]
    return arrays[0] if len(arrays) == 1 else arrays


def _detail(interpreter: Interpreter, index: int) -> dict:
    """The input detail of tensor ``index`` (as it is now: shapes change with resizing)."""
    return next(detail for detail in interpreter.get_input_details() if detail["index"] == index)


def _accuracy(y_true: np.ndarray, y_pred) -> float:
    if isinstance(y_pred, list):
        raise Error(f"The file has {len(y_pred)} outputs; pass metric=callable(y_true, y_pred) to say how to score "
                    "them (y_pred is then a list of arrays).", field="metric")
    n = len(y_pred)
    if y_pred.ndim >= 2 and y_pred.shape[-1] > 1:
        predicted = y_pred.argmax(-1)
        truth = y_true.argmax(-1) if y_true.shape == y_pred.shape else y_true
    else:  # one unit: a sigmoid probability of class 1
        predicted = (y_pred.reshape(n, -1)[:, 0] > 0.5).astype(np.int64)
        truth = y_true
    try:
        truth = np.asarray(truth).reshape(predicted.shape)
    except ValueError:
        raise DataError(f"Labels of shape {y_true.shape} do not fit outputs of shape {y_pred.shape}: use integer "
                        "class ids (n,) or one-hot rows, or pass metric=callable(y_true, y_pred).",
                        field="data") from None
    return float(np.mean(predicted == truth))


def _latency(model: TFLiteModel, sample, runs: int, warmup: int, num_threads: int | None) -> float:
    """Median milliseconds of one batch-1 invocation, on a fresh interpreter left at batch 1. ``sample``: one
    array, or {signature input name: array} for several inputs."""
    interpreter = _interpreter(model, num_threads)
    if isinstance(sample, dict):
        feeds = list(zip(_input_details(interpreter, list(sample)), sample.values()))
    else:
        feeds = [(interpreter.get_input_details()[0], sample)]
    for detail, values in feeds:
        if any(d < 0 for d in detail["shape_signature"][1:]):
            interpreter.resize_tensor_input(detail["index"], list(values.shape))
    interpreter.allocate_tensors()
    for detail, values in feeds:
        interpreter.set_tensor(detail["index"], _quantize(values, _detail(interpreter, detail["index"])))
    for _ in range(warmup):
        interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0
