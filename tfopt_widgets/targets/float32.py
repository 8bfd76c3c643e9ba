"""The float32 baseline: the model converted as it is, to compare every optimized file against.

Source: TensorFlow Lite converter guide, "Convert a TensorFlow model" (ai.google.dev/edge/litert/models/convert,
read 2026-11-27): a conversion without optimizations keeps float32 weights and activations.
"""

from __future__ import annotations

from .target import Target

_BASELINE = "it is the unoptimized float32 baseline; pick target='cpu' (or 'gpu', 'edgetpu', 'hexagon') to quantize"

TARGET = Target(
    name="float32",
    title="Float32 baseline",
    summary="No optimization: float32 weights and activations, runs anywhere TFLite runs.",
    default_quantization="none",
    allowed_quantizations=("none",),
    refusals={mode: _BASELINE for mode in ("dynamic", "float16", "int8", "int16x8")},
    source="ai.google.dev/edge/litert/models/convert (read 2026-11-27)",
    ops_source="no accelerator: every op runs on the CPU (TFLite built-in kernels and XNNPACK; "
               "tensorflow/lite/delegates/xnnpack/README.md, read 2026-11-27)",
    precisions=(("float", "float"),),
    precision_refusals={"weights=int4": _BASELINE, "weights=int8": _BASELINE, "activations=int8": _BASELINE,
                        "activations=int16": _BASELINE},
    precisions_source="ai.google.dev/edge/litert/models/convert (read 2026-11-27)",
)
