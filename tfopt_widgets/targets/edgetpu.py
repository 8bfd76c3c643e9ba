"""Google Coral Edge TPU.

Converter settings. Source: coral.ai/docs/edgetpu/models-intro, "Model requirements" (as gathered in
shared/TARGET-SOURCES.md, 2026-11-27): only fully 8-bit quantized TFLite models, tensor sizes constant at compile
time (so a fixed batch of 1), 8-bit input and output tensors; TF's post_training_quantization.md adds that a
float-I/O model "won't be compatible" with the Edge TPU.

Op table. Source: the "Supported operations" table of coral.ai/docs/edgetpu/models-intro, in the copy kept at
github.com/dgist-datalab/Datalab_Intern ``Edge_TPU/convert_model_for_Edge_TPU.md`` (the live page's table could not
be retrieved; checked 2026-11-27). Newer compilers map more ops (e.g. Quantize, Transpose): those count as CPU here,
so the verdict errs toward the CPU. Placement: the compiler maps ops in order until the first one it cannot map and
runs that op and every later one on the CPU, in one Edge TPU subgraph (google-coral/edgetpu#342). Parameter cache:
compiler logs show about 7 MiB of on-chip memory for parameters (google-coral/edgetpu#356, #393); larger models
stream the rest from host memory on every inference.

Per-layer precision (plan.precision): the same requirement, fully 8-bit: int8 weights with int8 activations only.
A layer can still run float on the host CPU, with plan.keep_float (every later op follows it there).
"""

from __future__ import annotations

from .rules import (
    axes_within,
    constant_values_equal,
    eight_bit_only,
    elements_at_most,
    fixed_shapes,
    innermost_dims_only,
    leading_axes_only,
    non_one_dims_at_most,
    option_equals,
    option_in,
    padded_axes_within,
    zero_constant_inputs,
)
from .target import Target

_INT8_ONLY = "the Edge TPU runs only fully 8-bit quantized models; every other op stays on the host CPU"
_NO_FUSED_ACTIVATION = option_in("fused_activation_function", "NONE")
_HEIGHT_WIDTH = (1, 2)  # NHWC axes the Edge TPU can reduce or pad

# TFLite builtin op -> rules it must pass (an empty tuple: no known limit).
OPS = {
    **{op: () for op in ("LOGISTIC", "RELU", "RELU6", "RELU_N1_TO_1", "TANH", "ADD", "MAXIMUM", "MINIMUM", "MUL",
                         "SUB", "CONV_2D", "DEPTHWISE_CONV_2D", "L2_NORMALIZATION", "RESHAPE", "SLICE",
                         "SPACE_TO_DEPTH", "SPLIT")},
    "AVERAGE_POOL_2D": (_NO_FUSED_ACTIVATION,),
    "MAX_POOL_2D": (_NO_FUSED_ACTIVATION,),
    "CONCATENATION": (_NO_FUSED_ACTIVATION, zero_constant_inputs()),
    "FULLY_CONNECTED": (option_in("weights_format", "DEFAULT"), non_one_dims_at_most("output", 1)),
    "MEAN": (axes_within(1, *_HEIGHT_WIDTH),),
    "PAD": (padded_axes_within(1, *_HEIGHT_WIDTH),),
    "RESIZE_BILINEAR": (non_one_dims_at_most("all", 3),),
    "RESIZE_NEAREST_NEIGHBOR": (non_one_dims_at_most("all", 3),),
    "SOFTMAX": (non_one_dims_at_most("input", 1), elements_at_most("input", 16_000)),
    "SQUEEZE": (leading_axes_only("squeeze_dims"),),
    "STRIDED_SLICE": (constant_values_equal(3, 1), option_equals("ellipsis_mask", 0),
                      option_equals("new_axis_mask", 0)),
}

# Rules for every op: 8-bit tensors, sizes fixed at compile time, at most 3 non-1 innermost dimensions.
TENSOR_RULES = (eight_bit_only(), fixed_shapes("all"), innermost_dims_only("activations", 3))

TARGET = Target(
    name="edgetpu",
    title="Edge TPU",
    summary="Full int8 only: int8 weights and activations, int8 input/output, fixed batch of 1.",
    default_quantization="int8",
    allowed_quantizations=("int8",),
    int8_io=True,
    fixed_batch=True,
    refusals={mode: _INT8_ONLY for mode in ("none", "dynamic", "float16", "int16x8")},
    source="coral.ai/docs/edgetpu/models-intro, Model requirements (read 2026-11-27)",
    ops=OPS,
    tensor_rules=TENSOR_RULES,
    placement="prefix",
    accelerator="Edge TPU",
    parameter_cache=7 * 2**20,
    ops_source="coral.ai/docs/edgetpu/models-intro, Supported operations (older copy in dgist-datalab/Datalab_Intern, "
               "checked 2026-11-27)",
    precisions=(("int8", "int8"),),
    precision_refusals={
        "float/float": "the Edge TPU runs only int8 weights with int8 activations; plan.keep_float(layer) leaves a "
                       "layer float on the host CPU instead (it and every later op run there)",
        "weights=int4": "the Edge TPU runs only fully 8-bit quantized models (int8 weights with int8 activations); "
                        "int4 weights are not 8-bit",
        "activations=int16": "the Edge TPU runs only fully 8-bit quantized models (int8 weights with int8 "
                             "activations); int16 activations are not 8-bit",
        "activations=float": "the Edge TPU runs only fully 8-bit quantized models (int8 weights with int8 "
                             "activations); float activations stay on the host CPU",
    },
    precisions_source="coral.ai/docs/edgetpu/models-intro, Model requirements (read 2026-11-27)",
)
