"""Google Coral Edge TPU.

Source: coral.ai/docs/edgetpu/models-intro, "Model requirements" (as gathered in shared/TARGET-SOURCES.md,
2026-11-27): only fully 8-bit quantized TFLite models, tensor sizes constant at compile time (so a fixed batch
of 1), 8-bit input and output tensors; TF's post_training_quantization.md adds that a float-I/O model "won't be
compatible" with the Edge TPU.
"""

from __future__ import annotations

from .target import Target

_INT8_ONLY = "the Edge TPU runs only fully 8-bit quantized models; every other op stays on the host CPU"

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
)
