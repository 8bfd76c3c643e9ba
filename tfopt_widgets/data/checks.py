"""Checks and adapters for the user's data: training, validation, calibration and evaluation sets.

Data arrives as numpy arrays, ``(x, y)`` tuples or ``tf.data`` datasets. Problems are reported as
:class:`DataError` naming the argument and both shapes, before any TensorFlow code sees the data. The user's
arrays are never modified (tf.data copies them).

A model with several inputs takes ``x`` as a list (or tuple) of arrays in its input order, or a dict keyed by
input name; a model with several outputs takes ``y`` the same way, by output. Checked, they become lists of arrays
in the model's order (a single-input, single-output model keeps plain arrays, exactly as before).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import DataError
from ..model.stack import np, tf
from . import nested
from .finite import check_finite


def sample_shape(model) -> tuple:
    """The model's per-sample input shape, None for unknown dimensions (single-input models)."""
    if len(model.inputs) != 1:
        raise DataError(f"Model {model.name!r} has {len(model.inputs)} inputs; sample_shape() describes one. Use "
                        "input_shapes(model).", field="model")
    return tuple(model.inputs[0].shape.as_list()[1:])


def input_shapes(model) -> list[tuple]:
    """Each input's per-sample shape, in the model's input order."""
    return [tuple(tensor.shape.as_list()[1:]) for tensor in model.inputs]


def _fits(actual: tuple, expected: tuple) -> bool:
    return len(actual) == len(expected) and all(e is None or a is None or e == a for e, a in zip(expected, actual))


def _by_name(data, names: list[str], field: str, model, what: str, kind: str) -> list:
    """``data`` (a list/tuple in model order, or a dict keyed by name) as a list in model order; DataError else."""
    count = len(names)
    listed = ", ".join(map(repr, names))
    if isinstance(data, dict):
        unknown = [key for key in data if key not in names]
        missing = [name for name in names if name not in data]
        if unknown or missing:
            problem = (f"has no {kind} named {', '.join(map(repr, unknown))}" if unknown
                       else f"misses {kind} {', '.join(map(repr, missing))}")
            raise DataError(f"{field}: the dict of {what} {problem}; model {model.name!r} has {kind}s {listed}.",
                            field=field)
        return [data[name] for name in names]
    if isinstance(data, (list, tuple)) and len(data) == count:
        return list(data)
    got = (f"a {type(data).__name__} of {len(data)}" if isinstance(data, (list, tuple)) else
           f"one array of shape {np.shape(data)}" if isinstance(data, np.ndarray) else type(data).__name__)
    raise DataError(f"{field}: model {model.name!r} has {count} {kind}s ({listed}), so its {what} must be a list of "
                    f"{count} arrays in that order or a dict keyed by {kind} name; got {got}.", field=field)


def _check_array(x, expected: tuple, model, field: str, name: str | None) -> np.ndarray:
    """One input's samples as a checked numpy array (``name``: which input, for a model with several)."""
    where = field if name is None else f"{field} input {name!r}"
    try:
        array = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where} could not be read as an array: {exc}.", field=field) from None
    if array.ndim == 0 or len(array) == 0:
        raise DataError(f"{where} is empty; it needs at least one sample.", field=field)
    if not _fits(array.shape[1:], expected):
        wanted = "(n, " + ", ".join("?" if e is None else str(e) for e in expected) + ")"
        takes = "inputs" if name is None else f"input {name!r}"
        raise DataError(f"{where} has shape {array.shape}, but model {model.name!r} takes {takes} of shape {wanted}. "
                        "Reshape the data (e.g. add a channel axis with x[..., None]) to match.", field=field)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise DataError(f"{where} has dtype {array.dtype}; numeric inputs are needed.", field=field)
    check_finite(array, field, "inputs" if name is None else f"input {name!r} values")
    return array


def check_inputs(x, model, field: str):
    """``x`` checked against the model's inputs: a numpy array for a single-input model, else a list of arrays in
    the model's input order (from a list/tuple in that order or a dict keyed by input name) with one sample
    count. DataError naming ``field`` and the input otherwise."""
    if len(model.inputs) == 1:
        if isinstance(x, dict):
            x = _by_name(x, list(model.input_names), field, model, "inputs", "input")[0]
        return _check_array(x, sample_shape(model), model, field, None)
    names = list(model.input_names)
    arrays = [_check_array(value, shape, model, field, name)
              for value, shape, name in zip(_by_name(x, names, field, model, "inputs", "input"), input_shapes(model),
                                            names)]
    counts = [len(array) for array in arrays]
    if len(set(counts)) > 1:
        raise DataError(f"{field}: the inputs hold different numbers of samples ("
                        + ", ".join(f"{name!r}: {count}" for name, count in zip(names, counts))
                        + "); every input needs one entry per sample.", field=field)
    return arrays


def samples_in(x) -> int:
    """Samples in checked inputs or labels (an array, or a list of arrays for several inputs/outputs)."""
    return len(x[0]) if isinstance(x, list) else len(x)


def take(x, index):
    """``x[index]`` for an array, or for each array of a list (several inputs/outputs)."""
    return [array[index] for array in x] if isinstance(x, list) else x[index]


def as_input_dtypes(x, model):
    """Checked inputs cast to the model's input dtypes (token ids stay integers)."""
    if isinstance(x, list):
        return [np.asarray(array, dtype=tensor.dtype.as_numpy_dtype) for array, tensor in zip(x, model.inputs)]
    return np.asarray(x, dtype=model.inputs[0].dtype.as_numpy_dtype)


def _check_classes(y: np.ndarray, output, model, field: str, name: str | None = None) -> None:
    """Integer class labels must lie in [0, classes) of a classifier output (sparse labels: one axis fewer)."""
    if not np.issubdtype(y.dtype, np.integer):
        return
    shape = output.shape.as_list()
    classes = shape[-1]
    if classes is None or classes < 2 or y.ndim != len(shape) - 1:
        return
    outside = (y < 0) | (y >= classes)
    if outside.any():
        index = int(np.argmax(outside.reshape(len(y), -1).any(axis=1)))
        value = int(y[index][outside[index]].flat[0]) if y.ndim > 1 else int(y[index])
        labels, outputs = (f"{field} labels", "outputs") if name is None else \
            (f"{field} labels of output {name!r}", f"output {name!r} has")
        raise DataError(f"{labels} hold class {value} (sample {index} is the first such), but model "
                        f"{model.name!r} {outputs} {classes} classes (0 to {classes - 1}). Check the labels, or give "
                        "the model's last layer as many units as there are classes.", field=field)


def split_labelled(data, field: str):
    """``(x, y)`` from a tuple or list of two; DataError for anything else."""
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return data[0], data[1]
    raise DataError(f"{field} must be an (x, y) pair of arrays; got {type(data).__name__}.", field=field)


def check_labelled(data, model, field: str):
    """Checked ``(x, y)`` of equal length: arrays, or lists of arrays in model order for several inputs (x) or
    outputs (y)."""
    x, y = split_labelled(data, field)
    x = check_inputs(x, model, field)
    samples = samples_in(x)
    if len(model.outputs) == 1:
        if isinstance(y, dict):
            y = _by_name(y, list(model.output_names), field, model, "labels (y)", "output")[0]
        y = np.asarray(y)
        if y.ndim == 0 or len(y) != samples:
            raise DataError(f"{field} has {samples} inputs but {0 if y.ndim == 0 else len(y)} labels; they must "
                            "match.", field=field)
        if np.issubdtype(y.dtype, np.number):
            check_finite(y, field, "labels")
            _check_classes(y, model.outputs[0], model, field)
        return x, y
    names = list(model.output_names)
    labels = []
    for value, name, output in zip(_by_name(y, names, field, model, "labels (y)", "output"), names, model.outputs):
        value = np.asarray(value)
        if value.ndim == 0 or len(value) != samples:
            raise DataError(f"{field} has {samples} inputs but {0 if value.ndim == 0 else len(value)} labels for "
                            f"output {name!r}; they must match.", field=field)
        if np.issubdtype(value.dtype, np.number):
            check_finite(value, field, f"labels of output {name!r}")
            _check_classes(value, output, model, field, name)
        labels.append(value)
    return x, labels


def _structure(value):
    """A list of arrays as the tuple tf.data and Keras take for several inputs or outputs."""
    return tuple(value) if isinstance(value, list) else value


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
    samples = samples_in(x)
    dataset = tf.data.Dataset.from_tensor_slices((_structure(x), _structure(y))).shuffle(samples, seed=0)
    dataset = dataset.batch(batch_size)
    steps = -(-samples // batch_size)
    return TrainingData(dataset, steps_per_epoch or steps, steps_per_epoch)


def _shape_text(spec) -> str:
    return str(tuple(spec.shape.as_list())) if isinstance(spec, tf.TensorSpec) and spec.shape.rank is not None \
        else str(spec)


def _input_specs(spec, model, field: str) -> tuple[list, bool]:
    """A dataset's input spec for a model with several inputs as (specs in model order, whether it is a dict keyed
    by input name); DataError unless it is a tuple/list in input order or such a dict."""
    names = list(model.input_names)
    if isinstance(spec, dict) and set(spec) == set(names):
        return [spec[name] for name in names], True
    if isinstance(spec, (tuple, list)) and len(spec) == len(names):
        return list(spec), False
    raise DataError(f"{field} yields inputs {spec}, but model {model.name!r} has {len(names)} inputs "
                    f"({', '.join(map(repr, names))}): yield ((x1, x2, ...), y) with the inputs in that order, or "
                    "({input name: x, ...}, y).", field=field)


def _check_input_specs(spec, model, field: str) -> bool:
    """A training dataset's inputs for a model with several inputs: in input order or keyed by input name, each
    batch shaped like its input. True when they are keyed (the dataset is then mapped to a tuple in model order)."""
    specs, keyed = _input_specs(spec, model, field)
    for name, got, expected in zip(model.input_names, specs, input_shapes(model)):
        if not isinstance(got, tf.TensorSpec) or got.shape.rank is None:
            continue
        if not _fits(tuple(got.shape.as_list()[1:]), expected):
            raise DataError(f"{field} yields batches of input {name!r} of shape {_shape_text(got)}, but model "
                            f"{model.name!r} takes (batch, {', '.join(map(str, expected))}) there. Batch the dataset "
                            "(dataset.batch(32)) and match the input shape.", field=field)
    return keyed


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
    keyed_inputs = len(model.inputs) > 1 and _check_input_specs(spec[0], model, field)
    output_names = list(model.output_names)
    keyed_outputs = len(output_names) > 1 and isinstance(spec[1], dict) and set(spec[1]) == set(output_names)
    if keyed_inputs or keyed_outputs:
        # By position: tfmot renames the output layers (label -> quant_label), so keys would no longer match them.
        input_names = list(model.input_names)

        def ordered(x, y, *rest):
            return ((tuple(x[name] for name in input_names) if keyed_inputs else x,
                     tuple(y[name] for name in output_names) if keyed_outputs else y, *rest))

        dataset = dataset.map(ordered)
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


def dataset_samples(dataset, model, field: str, limit: int, labelled: bool = True):
    """The first ``limit`` samples of a dataset (batched or one sample at a time) as numpy data, unchecked:
    ``(x, y)`` when ``labelled`` (it yields (inputs, labels)), else the inputs (it yields inputs, or (inputs,
    labels) pairs). Inputs and labels of several inputs/outputs come as lists, or dicts as the dataset keys them.
    """
    several = len(model.inputs) > 1
    spec = dataset.element_spec
    pairs = isinstance(spec, (tuple, list)) and len(spec) >= 2 and (
        labelled or not several or isinstance(spec[0], (tuple, list, dict)))
    if labelled and not pairs:
        raise DataError(f"{field} must yield (x, y) pairs (batched or not); it yields {spec}.", field=field)
    if several:
        _input_specs(spec[0] if pairs else spec, model, field)
    rank = len(model.inputs[0].shape)  # with the batch axis
    xs, ys, taken = [], [], 0
    for element in dataset.as_numpy_iterator():
        x, y = (element[0], element[1]) if pairs else (element, None)
        first = np.asarray(x[model.input_names[0]] if isinstance(x, dict) else x[0] if several else x)
        batched = first.ndim == rank
        xs.append(nested.batched(x, batched))
        ys.append(nested.batched(y, batched) if y is not None else None)
        taken += len(first) if batched else 1
        if taken >= limit:
            break
    if not xs:
        raise DataError(f"{field} is an empty dataset; it needs at least one sample.", field=field)
    x = _clip(_joined(xs, field), limit)
    return (x, _clip(_joined(ys, field), limit)) if labelled else x


def _joined(parts: list, field: str):
    try:
        return nested.concatenated(parts)
    except ValueError as exc:
        raise DataError(f"{field} yields samples of different shapes: {exc}.", field=field) from None


def _clip(value, limit: int):
    if isinstance(value, dict):
        return {key: _clip(item, limit) for key, item in value.items()}
    if isinstance(value, list):
        return [_clip(item, limit) for item in value]
    return value[:limit]
