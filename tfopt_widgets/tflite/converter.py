"""The converter for a model: the model to convert (a tw.optimize result, a Keras 3 model rebuilt), the checked
representative samples, the TFLite converter with the batch the target and its recurrent layers need, and one
attempt at converting with the converter's log kept out of the notebook."""

from __future__ import annotations

from ..data import checks as data_checks
from ..errors import DataError, ModelError, PlanError
from ..model.porting import prepare
from ..model.stack import is_keras3_model, keras, np, tf, tfmot
from ..quiet import captured_stderr
from ..runtime import tflite as tflite_runtime
from ..runtime.ops import user_layers
from ..runtime.tflite import rnn_in

# The modes whose conversion calibrates activation ranges on representative samples.
CALIBRATED = ("int8", "int16x8")


def prepared_model(model):
    """The tf_keras model to convert: ``model`` itself, or ``model.model`` for tw.optimize's result.

    A Keras 3 model is rebuilt with tf_keras and nested models are inlined, so that op names map to the same layer
    names ``tw.inspect`` shows.
    """
    if not isinstance(model, keras.Model) and not is_keras3_model(model) and hasattr(model, "model"):
        model = model.model
    return prepare(model, purpose="convert")[0]


def has_quantization_aware_layers(model) -> bool:
    return any(isinstance(layer, tfmot.quantization.keras.QuantizeWrapper) for layer in model.layers)


def fully_quantization_aware(model) -> bool:
    """True when every layer that has weights is wrapped for quantization-aware training (tfmot QuantizeWrapper).

    Such a model carries its own int8 ranges, so it converts to int8 without representative data. tfmot's
    QuantizeLayer (the input quantizer) holds only ranges and does not count.
    """
    wrapper = tfmot.quantization.keras.QuantizeWrapper  # QuantizeWrapperV2 derives from it
    wrapped = False
    for layer in model.layers:
        if isinstance(layer, wrapper):
            wrapped = True
        elif layer.weights and type(layer).__name__ != "QuantizeLayer":
            return False
    return wrapped


def representative_samples(model, data, limit: int):
    """At most ``limit`` checked input samples from an array or a tf.data dataset, spread over the data.

    One array for a single-input model. For several inputs (``data`` as a list of arrays in the model's input
    order, a dict keyed by input name, or a dataset yielding either) a dict {input name: array} in the model's
    input order: the converted file's input order is the converter's own (two_in_two_out's image, features become
    features, image), so the representative dataset feeds them by name (see runtime.tflite.configure_converter).
    """
    if isinstance(data, tf.data.Dataset):
        data = _dataset_inputs(model, data, limit) if len(model.inputs) == 1 else \
            data_checks.dataset_samples(data, model, "representative_data", limit, labelled=False)
    return tflite_runtime.calibration_samples(model, data_checks.check_inputs(data, model, "representative_data"), limit)


def _dataset_inputs(model, dataset, limit: int) -> np.ndarray:
    """Inputs of the first ``limit`` samples of a dataset yielding inputs or (inputs, labels), batched or not."""
    spec = dataset.element_spec
    spec = spec[0] if isinstance(spec, (tuple, list)) else spec
    expected = tuple(model.inputs[0].shape.as_list())
    shape = tuple(spec.shape.as_list()) if hasattr(spec, "shape") and spec.shape.rank is not None else None
    batched = shape is not None and len(shape) == len(expected)
    sample = shape[1:] if batched else shape
    if sample is None or len(sample) != len(expected) - 1 or any(
            None not in (got, want) and got != want for got, want in zip(sample, expected[1:])):
        raise DataError(f"representative_data yields inputs of shape {shape if shape is not None else spec}, but model "
                        f"{model.name!r} takes inputs of shape {expected} (None = any size). Yield training inputs "
                        "(or (inputs, labels) pairs), batched or one sample at a time.", field="representative_data")
    parts, count = [], 0
    for element in dataset.as_numpy_iterator():
        x = np.asarray(element[0] if isinstance(element, (tuple, list)) else element)
        parts.append(x if batched else x[None])
        count += len(parts[-1])
        if count >= limit:
            break
    return np.concatenate(parts)[:limit] if parts else np.zeros((0,), np.float32)


def converter_for(model, fixed_batch: bool, *, batch_one: bool | None = None):
    """runtime.tflite.make_converter for ``model``, after checking that its input shapes can be fixed as asked.

    ``batch_one=None`` fixes the batch to 1 for a model with a recurrent layer that is not unrolled (see there).
    """
    if batch_one is None:
        batch_one = bool(recurrent_layers(model))
    for tensor, name in zip(model.inputs, model.input_names):
        dims = tensor.shape.as_list()
        if fixed_batch and any(d is None for d in dims[1:]):
            raise ModelError(
                f"Input {name!r} of model {model.name!r} has shape {tuple(dims)}; the target needs every size fixed "
                "except the batch. Rebuild the model with a full input shape, e.g. keras.Input(shape=(224, 224, 3)), "
                "and copy the weights across.", field="model")
        if (fixed_batch or batch_one) and dims[0] not in (None, 1):
            raise ModelError(f"Input {name!r} of model {model.name!r} has a fixed batch of {dims[0]}; the target "
                             "runs batch 1. Rebuild the model without batch_size= and copy the weights.", field="model")
    return tflite_runtime.make_converter(model, fixed_batch, batch_one)


def attempt(converter, convert=None) -> tuple[bytes | None, tuple[str, Exception] | None]:
    """(content, None) from converter.convert() (or ``convert()``), or (None, (the converter's text, the error)).

    Harmless log lines stay out of the notebook: "Statistics for quantized inputs were expected" (int8 I/O) and the
    C++ converter's log lines, whose error lines join the exception's text.
    """
    with captured_stderr("Statistics for quantized inputs were expected") as log:
        try:
            return (convert or converter.convert)(), None
        except (DataError, PlanError):  # keep_float's own checks say what to do already
            raise
        except Exception as exc:  # noqa: BLE001 -- the converter raises ConverterError, ValueError, RuntimeError, ...
            error = exc
    logged = [line.strip() for line in log.text.splitlines() if "error" in line.lower()]
    return None, ("\n".join([str(error).strip(), *logged]), error)


def recurrent_layers(model) -> dict[str, str]:
    """{user layer name: what it is} for the layers that run a recurrent loop: a Keras RNN (LSTM, GRU, SimpleRNN,
    ConvLSTM, RNN(cell)) that is not unrolled, alone or inside Bidirectional / TimeDistributed."""
    users = user_layers(model)
    found = {}
    for layer in model.layers:
        rnn = rnn_in(layer)
        if rnn is not None:
            kind = type(rnn).__name__
            found[users.get(layer.name, layer.name)] = kind if rnn is layer else f"{type(layer).__name__}({kind})"
    return found
