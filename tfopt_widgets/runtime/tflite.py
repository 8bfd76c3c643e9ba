"""The script runtime's converter half: calibration samples, the TFLite converter for a Keras model, its settings.

Imports numpy, TensorFlow and tf_keras only.
"""

import numpy as np
import tensorflow as tf
import tf_keras as keras

# Enough to calibrate activation ranges (TF's guide suggests a few hundred); more only slows conversion.
CALIBRATION_SAMPLES = 200


def rnn_in(layer):
    """The recurrent layer that ``layer`` is or wraps (Bidirectional, TimeDistributed) when not unrolled, or None."""
    inner = [layer, *(getattr(layer, name, None) for name in ("layer", "forward_layer", "backward_layer"))]
    return next((x for x in inner if isinstance(x, keras.layers.RNN) and not x.unroll), None)


def calibration_samples(model, x, limit=CALIBRATION_SAMPLES):
    """At most ``limit`` of the inputs ``x`` (an array, or a list in the model's input order), evenly spread (data
    sorted by class still calibrates every class), in the model's input dtypes (token ids stay integers).

    Several inputs give {input name: array}: the converted file's input order is the converter's own (an image and
    features in may become features, image), so the representative dataset feeds them by name.
    """
    inputs = [np.asarray(part) for part in x] if isinstance(x, (list, tuple)) else [np.asarray(x)]
    if len(inputs[0]) > limit:
        pick = np.linspace(0, len(inputs[0]) - 1, limit).round().astype(int)
        inputs = [part[pick] for part in inputs]
    inputs = [part.astype(tensor.dtype.as_numpy_dtype, copy=False) for part, tensor in zip(inputs, model.inputs)]
    return inputs[0] if len(inputs) == 1 else dict(zip(model.input_names, inputs))


def make_converter(model, fixed_batch: bool, batch_one: bool = False):
    """A TFLiteConverter for ``model``, from a concrete function; with ``fixed_batch`` or ``batch_one`` its inputs
    take batch 1, else the batch stays dynamic (other sizes stay as the model has them).

    A model with a recurrent layer that is not unrolled needs ``batch_one``: the converter fuses a Keras LSTM into
    TFLite's UNIDIRECTIONAL_SEQUENCE_LSTM only when the batch is fixed, and lowers any other recurrent loop to a WHILE
    op only when its TensorLists have static element shapes, which include the batch ("'tf.TensorListReserve' op
    requires element_shape to be static"). A concrete function rather than from_keras_model, which saves the whole
    model as a SavedModel first and traces every layer's call again (MobileNetV2-0.35 after QAT: 25.8 s vs 4.4-6.8 s;
    same ops, tensor names, weights and signature).
    """
    fix = fixed_batch or batch_one
    specs = [tf.TensorSpec([1 if fix else dims[0], *dims[1:]], tensor.dtype, name=name)
             for tensor, name in zip(model.inputs, model.input_names) for dims in [tensor.shape.as_list()]]
    output_names = list(model.output_names)

    @tf.function
    def serve(*inputs):
        result = model(list(inputs) if len(inputs) > 1 else inputs[0], training=False)
        if isinstance(result, dict):
            return result
        result = result if isinstance(result, (list, tuple)) else [result]
        # Keyed by the Keras output names, as from_keras_model does, so ops can be traced back to output layers.
        return dict(zip(output_names, result))

    # The converter saves the function as a SavedModel along with an object that holds the variables. Given the
    # Keras model, that save traces every layer's call again (9.8 s instead of 0.6 s for a Bidirectional(GRU)); a
    # tf.Module holding just the variables gives the same file, byte for byte.
    holder = tf.Module()
    holder.model_variables = list(model.variables)
    return tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function(*specs)], holder)


def configure_converter(converter, mode: str, samples, int8_io: bool) -> None:
    """Set the converter's optimization flags for one quantization mode (TF's post-training quantization guide).

    ``samples``: calibration inputs from :func:`calibration_samples` (an array, or {input name: array}).
    """
    if mode == "none":
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if mode not in ("int8", "int16x8"):
        return
    if samples is not None:
        def representative_dataset():
            if isinstance(samples, dict):  # several inputs: by name (the file's order need not be Keras')
                for i in range(len(next(iter(samples.values())))):
                    yield {name: x[i:i + 1] for name, x in samples.items()}
                return
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


# Ops whose integer kernels add the bias in the accumulator, at scale input scale x weight scale: (input, weights,
# bias) positions in the op's inputs.
_BIASED_OPS = {"CONV_2D": (0, 1, 2), "DEPTHWISE_CONV_2D": (0, 1, 2), "FULLY_CONNECTED": (0, 1, 2)}


def consistent_biases(content: bytes) -> bytes:
    """``content`` (a converted .tflite file) with each integer bias re-quantized where its scale is not input
    scale x weight scale, the scale LiteRT's int8 / int16x8 kernels assume without reading the bias' own.

    In a model with QAT's FakeQuant ops, TF 2.21's converter quantizes the bias of a layer that QAT left alone,
    fed by a QAT layer, with the calibrated range of that input, while the input tensor keeps the QAT range:
    where the two differ the bias is off by their ratio (the digits demo, QAT of conv1 only: conv2's bias 15x too
    large, int8 accuracy 0.24 instead of 0.99). The file is returned unchanged when every bias is consistent.
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    names = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    kinds = {schema.TensorType.INT32: np.int32, schema.TensorType.INT64: np.int64}
    changed = False
    for graph in model.subgraphs:
        users = {}
        for tensor in graph.tensors:
            users[tensor.buffer] = users.get(tensor.buffer, 0) + 1
        for op in graph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            positions = _BIASED_OPS.get(names.get(max(code.builtinCode, code.deprecatedBuiltinCode)))
            if positions is None or len(op.inputs) <= positions[2] or min(op.inputs[i] for i in positions) < 0:
                continue
            x, w, b = (graph.tensors[op.inputs[i]] for i in positions)
            if b.type not in kinds or not all(t.quantization is not None and t.quantization.scale is not None
                                              and len(t.quantization.scale) for t in (x, w, b)):
                continue
            data = model.buffers[b.buffer].data
            if data is None or len(data) == 0:
                continue
            old = np.asarray(b.quantization.scale, np.float64)
            want = float(x.quantization.scale[0]) * np.asarray(w.quantization.scale, np.float64)
            want = np.broadcast_to(want, old.shape) if want.size == 1 else want
            if want.shape != old.shape or np.allclose(old, want, rtol=1e-3, atol=0):
                continue
            values = np.frombuffer(bytes(bytearray(data)), kinds[b.type]).astype(np.float64)
            info = np.iinfo(kinds[b.type])
            fixed = np.clip(np.round(values * np.broadcast_to(old, values.shape) / want), info.min, info.max)
            raw = np.frombuffer(fixed.astype(kinds[b.type]).tobytes(), np.uint8)
            if users[b.buffer] > 1:  # a buffer shared with another tensor: give this bias its own
                buffer = schema.BufferT()
                model.buffers.append(buffer)
                b.buffer = len(model.buffers) - 1
            model.buffers[b.buffer].data = raw
            b.quantization.scale = want.astype(np.float32)
            changed = True
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)) if changed else content
