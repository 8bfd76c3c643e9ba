"""Benchmark: tw.sensitivity of MobileNetV2-0.35 at 96x96 over every layer and the three techniques.

Measures the wall time with 1 and 2 workers (threads, and spawned processes) and the speed-up, and writes
bench/results/sensitivity.json plus bench/results/sensitivity.md. ``--quick`` runs a tiny CNN instead (a CI smoke
test of the same path, seconds).

    python bench/sensitivity.py            # MobileNetV2-0.35, 96x96x3 (a few minutes on 2 cores)
    python bench/sensitivity.py --quick

The model is untrained (``weights=None``: nothing is downloaded) and picks nearly the same class for every image, so
top-1 agreement would say nothing; the metric is fidelity to the float model on synthetic images, 1 minus the total
variation distance between the compressed file's class probabilities and the float model's (1.0: identical). The
amount of work (every layer, technique and level) is what a trained model costs too. ``cpu_s`` is the CPU time this
benchmark got (its own and its worker processes'): on a machine shared with other jobs, wall time alone hides it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RESULTS = Path(__file__).resolve().parent / "results"


def mobilenet():
    from tfopt_widgets._keras import keras

    keras.utils.set_random_seed(0)
    return keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None)


def tiny():
    from tfopt_widgets._keras import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(inputs)
    x = keras.layers.DepthwiseConv2D(3, name="depthwise")(x)
    x = keras.layers.Conv2D(16, 1, activation="relu", name="pointwise")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="classifier")(x), name="tiny_cnn")


def images(model, count: int, seed: int = 0):
    """Smooth synthetic images in [-1, 1] (MobileNetV2's input range) and the float model's top-1 class for each."""
    import numpy as np

    shape = model.inputs[0].shape[1:]
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(-1, 1, (count, shape[0] // 8 or 1, shape[1] // 8 or 1, shape[2])).astype("float32")
    x = np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2)[:, :shape[0], :shape[1]]
    x = np.clip(x + rng.normal(0, 0.1, x.shape).astype("float32"), -1, 1)
    return x, model.predict(x, batch_size=64, verbose=0)


def fidelity(reference, predicted):
    """1 - total variation distance between two batches of class probabilities, averaged (1.0: identical)."""
    import numpy as np

    return float(1.0 - 0.5 * np.abs(np.asarray(predicted) - reference).sum(-1).mean())


def run(model, data, executor, workers):
    import tfopt_widgets as tw

    def cpu():
        return sum(getattr(resource.getrusage(who), field) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
                   for field in ("ru_utime", "ru_stime"))

    start, cpu_start = time.perf_counter(), cpu()
    report = tw.sensitivity(model, data, executor=executor, workers=workers, samples=len(data[0]), metric=fidelity)
    return report, time.perf_counter() - start, cpu() - cpu_start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny CNN: a smoke test of the same path")
    parser.add_argument("--samples", type=int, default=None, help="images measured per variant")
    parser.add_argument("--no-processes", action="store_true", help="skip the 2-process run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    model = tiny() if args.quick else mobilenet()
    data = images(model, args.samples or (64 if args.quick else 128))
    configurations = [("threads", 1), ("threads", 2)] + ([] if args.no_processes else [("processes", 2)])
    runs, report = [], None
    for executor, workers in configurations:
        report, seconds, cpu_seconds = run(model, data, executor, workers)
        runs.append({"executor": executor, "workers": workers, "wall_s": round(seconds, 1),
                     "cpu_s": round(cpu_seconds, 1), "load_average": round(os.getloadavg()[0], 1)})
        print(f"{executor} x{workers}: {seconds:.1f} s (cpu {cpu_seconds:.1f} s)", flush=True)
    single = runs[0]["wall_s"]
    for entry in runs:
        entry["speedup"] = round(single / entry["wall_s"], 2)
    counts = {}
    for row in report.rows:
        counts[row.technique] = counts.get(row.technique, 0) + 1
    worst = sorted(report.rows, key=lambda r: r.drop, reverse=True)[:8]
    result = {
        "model": report.model_name, "quick": args.quick, "params": int(model.count_params()),
        "layers": len(model.layers), "samples": report.samples, "measurements": counts,
        "variants": sum(counts.values()) + counts.get("quantize", 0) + 2,
        "metric": "fidelity: 1 - total variation distance to the float model's probabilities",
        "baseline": report.baseline,
        "int8_value": report.int8_value, "int8_gzip_size": report.int8_gzip_size,
        "float_gzip_size": report.float_gzip_size, "runs": runs,
        "most_sensitive": [{"layer": r.layer, "technique": r.technique, "level": r.level, "drop": round(r.drop, 5)}
                           for r in worst],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    name = "sensitivity-quick" if args.quick else "sensitivity"
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    lines = [f"# tw.sensitivity: {result['model']} ({result['params']:,} params, {result['layers']} layers)", "",
             (f"{result['date']}, {result['machine']['cpus']} CPUs; {result['samples']} images per variant; "
              f"{result['variants']} files scored ({', '.join(f'{k}: {v}' for k, v in counts.items())} measurements)."),
             "", "| executor | workers | wall time (s) | speed-up | CPU time (s) | load average after |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['executor']} | {r['workers']} | {r['wall_s']} | {r['speedup']}x | {r['cpu_s']} | "
              f"{r['load_average']} |" for r in runs]
    lines += ["", "| most sensitive | technique | level | drop |", "|---|---|---|---|"]
    lines += [f"| {r['layer']} | {r['technique']} | {r['level']} | {r['drop']:+.5f} |"
              for r in result["most_sensitive"]]
    (args.out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
