"""Nested numpy data as datasets yield it: an array, or lists and dicts of arrays (several inputs or outputs).

Numpy only, so that tw.evaluate reads datasets without importing TensorFlow's Keras side.
"""

from __future__ import annotations

import numpy as np


def batched(value, is_batched: bool):
    """``value`` with every array given a batch axis unless ``is_batched`` (one sample at a time)."""
    if isinstance(value, dict):
        return {key: batched(item, is_batched) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return [batched(item, is_batched) for item in value]
    value = np.asarray(value)
    return value if is_batched else value[None]


def concatenated(parts: list):
    """The parts (same structure each) joined along the batch axis; ValueError/KeyError/IndexError on a mismatch."""
    first = parts[0]
    if isinstance(first, dict):
        return {key: concatenated([part[key] for part in parts]) for key in first}
    if isinstance(first, list):
        return [concatenated([part[i] for part in parts]) for i in range(len(first))]
    return np.concatenate(parts)
