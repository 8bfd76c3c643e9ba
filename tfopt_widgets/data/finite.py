"""NaN and infinity in the user's data, found before any training, calibration or evaluation (numpy only)."""

from __future__ import annotations

import numpy as np

from ..errors import DataError


def check_finite(array: np.ndarray, field: str, what: str) -> None:
    """DataError naming the first sample with a NaN or infinite value: it would train or calibrate on garbage."""
    if not np.issubdtype(array.dtype, np.inexact):
        return
    finite = np.isfinite(array.reshape(len(array), -1)).all(axis=1)
    if not finite.all():
        index = int(np.argmin(finite))
        sample = np.asarray(array[index]).reshape(-1)
        bad = sample[~np.isfinite(sample)][0]
        raise DataError(f"{field} {what} contain {bad} (sample {index} is the first of {int((~finite).sum())}); "
                        "NaN or infinite values would train or calibrate the model on garbage. Drop or fix those "
                        "samples (e.g. x[np.isfinite(x).all(axis=tuple(range(1, x.ndim)))]).", field=field)
