"""Checks and adapters for the user's data: training, validation, calibration and evaluation sets.

Data arrives as numpy arrays, ``(x, y)`` tuples or ``tf.data`` datasets. Problems are reported as
:class:`DataError` naming the argument and both shapes, before any TensorFlow code sees the data. The user's
arrays are never modified (tf.data copies them).
"""

from __future__ import annotations

from dataclasses import dataclass

from ._finite import check_finite
from ._keras import np, tf
from .errors import DataError


def sample_shape(model) -> tuple:
    """The model's per-sample input shape, None for unknown dimensions (single-input models)."""
    if len(model.inputs) != 1:
        raise DataError(f"Model {model.name!r} has {len(model.inputs)} inputs; tfopt-widgets handles numpy data only "
                        "for single-input models. Pass a tf.data.Dataset yielding (inputs, labels) instead.",
                        field="model")
    return tuple(model.inputs[0].shape.as_list()[1:])


def check_inputs(x, model, field: str) -> np.ndarray:
    """``x`` as a numpy array whose samples fit the model input; DataError otherwise."""
    try:
        array = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{field} could not be read as an array: {exc}.", field=field) from None
    if array.ndim == 0 or len(array) == 0:
        raise DataError(f"{field} is empty; it needs at least one sample.", field=field)
    expected = sample_shape(model)
    actual = array.shape[1:]
    fits = len(actual) == len(expected) and all(e is None or e == a for e, a in zip(expected, actual))
    if not fits:
        wanted = "(n, " + ", ".join("?" if e is None else str(e) for e in expected) + ")"
        raise DataError(f"{field} has shape {array.shape}, but model {model.name!r} takes inputs of shape {wanted}. "
                        "Reshape the data (e.g. add a channel axis with x[..., None]) to match.", field=field)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise DataError(f"{field} has dtype {array.dtype}; numeric inputs are needed.", field=field)
    check_finite(array, field, "inputs")
    return array


def _check_classes(y: np.ndarray, model, field: str) -> None:
    """Integer class labels must lie in [0, classes) of a classifier output (sparse labels: one axis fewer)."""
    if len(model.outputs) != 1 or not np.issubdtype(y.dtype, np.integer):
        return
    shape = model.outputs[0].shape.as_list()
    classes = shape[-1]
    if classes is None or classes < 2 or y.ndim != len(shape) - 1:
        return
    outside = (y < 0) | (y >= classes)
    if outside.any():
        index = int(np.argmax(outside.reshape(len(y), -1).any(axis=1)))
        value = int(y[index][outside[index]].flat[0]) if y.ndim > 1 else int(y[index])
        raise DataError(f"{field} labels hold class {value} (sample {index} is the first such), but model "
                        f"{model.name!r} outputs {classes} classes (0 to {classes - 1}). Check the labels, or give "
                        "the model's last layer as many units as there are classes.", field=field)


def split_labelled(data, field: str):
    """``(x, y)`` from a tuple or list of two; DataError for anything else."""
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return data[0], data[1]
    raise DataError(f"{field} must be an (x, y) pair of arrays or a tf.data.Dataset of (x, y) batches; got "
                    f"{type(data).__name__}.", field=field)


def check_labelled(data, model, field: str) -> tuple[np.ndarray, np.ndarray]:
    """Checked ``(x, y)`` numpy arrays of equal length."""
    x, y = split_labelled(data, field)
    x = check_inputs(x, model, field)
    y = np.asarray(y)
    if y.ndim == 0 or len(y) != len(x):
        raise DataError(f"{field} has {len(x)} inputs but {0 if y.ndim == 0 else len(y)} labels; they must match.",
                        field=field)
    if np.issubdtype(y.dtype, np.number):
        check_finite(y, field, "labels")
        _check_classes(y, model, field)
    return x, y


@dataclass
class TrainingData:
    """A batched dataset plus the step counts that pruning schedules and progress bars need."""

    dataset: object
    steps_per_epoch: int
    fit_steps: int | None  # passed to fit(): None lets Keras run the dataset to its end


def training_data(data, model, field: str, batch_size: int = 32, steps_per_epoch: int | None = None) -> TrainingData:
    """Check ``data`` against ``model`` and turn it into a batched tf.data pipeline."""
    if isinstance(data, tf.data.Dataset):
        return _dataset(data, model, field, steps_per_epoch)
    x, y = check_labelled(data, model, field)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=0).batch(batch_size)
    steps = -(-len(x) // batch_size)
    return TrainingData(dataset, steps_per_epoch or steps, steps_per_epoch)


def _dataset(dataset, model, field: str, steps_per_epoch: int | None) -> TrainingData:
    spec = dataset.element_spec
    if not isinstance(spec, tuple) or len(spec) < 2:
        raise DataError(f"{field} must yield (inputs, labels) batches; it yields {spec}.", field=field)
    if len(model.inputs) == 1 and isinstance(spec[0], tf.TensorSpec):
        expected = sample_shape(model)
        actual = tuple(spec[0].shape.as_list()[1:])
        if len(actual) != len(expected) or any(None not in (e, a) and e != a for e, a in zip(expected, actual)):
            raise DataError(f"{field} yields input batches of shape {tuple(spec[0].shape.as_list())}, but model "
                            f"{model.name!r} takes (batch, {', '.join(map(str, expected))}). Batch the dataset "
                            "(dataset.batch(32)) and match the input shape.", field=field)
    if steps_per_epoch is not None:
        return TrainingData(dataset, steps_per_epoch, steps_per_epoch)
    cardinality = int(dataset.cardinality())
    if cardinality == tf.data.INFINITE_CARDINALITY:
        raise DataError(f"{field} is an infinite dataset; pass steps_per_epoch= to say how long an epoch is.",
                        field=field)
    if cardinality == tf.data.UNKNOWN_CARDINALITY:
        cardinality = sum(1 for _ in dataset)
    if cardinality == 0:
        raise DataError(f"{field} is empty; it needs at least one batch.", field=field)
    return TrainingData(dataset, cardinality, None)
