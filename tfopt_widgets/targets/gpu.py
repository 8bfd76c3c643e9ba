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
"""

from __future__ import annotations

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
)
