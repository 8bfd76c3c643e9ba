"""Mobile GPUs through the TFLite GPU delegate (OpenCL / OpenGL ES on Android, Metal on iOS).

Converter settings. Source: tensorflow/lite/g3doc/performance/gpu_advanced.md, "Running quantized models
(Experimental)" (section added 2020-07-20, read 2026-11-27) and post_training_quantization.md: the GPU computes in
float16/float32 and uses float16 weights natively. 8-bit models (quantization-aware trained, dynamic range, full
integer) run experimentally on Android by dequantizing weights into GPU memory and computing in float, with float
inputs and outputs recommended: smaller files, no faster arithmetic. 16-bit activations (int16x8) are not among the
modes the delegate runs, so they are refused.

Op table. The verdict per op comes first from TFLite's own offline check,
``tf.lite.experimental.Analyzer.analyze(model_content=..., gpu_compatibility=True)``. Where that check is not
compiled into the installed TensorFlow (measured on TF 2.21.0 wheels: it passes every op, even ones the rules below
reject), the table below stands in. Source: ``CheckGpuDelegateCompatibility`` in
tensorflow/lite/tools/versioning/gpu_compatibility.cc (read 2026-11-27): the ops it accepts and the limits that a
converted Keras model can hit. Placement: the delegate takes every supported op and partitions the rest out to the
CPU (a split graph is often slower than the CPU alone, gpu.md).

Per-layer precision (plan.precision). Source: tensorflow/lite/delegates/gpu/common/model_builder_helper.cc (read
2026-12-01): the delegate turns constant weights into float with ``CreateVectorCopyData``, which reads float32,
float16, int8, uint8 and int32 tensors and refuses every other type, so int4 weights are not among them (LiteRT's
newer ML Drift GPU backend unpacks int4, the TFLite GPU delegate does not); ``PopulateQuantParams`` accepts only
int8/uint8 quantized activations, and gpu_compatibility.cc refuses a DEQUANTIZE of int16. So: int8 or float weights,
float or int8 activations (8-bit activations computed in float, as for whole int8 files above).
"""

from __future__ import annotations

import re
from functools import lru_cache

from .rules import constant_input, max_inputs, max_rank, option_equals, option_in
from .target import Target

_ACTIVATION = option_in("fused_activation_function", "NONE", "RELU", "RELU_N1_TO_1", "RELU6", "TANH")

OPS = {
    **{op: () for op in (
        "ADD", "BATCH_MATMUL", "CAST", "CONCATENATION", "CUMSUM", "DENSIFY", "DEPTH_TO_SPACE", "DEQUANTIZE",
        "DYNAMIC_UPDATE_SLICE", "EMBEDDING_LOOKUP", "GATHER", "HARD_SWISH", "LSTM", "ONE_HOT", "PACK", "PRELU",
        "QUANTIZE", "RELU", "RELU6", "RELU_N1_TO_1", "LEAKY_RELU", "RESHAPE", "RESIZE_BILINEAR",
        "RESIZE_NEAREST_NEIGHBOR", "SELECT", "SELECT_V2", "SPACE_TO_DEPTH", "SPLIT", "SPLIT_V", "TILE", "TRANSPOSE",
        "TRANSPOSE_CONV", "PAD", "PADV2", "STABLEHLO_CLAMP",
        # one-input elementwise
        "ABS", "CEIL", "COS", "ELU", "EXP", "FLOOR", "GELU", "LOG", "LOGISTIC", "NEG", "RSQRT", "SIGN", "SIN",
        "SQRT", "SQUARE", "TANH",
        # two-input elementwise
        "ATAN2", "EQUAL", "FLOOR_DIV", "FLOOR_MOD", "GREATER", "GREATER_EQUAL", "LOGICAL_AND", "LESS", "LESS_EQUAL",
        "MAXIMUM", "MINIMUM", "NOT_EQUAL", "POW", "SQUARED_DIFFERENCE")},
    "ADD_N": (max_inputs(2),),
    **{op: (_ACTIVATION,) for op in ("AVERAGE_POOL_2D", "MAX_POOL_2D", "CONV_2D", "MUL", "SUB", "DIV")},
    "DEPTHWISE_CONV_2D": (_ACTIVATION, option_equals("depth_multiplier", 1)),
    "FULLY_CONNECTED": (option_in("weights_format", "DEFAULT"),),
    **{op: (constant_input(1),) for op in ("MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD")},
    "MIRROR_PAD": (option_in("mode", "REFLECT"),),
    "SLICE": (max_rank("input", 4),),
    "SOFTMAX": (option_equals("beta", 1.0),),
    "STRIDED_SLICE": (option_equals("ellipsis_mask", 0), option_equals("new_axis_mask", 0),
                      option_equals("shrink_axis_mask", 0), max_rank("input", 4)),
}

TARGET = Target(
    name="gpu",
    title="Mobile GPU",
    summary="float16 weights used natively; 8-bit files run (experimentally) by computing in float.",
    default_quantization="float16",
    allowed_quantizations=("none", "float16", "dynamic", "int8"),
    refusals={
        "int16x8": "the GPU delegate runs float32/float16 models and, experimentally, 8-bit ones; 16-bit "
                   "activations are not among them, so every op would fall back to the CPU",
    },
    source="tensorflow/lite/g3doc/performance/gpu_advanced.md, 'Running quantized models' (read 2026-11-27)",
    ops=OPS,
    placement="partition",
    accelerator="GPU",
    ops_source="tensorflow/lite/tools/versioning/gpu_compatibility.cc (read 2026-11-27)",
    precisions=(("int8", "float"), ("int8", "int8"), ("float", "float"), ("float", "int8")),
    precision_refusals={
        "weights=int4": "the GPU delegate reads constant weights as float32, float16, int8, uint8 or int32 only "
                        "(CreateVectorCopyData); int4 weights are refused and their op falls back to the CPU",
        "activations=int16": "the GPU delegate takes only 8-bit quantized activations (PopulateQuantParams) and "
                             "no DEQUANTIZE of int16 (gpu_compatibility.cc); 16-bit activations fall back to the CPU",
    },
    precisions_source="tensorflow/lite/delegates/gpu/common/model_builder_helper.cc, gpu_compatibility.cc "
                      "(read 2026-12-01)",
)


# --- TFLite's own GPU compatibility analyzer -------------------------------------------------------------------------
def _analyzer_checks_gpu() -> bool:
    """Whether this TensorFlow's Analyzer really runs the GPU check: it must flag an op the GPU cannot run."""
    warnings = _analyze(_probe_file())
    return bool(warnings and 0 in warnings)


def analyzer_warnings(content: bytes) -> dict[int, str] | None:
    """{op index: the Analyzer's GPU warning} for the main graph; None when the Analyzer cannot check the GPU."""
    if not _analyzer_checks_gpu():
        return None
    return _analyze(content)


def _analyze(content: bytes) -> dict[int, str]:
    from ..model.stack import tf  # TensorFlow only for the GPU check
    from ..quiet import captured_stdout

    with captured_stdout() as out:
        tf.lite.experimental.Analyzer.analyze(model_content=content, gpu_compatibility=True)
    return parse_gpu_report(out.text)


def parse_gpu_report(text: str) -> dict[int, str]:
    """{op index: warning} from the Analyzer's printed report, for Subgraph#0 (the main graph).

    The report lists each op as ``Op#N NAME(...) -> [...]``, and an op the GPU delegate cannot run is followed by
    ``GPU COMPATIBILITY WARNING: <why>``; a final line repeats the flagged op numbers per subgraph.
    """
    warnings, subgraph, current = {}, None, None
    for line in text.splitlines():
        header = re.match(r"\s*Subgraph#(\d+)\s", line)
        if header:
            subgraph, current = int(header.group(1)), None
        op = re.match(r"\s*Op#(\d+)\s", line)
        if op:
            current = int(op.group(1))
        if "GPU COMPATIBILITY WARNING:" in line and subgraph == 0 and current is not None:
            message = line.split("GPU COMPATIBILITY WARNING:", 1)[1].strip()
            if not message.startswith("Subgraph#"):
                warnings[current] = message
            current = None
    return warnings


@lru_cache(maxsize=1)
def _probe_file() -> bytes:
    """A minimal valid .tflite file with one op no GPU runs (an unknown custom op): the Analyzer must flag it."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT()
    model.version = 3
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode = "TfoptProbeOp"
    code.version = 1
    model.operatorCodes = [code]
    model.buffers = [schema.BufferT(), schema.BufferT(), schema.BufferT()]
    tensors = []
    for index, name in enumerate(("in", "out")):
        tensor = schema.TensorT()
        tensor.shape, tensor.type, tensor.buffer, tensor.name = [1, 4], schema.TensorType.FLOAT32, index + 1, name
        tensors.append(tensor)
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0], [1]
    graph = schema.SubGraphT()
    graph.tensors, graph.operators, graph.inputs, graph.outputs = tensors, [op], [0], [1]
    model.subgraphs = [graph]
    builder = flatbuffers.Builder(256)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
