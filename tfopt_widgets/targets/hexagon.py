"""Qualcomm Hexagon DSP through the TFLite Hexagon delegate.

Source: tensorflow/lite/delegates/hexagon/README.md and g3doc/android/delegates/hexagon.md (read 2026-11-27):
quantized models only (the 8-bit symmetric spec: post-training int8, or legacy uint8 QAT); its Quantize op takes
8-bit inputs and outputs only and Dequantize is not in its op list, so the file gets int8 inputs and outputs to
keep the whole graph on the DSP. Qualcomm's current docs move to the QNN delegate.
"""

from __future__ import annotations

from .target import Target

_QUANTIZED_ONLY = "the Hexagon delegate runs only 8-bit quantized models; every other op stays on the CPU"

TARGET = Target(
    name="hexagon",
    title="Hexagon DSP",
    summary="Full int8 only (8-bit symmetric spec), int8 input/output.",
    default_quantization="int8",
    allowed_quantizations=("int8",),
    int8_io=True,
    refusals={mode: _QUANTIZED_ONLY for mode in ("none", "dynamic", "float16", "int16x8")},
    source="tensorflow/lite/delegates/hexagon/README.md (read 2026-11-27)",
)
