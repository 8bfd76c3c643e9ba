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

from . import _data
from ._keras import is_keras3_model, keras, layer_origins, np, tf, tfmot
from ._quiet import captured_stderr
from .errors import ConversionError, DataError, ModelError, PlanError, TargetError
from .porting import prepare
from .targets import Target, get_target
from .tflite_model import Op, Tensor, TFLiteModel, layer_outputs

__all__ = ["CALIBRATION_SAMPLES", "Op", "TFLiteModel", "Tensor", "convert"]

# Enough to calibrate activation ranges (TF's guide suggests a few hundred); more only slows conversion.
CALIBRATION_SAMPLES = 200

# Layers tfmot inserts that are no layer of the user's (the input quantizer) or that never become ops.
_NOT_USER_LAYERS = ("InputLayer", "QuantizeLayer")


def convert(model, target: str | Target = "cpu", representative_data=None, quantization: str | None = None, *,
            int8_io: bool | None = None, calibration_samples: int = CALIBRATION_SAMPLES, plan=None,
            keep_float=()) -> TFLiteModel:
    """Convert ``model`` to TensorFlow Lite for ``target``.

    ``model`` is a tf_keras Sequential/Functional model or an object with a ``.model`` (``tw.optimize``'s result).
    ``target`` is one of ``tfopt_widgets.targets.TARGETS`` ("float32", "cpu", "gpu", "edgetpu", "hexagon").
    ``representative_data``: training inputs (numpy array or tf.data yielding inputs or (inputs, labels)) that
    calibrate int8/int16 activation ranges; at most ``calibration_samples`` of them are used, spread over the data.
    ``quantization`` ("none", "dynamic", "float16", "int8", "int16x8") overrides the target's default mode; a
    model with quantization-aware-trained layers converts to int8 wherever the target allows it.
    ``int8_io`` overrides whether an int8 file takes and returns int8 tensors (default: the target's setting).
    ``keep_float`` (layer names) and the layers a ``plan`` marks ``keep_float`` (default: the plan of
    ``tw.optimize``'s result) stay float in an int8 conversion: their ops are denylisted in TFLite's quantizer as
    the QuantizationDebugger does (selective post-training quantization). ``tfl.float_layers()`` reads back which
    layers really computed in float.

    Raises ModelError (Keras 3, subclassed, a shape the target cannot fix), TargetError (unknown target, a mode the
    target cannot run), DataError (int8 without representative data on a model that is not fully
    quantization-aware trained, empty or wrongly shaped data) and ConversionError (the converter's own message).
    """
    if plan is None and not isinstance(model, keras.Model):
        plan = getattr(model, "plan", None)  # tw.optimize's result carries its plan
    float_layers = list(dict.fromkeys([*(plan.float_layers if plan is not None else ()), *keep_float]))
    keras_model = _keras_model(model)
    target = get_target(target)
    quantization_aware = _fully_quantization_aware(keras_model)
    samples = None
    if representative_data is not None:
        samples = _calibration_samples(keras_model, representative_data, calibration_samples)
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
    converter = _converter(keras_model, fixed_batch=target.fixed_batch)
    _configure(converter, mode, samples, io_int8)
    if float_layers and mode == "int8":
        content = _run(converter, keras_model.name, mode,
                       lambda: _selective_int8(converter, keras_model, float_layers, samples, io_int8))
    elif float_layers and mode in ("dynamic", "int16x8"):
        raise TargetError(f"keep_float ({', '.join(float_layers)}) applies to int8 conversion; this one uses "
                          f"{mode!r}. Pass representative_data (and quantization='int8' where needed).",
                          field="keep_float")
    else:  # float modes keep every layer float anyway
        content = _run(converter, keras_model.name, mode)
    return TFLiteModel(content, target=target.name, quantization=mode, layer_origins=_user_layers(keras_model))


def _keras_model(model):
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


def _calibration_samples(model, data, limit: int) -> np.ndarray:
    """At most ``limit`` checked input samples from an array or a tf.data dataset, spread over the data."""
    if isinstance(data, tf.data.Dataset):
        data = _dataset_inputs(model, data, limit)
    x = _data.check_inputs(data, model, "representative_data")
    if len(x) > limit:
        # Evenly spaced rather than the first ones: data sorted by class would otherwise calibrate on a few classes.
        x = x[np.linspace(0, len(x) - 1, limit).round().astype(int)]
    return np.asarray(x, dtype=model.inputs[0].dtype.as_numpy_dtype)


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


def _converter(model, fixed_batch: bool):
    """A TFLiteConverter for ``model``; with ``fixed_batch`` its inputs get batch 1 instead of a dynamic batch."""
    if not fixed_batch:
        return tf.lite.TFLiteConverter.from_keras_model(model)
    # from_keras_model leaves the batch dimension -1; only a concrete function with fixed TensorSpecs fixes it.
    specs = []
    for tensor, name in zip(model.inputs, model.input_names):
        dims = tensor.shape.as_list()
        if any(d is None for d in dims[1:]):
            raise ModelError(
                f"Input {name!r} of model {model.name!r} has shape {tuple(dims)}; the target needs every size fixed "
                "except the batch. Rebuild the model with a full input shape, e.g. keras.Input(shape=(224, 224, 3)), "
                "and copy the weights across.", field="model")
        if dims[0] not in (None, 1):
            raise ModelError(f"Input {name!r} of model {model.name!r} has a fixed batch of {dims[0]}; the target "
                             "runs batch 1. Rebuild the model without batch_size= and copy the weights.", field="model")
        specs.append(tf.TensorSpec([1, *dims[1:]], tensor.dtype, name=name))
    output_names = list(model.output_names)

    @tf.function
    def serve(*inputs):
        result = model(list(inputs) if len(inputs) > 1 else inputs[0], training=False)
        if isinstance(result, dict):
            return result
        result = result if isinstance(result, (list, tuple)) else [result]
        # Keyed by the Keras output names, as from_keras_model does, so ops can be traced back to output layers.
        return dict(zip(output_names, result))

    return tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function(*specs)], model)


def _configure(converter, mode: str, samples: np.ndarray | None, int8_io: bool) -> None:
    """Set the converter's optimization flags for one quantization mode (TF's post-training quantization guide)."""
    if mode == "none":
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if mode not in ("int8", "int16x8"):
        return
    if samples is not None:
        def representative_dataset():
            for i in range(len(samples)):
                yield [samples[i:i + 1]]
        converter.representative_dataset = representative_dataset
    if mode == "int16x8":
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    elif samples is not None:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    # else: a QAT model without data. Its ranges come from training, but TF 2.21 checks TFLITE_BUILTINS_INT8
    # before it has looked at the graph and then demands representative data, so the ops set stays default.
    if int8_io:
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8


def _selective_int8(converter, model, float_layers: list[str], samples, int8_io: bool) -> bytes:
    """Full int8 except the ops of ``float_layers``: TFLite's QuantizationDebugger denylist, without the debugger.

    As the debugger does, the converter calibrates once (``_experimental_calibrate_only``) and the calibrated file
    is quantized with ``denylisted_nodes``: the output tensor names of the ops that compute those layers (a folded
    BatchNormalization names its convolution's op). The debugger object itself would also build an instrumented
    copy with a NumericVerify op per quantized op, and refuse a model where none is left (quantization-aware-trained
    layers are int8 already, kept-float ones are float): "Please check if the quantized model is in debug mode".
    ``fully_quantize=False`` keeps the inputs and outputs float like the converter's own int8 files; targets that
    want int8 I/O get it as the converter does. Plan.to_python's script runs a copy of this function, so it calls
    only what that script copies too.
    """
    if samples is None:
        raise DataError("keep_float calibrates the other layers from representative_data, and none was given. Pass "
                        "100-500 training inputs, e.g. representative_data=x_train[:200].",
                        field="representative_data")
    converter.experimental_mlir_quantizer = True
    converter._experimental_calibrate_only = True
    calibrated = converter.convert()
    outputs = layer_outputs(calibrated, _user_layers(model))
    missing = [layer for layer in float_layers if layer not in outputs]
    if missing:
        raise PlanError(f"keep_float names {', '.join(repr(n) for n in missing)}, which leaves no op in the file of "
                        f"model {model.name!r} (layers with ops: {', '.join(outputs)}).", layer=missing[0],
                        field="keep_float")
    content = _quantize_calibrated(converter, calibrated,
                                   sorted({name for layer in float_layers for name in outputs[layer]}))
    if int8_io:
        from tensorflow.lite.python.util import modify_model_io_type

        content = modify_model_io_type(content, tf.int8, tf.int8)
    return content


def _quantize_calibrated(converter, calibrated: bytes, denylisted_nodes: list[str]) -> bytes:
    """TFLite's quantizer on a file ``converter`` calibrated, the ops with outputs in ``denylisted_nodes`` kept
    float: the QuantizationDebugger's own quantize step, with float inputs and outputs (``fully_quantize=False``).
    Plan.to_python's script runs a copy of this function too.
    """
    from tensorflow.lite.python import convert as lite_convert

    return lite_convert.mlir_quantize(
        calibrated, disable_per_channel=converter._experimental_disable_per_channel, fully_quantize=False,
        enable_numeric_verify=False, denylisted_nodes=list(denylisted_nodes) or None)


def _run(converter, model_name: str, mode: str, convert=None) -> bytes:
    """converter.convert() (or ``convert()``) with harmless log lines kept out of the notebook; errors as ConversionError."""
    error = None
    # Harmless: "Statistics for quantized inputs were expected" (int8 I/O) and the C++ converter's log lines.
    with captured_stderr("Statistics for quantized inputs were expected") as log:
        try:
            content = (convert or converter.convert)()
        except (DataError, PlanError):  # keep_float's own checks say what to do already
            raise
        except Exception as exc:  # noqa: BLE001 -- the converter raises ConverterError, ValueError, RuntimeError, ...
            error = exc
    if error is None:
        return content
    logged = [line.strip() for line in log.text.splitlines() if "error" in line.lower()]
    full = "\n".join([str(error).strip(), *logged])
    # The MLIR diagnostics quote call stacks of the user's own script; the lines that say what failed suffice here
    # (the whole text stays on the chained exception).
    key_lines = [re.sub(r"^.*?error:\s*", "", line).strip() for line in full.splitlines()
                 if "error:" in line or line.startswith(("TF Select ops", "Some ops are not supported"))]
    message = "\n".join(dict.fromkeys(key_lines)) or full or type(error).__name__
    if "TF Select ops" in full or "neither a custom op nor a flex op" in full:
        hint = ("The model uses TensorFlow ops that have no TFLite builtin kernel (named above); replace the layer "
                "that uses them (often a Lambda) with standard Keras layers.")
    elif mode in ("int8", "int16x8"):
        hint = (f"An op without an {mode} kernel stops a full-integer conversion: try quantization='dynamic' "
                "(or target='cpu'), or replace that layer.")
    else:
        hint = "The converter's message above names the op or layer that failed."
    raise ConversionError(f"TFLite conversion of model {model_name!r} with quantization={mode!r} failed:\n{message}\n"
                          f"{hint}", field="model") from error


def _user_layers(model) -> dict[str, str]:
    """{layer name in ``model``: the user's layer name}, in model order, for layers that can become ops."""
    origins = layer_origins(model)
    return {layer.name: origins[layer.name] for layer in model.layers
            if type(layer).__name__ not in _NOT_USER_LAYERS}
