"""Mobile and desktop CPUs (TFLite's built-in kernels and the XNNPACK delegate).

Converter settings. Source: TensorFlow Lite "Post-training quantization"
(tensorflow/lite/g3doc/performance/post_training_quantization.md, ai.google.dev/edge/litert/models/
post_training_quantization, read 2026-11-27): dynamic range quantization is the recommended starting point and needs
no data; full integer quantization needs a representative dataset and is the fastest on CPU; float16 and 16x8 run on
CPU too (16x8 without optimized kernels: FIELD-NOTES measured it about 13x slower, since XNNPACK lacks it).

Sparse inference. Source: tensorflow/lite/delegates/xnnpack/README.md, "Sparse Inference" (read 2026-11-27), which
tfmot's ``PruneForLatencyOnXNNPack`` policy (tfmot 0.8.1, sparsity/keras/pruning_policy.py) mirrors on the Keras side:
XNNPACK runs a pruned CNN sparse only inside a subgraph that starts with a 3x3 stride-2 CONV_2D on 3 input channels,
ends with a MEAN over height and width (or DEPTH_TO_SPACE), holds only the ops in :data:`SPARSE_OPS`, stores its
weights sparse (DENSIFY ops: the converter's EXPERIMENTAL_SPARSITY optimization), and where at least 2/3 of the 1x1
CONV_2D weights are zeros.
"""

from __future__ import annotations

from .rules import axes_within, filter_size, option_at_most, option_equals
from .target import Target

_NO_DILATION = (option_equals("dilation_w_factor", 1), option_equals("dilation_h_factor", 1))

# Ops allowed inside XNNPACK's sparse subgraph, with the limits that apply there.
SPARSE_OPS = {
    "CONV_2D": (filter_size(1, 1), filter_size(2, 1), option_equals("stride_w", 1), option_equals("stride_h", 1),
                *_NO_DILATION),
    "DEPTHWISE_CONV_2D": (filter_size(1, 3, 5), filter_size(2, 3, 5), option_at_most("stride_w", 2),
                          option_at_most("stride_h", 2), *_NO_DILATION),
    "MEAN": (axes_within(1, 1, 2),),
    **{op: () for op in ("PAD", "RESIZE_BILINEAR", "ADD", "MUL", "ABS", "CEIL", "ELU", "FLOOR", "HARD_SWISH",
                         "LEAKY_RELU", "LOGISTIC", "NEG", "RELU", "RELU6", "RELU_N1_TO_1", "ROUND", "SQUARE",
                         "DEPTH_TO_SPACE")},
}
# The op that opens a sparse subgraph: a 3x3 stride-2 CONV_2D (on 3 input channels, checked where it is used).
SPARSE_START = (filter_size(1, 3), filter_size(2, 3), option_equals("stride_w", 2), option_equals("stride_h", 2))
SPARSE_END_OPS = ("MEAN", "DEPTH_TO_SPACE")
SPARSE_MIN_ZEROS = 2 / 3  # share of zero weights the 1x1 convs need, across the subgraph

TARGET = Target(
    name="cpu",
    title="CPU",
    summary="Any quantization; dynamic range by default, full int8 when representative data is given.",
    default_quantization="dynamic",
    allowed_quantizations=("none", "dynamic", "float16", "int8", "int16x8"),
    calibrated_quantization="int8",
    source="tensorflow/lite/g3doc/performance/post_training_quantization.md (read 2026-11-27)",
    ops_source="tensorflow/lite/delegates/xnnpack/README.md, Sparse Inference (read 2026-11-27)",
)
