"""The script runtime's op-to-layer map: which user layer each layer of a Keras model stands for, which op of a
converted file computes which layer, and selective int8 (the ops of some layers kept float).

Nothing is imported up front; the functions that need TensorFlow or tf_keras import it, so reading a file's
ops (``tw.TFLiteModel``, with LiteRT's copy of the schema) works in a process that never loads TensorFlow.
"""

# Set by tw.optimize on the model it returns: {layer name in that model: the user's layer name}.
ORIGINS_ATTRIBUTE = "_tfopt_layer_origins"
# Layers tfmot inserts that are no layer of the user's (the input quantizer) or that never become ops.
NOT_USER_LAYERS = ("InputLayer", "QuantizeLayer")


def layer_origins(model) -> dict:
    """{layer name of ``model``: the user's layer it came from}: recorded by tw.optimize, else a wrapper (tfmot's
    ``quant_conv1``) stands for the layer inside it."""
    recorded = getattr(model, ORIGINS_ATTRIBUTE, None) or {}
    return {layer.name: recorded.get(layer.name) or getattr(getattr(layer, "layer", None), "name", layer.name)
            for layer in model.layers}


def user_layers(model) -> dict:
    """{layer name in ``model``: the user's layer name}, in model order, for layers that can become ops.

    Bidirectional and TimeDistributed are the user's own layers, not wrappers of tfmot's, as tw.inspect lists them.
    """
    import tf_keras as keras

    origins = layer_origins(model)
    recorded = getattr(model, ORIGINS_ATTRIBUTE, None) or {}
    own = (keras.layers.Bidirectional, keras.layers.TimeDistributed)
    return {layer.name: layer.name if isinstance(layer, own) and layer.name not in recorded else origins[layer.name]
            for layer in model.layers if type(layer).__name__ not in NOT_USER_LAYERS}


# -- which op computes which layer ---------------------------------------------------------------------------------
# Ops that only change the representation of a value (float <-> int): they belong to the layer on their other side.
CASTS = {"QUANTIZE", "DEQUANTIZE"}
# Ops whose weights are one layer's main kernel: op -> the input that holds them (a Keras Embedding's GATHER: its
# table, the first input). tflite/readback.py adds each one's layout.
KERNEL_INPUTS = {"CONV_2D": 1, "TRANSPOSE_CONV": 1, "FULLY_CONNECTED": 1, "DEPTHWISE_CONV_2D": 1, "CONV_3D": 1,
                 "EMBEDDING_LOOKUP": 1, "GATHER": 0}


def tflite_schema():
    """TensorFlow's copy of the TFLite flatbuffer schema (object API); LiteRT's ``ai_edge_litert`` has the same."""
    from tensorflow.lite.python import schema_py_generated

    return schema_py_generated


def enum_names(enum_class) -> dict:
    """{value: name} of a schema enum (BuiltinOperator, TensorType, ...)."""
    return {value: name for name, value in vars(enum_class).items() if not name.startswith("_")}


def op_names(flatbuffer, schema) -> list:
    """The builtin op name of each op of the main graph (codes below 127 live in the deprecated 8-bit field)."""
    names = enum_names(schema.BuiltinOperator)
    codes = [flatbuffer.operatorCodes[raw.opcodeIndex] for raw in flatbuffer.subgraphs[0].operators or []]
    return [names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "UNKNOWN") for code in codes]


def tensor_name(raw) -> str:
    return raw.name.decode(errors="replace") if raw.name else ""


def indices(values) -> tuple:
    return () if values is None else tuple(int(v) for v in values)


def holds_data(flatbuffer, raw) -> bool:
    """Whether a tensor is a constant: its buffer holds data (in the flatbuffer, or after it in files over 2 GB)."""
    buffer = flatbuffer.buffers[raw.buffer] if raw.buffer < len(flatbuffer.buffers) else None
    return buffer is not None and ((buffer.data is not None and len(buffer.data) > 0) or buffer.offset > 1)


def signature_names(flatbuffer, kind: str) -> dict:
    """{tensor index: signature name} of the main graph's ``kind`` ("inputs" or "outputs"); a Keras conversion
    names the outputs after the output layers."""
    names = {}
    for signature in flatbuffer.signatureDefs or []:
        if signature.subgraphIndex == 0:
            for entry in getattr(signature, kind) or []:
                names[int(entry.tensorIndex)] = entry.name.decode()
    return names


def op_layers(flatbuffer, origins, schema) -> list:
    """(main user layer, every user layer folded in) of each op of a file's main graph, from its tensor names.

    ``flatbuffer``: the file read with ``schema``'s object API (``schema.ModelT.InitFromPackedBuf``); ``origins``
    maps layer names of the converted Keras model, in model order, to the user's layer names (empty: no op has a
    layer). Tensor names are Keras name scopes joined by ';' when ops were fused, e.g.
    ``digits_cnn/relu2/Relu;digits_cnn/bn2/FusedBatchNormV3;digits_cnn/conv2/Conv2D`` (QAT: ``.../quant_conv2/...``).
    An op's weights name its layer most reliably, then its outputs; graph outputs are named generically
    (``StatefulPartitionedCall:0``), so the signature's output names (the Keras output layers) stand in for them.
    QUANTIZE of a graph input and DEQUANTIZE into a graph output are format glue and have no layer. A padding layer
    folded into the convolution after it (MobileNetV2's strided depthwise convolutions) is not that op's main layer.
    """
    graph = flatbuffer.subgraphs[0]
    raw_ops = graph.operators or []
    if not origins:
        return [(None, ())] * len(raw_ops)
    order = {name: i for i, name in enumerate(origins)}
    raw_tensors = graph.tensors or []
    names = op_names(flatbuffer, schema)
    producers = {tensor: i for i, raw in enumerate(raw_ops) for tensor in indices(raw.outputs)}
    graph_inputs, graph_outputs = set(indices(graph.inputs)), set(indices(graph.outputs))
    padding = set()  # layers seen only as a Pad scope

    def named(tensor: int) -> list:
        """Layer names (of the converted model) in a tensor's name; the first scope is the model's own name."""
        if tensor < 0:
            return []
        found = []
        for scope in tensor_name(raw_tensors[tensor]).split(";"):
            parts = scope.split("/")[1:]
            # Layer names may hold '/' themselves (nested models inlined as 'outer/inner'): longest match first.
            match = next(("/".join(parts[start:end]) for start in range(len(parts))
                          for end in range(len(parts), start, -1) if "/".join(parts[start:end]) in origins), None)
            if match is not None:
                found.append(match)
                if parts[-1].rstrip("0123456789") in ("Pad", "PadV2"):
                    padding.add(match)
        return found

    def is_parameter(tensor: int) -> bool:
        """A constant, or a constant turned float by a DEQUANTIZE op (float16 weights)."""
        if tensor < 0:
            return False
        if holds_data(flatbuffer, raw_tensors[tensor]):
            return True
        producer = producers.get(tensor)
        if producer is None or names[producer] != "DEQUANTIZE":
            return False
        source = indices(raw_ops[producer].inputs)[0]
        return source >= 0 and holds_data(flatbuffer, raw_tensors[source])

    def is_io_cast(op_index: int) -> bool:
        if names[op_index] not in CASTS:
            return False
        raw = raw_ops[op_index]
        return bool(set(indices(raw.inputs)) & graph_inputs or set(indices(raw.outputs)) & graph_outputs)

    hints = {}
    for tensor, name in signature_names(flatbuffer, "outputs").items():
        if name in origins:
            hints[tensor] = name
            # ... and, walking back through QUANTIZE/DEQUANTIZE ops, the tensors it was cast from.
            while tensor in producers and names[producers[tensor]] in CASTS:
                tensor = indices(raw_ops[producers[tensor]].inputs)[0]
                hints[tensor] = name
    result = []
    for index, raw in enumerate(raw_ops):
        params = [n for t in indices(raw.inputs) if is_parameter(t) for n in named(t)]
        outputs = [n for t in indices(raw.outputs) for n in named(t)]
        hinted = [hints[t] for t in indices(raw.outputs) if t in hints]
        main_from = params or outputs or hinted
        if is_io_cast(index) or not main_from:
            result.append((None, ()))
            continue
        main = min([n for n in main_from if n not in padding] or main_from, key=order.__getitem__)
        every = sorted(set(params) | set(outputs) | set(hinted), key=order.__getitem__)
        result.append((origins[main], tuple(dict.fromkeys(origins[name] for name in every))))
    return result


def layer_outputs(content: bytes, origins, schema=None) -> dict:
    """{user layer: the output tensor names of every op that computes it, alone or folded with others}, in op order.

    What TFLite's quantizer takes as ``denylisted_nodes`` to keep a layer float; ``origins`` as for :func:`op_layers`.
    """
    schema = schema or tflite_schema()
    flatbuffer = schema.ModelT.InitFromPackedBuf(content, 0)
    graph = flatbuffer.subgraphs[0]
    outputs = {}
    for raw, (_, layers) in zip(graph.operators or [], op_layers(flatbuffer, origins, schema)):
        for layer in layers:
            outputs.setdefault(layer, []).extend(tensor_name(graph.tensors[i]) for i in indices(raw.outputs))
    return outputs


def op_table(content: bytes, origins, schema=None) -> list:
    """Each op of a file's main graph as plain data, in execution order: {"op": builtin name, "layer" and "layers"
    (as :func:`op_layers` gives them, ``origins`` likewise), "outputs": its output tensor names, "weighted": its main
    kernel (:data:`KERNEL_INPUTS`) is a constant, perhaps through a DEQUANTIZE (float16 or weight-only kernels),
    "quantized": an output carries a quantization scale, "cast": a QUANTIZE or DEQUANTIZE (:data:`CASTS`)}."""
    schema = schema or tflite_schema()
    flatbuffer = schema.ModelT.InitFromPackedBuf(content, 0)
    graph = flatbuffer.subgraphs[0]
    raw_ops, tensors = graph.operators or [], graph.tensors or []
    names = op_names(flatbuffer, schema)
    producers = {tensor: i for i, raw in enumerate(raw_ops) for tensor in indices(raw.outputs)}

    def weighted(name: str, inputs: tuple) -> bool:
        position = KERNEL_INPUTS.get(name)
        if position is None or len(inputs) <= position or inputs[position] < 0:
            return False
        tensor = inputs[position]
        producer = producers.get(tensor)
        if producer is not None and names[producer] == "DEQUANTIZE":
            tensor = indices(raw_ops[producer].inputs)[0]
        return tensor >= 0 and holds_data(flatbuffer, tensors[tensor])

    def quantized(tensor: int) -> bool:
        quantization = tensors[tensor].quantization
        return quantization is not None and quantization.scale is not None and any(quantization.scale)

    return [{"op": name, "layer": layer, "layers": layers,
             "outputs": [tensor_name(tensors[i]) for i in indices(raw.outputs) if i >= 0],
             "weighted": weighted(name, indices(raw.inputs)),
             "quantized": any(quantized(i) for i in indices(raw.outputs) if i >= 0), "cast": name in CASTS}
            for raw, name, (layer, layers) in zip(raw_ops, names, op_layers(flatbuffer, origins, schema))]


class NoOps(ValueError):
    """keep_float names layers that left no op in the file; ``layers`` lists them."""

    def __init__(self, layers, with_ops):
        super().__init__(f"keep_float names {', '.join(map(repr, layers))}, which leaves no op in the file (layers "
                         f"with ops: {', '.join(with_ops)}).")
        self.layers = list(layers)


def selective_int8(converter, model, float_layers, int8_io: bool) -> bytes:
    """Full int8 except the ops of ``float_layers``: TFLite's QuantizationDebugger denylist, without the debugger.

    ``converter`` converts ``model`` and is configured for int8 with samples. As
    the debugger does, the converter calibrates once and TFLite's quantizer runs on the calibrated file with
    ``denylisted_nodes``: the output tensors of the ops that compute those layers (a folded BatchNormalization
    names its convolution's op). The debugger object itself would also build a copy with a NumericVerify op per
    quantized op, and refuse a model where none is left ("Please check if the quantized model is in debug mode").
    Inputs and outputs stay float like the converter's own int8 files unless ``int8_io``.
    """
    calibrated = calibrate_only(converter)
    outputs = layer_outputs(calibrated, user_layers(model))
    missing = [layer for layer in float_layers if layer not in outputs]
    if missing:
        raise NoOps(missing, outputs)
    content = quantize_calibrated(converter, calibrated, [name for layer in float_layers for name in outputs[layer]])
    if int8_io:
        import tensorflow as tf
        from tensorflow.lite.python.util import modify_model_io_type

        content = modify_model_io_type(content, tf.int8, tf.int8)
    return content


def calibrate_only(converter) -> bytes:
    """The float file with the activation ranges that ``converter`` (configured for int8) calibrates."""
    converter.experimental_mlir_quantizer = True
    converter._experimental_calibrate_only = True
    return converter.convert()


def quantize_calibrated(converter, calibrated: bytes, denylisted_nodes) -> bytes:
    """TFLite's quantizer on a file ``converter`` calibrated, with the ops whose outputs are ``denylisted_nodes`` kept
    float: the QuantizationDebugger's own quantize step, with float inputs and outputs (``fully_quantize=False``)."""
    from tensorflow.lite.python import convert as lite_convert

    return lite_convert.mlir_quantize(
        calibrated, disable_per_channel=converter._experimental_disable_per_channel, fully_quantize=False,
        enable_numeric_verify=False, denylisted_nodes=sorted(set(denylisted_nodes)) or None)
