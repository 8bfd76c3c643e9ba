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

Per-layer precision (plan.precision). Measured with LiteRT 2.3's CPU kernels on files quantized by LiteRT Quantizer
0.11.0 (tests/test_precision.py; the digits demo's Conv2D and Dense, 2026-12-01): int4 and int8 weights each run
with float (dynamic range), int8 and int16 activations, and layers without weights run with any activations. Which
ops LiteRT Quantizer itself can give which setting (int4 only to CONV_2D, FULLY_CONNECTED and EMBEDDING_LOOKUP) is its
own policy, asked per op at conversion.
"""

from __future__ import annotations

import numpy as np

from .rules import WEIGHTED_OPS, axes_within, filter_size, option_at_most, option_equals, violations
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
    precisions=tuple((w, a) for w in ("int4", "int8", "float") for a in ("float", "int8", "int16")),
    precisions_source="measured: LiteRT 2.3 CPU kernels on LiteRT Quantizer 0.11.0 files (2026-12-01)",
)


# --- CPU notes (XNNPACK) -------------------------------------------------------------------------------------------

def _kernel(op, model, producers):
    """(filter tensor as stored, through a float16 DEQUANTIZE) of a weighted op, or None."""
    if op.op not in WEIGHTED_OPS or len(op.inputs) < 2 or op.inputs[1] < 0:
        return None
    index = op.inputs[1]
    if index in producers and producers[index].op == "DEQUANTIZE":
        index = producers[index].inputs[0]
    return model.tensors[index]


def _kernel_kind(op, model, producers) -> str | None:
    kernel = _kernel(op, model, producers)
    if kernel is None:
        return None
    activation = model.tensors[op.inputs[0]].dtype
    if kernel.dtype == "float16":
        return "float16 weights, dequantized to float32 when the model loads (XNNPACK float kernel)"
    if kernel.dtype in ("int8", "uint8") and activation in ("int8", "uint8"):
        return "int8 weights and activations (XNNPACK int8 kernel)"
    if kernel.dtype in ("int8", "uint8"):
        return "dynamic range: int8 weights, float activations quantized on the fly (hybrid kernel)"
    if activation == "int16":
        return "int16 activations: reference kernel, no XNNPACK (slow)"
    return f"{kernel.dtype} weights and activations (XNNPACK float kernel)"


def _zero_share(op, model, producers) -> float | None:
    kernel = _kernel(op, model, producers)
    values = model.tensor_data(kernel.index, dequantize=True) if kernel is not None else None
    return None if values is None or not values.size else float(np.mean(values == 0))


def _sparse_fit(op, model) -> str | None:
    """Why ``op`` cannot sit inside XNNPACK's sparse subgraph (None: it can)."""
    if op.op not in SPARSE_OPS:
        return f"{op.op} is not among the ops XNNPACK runs sparse"
    found = violations(SPARSE_OPS[op.op], op, model)
    return "; ".join(found) or None


def op_notes(model) -> dict[int, str]:
    """Per weighted op: its CPU kernel kind; in a pruned file also whether XNNPACK's sparse path can take it."""
    producers = {t: op for op in model.ops for t in op.outputs}
    pruned = _is_pruned(model, producers)
    notes = {}
    for op in model.ops:
        parts = [kind] if (kind := _kernel_kind(op, model, producers)) else []
        if pruned and op.op in WEIGHTED_OPS:
            zeros = _zero_share(op, model, producers)
            misfit = _sparse_fit(op, model)
            share = f"{zeros:.0%} zeros" if zeros is not None else "zeros unknown"
            parts.append(f"sparse path: {share}; " + (f"runs dense ({misfit})" if misfit else
                                                      "fits XNNPACK's sparse subgraph"))
        if parts:
            notes[op.index] = "; ".join(parts)
    return notes


def _is_pruned(model, producers) -> bool:
    """True when some weighted op's kernel is at least half zeros (what magnitude pruning leaves)."""
    shares = [_zero_share(op, model, producers) for op in model.ops if op.op in WEIGHTED_OPS]
    return any(s is not None and s >= 0.5 for s in shares)


def sparse_inference(model) -> tuple[bool, str]:
    """(applies, why) for XNNPACK's sparse inference on ``model`` (a TFLiteModel), per its README's rules."""
    ops, producers = model.ops, {t: op for op in model.ops for t in op.outputs}
    missing = []
    if not any(op.op == "DENSIFY" for op in ops):
        missing.append("the file stores weights dense (no DENSIFY ops: convert with "
                       "tf.lite.Optimize.EXPERIMENTAL_SPARSITY)")
    start = next((op for op in ops if op.op == "CONV_2D" and not violations(SPARSE_START, op, model)
                  and model.tensors[op.inputs[0]].shape[-1:] == (3,)), None)
    end = next((op for op in reversed(ops) if op.op in SPARSE_END_OPS
                and not _sparse_fit(op, model)), None)
    if start is None:
        missing.append("no 3x3 stride-2 CONV_2D on 3 input channels opens the subgraph")
    if end is None:
        missing.append("no MEAN over height and width (or DEPTH_TO_SPACE) closes it")
    if start is not None and end is not None:
        inside = [op for op in ops if start.index < op.index < end.index]
        misfits = [(op, why) for op in inside if (why := _sparse_fit(op, model))]
        if misfits:
            op, why = misfits[0]
            missing.append(f"op #{op.index} {op.op}" + (f" (layer {op.layer!r})" if op.layer else "") + f": {why}"
                           + (f" (and {len(misfits) - 1} more)" if len(misfits) > 1 else ""))
        pointwise = [op for op in inside if op.op == "CONV_2D"]
        kernels = [model.tensor_data(_kernel(op, model, producers).index, dequantize=True) for op in pointwise]
        kernels = [k for k in kernels if k is not None]
        zeros = (sum(float(np.sum(k == 0)) for k in kernels) / sum(k.size for k in kernels)) if kernels else 0.0
        if zeros < SPARSE_MIN_ZEROS:
            missing.append(f"the 1x1 convs are {zeros:.0%} zeros; XNNPACK needs at least 2/3")
    if missing:
        return False, "XNNPACK sparse inference does not apply: " + "; ".join(missing)
    return True, f"XNNPACK sparse inference applies to the subgraph from op #{start.index} to op #{end.index}"


def file_notes(model) -> list[str]:
    notes = ["Runs on the CPU through XNNPACK where it has a kernel, TFLite's built-in kernels elsewhere."]
    modes = {"int8": "full int8: the fastest CPU mode (XNNPACK int8 kernels)",
             "dynamic": "dynamic range: int8 weights, float activations; hybrid kernels quantize activations on the "
                        "fly (smaller file, often faster than float; full int8 with representative data is faster)",
             "float16": "float16 weights are dequantized to float32 when the model loads: a smaller file, float32 "
                        "speed",
             "int16x8": "16x8: XNNPACK has no int16-activation kernels, so reference kernels run (slow)",
             "none": "float32 baseline"}
    if model.quantization in modes:
        notes.append(modes[model.quantization])
    producers = {t: op for op in model.ops for t in op.outputs}
    if _is_pruned(model, producers):
        notes.append(sparse_inference(model)[1])
    return notes
