"""Benchmark: the plain post-training modes by two routes, TFLite's converter and LiteRT Quantizer.

Issue 15 asks whether dynamic range, full int8 and int16x8 should move from ``TFLiteConverter`` (deprecated for
quantization in the LiteRT docs) to LiteRT Quantizer. For each mode, the same Keras model goes both ways:

- converter: ``tw.convert(model, "cpu", quantization=mode, representative_data=...)`` (what tw.convert does today),
  and for "int8, batch 1" the Edge TPU target's file (batch fixed to 1, int8 input and output);
- LiteRT: ``tw.convert(model, "float32")`` then LiteRT Quantizer's ready recipe for the mode (``dynamic_wi8_afp32``,
  also ``dynamic_legacy_wi8_afp32``, which skips tensors under 1,024 weights as the converter does; float16
  weights by its float_casting algorithm;
  ``static_wi8_ai8``; ``static_wi8_ai16``) through ``tfopt_widgets.runtime.precision.quantize_file``, calibrated on the
  same samples ("int8, batch 1": from a float32 file with the batch fixed to 1). Calibrated ranges are the extremes
  over the samples, as the converter's (and tw.convert's LiteRT step); "(LiteRT's averaging)" rows keep LiteRT
  Quantizer's own calibration, a moving average of each sample's min and max.

Per file: bytes, gzip bytes, accuracy (the digits demo's test split) or logit fidelity (MobileNetV2-0.35 at 64x64,
untrained, on synthetic images: 1 - RMS error / RMS of the float logits), LiteRT latency on this CPU, the file's
input type, and the share of ops each accelerator runs (``tfopt_widgets.targets.compatibility.check`` for the Edge
TPU, the GPU delegate and Hexagon, on the file as it is).

    python bench/precision_routes.py           # digits + MobileNetV2-0.35 64x64 (a few minutes on 2 cores)
    python bench/precision_routes.py --quick   # digits only
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

MODES = ("dynamic", "float16", "int8", "int16x8", "int8, batch 1")
# LiteRT Quantizer's ready recipes (litert_quantizer.recipe, 0.11.0) for each converter mode.
RECIPES = {"dynamic": ("dynamic_wi8_afp32", "dynamic_legacy_wi8_afp32"), "float16": ("float_casting",),
           "int8": ("static_wi8_ai8",),
           "int16x8": ("static_wi8_ai16",), "int8, batch 1": ("static_wi8_ai8",)}
PLACEMENT_TARGETS = ("edgetpu", "gpu", "hexagon")


def models(quick: bool):
    """[(name, model, calibration inputs, evaluation data, metric, metric name)]."""
    from tfopt_widgets import demo

    (x_train, _), (x_test, y_test) = demo.digits_data()
    found = [("digits CNN", demo.digits_model(epochs=12), x_train[:200], (x_test, y_test), None, "accuracy")]
    if not quick:
        net = demo.mobilenet_v2(size=64, alpha=0.35)
        calibration = demo.synthetic_images(100, 64, seed=1)
        x = demo.synthetic_images(64, 64, seed=2)
        found.append(("MobileNetV2-0.35 64x64", net, calibration, (x, net.predict(x, verbose=0)),
                      demo.logit_fidelity, "logit fidelity"))
    return found


def ready_recipe(name: str):
    """LiteRT Quantizer's ready recipe ``name``; "float_casting": float16 weights (runtime.precision.mode_recipe)."""
    from litert_quantizer import recipe

    from tfopt_widgets.runtime import precision

    return precision.mode_recipe("float16") if name == "float_casting" else getattr(recipe, name)()


def litert_file(base, recipe_name: str, samples, averaged: bool = False):
    """``base`` (a float32 TFLiteModel) quantized with LiteRT Quantizer's ready recipe ``recipe_name``; calibrated
    on the extremes (tfopt_widgets.runtime.precision.quantize_file) or, ``averaged``, by LiteRT Quantizer's own
    Quantizer.calibrate."""
    import contextlib
    import io
    import warnings

    from litert_quantizer import quantizer

    import tfopt_widgets as tw
    from tfopt_widgets.quiet import captured_stderr, captured_stdout
    from tfopt_widgets.runtime import precision

    with captured_stdout(), captured_stderr(), contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if averaged:
            q = quantizer.Quantizer(bytearray(base.content), ready_recipe(recipe_name))
            calibration = q.calibrate(precision.calibration_data(samples, base.input_names))
            content = bytes(q.quantize(calibration).quantized_model)
        else:
            content = precision.quantize_file(base.content, ready_recipe(recipe_name), samples, base.input_names)
    return tw.TFLiteModel(content, target="cpu", quantization=recipe_name, layer_origins=base.layer_origins,
                          input_names=base.input_names, output_names=base.output_names)


def measure(tflite, data, metric, runs: int) -> dict:
    import tfopt_widgets as tw
    from tfopt_widgets.targets.compatibility import check

    metrics = tw.evaluate(tflite, data, metric=metric, runs=runs, warmup=2)
    placement = {target: round(check(tflite, target).summary["op_share"] * 100) for target in PLACEMENT_TARGETS}
    return {"size": tflite.size, "gzip_size": tflite.gzip_size, "score": round(float(metrics.value), 4),
            "latency_ms": round(metrics.latency_ms, 3), "input": tflite.inputs[0].dtype, "placement": placement}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the digits demo only")
    parser.add_argument("--out", type=Path, default=_common.RESULTS)
    args = parser.parse_args(argv)

    import tfopt_widgets as tw

    info = _common.machine()
    runs = 5 if args.quick else 30
    rows = []
    for name, model, samples, data, metric, metric_name in models(args.quick):
        base = tw.convert(model, "float32")
        # The Edge TPU's own file (batch fixed to 1, int8 input and output) against LiteRT from a batch-1 float file.
        base_one = tw.convert(model, replace(tw.TARGETS["float32"], fixed_batch=True))
        rows.append({"model": name, "mode": "none", "route": "float32", "metric": metric_name, "seconds": None,
                     **measure(base, data, metric, runs)})
        for mode in MODES:
            start = time.perf_counter()
            if mode == "int8, batch 1":
                converted = tw.convert(model, "edgetpu", representative_data=samples)
            else:
                converted = tw.convert(model, "cpu", quantization=mode,
                                       representative_data=None if mode in ("dynamic", "float16") else samples)
            rows.append({"model": name, "mode": mode, "route": "converter", "metric": metric_name,
                         "seconds": round(time.perf_counter() - start, 2), **measure(converted, data, metric, runs)})
            variants = [(recipe_name, False) for recipe_name in RECIPES[mode]]
            if mode in ("int8", "int16x8"):
                variants.append((RECIPES[mode][0], True))
            for recipe_name, averaged in variants:
                start = time.perf_counter()
                quantized = litert_file(base_one if mode == "int8, batch 1" else base, recipe_name, samples, averaged)
                route = f"LiteRT {recipe_name}" + (" (LiteRT's averaging)" if averaged else "")
                rows.append({"model": name, "mode": mode, "route": route, "metric": metric_name,
                             "seconds": round(time.perf_counter() - start, 2),
                             **measure(quantized, data, metric, runs)})
            for row in rows[-1 - len(variants):]:
                print(f"{name} / {mode} / {row['route']}: {row['size']:,} B, {row['gzip_size']:,} B gzip, "
                      f"{metric_name} {row['score']:.4f}, {row['latency_ms']} ms, {row['placement']}", flush=True)

    lines = ["# Post-training modes by two routes: TFLiteConverter vs LiteRT Quantizer", "",
             ("Converter: tw.convert(model, 'cpu', quantization=mode) as today. LiteRT: the float32 file quantized by "
              "LiteRT Quantizer 0.11.0's ready recipe (seconds: that step alone, after a float32 conversion). "
              "Score: accuracy on the digits test split, logit fidelity for the untrained MobileNetV2. Latency: "
              "median batch-1 invoke in LiteRT on this CPU. Placement: share of ops on the accelerator "
              "(tfl.compatibility rules) for the file as it is."), ""]
    lines += _common.table(
        ["model", "mode", "route", "bytes", "gzip bytes", "score", "latency (ms)", "input", "Edge TPU", "GPU",
         "Hexagon", "seconds"],
        [[r["model"], r["mode"], r["route"], f"{r['size']:,}", f"{r['gzip_size']:,}", f"{r['score']:.4f}",
          f"{r['latency_ms']:.3f}", r["input"], *(f"{r['placement'][t]}%" for t in PLACEMENT_TARGETS),
          "" if r["seconds"] is None else r["seconds"]] for r in rows])
    _common.write("precision_routes", args.quick, args.out, {"quick": args.quick, "machine": info, "rows": rows},
                  lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
