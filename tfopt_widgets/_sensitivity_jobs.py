"""The independent jobs of ``tw.sensitivity``: score variants of a .tflite file on labelled data.

This module imports no TensorFlow (only numpy and LiteRT), so a worker process or a Dask worker that runs these jobs
starts in about a second and never forks a TensorFlow runtime. A job gets everything it needs as plain values
(file bytes, numpy arrays, byte patches); nothing in it refers to the user's Keras model.
"""

from __future__ import annotations

import numpy as np

# A variant of the base file: (name, patches, content). ``patches`` are (byte offset, new bytes) written over a copy
# of the base file's bytes (a pruned or clustered kernel, same length); ``content`` replaces the base file entirely
# (a quantized variant). One of them is empty.
Variant = tuple


def score_variants(base: bytes, variants: list, x: np.ndarray, y: np.ndarray, metric=None,
                   num_threads: int = 1) -> list[tuple[str, float]]:
    """[(variant name, metric value)] for each variant of ``base`` run with LiteRT on ``(x, y)``.

    ``metric(y_true, y_pred) -> float``, or accuracy when None. One interpreter per variant, with ``num_threads``
    threads: several jobs run side by side in threads or processes, so each stays on one core by default.
    """
    from ai_edge_litert.interpreter import Interpreter

    from .evaluation import _accuracy, _predict

    results = []
    for name, patches, content in variants:
        if content is None:
            buffer = bytearray(base)
            for offset, data in patches:
                buffer[offset:offset + len(data)] = data
            content = bytes(buffer)
        # No stderr capture here: it swaps a process-wide file descriptor, which threads running side by side
        # would corrupt. tw.sensitivity lets LiteRT print its once-per-process delegate banner beforehand.
        interpreter = Interpreter(model_content=content, num_threads=num_threads)
        predictions = _predict(interpreter, x)
        value = _accuracy(y, predictions) if metric is None else float(metric(y, predictions))
        results.append((name, value))
    return results
