"""The ``tfopt-widgets`` command: the built-in demo, and optimize-and-convert for CI jobs.

    tfopt-widgets demo [--out DIR]
    tfopt-widgets inspect MODEL
    tfopt-widgets optimize MODEL --plan plan.json --target edgetpu --data data.npz --out DIR

``data.npz`` holds ``x`` and ``y`` (training data for fine-tuning and calibration) and, optionally, ``x_test`` and
``y_test`` (validation while fine-tuning, and evaluation; without them the training data is evaluated). Both
commands run ``tw.run``: the float32 baseline, then the plan fine-tuned, converted and evaluated. Progress goes to
stderr (a bar per stage on a terminal, a line per stage in a log), results to stdout; TensorFlow's start-up lines
are left out. Errors print one line and exit with 2. Files are written whole or not at all.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .errors import DataError, Error
from .pipeline import start_engine, write_atomically
from .plan import Plan
from .progress import Progress

TARGET_ORDER = ("cpu", "gpu", "edgetpu", "hexagon")


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        start_engine()
        return args.run(args)
    except Error as error:
        print(f"tfopt-widgets: error: {error}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tfopt-widgets", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="train the digits demo, optimize it, convert for every target")
    demo.add_argument("--out", type=Path, default=Path("tfopt-demo"), help="output folder (default: tfopt-demo)")
    demo.add_argument("--epochs", type=int, default=2, help="fine-tuning epochs per stage (default: 2)")
    demo.set_defaults(run=_demo)

    inspect = commands.add_parser("inspect", help="list a model's layers and what each technique supports")
    inspect.add_argument("model", type=Path, help="a tf_keras .keras or .h5 file")
    inspect.set_defaults(run=_inspect)

    optimize = commands.add_parser("optimize", help="apply a plan to a saved model and convert it")
    optimize.add_argument("model", type=Path, help="a tf_keras .keras or .h5 file")
    optimize.add_argument("--plan", type=Path, required=True, help="plan JSON (Plan.save / the Studio's export)")
    optimize.add_argument("--target", default="cpu", help="cpu, gpu, edgetpu, hexagon or float32 (default: cpu)")
    optimize.add_argument("--quantization", default=None, help="override the target's post-training mode")
    optimize.add_argument("--data", type=Path, required=True, help=".npz with x, y and optionally x_test, y_test")
    optimize.add_argument("--epochs", type=int, default=2, help="fine-tuning epochs per stage (default: 2)")
    optimize.add_argument("--out", type=Path, required=True, help="output folder")
    optimize.set_defaults(run=_optimize)
    return parser


def default_plan() -> Plan:
    """The demo's plan: int8 QAT everywhere; the Dense layer holding 85% of the weights also pruned to 75% and
    clustered to 16 values (PCQAT)."""
    return (Plan().quantize("conv1", "conv2", "dense", "classifier")
            .prune("dense", sparsity=0.75).cluster("dense", clusters=16))


def _demo(args) -> int:
    from . import demo
    from .pipeline import run

    started = time.perf_counter()
    train, test = demo.digits_data()
    model = demo.digits_model()
    print(f"Trained the digits CNN ({model.count_params():,} params) in {time.perf_counter() - started:.1f} s.")
    plan = default_plan()
    print(f"Plan:\n{plan!r}")
    first = run(model, plan, TARGET_ORDER[0], train, validation_data=test, epochs=args.epochs, baseline=True,
                progress=Progress(text=True))
    print(f"Measured the float32 baseline, optimized (stages: {', '.join(first.optimized.history)}), converted "
          f"for {first.target} and measured it in {first.wall_s:.1f} s.")
    runs = [(first.baseline.label, first.baseline), (first.target, first)]
    for target in TARGET_ORDER[1:]:  # the same fine-tuned model, converted for each target
        runs.append((target, run(model, plan, target, train, validation_data=test, optimized=first.optimized,
                                 progress=Progress(text=True))))
    _report(runs, args.out, plan)
    return 0


def _inspect(args) -> int:
    from .model.inspection import inspect

    print(inspect(_load_model(args.model)).to_dataframe().to_string())
    return 0


def _optimize(args) -> int:
    import numpy as np

    from .pipeline import run

    model = _load_model(args.model)
    plan = Plan.load(args.plan) if args.plan.exists() else _missing(args.plan, "plan")
    if not args.data.exists():
        _missing(args.data, "data")
    with np.load(args.data) as arrays:
        data = {key: arrays[key] for key in arrays.files}
    for key in ("x", "y"):
        if key not in data:
            raise DataError(f"{args.data} has no array {key!r}; it needs x and y (and optionally x_test, y_test). "
                            "Write it with numpy.savez(path, x=..., y=...).", field="data")
    test = (data["x_test"], data["y_test"]) if {"x_test", "y_test"} <= set(data) else None
    result = run(model, plan, args.target, (data["x"], data["y"]), validation_data=test,
                 quantization=args.quantization, epochs=args.epochs, baseline=True, progress=Progress(text=True))
    _report([(result.baseline.label, result.baseline), (args.target, result)], args.out, plan)
    return 0


def _report(runs, out: Path, plan: Plan) -> None:
    """Print the comparison table of ``(label, tw.run's result)`` pairs; write files, plan and metrics to ``out``."""
    write_atomically(out / "plan.json", plan.to_json() + "\n")
    rows = []
    for label, result in runs:
        path = write_atomically(out / f"{label.split()[0]}.tflite", result.tflite.content)
        rows.append({"run": label, **result.metrics.as_dict(), "file": path.name})
    write_atomically(out / "metrics.json", json.dumps(rows, indent=2) + "\n")
    print(format_table(rows))
    print(f"Wrote {len(rows)} .tflite files, plan.json and metrics.json to {out}/")


def format_table(rows: list[dict]) -> str:
    """A plain-text comparison table: one line per run, sizes relative to the first (the baseline)."""
    header = f"{'run':<18}{'mode':<9}{'size':>11}{'gzip':>11}{'vs base':>9}{'accuracy':>10}{'latency':>11}"
    lines = [header, "-" * len(header)]
    base = rows[0]["gzip_size"] if rows else 1
    for row in rows:
        value = row["accuracy"] if row["accuracy"] is not None else row["value"]
        lines.append(f"{row['run']:<18}{row['quantization'] or '':<9}{row['size']:>11,}{row['gzip_size']:>11,}"
                     f"{row['gzip_size'] / base:>8.2f}x{value:>10.3f}{row['latency_ms']:>8.3f} ms")
    return "\n".join(lines)


def _load_model(path: Path):
    from .model.porting import load_model

    return load_model(path)


def _missing(path: Path, field: str):
    raise Error(f"{path} does not exist.", field=field)


if __name__ == "__main__":
    sys.exit(main())
