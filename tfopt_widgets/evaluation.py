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

from ._finite import check_finite
from ._quiet import captured_stderr
from .errors import DataError, Error
from .tflite_model import TFLiteModel

__all__ = ["Metrics", "evaluate"]

# Samples per interpreter call when the file's batch is dynamic: fast, and small enough for any digits-sized model.
_CHUNK = 256


@dataclass(frozen=True)
class Metrics:
    """What ``tw.evaluate`` measured for one file.

    ``metric`` names what ``value`` is ("accuracy", or the user's callable's name); ``accuracy`` is ``value`` for
    the default metric and None for a user metric. ``latency_ms`` is the median of batch-1 runs on this machine.
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
        return self.value if self.metric == "accuracy" else None

    def as_dict(self) -> dict:
        """A plain dict of every field plus ``accuracy``: for tables, JSON and the widgets."""
        return {**asdict(self), "accuracy": self.accuracy}


def evaluate(tflite_model, data, metric=None, runs: int = 50, warmup: int = 5, *,
             num_threads: int | None = None) -> Metrics:
    """Run ``tflite_model`` on ``data`` with LiteRT and measure it.

    ``tflite_model``: a :class:`TFLiteModel` (``tw.convert``'s result), the file's bytes or a path to it.
    ``data``: ``(x, y)`` numpy arrays, or a tf.data dataset yielding ``(x, y)`` (batched or single samples).
    ``metric``: ``callable(y_true, y_pred) -> float`` with ``y_pred`` the float outputs; by default accuracy
    (argmax of the outputs against integer labels or one-hot rows; one sigmoid output counts above 0.5 as class 1).
    Latency: median milliseconds of ``runs`` single-sample invocations after ``warmup`` unmeasured ones.
    """
    model = _as_tflite_model(tflite_model)
    if int(runs) < 1:
        raise Error(f"runs={runs}: at least one timed run is needed.", field="runs")
    if int(warmup) < 0:
        raise Error(f"warmup={warmup}: use 0 or more.", field="warmup")
    interpreter = _interpreter(model, num_threads)
    details = interpreter.get_input_details()
    if len(details) != 1:
        raise Error(f"The file has {len(details)} inputs; tw.evaluate handles single-input models.",
                    field="tflite_model")
    x, y = _labelled(data, len(details[0]["shape_signature"]))
    _check_samples(x, y, details[0])
    with captured_stderr():  # LiteRT announces its XNNPACK delegate on stderr when it first applies it
        predictions = _predict(interpreter, x)
        latency_ms = _latency(model, x[:1], int(runs), int(warmup), num_threads)
    name = "accuracy" if metric is None else getattr(metric, "__name__", type(metric).__name__)
    value = _accuracy(y, predictions) if metric is None else float(metric(y, predictions))
    return Metrics(target=model.target, quantization=model.quantization, size=model.size, gzip_size=model.gzip_size,
                   metric=name, value=value, latency_ms=latency_ms, samples=len(x))


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


def _check_samples(x: np.ndarray, y: np.ndarray, detail: dict) -> None:
    """DataError unless x is non-empty, has one y per sample and samples shaped like the file's input."""
    if x.ndim == 0 or len(x) == 0:
        raise DataError("data is empty: x has no samples.", field="data")
    if y.ndim == 0 or len(y) != len(x):
        raise DataError(f"data has {len(x)} inputs (x) but {0 if y.ndim == 0 else len(y)} labels (y); one label per "
                        "sample is needed.", field="data")
    wanted = tuple(int(d) for d in detail["shape_signature"][1:])
    sample = x.shape[1:]
    if len(sample) != len(wanted) or any(w >= 0 and w != got for got, w in zip(sample, wanted)):
        shown = "(n, " + ", ".join("?" if w < 0 else str(w) for w in wanted) + ")"
        raise DataError(f"data: x has shape {x.shape}, but the file's input {detail['name']!r} takes {shown}. "
                        "Pass inputs shaped like the Keras model's input.", field="data")
    check_finite(x, "data", "inputs")


def _quantize(values: np.ndarray, detail: dict) -> np.ndarray:
    """Float data in the input's type: int8/uint8 inputs with the file's scale and zero point."""
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = detail["quantization"]
    if np.issubdtype(dtype, np.integer) and scale:
        info = np.iinfo(dtype)
        values = np.clip(np.round(values / scale + zero_point), info.min, info.max)
    return values.astype(dtype)


def _dequantize(values: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    if np.issubdtype(values.dtype, np.integer) and scale:
        return (values.astype(np.float32) - zero_point) * np.float32(scale)
    return values


def _predict(interpreter: Interpreter, x: np.ndarray):
    """Float outputs for every sample: one array, or a list for several outputs."""
    detail = interpreter.get_input_details()[0]
    signature = detail["shape_signature"]
    dynamic = signature[0] < 0
    batch = min(len(x), _CHUNK) if dynamic else int(detail["shape"][0])
    if dynamic or any(d < 0 for d in signature[1:]):
        interpreter.resize_tensor_input(detail["index"], [batch, *x.shape[1:]])
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    outputs = interpreter.get_output_details()
    results = [[] for _ in outputs]
    for start in range(0, len(x), batch):
        chunk = x[start:start + batch]
        count = len(chunk)
        if count < batch:  # pad the last chunk instead of resizing (and re-allocating) the interpreter
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - count, axis=0)])
        interpreter.set_tensor(detail["index"], _quantize(chunk, detail))
        # A fused LSTM keeps its state in variable tensors between invokes: every chunk starts a new sequence.
        interpreter.reset_all_variables()
        interpreter.invoke()
        for result, output in zip(results, outputs):
            result.append(_dequantize(interpreter.get_tensor(output["index"]), output)[:count])
    arrays = [np.concatenate(result) for result in results]
    return arrays[0] if len(arrays) == 1 else arrays


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


def _latency(model: TFLiteModel, sample: np.ndarray, runs: int, warmup: int, num_threads: int | None) -> float:
    """Median milliseconds of one batch-1 invocation, on a fresh interpreter left at batch 1."""
    interpreter = _interpreter(model, num_threads)
    detail = interpreter.get_input_details()[0]
    if any(d < 0 for d in detail["shape_signature"][1:]):
        interpreter.resize_tensor_input(detail["index"], list(sample.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], _quantize(sample, interpreter.get_input_details()[0]))
    for _ in range(warmup):
        interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0
