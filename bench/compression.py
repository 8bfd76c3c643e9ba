"""Benchmark: the digits demo through every technique and combination, converted for every target.

Techniques: post-training quantization (the target's own mode, and int8), QAT, pruning, clustering, PQAT, CQAT and
PCQAT, each on the weighted layers of ``tfopt_widgets.demo.digits_model`` (a 35,786-parameter CNN trained on
scikit-learn's 8x8 digits; 1,347 training / 450 test images), fine-tuned ``--epochs`` per stage by tw.optimize.
Targets: cpu, gpu, edgetpu, hexagon, each with its natural mode (``tw.convert(..., representative_data=...)``).
Reported per file: size, gzip size, test accuracy and batch-1 latency in LiteRT on this machine's CPU, next to the
float32 baseline; the best gzip compression at <= 1 accuracy point below float32 is highlighted
(goal: >= 8x smaller gzip than float32).

    python bench/compression.py           # 7 techniques x 4 targets (a few minutes on 2 cores)
    python bench/compression.py --quick   # PTQ int8 and pruning for the Edge TPU, tiny fine-tuning (CI smoke test)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

GOAL_X = 8.0
MAX_DROP = 0.01  # one accuracy point
TARGETS = ("cpu", "gpu", "edgetpu", "hexagon")
WEIGHTED = ("conv1", "conv2", "dense", "classifier")
# conv1 holds 160 of the 35,786 weights: pruning or clustering it saves nothing and costs accuracy.
PRUNE = {"conv2": 0.6, "dense": 0.85, "classifier": 0.5}
CLUSTERS = {"conv2": 16, "dense": 16, "classifier": 16}

# Published claims, beside ours. Sources: tensorflow.org/model_optimization guides (read 2026-11-27) and
# FIELD-NOTES' measurements of the digits CNN on this machine kind before the project started.
CLAIMS = [
    {"technique": "PTQ int8 / QAT", "claim": "int8 weights: about 4x smaller than float32",
     "source": "ai.google.dev/edge/litert/models/post_training_quantization (\"4x smaller\", full integer)"},
    {"technique": "pruning", "claim": "up to 6x better compression with minimal accuracy loss; InceptionV3 at 50% "
                                      "sparsity 78.1% -> 78.0% top-1, MobileNetV1 224 at 50%: 71.04% -> 70.84%",
     "source": "tensorflow.org/model_optimization/guide/pruning (Results)"},
    {"technique": "clustering", "claim": "up to 5x better compression with minimal accuracy loss",
     "source": "tensorflow.org/model_optimization/guide/clustering (Overview, Results)"},
    {"technique": "PQAT / CQAT / PCQAT", "claim": "each technique's compression kept through QAT (collaborative "
                                                  "optimization); gains show after gzip",
     "source": "tensorflow.org/model_optimization/guide/combine/collaborative_optimization"},
    {"technique": "FIELD-NOTES (digits, earlier)", "claim": "float32 133,738 B gzip, 0.984; int8 39,273 B (3.4x); "
                                                            "75% pruned int8 19,979 B (6.7x), 0.962; PQAT 18,356 B "
                                                            "(7.3x), 0.969; 16 clusters int8 27,577 B (4.8x), 0.987",
     "source": "shared/FIELD-NOTES.md, 'Figures seen'"},
]


def techniques(quick: bool) -> dict:
    """{technique name: plan builder (None: post-training only) and the quantization asked for}."""
    import tfopt_widgets as tw

    def plan(prune=False, cluster=False, quantize=False):
        p = tw.Plan()
        for layer in WEIGHTED if quantize else ():
            p.quantize(layer)
        for layer, sparsity in PRUNE.items() if prune else ():
            p.prune(layer, sparsity=sparsity)
        for layer, clusters in CLUSTERS.items() if cluster else ():
            p.cluster(layer, clusters=clusters)
        return p

    everything = {
        "PTQ (target's mode)": (None, None),
        "PTQ int8": (None, "int8"),
        "QAT": (lambda: plan(quantize=True), None),
        "prune": (lambda: plan(prune=True), None),
        "cluster": (lambda: plan(cluster=True), None),
        "PQAT": (lambda: plan(prune=True, quantize=True), None),
        "CQAT": (lambda: plan(cluster=True, quantize=True), None),
        "PCQAT": (lambda: plan(prune=True, cluster=True, quantize=True), None),
    }
    if quick:
        return {name: everything[name] for name in ("PTQ int8", "prune")}
    return everything


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 techniques x 1 target, tiny fine-tuning")
    parser.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs per stage (default 3; quick 1)")
    parser.add_argument("--out", type=Path, default=_common.RESULTS)
    args = parser.parse_args(argv)

    import tfopt_widgets as tw
    from tfopt_widgets import demo
    from tfopt_widgets.model.stack import keras

    info = _common.machine()
    (x_train, y_train), (x_test, y_test) = demo.digits_data()
    model = demo.digits_model(epochs=1 if args.quick else 12, seed=0)
    epochs = args.epochs or (1 if args.quick else 3)
    train = (x_train[:64], y_train[:64]) if args.quick else (x_train, y_train)
    targets = ("edgetpu",) if args.quick else TARGETS  # quick: the strictest target (int8 I/O, fixed batch)
    runs = 1 if args.quick else 50

    def measure(tflite):
        return tw.evaluate(tflite, (x_test, y_test), runs=runs, warmup=2 if args.quick else 5)

    baseline_file = tw.convert(model, "float32")
    baseline = measure(baseline_file)
    rows = [{"technique": "float32 baseline", "target": "float32", "mode": "none", "size": baseline.size,
             "gzip_size": baseline.gzip_size, "accuracy": round(baseline.accuracy, 4),
             "latency_ms": round(baseline.latency_ms, 4), "x_gzip": 1.0, "drop_points": 0.0}]
    print(f"float32: {baseline.gzip_size:,} B gzip, accuracy {baseline.accuracy:.4f}", flush=True)
    seconds = {}
    for name, (make_plan, quantization) in techniques(args.quick).items():
        keras.utils.set_random_seed(0)
        with _common.Stopwatch() as watch:
            source = model
            if make_plan is not None:
                source = tw.optimize(model, make_plan(), train, epochs=epochs)
        seconds[name] = round(watch.seconds, 1)
        for target in targets:
            if quantization and quantization not in tw.TARGETS[target].allowed_quantizations:
                continue
            if name == "PTQ (target's mode)" and tw.TARGETS[target].default_quantization == "int8":
                continue  # the same file as "PTQ int8" there
            # The target's own mode without data: dynamic range on the CPU, float16 on the GPU.
            calibration = None if name == "PTQ (target's mode)" else x_train
            tflite = tw.convert(source, target, representative_data=calibration, quantization=quantization)
            metrics = measure(tflite)
            row = {"technique": name, "target": target, "mode": tflite.quantization, "size": metrics.size,
                   "gzip_size": metrics.gzip_size, "accuracy": round(metrics.accuracy, 4),
                   "latency_ms": round(metrics.latency_ms, 4),
                   "x_gzip": round(baseline.gzip_size / metrics.gzip_size, 2),
                   "drop_points": round((baseline.accuracy - metrics.accuracy) * 100, 2)}
            rows.append(row)
            print(f"{name} / {target} ({row['mode']}): {row['gzip_size']:,} B gzip ({row['x_gzip']}x), accuracy "
                  f"{row['accuracy']:.4f}, {row['latency_ms']:.3f} ms", flush=True)

    eligible = [r for r in rows[1:] if r["drop_points"] <= MAX_DROP * 100 + 1e-9]
    best = max(eligible, key=lambda r: r["x_gzip"]) if eligible else None
    best_per_target = {t: max((r for r in eligible if r["target"] == t), key=lambda r: r["x_gzip"], default=None)
                       for t in targets}
    result = {"quick": args.quick, "machine": info, "model": model.name, "params": int(model.count_params()),
              "train_samples": len(train[0]), "test_samples": len(x_test), "epochs_per_stage": epochs,
              "prune": PRUNE, "clusters": CLUSTERS, "quantized_layers": WEIGHTED, "optimize_seconds": seconds,
              "rows": rows, "best": best, "best_per_target": best_per_target, "goal_x": GOAL_X,
              "goal_met": bool(best and best["x_gzip"] >= GOAL_X), "claims": CLAIMS}

    lines = [f"# Compression of the digits CNN ({result['params']:,} params): every technique x every target", "",
             (f"Fine-tuning: {epochs} epoch(s) per stage on {len(train[0]):,} images; accuracy on {len(x_test)} test "
             f"images; latency: median batch-1 invoke in LiteRT on this machine's CPU (not the target chip). "
             f"Pruned: {', '.join(f'{k} {v:.0%}' for k, v in PRUNE.items())}; clustered: "
             f"{', '.join(f'{k} {v}' for k, v in CLUSTERS.items())}; QAT: {', '.join(WEIGHTED)}. "
             f"x = float32 gzip size / this gzip size; drop in accuracy points vs float32. "
             f"**Bold**: the best compression at <= {MAX_DROP * 100:.0f} point drop."), ""]
    table_rows = []
    for r in rows:
        mark = "**" if r is best else ""
        table_rows.append([f"{mark}{r['technique']}{mark}", r["target"], r["mode"], f"{r['size']:,}",
                           f"{mark}{r['gzip_size']:,}{mark}", f"{mark}{r['x_gzip']:.2f}x{mark}", f"{r['accuracy']:.4f}",
                           f"{r['drop_points']:+.2f}", f"{r['latency_ms']:.3f}"])
    lines += _common.table(["technique", "target", "mode", "bytes", "gzip bytes", "x (gzip)", "accuracy",
                            "drop (points)", "latency (ms)"], table_rows)
    lines.append("")
    if best:
        verdict = "met" if result["goal_met"] else f"missed ({best['x_gzip']:.2f}x < {GOAL_X:.0f}x)"
        lines.append(f"Best at <= 1 point drop: **{best['technique']} on {best['target']}: {best['x_gzip']:.2f}x smaller "
                     f"gzip ({best['gzip_size']:,} B vs {baseline.gzip_size:,} B), accuracy {best['accuracy']:.4f} "
                     f"(drop {best['drop_points']:+.2f} points; negative: more accurate than float32)**. Goal >= {GOAL_X:.0f}x: "
                     f"{verdict}.")
    else:
        lines.append("No file stayed within 1 accuracy point of float32.")
    lines += ["", "Best per target at <= 1 point drop: " + "; ".join(
        f"{t}: {b['technique']} {b['x_gzip']:.2f}x" if b else f"{t}: none" for t, b in best_per_target.items()) + ".",
        "", f"tw.optimize time per technique (s): {seconds}.", "", "## Published claims, beside ours", ""]
    lines += _common.table(["technique", "claim", "source"], [[c["technique"], c["claim"], c["source"]] for c in CLAIMS])
    _common.write("compression", args.quick, args.out, result, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
