"""tw.convert: a tf_keras model to a TensorFlow Lite file for a hardware target.

>>> import tfopt_widgets as tw
>>> tfl = tw.convert(model, target="edgetpu", representative_data=x_train[:200])
>>> tfl.inputs[0].dtype, tfl.inputs[0].shape_signature
('int8', (1, 8, 8, 1))

The target (``tfopt_widgets.targets``) decides the quantization mode, the input/output types and whether the
batch is fixed; ``quantization=`` overrides the mode where the target can run the other one. The user's model is
only read: never compiled, trained, built or given new weights.
"""

from __future__ import annotations

import re
import warnings

from .data import checks as data_checks
from .errors import ConversionError, DataError, ModelError, PlanError, TargetError
from .model.porting import ModelNotice, prepare
from .model.stack import ORIGINS_ATTRIBUTE, is_keras3_model, keras, np, record_origins, tf, tfmot
from .quiet import captured_stderr
from .runtime import ops
from .runtime import tflite as tflite_runtime
from .runtime.ops import user_layers
from .runtime.tflite import CALIBRATION_SAMPLES, configure_converter, rnn_in
from .targets import Target, get_target
from .tflite_model import Op, Tensor, TFLiteModel

__all__ = [
    "CALIBRATION_SAMPLES",
    "Op",
    "TFLiteModel",
    "Tensor",
    "calibratable",
    "convert",
    "converter_for",
    "prepared_model",
    "recurrent_layers",
    "representative_samples",
]


def convert(model, target: str | Target = "cpu", representative_data=None, quantization: str | None = None, *,
            int8_io: bool | None = None, calibration_samples: int = CALIBRATION_SAMPLES, plan=None,
            keep_float=()) -> TFLiteModel:
    """Convert ``model`` to TensorFlow Lite for ``target``.

    ``model`` is a tf_keras Sequential/Functional model or an object with a ``.model`` (``tw.optimize``'s result).
    ``target`` is one of ``tfopt_widgets.targets.TARGETS`` ("float32", "cpu", "gpu", "edgetpu", "hexagon").
    ``representative_data``: training inputs (numpy array or tf.data yielding inputs or (inputs, labels)) that
    calibrate int8/int16 activation ranges; at most ``calibration_samples`` of them are used, spread over the data.
    For a model with several inputs: a list of arrays in the model's input order or a dict keyed by input name
    (a dataset yields the same, alone or as (inputs, labels)); each sample calibrates the file's inputs by name.
    ``quantization`` ("none", "dynamic", "float16", "int8", "int16x8") overrides the target's default mode; a
    model with quantization-aware-trained layers converts to int8 wherever the target allows it.
    ``int8_io`` overrides whether an int8 file takes and returns int8 tensors (default: the target's setting).
    ``keep_float`` (layer names) and the layers a ``plan`` marks ``keep_float`` (default: the plan of
    ``tw.optimize``'s result) stay float in an int8 conversion: their ops are denylisted in TFLite's quantizer as
    the QuantizationDebugger does (selective post-training quantization). ``tfl.float_layers()`` reads back which
    layers really computed in float.

    Recurrent layers (LSTM, GRU, SimpleRNN, ..., also inside Bidirectional) convert only with a fixed batch, so
    their file takes batch 1 on every target (a Keras LSTM becomes TFLite's fused UNIDIRECTIONAL_SEQUENCE_LSTM,
    whose state persists between invokes: reset it with ``interpreter.reset_all_variables()``; other recurrent
    layers become WHILE loops). TFLite's calibrator crashes the process on a WHILE loop, so int8 and int16x8 unroll
    those layers. A ``tw.ModelNotice`` warning says what was done.

    Raises ModelError (Keras 3, subclassed, a shape the target cannot fix), TargetError (unknown target, a mode the
    target cannot run), DataError (int8 without representative data on a model that is not fully
    quantization-aware trained, empty or wrongly shaped data) and ConversionError (the converter's own message,
    the layer it names and what to do; ``.layer`` holds that layer).
    """
    if plan is None and not isinstance(model, keras.Model):
        plan = getattr(model, "plan", None)  # tw.optimize's result carries its plan
    float_layers = list(dict.fromkeys([*(plan.float_layers if plan is not None else ()), *keep_float]))
    keras_model = prepared_model(model)
    target = get_target(target)
    quantization_aware = _fully_quantization_aware(keras_model)
    samples = None
    if representative_data is not None:
        samples = representative_samples(keras_model, representative_data, calibration_samples)
    # QAT layers carry fake-quant ranges and become int8 whatever float mode is asked for; say what the file is.
    mode = target.quantization_for(quantization, calibrated=samples is not None or quantization_aware,
                                   quantization_aware=_has_quantization_aware_layers(keras_model))
    if samples is None and (mode == "int16x8" or (mode == "int8" and not quantization_aware)):
        raise DataError(
            f"quantization={mode!r} (target {target.name!r}) calibrates activation ranges from representative_data, "
            "and none was given. Pass 100-500 samples of training inputs, e.g. representative_data=x_train[:200]; "
            "only a fully quantization-aware-trained model (every layer with weights quantized) converts to int8 "
            "without it.", field="representative_data")
    io_int8 = target.int8_io if int8_io is None else bool(int8_io)
    if io_int8 and mode != "int8":
        raise TargetError(f"int8_io=True needs quantization='int8'; this conversion uses {mode!r}.", field="int8_io")
    if float_layers and mode in ("dynamic", "int16x8"):
        raise TargetError(f"keep_float ({', '.join(float_layers)}) applies to int8 conversion; this one uses "
                          f"{mode!r}. Pass representative_data (and quantization='int8' where needed).",
                          field="keep_float")
    recurrent, source, notices = recurrent_layers(keras_model), keras_model, []
    if io_int8:
        notices.extend(_token_input_notices(keras_model))
    if mode in _CALIBRATED:  # TFLite's calibrator must never see a WHILE loop: it crashes the process
        source, mode, samples = calibratable(keras_model, target, mode, samples, recurrent, quantization,
                                              float_layers, notices)
    origins = user_layers(keras_model)
    for _ in range(_RUNNABLE_ATTEMPTS):
        content, batch_one, looping = _convert_file(source, target, mode, samples, io_int8, float_layers, notices)
        tfl = TFLiteModel(content, target=target.name, quantization=mode, layer_origins=origins,
                          input_names=keras_model.input_names, output_names=keras_model.output_names)
        refused = _unpreparable_layers(tfl, keras_model.name, mode, float_layers)
        if not refused:
            break
        names = ", ".join(map(repr, list(refused)[:4])) + (f" and {len(refused) - 4} more" if len(refused) > 4 else "")
        notices.append(f"Model {keras_model.name!r}: LiteRT cannot run the int8 kernels of {names} with the ranges "
                       f"calibrated here ({next(iter(refused.values()))}), so those layers stay float in this file "
                       "(as keep_float would do; tfl.float_layers() lists them).")
        float_layers = [*float_layers, *refused]
    notices.append(_file_notice(keras_model, recurrent or {name: "Layer" for name in looping}, tfl,
                                batch_one=batch_one and not target.fixed_batch))
    for notice in filter(None, notices):
        warnings.warn(notice, ModelNotice, stacklevel=2)
    return tfl


# Conversions tried when LiteRT refuses to prepare an int8 kernel of the file (each keeps more layers float).
_RUNNABLE_ATTEMPTS = 3


def _unpreparable_layers(tfl: TFLiteModel, model_name: str, mode: str, float_layers: list[str]) -> dict[str, str]:
    """{layer: LiteRT's message} for the layers whose ops LiteRT cannot prepare in this file, when keeping them float
    could help (an int8 file); {} when the file runs. Every layer with an op of the refused type is named at once
    (MobileNetV3 has a HARD_SWISH in every block, and LiteRT stops at the first it cannot prepare).

    LiteRT's int8 kernels accept only some scale relations (its HARD_SWISH: "output_multiplier_exponent <= 0"),
    which calibration on a model far from trained can break; a file it cannot run raises ConversionError.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    if any(d < 0 for tensor in tfl.inputs for d in tensor.shape_signature[1:]):
        return {}  # sizes known only when data arrives: nothing to prepare yet
    try:
        Interpreter(model_content=tfl.content,
                    experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES).allocate_tensors()
        return {}
    except (RuntimeError, ValueError) as error:
        message = str(error).strip()
    match = re.search(r"Node number (\d+) \((\w+)\)", message)
    op_type = match.group(2) if match else None
    layers = list(dict.fromkeys(op.layer for op in tfl.ops if op.op == op_type and op.layer is not None))
    if not layers:  # not one of the file's ops that a layer owns: tw.evaluate reports it when the file runs
        return {}
    fresh = [layer for layer in layers if layer not in float_layers]
    if mode != "int8" or not fresh:
        raise ConversionError(f"The converted file of model {model_name!r} (layer {', '.join(map(repr, layers))}) does "
                              f"not run in LiteRT: {message.splitlines()[0]} Keep those layers float "
                              "(plan.keep_float), or convert with another quantization= mode.",
                              layer=layers[0], field="model")
    return dict.fromkeys(fresh, message.splitlines()[0])


def calibratable(model, target: Target, mode: str, samples, recurrent: dict[str, str], requested,
                  float_layers: list[str], notices: list[str]):
    """(model to convert, mode, samples) for a calibrated mode (int8, int16x8), with no WHILE loop left for TFLite's
    calibrator, which crashes the Python process on one (see :func:`_loop_layers`).

    Recurrent layers that would become WHILE loops are unrolled (a notice says so). A loop that cannot be unrolled
    (a variable sequence length, a tf.while_loop or tf.map_fn in a Lambda) makes the target's default mode stand
    in where the mode was the target's own choice (the cpu target with representative data: dynamic range), with a
    notice; otherwise ConversionError says what to do.
    """
    loops = _loop_layers(model, recurrent, target)
    if loops:
        unrolled = _unrolled(model, loops)
        if unrolled is None:  # Keras unrolls only a known number of time steps
            return _no_calibration(model, target, requested, float_layers, mode, samples,
                                   f"{_describe(loops)} becomes a TFLite WHILE op and cannot be unrolled (its "
                                   "sequence length is not fixed)", "Give the model a fixed length (e.g. "
                                   "keras.Input(shape=(100,)) and copy the weights across)", next(iter(loops)),
                                   notices)
        notices.append(f"Model {model.name!r}: {_describe(loops)} becomes a WHILE loop in TFLite, and TFLite's "
                       "calibrator crashes the Python process on WHILE loops (tensorflow/tensorflow#75140), so for "
                       f"quantization={mode!r} it was unrolled (unroll=True, same weights: ops for every time step, "
                       "so more ops and a larger file).")
        model = unrolled
    found, where = _loops_left(model)
    if found:  # a tf.while_loop / tf.map_fn in a Lambda or custom layer: nothing to unroll
        return _no_calibration(model, target, requested, float_layers, mode, samples,
                               f"{'Layer ' + ', '.join(map(repr, where)) if where else 'The model'} computes a loop "
                               "(tf.while_loop, tf.map_fn, ...), which becomes a TFLite WHILE op",
                               "Rewrite the loop with vectorized ops", where[0] if where else None, notices)
    return model, mode, samples


def _token_input_notices(model) -> list[str]:
    """Notices for float inputs that feed an Embedding: an int8 input quantizes their token ids (checked: ids
    0-299 at scale ~1.2 changed the Edge TPU file's outputs by 0.07), while an integer input stays integer."""
    notices = []
    for layer in model.layers:
        if not isinstance(layer, keras.layers.Embedding):
            continue
        try:
            source = layer.input
        except (AttributeError, ValueError):  # called more than once: no single input to name
            continue
        for tensor, name in zip(model.inputs, model.input_names):
            if source is tensor and tensor.dtype.is_floating:
                notices.append(f"Input {name!r} of model {model.name!r} feeds Embedding {layer.name!r}, and this "
                               "file's input is int8: its token ids are quantized to 256 steps, so ids are rounded "
                               "and look up the wrong rows. Build the model with keras.Input(..., dtype='int32'): "
                               "an integer input stays integer in an int8 file.")
    return notices


# Modes that calibrate activation ranges by running the model in TFLite's calibrator.
_CALIBRATED = ("int8", "int16x8")
# The converter's words when it cannot lower a loop's TensorList ops: their element shape depends on the batch.
_TENSOR_LIST_FAILURE = ("TensorListReserve", "Lowering tensor list ops", "element_shape to be static")
# The converter's words when an op has no kernel in the requested integer mode (int16x8 in TF 2.21; int8 keeps
# such ops float by itself).
_QUANTIZATION_FAILURE = ("not yet supported for op", "Failed to quantize")


def _convert_file(model, target: Target, mode: str, samples, io_int8: bool, float_layers: list[str],
                  notices: list[str]) -> tuple[bytes, bool, list[str]]:
    """The converted file, whether its batch is fixed to 1, and the layers that needed it fixed (named by the
    converter); the fallbacks taken are appended to ``notices``.

    A dynamic-batch conversion that fails on a loop's TensorList ops (a keras.backend.rnn or tf.while_loop in a
    Lambda) is tried again with batch 1 (recurrent layers get batch 1 from the start, see :func:`_converter`). An
    integer conversion that fails on an op without a kernel in that mode is tried again with float TFLite builtins
    allowed, so that op stays float (the documented "float fallback" of post-training integer quantization).
    Anything else raises ConversionError.
    """
    batch_one = bool(recurrent_layers(model))  # as _converter(batch_one=None) decides
    float_fallback, looping = False, []
    while True:
        converter = converter_for(model, fixed_batch=target.fixed_batch, batch_one=batch_one)
        configure_converter(converter, mode, samples, io_int8)
        if float_fallback:
            converter.target_spec.supported_ops = [*converter.target_spec.supported_ops,
                                                   tf.lite.OpsSet.TFLITE_BUILTINS]
        if float_layers and mode == "int8":
            content, failure = _attempt(
                converter, lambda c=converter: _selective_int8(c, model, float_layers, samples, io_int8))
        else:  # float modes keep every layer float anyway
            content, failure = _attempt(converter)
        fixed = target.fixed_batch or batch_one
        if failure is None:
            return content, fixed, looping
        text, error = failure
        if not fixed and any(words in text for words in _TENSOR_LIST_FAILURE):
            batch_one, looping = True, _layers_in(text, model)
            continue
        if mode in _CALIBRATED and not float_fallback and any(words in text for words in _QUANTIZATION_FAILURE):
            float_fallback = True
            notices.append(f"Model {model.name!r}: {_first_line(text)} The op stays float in this {mode} file "
                           "(the converter's float fallback); tfl.float_layers() lists the layers computed in "
                           "float.")
            continue
        raise _conversion_error(model, mode, text, error, batch_one=fixed) from error


def prepared_model(model):
    """The tf_keras model to convert: ``model`` itself, or ``model.model`` for tw.optimize's result.

    A Keras 3 model is rebuilt with tf_keras and nested models are inlined, so that op names map to the same layer
    names ``tw.inspect`` shows.
    """
    if not isinstance(model, keras.Model) and not is_keras3_model(model) and hasattr(model, "model"):
        model = model.model
    return prepare(model, purpose="convert")[0]


def _has_quantization_aware_layers(model) -> bool:
    return any(isinstance(layer, tfmot.quantization.keras.QuantizeWrapper) for layer in model.layers)


def _fully_quantization_aware(model) -> bool:
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


def _selective_int8(converter, model, float_layers: list[str], samples, int8_io: bool) -> bytes:
    """runtime.tflite.selective_int8 (the ops of ``float_layers`` kept float), with this package's errors."""
    if samples is None:
        raise DataError("keep_float calibrates the other layers from representative_data, and none was given. Pass "
                        "100-500 training inputs, e.g. representative_data=x_train[:200].",
                        field="representative_data")
    try:
        return ops.selective_int8(converter, model, float_layers, int8_io)
    except ops.NoOps as exc:
        raise PlanError(f"In model {model.name!r}: {exc}", layer=exc.layers[0], field="keep_float") from None


def _attempt(converter, convert=None) -> tuple[bytes | None, tuple[str, Exception] | None]:
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


def _conversion_error(model, mode: str, full: str, error: Exception, *, batch_one: bool) -> ConversionError:
    """ConversionError for a failed conversion of ``model``: the converter's key lines, the user's layers its
    diagnostics name (their locations carry the Keras name scope, e.g. ``lstm_text/lstm/PartitionedCall``) and
    what to do. The converter's whole text stays on the chained exception.
    """
    # The MLIR diagnostics quote call stacks of the user's own script; the lines that say what failed suffice here.
    key_lines = [re.sub(r"^.*?error:\s*", "", line).strip() for line in full.splitlines()
                 if "error:" in line or line.startswith(("TF Select ops", "Some ops are not supported"))]
    message = "\n".join(dict.fromkeys(key_lines)) or full or type(error).__name__
    layers = _layers_in(full, model)
    where = f" (layer {', '.join(map(repr, layers))})" if layers else ""
    if "TF Select ops" in full or "neither a custom op nor a flex op" in full:
        hint = ("The model uses TensorFlow ops that have no TFLite builtin kernel (named above); replace the layer "
                "that uses them (often a Lambda) with standard Keras layers. (Select TF ops would need the Flex "
                "delegate, which the LiteRT interpreter does not have.)")
    elif any(words in full for words in _TENSOR_LIST_FAILURE):
        hint = (f"{'Layer ' + ', '.join(map(repr, layers)) if layers else 'A layer'} runs a loop (a recurrent "
                "layer, tf.while_loop or tf.map_fn) whose "
                f"per-step tensors the converter cannot give static shapes{' even at batch 1' if batch_one else ''}. "
                "Give the model's input a full fixed shape, or rebuild a recurrent layer with unroll=True (and a "
                "fixed sequence length) and copy the weights across. The converter's own advice (Select TF ops, "
                "_experimental_lower_tensor_list_ops=False) gives a file that needs the Flex delegate, which the "
                "LiteRT interpreter does not have.")
    elif mode in _CALIBRATED and any(words in full for words in _QUANTIZATION_FAILURE):
        hint = (f"An op without an {mode} kernel stops a full-integer conversion: try quantization='dynamic' "
                "(or target='cpu'), or replace that layer.")
    else:
        hint = "The converter's message above names the op or layer that failed."
    return ConversionError(f"TFLite conversion of model {model.name!r}{where} with quantization={mode!r} failed:\n"
                           f"{message}\n{hint}", layer=layers[0] if layers else None, field="model")


def _first_line(text: str) -> str:
    line = next((line for line in text.splitlines() if line.strip()), text).strip()
    return re.sub(r"^.*?error:\s*", "", line)


def _layers_in(text: str, model) -> list[str]:
    """The user's layers that the converter's ``text`` names, in model order: its diagnostics locate ops by name
    scope, ``<model name>/<layer name>/...``; layer names may hold '/' themselves (inlined nested models)."""
    users = user_layers(model)
    found = set()
    for path in re.findall(re.escape(model.name) + r"/([^\s\"'@:;,()]+)", text):
        parts = path.split("/")
        match = next(("/".join(parts[:end]) for end in range(len(parts), 0, -1) if "/".join(parts[:end]) in users),
                     None)
        if match is not None:
            found.add(match)
    return list(dict.fromkeys(user for name, user in users.items() if name in found))


# -- recurrent layers ----------------------------------------------------------------------------------------------
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


def _loop_layers(model, recurrent: dict[str, str], target: Target) -> dict[str, str]:
    """The recurrent layers that would reach TFLite's calibrator as WHILE loops, which it cannot run.

    The calibrator crashes the whole process (a segmentation fault, not an exception) when it logs the tensors of
    a WHILE op: tensorflow/tensorflow#75140, a regression since TF 2.14 (#62281 for GRU), seen here with TF 2.21 on
    a Bidirectional(GRU). The converter fuses only a Keras LSTM (into UNIDIRECTIONAL_SEQUENCE_LSTM, which the
    calibrator runs); every other recurrent layer becomes a WHILE loop. Whether an LSTM fused (not with other
    activations, recurrent dropout, its states consumed, ...) is read from a float conversion at batch 1 of the
    model with the others unrolled: if a WHILE is left, the LSTMs are unrolled too.
    """
    users = user_layers(model)
    lstms = {users.get(layer.name, layer.name) for layer in model.layers
             if isinstance(rnn_in(layer), keras.layers.LSTM)}
    loops = {name: kind for name, kind in recurrent.items() if name not in lstms}
    if len(loops) < len(recurrent):
        probe = _unrolled(model, loops) if loops else model
        if probe is not None and _has_while_loops(probe, target):
            return dict(recurrent)
    return loops


def _has_while_loops(model, target: Target) -> bool:
    """Whether the float conversion of ``model`` at batch 1 has WHILE ops (False when it fails: the real conversion
    then says why)."""
    converter = converter_for(model, fixed_batch=target.fixed_batch, batch_one=True)
    content, failure = _attempt(converter)
    return failure is None and any(op.op == "WHILE" for op in TFLiteModel(content).ops)


def _loops_left(model) -> tuple[bool, list[str]]:
    """Whether ``model``'s TensorFlow graph (traced at batch 1) has a While loop that the converter will not fuse
    away, and the user's layers it sits in. Loops inside a Keras LSTM's "lstm_*" function (``api_implements``)
    are the fusable ones; :func:`_loop_layers` has already unrolled any that did not fuse. Tracing is cheap next
    to a conversion, and a WHILE op would crash TFLite's calibrator (see :func:`_loop_layers`).
    """
    specs = [tf.TensorSpec([1, *t.shape[1:]], t.dtype) for t in model.inputs]
    function = tf.function(lambda *xs: model(list(xs) if len(xs) > 1 else xs[0], training=False))
    graph = function.get_concrete_function(*specs).graph.as_graph_def()
    library = {f.signature.name: f for f in graph.library.function}

    def called(node) -> set[str]:
        names = set()
        for value in node.attr.values():
            names.add(value.func.name)
            names.update(f.name for f in value.list.func)
        return names & set(library)

    def loops_in(name: str, seen: set[str]) -> bool:
        function_def = library[name]
        implements = function_def.attr["api_implements"].s.decode() if "api_implements" in function_def.attr else ""
        if name in seen or implements.startswith("lstm_"):
            return False
        seen.add(name)
        return any(node.op in ("While", "StatelessWhile") or any(loops_in(f, seen) for f in called(node))
                   for node in function_def.node_def)

    scopes = [node.name for node in graph.node
              if node.op in ("While", "StatelessWhile") or any(loops_in(f, set()) for f in called(node))]
    users, found = user_layers(model), []
    for scope in scopes:  # node names are scoped "<model name>/<layer name>/...": the longest layer name that fits
        parts = scope.split("/")[1:] if scope.startswith(model.name + "/") else scope.split("/")
        match = next(("/".join(parts[:end]) for end in range(len(parts), 0, -1) if "/".join(parts[:end]) in users),
                     None)
        if match is not None and users[match] not in found:
            found.append(users[match])
    return bool(scopes), found


def _no_calibration(model, target: Target, requested, float_layers, mode: str, samples, what: str, fix: str,
                    layer: str | None, notices: list[str]):
    """For a model that cannot be calibrated (it keeps a WHILE loop): (model, the target's default mode, None) where
    the mode was the target's choice (not ``requested``) and that default needs no calibration, with a notice
    saying so; else ConversionError saying what to do."""
    crash = ("TFLite's calibrator crashes the Python process on WHILE loops (tensorflow/tensorflow#75140), so "
             f"quantization={mode!r} is not attempted")
    if requested is None and not float_layers and target.default_quantization not in _CALIBRATED:
        notices.append(f"Model {model.name!r}: {what}; {crash}. This file uses the target's default "
                       f"quantization={target.default_quantization!r} instead.")
        return model, target.default_quantization, None
    others = [f"quantization={m!r}" for m in ("dynamic", "float16") if m in target.allowed_quantizations]
    instead = (f", or convert with {' or '.join(others)}" if others else
               f" (target {target.name!r} runs only {', '.join(target.allowed_quantizations)})")
    raise ConversionError(f"Model {model.name!r}: {what}; {crash}. {fix}{instead}.", layer=layer, field="model")


def _unrolled(model, recurrent: dict[str, str]):
    """A copy of ``model`` with its recurrent layers rebuilt with ``unroll=True`` and the same weights, or None when
    a sequence length is not fixed (Keras unrolls only a known number of time steps). ``model`` is only read."""

    def unroll(config):
        if isinstance(config, dict):
            return {key: True if key == "unroll" else unroll(value) for key, value in config.items()}
        return [unroll(value) for value in config] if isinstance(config, list) else config

    users = user_layers(model)

    def clone(layer):
        config = layer.get_config()
        return layer.__class__.from_config(unroll(config) if users.get(layer.name) in recurrent else config)

    try:
        with tfmot.quantization.keras.quantize_scope():
            copy = keras.models.clone_model(model, clone_function=clone)
    except ValueError as error:  # tf_keras: "Unrolling requires a fixed number of timesteps."
        if "unroll" in str(error).lower() and ("timesteps" in str(error) or "time dimension" in str(error)):
            return None
        raise
    _copy_weights(model, copy)
    recorded = getattr(model, ORIGINS_ATTRIBUTE, None)
    if recorded:
        record_origins(copy, recorded)
    return copy


def _copy_weights(source, copy) -> None:
    """``source``'s weights into its clone ``copy``, layer by layer and by variable name.

    A rebuilt quantization-aware-trained layer may have fewer variables than its source: the cluster-preserving
    quantizer adds its centroids and indices only when the kernel it is built on is clustered, and a clone is built
    on fresh weights. Those variables only serve training; inference reads the kernel and the quantizer's ranges.
    """
    layers = {layer.name: layer for layer in source.layers}
    for layer in copy.layers:
        original = layers[layer.name]
        if len(original.weights) == len(layer.weights):
            layer.set_weights([np.array(w, copy=True) for w in original.get_weights()])
            continue
        values = {w.name.rsplit("/", 1)[-1]: w for w in original.weights}
        for variable in layer.weights:
            variable.assign(values[variable.name.rsplit("/", 1)[-1]])


def _describe(layers: dict[str, str]) -> str:
    return ", ".join(f"{kind} {name!r}" for name, kind in layers.items())


def _file_notice(model, recurrent: dict[str, str], tfl: TFLiteModel, *, batch_one: bool) -> str:
    """What a user of the file must know: that it takes batch 1 though the target allows any (``batch_one``), and
    that it keeps state between invokes (the fused LSTM op's state tensors are variables). "" when neither."""
    parts = []
    if batch_one:
        why = ("the converter fuses a Keras LSTM into UNIDIRECTIONAL_SEQUENCE_LSTM, and lowers other recurrent "
               "layers to WHILE loops, only then" if any(kind != "Layer" for kind in recurrent.values()) else
               "the converter lowers a loop to a WHILE op only when its tensors' shapes, batch included, are fixed")
        parts.append(f"{_describe(recurrent) if recurrent else 'A loop'} converts to TFLite only with a fixed batch "
                     f"({why}), so this file takes batch 1: one sample per invoke.")
    if any(raw.isVariable for raw in tfl._graph.tensors or []):
        lstms = _describe({name: kind for name, kind in recurrent.items() if "LSTM" in kind}) or "The fused LSTM"
        parts.append(f"{lstms} keeps its state in variable tensors of the file that persist between invokes: call "
                     "interpreter.reset_all_variables() before each new sequence.")
    return f"Model {model.name!r}: {' '.join(parts)}" if parts else ""
