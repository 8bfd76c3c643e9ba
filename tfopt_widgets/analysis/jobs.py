"""The independent jobs of ``tw.sensitivity``: compress one kernel of a .tflite file, score the file on labelled data.

This module imports no TensorFlow (only numpy, gzip and LiteRT), so a worker process or a Dask worker that runs these
jobs starts in about a second and never forks a TensorFlow runtime. A job gets everything it needs as plain values
(file bytes, numpy arrays); nothing in it refers to the user's Keras model.
"""

from __future__ import annotations

import functools
import gzip
import os
import pickle
import sys
import threading
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..errors import Error

# From this float file size on, a notebook scores variants in worker processes by default (MobileNetV2-0.35, 7 MB:
# 1.38x on 2 processes vs 1.12x on 2 threads; the digits CNN, 0.16 MB: threads, as processes take a second to start).
PROCESSES_FROM_BYTES = 1_000_000


@dataclass
class Kernel:
    """One layer's kernel, as Keras holds it and as the float file stores it."""

    keras: np.ndarray
    tflite: np.ndarray  # the file's layout, with a BatchNormalization folded in where the converter folded one
    offset: int  # where the file's bytes of that tensor start
    layout: tuple | None  # axes that turn the Keras kernel into the file's layout (None: work on the file's values)
    scale: np.ndarray | None  # per-output-channel factor the converter folded in, in the file's layout


# A variant of the base file: (name, content, change). ``content`` replaces the base file (a quantized variant), or
# ``change`` = (kernel, technique, level) is applied to a copy of the base file's bytes (same length) in the job;
# with neither, the base file itself is scored.
Variant = tuple


def score_variants(base: bytes, variants: list, x, y, metric=None, num_threads: int = 1,
                   outputs: list[str] | None = None) -> list[tuple[str, float, dict | None]]:
    """[(variant name, metric value, sizes of the changed kernel or None)] for each variant, run with LiteRT.

    ``metric(y_true, y_pred) -> float``, or accuracy when None (of the first output when there are several). One
    interpreter per variant, with ``num_threads`` threads: several jobs run side by side, so each stays on one core
    by default. A model with several inputs gives ``x`` as {input name: array}; with several outputs, ``outputs``
    names them in the Keras order (``y`` is then a list in that order).
    """
    from ai_edge_litert.interpreter import Interpreter

    from ..tflite.evaluation import predict, score

    results = []
    for name, content, change in variants:
        sizes = None
        if change is not None:
            kernel, technique, level = change
            values = compress(kernel, technique, level)
            sizes = kernel_sizes(values)
            buffer = bytearray(base)
            data = values.astype("<f4").tobytes()
            buffer[kernel.offset:kernel.offset + len(data)] = data
            content = bytes(buffer)
        elif content is None:
            content = base
        # No stderr capture here: it swaps a process-wide file descriptor, which threads running side by side
        # would corrupt. tw.sensitivity lets LiteRT print its once-per-process delegate banner beforehand.
        interpreter = Interpreter(model_content=content, num_threads=num_threads)
        predictions = predict(interpreter, x, outputs)
        value = score(y, predictions, metric)
        results.append((name, value, sizes))
    return results


def compress(kernel: Kernel, technique: str, level) -> np.ndarray:
    """The file's kernel after pruning or clustering the Keras kernel (a folded BatchNormalization applied again)."""
    source = kernel.keras if kernel.layout is not None else kernel.tflite
    values = prune(source, level) if technique == "prune" else cluster(source, level)
    if kernel.layout is not None:
        values = values.transpose(kernel.layout) * kernel.scale
    return np.ascontiguousarray(values, dtype=np.float32)


def prune(values: np.ndarray, sparsity: float) -> np.ndarray:
    """Magnitude pruning: the ``sparsity`` fraction of smallest-magnitude weights set to zero (as tfmot does)."""
    flat = values.reshape(-1).copy()
    count = round(sparsity * flat.size)
    if count:
        flat[np.argpartition(np.abs(flat), count - 1)[:count]] = 0.0
    return flat.reshape(values.shape)


def cluster(values: np.ndarray, clusters: int, iterations: int = 30) -> np.ndarray:
    """1-D k-means (Lloyd) of the weights into ``clusters`` shared values, centroids started at quantiles."""
    flat = values.reshape(-1).astype(np.float64)
    order = np.sort(flat)
    if np.unique(order).size <= clusters:
        return values.copy()
    centroids = np.quantile(order, (np.arange(clusters) + 0.5) / clusters)
    for _ in range(iterations):
        edges = (centroids[1:] + centroids[:-1]) / 2
        labels = np.searchsorted(edges, order)
        sums = np.bincount(labels, weights=order, minlength=clusters)
        counts = np.bincount(labels, minlength=clusters)
        updated = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
        if np.allclose(updated, centroids):
            break
        centroids = np.sort(updated)
    edges = (centroids[1:] + centroids[:-1]) / 2
    return centroids[np.searchsorted(edges, flat)].astype(np.float32).reshape(values.shape)


def kernel_sizes(kernel: np.ndarray) -> dict:
    """Estimated gzip bytes of a kernel (file layout) stored as int8 (per output channel), float16 and float32."""
    flat = kernel.reshape(kernel.shape[0], -1) if kernel.ndim > 1 else kernel.reshape(1, -1)
    peak = np.max(np.abs(flat), axis=1, keepdims=True)
    int8 = np.round(flat / np.where(peak > 0, peak / 127.0, 1.0)).astype(np.int8)
    return {dtype: len(gzip.compress(data.tobytes(), 9, mtime=0)) for dtype, data in
            (("int8", int8), ("float16", kernel.astype(np.float16)), ("float32", kernel.astype(np.float32)))}
def int4_size(kernel: np.ndarray) -> int:
    """Estimated gzip bytes of a kernel (file layout) stored as int4 per output channel, two values a byte (as
    LiteRT Quantizer packs them)."""
    flat = kernel.reshape(kernel.shape[0], -1) if kernel.ndim > 1 else kernel.reshape(1, -1)
    peak = np.max(np.abs(flat), axis=1, keepdims=True)
    levels = np.clip(np.round(flat / np.where(peak > 0, peak / 7.0, 1.0)), -8, 7).astype(np.int8).reshape(-1)
    nibbles = (levels & 0x0F).astype(np.uint8)
    if nibbles.size % 2:
        nibbles = np.append(nibbles, np.uint8(0))
    return len(gzip.compress((nibbles[0::2] | (nibbles[1::2] << 4)).tobytes(), 9, mtime=0))


def default_executor(base: bytes, metric, workers: int | None, interactive: bool | None = None) -> str:
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


def worker_count(executor, workers) -> int | None:
    if isinstance(executor, Executor):
        return getattr(executor, "_max_workers", None)
    return workers or min(2, os.cpu_count() or 1)


class Jobs:
    """Variants submitted to an executor as they are made, in chunks; ``results()`` waits for all of them."""

    def __init__(self, base: bytes, x, y, metric, executor, workers, progress=None, outputs=None):
        from ai_edge_litert.interpreter import Interpreter

        from ..quiet import captured_stderr

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

