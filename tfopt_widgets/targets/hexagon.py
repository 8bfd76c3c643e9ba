"""Qualcomm Hexagon DSP through the TFLite Hexagon delegate.

Converter settings. Source: tensorflow/lite/delegates/hexagon/README.md and g3doc/android/delegates/hexagon.md (read
2026-11-27): quantized models only (the 8-bit symmetric spec: post-training int8, or legacy uint8 QAT); its Quantize
op takes 8-bit inputs and outputs only and Dequantize is not in its op list, so the file gets int8 inputs and outputs
to keep the whole graph on the DSP. Qualcomm's current docs move to the QNN delegate.

Op table. Source: the delegate's own check, ``IsNodeSupportedByHexagon`` and ``CheckOpVersion`` in
tensorflow/lite/delegates/hexagon/utils.cc (read 2026-11-27), plus the README's op constraints where it says more
(DepthwiseConv2D filter width 3). Every input and output is at most 4-D and 8-bit (int32 biases and shape inputs
aside); fused activations are Relu-family or none. Placement: the delegate takes every supported op and partitions
the rest out to the CPU. Simplified: a depthwise conv with depth_multiplier > 1 on a 1-channel input, which the
delegate accepts, counts as CPU here.

Per-layer precision (plan.precision): 8-bit only, int8 weights with int8 activations (the README's quantized models;
utils.cc checks every tensor is 8-bit).
"""

from __future__ import annotations

from .rules import (
    constant_input,
    constant_values_at_most,
    eight_bit_only,
    filter_size,
    max_inputs,
    max_rank,
    max_version,
    option_at_most,
    option_equals,
    option_equals_unless,
    option_in,
)
from .target import Target

_QUANTIZED_ONLY = "the Hexagon delegate runs only 8-bit quantized models; every other op stays on the CPU"
_RELU_OR_NONE = option_in("fused_activation_function", "NONE", "RELU", "RELU6", "RELU_N1_TO_1")
_NO_ACTIVATION = option_in("fused_activation_function", "NONE")
_STRIDE_3 = (option_at_most("stride_w", 3), option_at_most("stride_h", 3))
_V1, _V2 = max_version(1), max_version(2)

OPS = {
    **{op: (_V2,) for op in ("ARG_MAX", "ARG_MIN", "CONCATENATION", "LOGISTIC", "MAXIMUM", "MINIMUM", "PACK",
                             "QUANTIZE", "RELU", "RELU6", "SOFTMAX", "SPACE_TO_DEPTH", "TANH", "TRANSPOSE")},
    **{op: (_V1,) for op in ("DEPTH_TO_SPACE", "HARD_SWISH", "NEG")},
    **{op: (_RELU_OR_NONE, _V2) for op in ("ADD", "MUL", "SUB")},
    "AVERAGE_POOL_2D": (_NO_ACTIVATION, max_inputs(1), _V2),
    "MAX_POOL_2D": (_NO_ACTIVATION, _V2),
    "L2_NORMALIZATION": (_NO_ACTIVATION, _V2),
    "CONV_2D": (_RELU_OR_NONE, *_STRIDE_3, option_equals("dilation_w_factor", 1),
                option_equals("dilation_h_factor", 1), max_version(3)),
    "DEPTHWISE_CONV_2D": (_RELU_OR_NONE, *_STRIDE_3, option_equals("depth_multiplier", 1), filter_size(2, 3),
                          option_equals_unless("dilation_w_factor", 1, "stride_w", 1),
                          option_equals_unless("dilation_h_factor", 1, "stride_h", 1), max_version(3)),
    "TRANSPOSE_CONV": (*_STRIDE_3, option_in("padding", "SAME", "VALID"), _V2),
    "FULLY_CONNECTED": (_RELU_OR_NONE, option_in("weights_format", "DEFAULT"), option_equals("keep_num_dims", False),
                        max_version(4)),
    "MEAN": (constant_input(1), _V2),
    "MIRROR_PAD": (constant_input(1), option_in("mode", "REFLECT", "SYMMETRIC"), _V2),
    "PAD": (max_inputs(2), constant_input(1), _V2),  # zero padding only: PADV2 (a pad value) is not in the table
    "RESHAPE": (max_inputs(2), _V1),
    "RESIZE_BILINEAR": (constant_input(1), constant_values_at_most(1, 65), _V2),
    "RESIZE_NEAREST_NEIGHBOR": (constant_input(1), _V2),
    "SLICE": (constant_input(1), constant_input(2), _V2),
    "SPLIT": (constant_input(0), _V2),
    "STRIDED_SLICE": (constant_input(1), constant_input(2), constant_input(3), option_equals("ellipsis_mask", 0),
                      option_equals("new_axis_mask", 0), _V2),
}

TENSOR_RULES = (max_rank("all", 4), eight_bit_only())

TARGET = Target(
    name="hexagon",
    title="Hexagon DSP",
    summary="Full int8 only (8-bit symmetric spec), int8 input/output.",
    default_quantization="int8",
    allowed_quantizations=("int8",),
    int8_io=True,
    refusals={mode: _QUANTIZED_ONLY for mode in ("none", "dynamic", "float16", "int16x8")},
    source="tensorflow/lite/delegates/hexagon/README.md (read 2026-11-27)",
    ops=OPS,
    tensor_rules=TENSOR_RULES,
    placement="partition",
    accelerator="Hexagon DSP",
    ops_source="tensorflow/lite/delegates/hexagon/utils.cc IsNodeSupportedByHexagon + README.md (read 2026-11-27)",
    precisions=(("int8", "int8"),),
    precision_refusals={
        "float/float": "the Hexagon delegate runs only 8-bit quantized ops; a float layer stays on the CPU (use "
                       "plan.keep_float for that)",
        "weights=int4": "the Hexagon delegate runs only 8-bit quantized ops (int8 weights with int8 activations); "
                        "int4 weights are not 8-bit",
        "activations=int16": "the Hexagon delegate runs only 8-bit quantized ops (int8 weights with int8 "
                             "activations); int16 activations are not 8-bit",
        "activations=float": "the Hexagon delegate runs only 8-bit quantized ops (int8 weights with int8 "
                             "activations); float activations stay on the CPU",
    },
    precisions_source="tensorflow/lite/delegates/hexagon/README.md, utils.cc (read 2026-11-27)",
)
