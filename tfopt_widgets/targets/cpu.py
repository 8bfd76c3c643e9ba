"""Mobile and desktop CPUs (TFLite's built-in kernels and the XNNPACK delegate).

Source: TensorFlow Lite "Post-training quantization" (tensorflow/lite/g3doc/performance/post_training_quantization.md,
ai.google.dev/edge/litert/models/post_training_quantization, read 2026-11-27): dynamic range quantization is the
recommended starting point and needs no data; full integer quantization needs a representative dataset and is the
fastest on CPU; float16 and 16x8 run on CPU too (16x8 without optimized kernels: FIELD-NOTES measured it about 13x
slower, since XNNPACK lacks it).
"""

from __future__ import annotations

from .target import Target

TARGET = Target(
    name="cpu",
    title="CPU",
    summary="Any quantization; dynamic range by default, full int8 when representative data is given.",
    default_quantization="dynamic",
    allowed_quantizations=("none", "dynamic", "float16", "int8", "int16x8"),
    calibrated_quantization="int8",
    source="tensorflow/lite/g3doc/performance/post_training_quantization.md (read 2026-11-27)",
)
