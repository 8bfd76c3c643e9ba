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

from ..errors import ConversionError, DataError, Error, PlanError, TargetError
from ..model.porting import ModelNotice
from ..model.stack import keras, tf
from ..runtime import ops
from ..runtime.ops import user_layers
from ..runtime.tflite import CALIBRATION_SAMPLES, configure_converter, consistent_biases
from ..targets import Target, get_target
from .converter import (
    CALIBRATED,
    attempt,
    converter_for,
    fully_quantization_aware,
    has_quantization_aware_layers,
    prepared_model,
    recurrent_layers,
    representative_samples,
)
from .file import Op, Tensor, TFLiteModel
from .precision import PrecisionStep, float_reference
from .recurrent import calibratable, file_notice

__all__ = ["CALIBRATION_SAMPLES", "Op", "TFLiteModel", "Tensor", "convert"]


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
    layers really computed in float. A ``plan``'s ``plan.precision`` layers get their precision from LiteRT Quantizer
    on the converted file (see ``tfopt_widgets.tflite.precision``); ``tfl.precisions()`` reads back what each layer
    got and ``tfl.layer_errors(data)`` each layer's error against the float model.

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
    precision = PrecisionStep.for_plan(plan, keras_model, target)  # None when the plan sets no precision
    quantization_aware = fully_quantization_aware(keras_model)
    samples = None
    if representative_data is not None:
        samples = representative_samples(keras_model, representative_data, calibration_samples)
    # QAT layers carry fake-quant ranges and become int8 whatever float mode is asked for; say what the file is.
    mode = target.quantization_for(quantization, calibrated=samples is not None or quantization_aware,
                                   quantization_aware=has_quantization_aware_layers(keras_model))
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
    if precision is not None:
        precision.check(mode, samples)
        float_layers = list(dict.fromkeys([*float_layers, *precision.kept_float(mode)]))
    recurrent, source, notices = recurrent_layers(keras_model), keras_model, []
    if io_int8:
        notices.extend(_token_input_notices(keras_model))
    if mode in CALIBRATED:  # TFLite's calibrator must never see a WHILE loop: it crashes the process
        source, mode, samples = calibratable(keras_model, target, mode, samples, recurrent, quantization,
                                              float_layers, notices)
    origins = user_layers(keras_model)
    for _ in range(_RUNNABLE_ATTEMPTS):
        content, batch_one, looping = _convert_file(source, target, precision.base_mode(mode) if precision else mode,
                                                    samples, io_int8, float_layers, notices)
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
    if precision is not None:
        tfl = precision.apply(tfl, mode, samples, notices)
    tfl.float_reference = tfl.float_reference or float_reference(source)
    notices.append(file_notice(keras_model, recurrent or {name: "Layer" for name in looping}, tfl,
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
        try:  # tracing the model: a name TensorFlow's scopes refuse ('my model') fails here, before converting
            converter = converter_for(model, fixed_batch=target.fixed_batch, batch_one=batch_one)
        except (Error, KeyboardInterrupt):
            raise
        except Exception as exc:  # TensorFlow raises ValueError, TypeError, ... while tracing
            raise _conversion_error(model, mode, str(exc), exc, batch_one=target.fixed_batch or batch_one) from exc
        configure_converter(converter, mode, samples, io_int8)
        if float_fallback:
            converter.target_spec.supported_ops = [*converter.target_spec.supported_ops,
                                                   tf.lite.OpsSet.TFLITE_BUILTINS]
        if float_layers and mode == "int8":
            content, failure = attempt(
                converter, lambda c=converter: _selective_int8(c, model, float_layers, samples, io_int8))
        else:  # float modes keep every layer float anyway
            content, failure = attempt(converter)
        fixed = target.fixed_batch or batch_one
        if failure is None:  # a QAT model's converted file can hold biases at the wrong scale: see there
            return (consistent_biases(content) if mode in CALIBRATED else content), fixed, looping
        text, error = failure
        if not fixed and any(words in text for words in _TENSOR_LIST_FAILURE):
            batch_one, looping = True, _layers_in(text, model)
            continue
        if mode in CALIBRATED and not float_fallback and any(words in text for words in _QUANTIZATION_FAILURE):
            float_fallback = True
            notices.append(f"Model {model.name!r}: {_first_line(text)} The op stays float in this {mode} file "
                           "(the converter's float fallback); tfl.float_layers() lists the layers computed in "
                           "float.")
            continue
        raise _conversion_error(model, mode, text, error, batch_one=fixed) from error


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
    named = _bad_name(full, model)
    if named is not None:  # the path of every op starts with the model's name: blame the name, not a layer
        layers = [] if named[0] == "model" else [named[1]]
    where = f" (layer {', '.join(map(repr, layers))})" if layers else ""
    if named is not None:
        hint = _bad_name_hint(*named)
    elif "TF Select ops" in full or "neither a custom op nor a flex op" in full:
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
    elif mode in CALIBRATED and any(words in full for words in _QUANTIZATION_FAILURE):
        hint = (f"An op without an {mode} kernel stops a full-integer conversion: try quantization='dynamic' "
                "(or target='cpu'), or replace that layer.")
    else:
        hint = "The converter's message above names the op or layer that failed."
    return ConversionError(f"TFLite conversion of model {model.name!r}{where} with quantization={mode!r} failed:\n"
                           f"{message}\n{hint}", layer=layers[0] if layers else None, field="model")


# What TensorFlow accepts in an op's name (graph.cc, IsValidNodeName): each op is named
# '<model name>/<layer name>/...', so a model or layer name outside this fails the conversion. Keras checks names
# against the looser name-scope pattern, which also lets a backslash through (a Windows path as a name).
_OP_NAME = re.compile(r"[A-Za-z0-9.][A-Za-z0-9_.\-/>]*")
_NAME_FAILURE = ("Node name contains invalid characters", "is not a valid scope name", "is not a valid root scope name")


def _bad_name(full: str, model) -> tuple[str, str] | None:
    """("model", name) or ("layer", name) when the converter failed on an op name that the model's or a layer's
    own name made invalid; None for any other failure."""
    if not any(words in full for words in _NAME_FAILURE):
        return None
    if not _OP_NAME.fullmatch(model.name):
        return "model", model.name
    return next((("layer", name) for name in user_layers(model) if not _OP_NAME.fullmatch(name)), None)


def _bad_name_hint(kind: str, name: str) -> str:
    bad = "".join(dict.fromkeys(c for i, c in enumerate(name)
                                if not _OP_NAME.fullmatch(c if i == 0 else "a" + c)))
    shown = ", ".join(repr(c) for c in bad) or "none"
    fixed = re.sub(r"[^A-Za-z0-9_.\-/>]", "_", name)
    fixed = fixed if _OP_NAME.fullmatch(fixed) else f"m{fixed}"
    allowed = "letters, digits and _ . - / > only, starting with a letter, digit or '.'"
    if kind == "model":
        return (f"The cause is the model's name, not a layer: {name!r} holds characters TensorFlow does not allow "
                f"in op names ({shown}), and every op is named after the model. Rename the model, keeping its "
                f"layers and weights: model = keras.Model(model.inputs, model.outputs, name={fixed!r}) "
                f"({allowed}).")
    return (f"The cause is the name of layer {name!r}: it holds characters TensorFlow does not allow in op names "
            f"({shown}). Rebuild the model with that layer named {fixed!r} ({allowed}) and copy the weights "
            "across (model.set_weights).")


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


