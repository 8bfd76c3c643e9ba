"""Benchmark: tw.sensitivity of MobileNetV2-0.35 at 96x96 over every layer and the three techniques.

Measures the wall time with 1 and 2 workers (threads, and spawned processes) and the speed-up, and writes
bench/results/sensitivity.json plus bench/results/sensitivity.md. It also measures the machine's own ceiling: the
same LiteRT scoring job run twice in one process, then once in each of two processes side by side; no executor
can beat that ratio here. ``--quick`` runs a tiny CNN instead (a CI smoke
test of the same path, seconds).

    python bench/sensitivity.py            # MobileNetV2-0.35, 96x96x3 (a few minutes on 2 cores)
    python bench/sensitivity.py --quick

The model is untrained (``weights=None``: nothing is downloaded; ``tfopt_widgets.demo.mobilenet_v2`` sets its
BatchNormalization statistics from synthetic images so its activations have their usual ranges) and ends in logits.
Its top-1 class would say little, so the metric is fidelity to the float model on synthetic images: 1 minus the
relative RMS error of the compressed file's logits (1.0: identical; below 0 when the error exceeds the logits). The amount of work (every layer, technique and
level) is what a trained model costs too. ``cpu_s`` is the CPU time this
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

from tfopt_widgets.demo import logit_fidelity  # no TensorFlow import: the log level below still applies

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RESULTS = Path(__file__).resolve().parent / "results"


def mobilenet():
    from tfopt_widgets.demo import mobilenet_v2

    return mobilenet_v2(96)  # untrained; BatchNormalization statistics from synthetic images; logits out


def tiny():
    from tfopt_widgets.model.stack import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(inputs)
    x = keras.layers.DepthwiseConv2D(3, name="depthwise")(x)
    x = keras.layers.Conv2D(16, 1, activation="relu", name="pointwise")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="classifier")(x), name="tiny_cnn")


def images(model, count: int, seed: int = 1):
    """Synthetic images the size of the model's input, and the float model's logits for each."""
    from tfopt_widgets.demo import synthetic_images

    x = synthetic_images(count, int(model.inputs[0].shape[1]), seed=seed)
    return x, model.predict(x, batch_size=64, verbose=0)


def ceiling(model, data, repeats: int = 8) -> dict:
    """The machine's best 1 -> 2 worker speed-up for this scoring: one LiteRT job twice in this process, then
    once in each of two spawned processes at the same time (their start-up not counted)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import tfopt_widgets as tw
    from tfopt_widgets.analysis.jobs import score_variants

    content = tw.convert(model, "float32").content
    job = (content, [("float", None, None)] * repeats, data[0], data[1], logit_fidelity)
    score_variants(*job)  # warm up
    start = time.perf_counter()
    score_variants(*job)
    score_variants(*job)
    serial = time.perf_counter() - start
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(score_variants, *zip(job, job)))  # start both workers, warm them up
        start = time.perf_counter()
        list(pool.map(score_variants, *zip(job, job)))
        parallel = time.perf_counter() - start
    return {"scored": 2 * repeats, "serial_s": round(serial, 2), "two_processes_s": round(parallel, 2),
            "speedup": round(serial / parallel, 2)}


def run(model, data, executor, workers):
    import tfopt_widgets as tw

    def cpu():
        return sum(getattr(resource.getrusage(who), field) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
                   for field in ("ru_utime", "ru_stime"))

    start, cpu_start = time.perf_counter(), cpu()
    report = tw.sensitivity(model, data, executor=executor, workers=workers, samples=len(data[0]),
                            metric=logit_fidelity)
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
    limit = ceiling(model, data)
    print(f"machine ceiling for 2 workers: {limit['speedup']}x", flush=True)
    counts = {}
    for row in report.rows:
        counts[row.technique] = counts.get(row.technique, 0) + 1
    worst = sorted(report.rows, key=lambda r: r.drop, reverse=True)[:8]
    result = {
        "model": report.model_name, "quick": args.quick, "params": int(model.count_params()),
        "layers": len(model.layers), "samples": report.samples, "measurements": counts,
        "variants": sum(counts.values()) + counts.get("quantize", 0) + 2,
        "metric": "logit fidelity: 1 - RMS error relative to the float model's logits",
        "baseline": report.baseline,
        "int8_value": report.int8_value, "int8_gzip_size": report.int8_gzip_size,
        "float_gzip_size": report.float_gzip_size, "runs": runs, "ceiling": limit,
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
    lines += ["", (f"Machine ceiling for 2 workers: {limit['speedup']}x (the float file scored {limit['scored']} times: "
                   f"{limit['serial_s']} s in one process, {limit['two_processes_s']} s split over two processes "
                   "running at once).")]
    lines += ["", "| most sensitive | technique | level | drop |", "|---|---|---|---|"]
    lines += [f"| {r['layer']} | {r['technique']} | {r['level']} | {r['drop']:+.5f} |"
              for r in result["most_sensitive"]]
    (args.out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
