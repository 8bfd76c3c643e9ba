"""Mobile GPUs through the TFLite GPU delegate (OpenCL / OpenGL ES on Android, Metal on iOS).

Source: tensorflow/lite/g3doc/performance/gpu_advanced.md, "Running quantized models (Experimental)" (section added
2020-07-20, read 2026-11-27) and post_training_quantization.md: the GPU computes in float16/float32 and uses float16
weights natively. 8-bit models (quantization-aware trained, dynamic range, full integer) run experimentally on
Android by dequantizing weights into GPU memory and computing in float, with float inputs and outputs recommended:
smaller files, no faster arithmetic. 16-bit activations (int16x8) are not among the modes the delegate runs, so
they are refused.
"""

from __future__ import annotations

from .target import Target

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
)
