"""Benchmark: what tw.optimize + tw.convert cost over the same work written by hand with tfmot and the TFLite converter.

One per-layer plan per model, carried out (a) by ``tw.optimize`` + ``tw.convert`` and (b) by :func:`handwritten_digits`
/ :func:`handwritten_mobilenet` below: plain tfmot code as its guides write it (clone_model with a clone_function
per stage, fit, strip; TFLiteConverter). Both run interleaved in one process (order alternating, same seeds,
``clear_session`` before each), and the ratio of median wall times is reported (goal: <= 1.05), plus whether the
outcomes are the same: per-layer sparsity and unique values of the kernels in the .tflite files, the TFLite op
lists, and file sizes within 1%.

    python bench/overhead.py            # digits demo (5 repeats) and MobileNetV2-0.35 at 96x96 (3 repeats)
    python bench/overhead.py --quick    # digits only, 1 epoch on a few batches, 1 repeat: a CI smoke test
    python bench/overhead.py --profile  # also cProfile one run of each and list where tw's extra time goes
    python bench/overhead.py --only cqat --only pcqat   # MobileNetV2 CQAT / PCQAT against the guides' tfmot code

Plans. Digits (tfopt_widgets.demo): every weighted layer pruned, clustered and quantization-aware trained (PCQAT)
with its own sparsity and cluster count; conv2's BatchNormalization and ReLU are quantized folded into it. Every
quantized layer has zeros, so tfmot's stock cluster-preserving scheme does what tw's per-layer quantizer copy does
(tw's fix only matters when a quantized layer without zeros shares the quantizer). MobileNetV2-0.35: every Conv2D
and the classifier pruned to 50% and clustered into 16 values (sparsity-preserving), then full-int8 post-training
conversion with calibration images; a few steps of fine-tuning on synthetic images. MobileNetV2-0.35 CQAT / PCQAT
(64x64, 8 images, 1 epoch): every layer quantization-aware trained with the cluster-preserving scheme, the three
largest layers clustered into 16 values (PCQAT: pruned to 50% first); the hand-written side annotates the same
layers and passes tfmot's stock Default8BitClusterPreserveQuantizeScheme, as tfmot's collaborative guide does.
"""

from __future__ import annotations

import argparse
import cProfile
import gzip
import io
import math
import pstats
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

GOAL_RATIO = 1.05
SEED = 0

# Digits plan: layer -> (sparsity, clusters). All of them are quantized (PCQAT); conv2's bn2 and relu2 fold into it.
DIGITS_LAYERS = {"conv1": (0.5, 8), "conv2": (0.6, 16), "dense": (0.8, 16), "classifier": (0.5, 8)}
DIGITS_FOLDED = {"conv2": ("bn2", "relu2")}


# ---------------------------------------------------------------------------------------------------------------
# The hand-written reference: tfmot and the TFLite converter, as their guides use them. Nothing from tfopt_widgets.

def schedule_steps(total_steps: int, end_fraction: float = 0.8) -> tuple[int, int, int]:
    """Pruning from step 0 to ~80% of training, updating about 10 times, the last update on the schedule's grid
    (tfmot prunes only at begin + k * frequency, so end must sit on that grid to reach the final sparsity)."""
    end = min(max(1, math.ceil(end_fraction * total_steps) - 1), max(total_steps - 1, 1))
    frequency = max(1, min(100, end // 10 or 1))
    return 0, frequency * max(1, end // frequency), frequency


def handwritten(base_model, x, y, x_calibration, *, prune: dict, cluster: dict, quantize: set, scheme,
                epochs: int, batch_size: int, init: str = "KMEANS_PLUS_PLUS"):
    """tfmot per layer, stage by stage, then full-int8 conversion. Returns (keras model, .tflite bytes).

    ``prune``: {layer: final sparsity}; ``cluster``: {layer: clusters} (sparsity-preserving: every clustered layer
    here is pruned first); ``quantize``: layer names annotated for QAT; ``scheme``: the QAT scheme.
    """
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    # clone_model with a clone_function shares the layers it does not replace: copy first so base_model never trains.
    model = keras.models.clone_model(base_model)
    model.set_weights(base_model.get_weights())
    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=0).batch(batch_size)
    begin, end, frequency = schedule_steps(math.ceil(len(x) / batch_size) * epochs)

    def fine_tune(m, callbacks=()):
        m.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        m.fit(data, epochs=epochs, callbacks=list(callbacks), verbose=0)

    # 1. Pruning (tfmot "Pruning comprehensive guide": prune some layers).
    def prune_layer(layer):
        if layer.name not in prune:
            return layer
        schedule = tfmot.sparsity.keras.PolynomialDecay(initial_sparsity=0.0, final_sparsity=prune[layer.name],
                                                        begin_step=begin, end_step=end, frequency=frequency)
        return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)

    if prune:
        model = keras.models.clone_model(model, clone_function=prune_layer)
        fine_tune(model, [tfmot.sparsity.keras.UpdatePruningStep()])
        model = tfmot.sparsity.keras.strip_pruning(model)

    # 2. Sparsity-preserving clustering ("Sparsity preserving clustering Keras example").
    def cluster_layer(layer):
        if layer.name not in cluster:
            return layer
        return tfmot.clustering.keras.cluster_weights(
            layer, number_of_clusters=cluster[layer.name],
            cluster_centroids_init=getattr(tfmot.clustering.keras.CentroidInitialization, init),
            preserve_sparsity=True)

    if cluster:
        model = keras.models.clone_model(model, clone_function=cluster_layer)
        fine_tune(model)
        model = tfmot.clustering.keras.strip_clustering(model)

    # 3. QAT with the collaborative scheme ("Sparsity and cluster preserving quantization aware training").
    def annotate(layer):
        return tfmot.quantization.keras.quantize_annotate_layer(layer) if layer.name in quantize else layer

    if quantize:
        annotated = keras.models.clone_model(model, clone_function=annotate)
        with tfmot.quantization.keras.quantize_scope():
            model = tfmot.quantization.keras.quantize_apply(annotated, scheme)
        fine_tune(model)

    # 4. Full-integer conversion ("Post-training integer quantization"), float I/O for the CPU.
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x_calibration[i:i + 1]] for i in range(len(x_calibration)))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return model, converter.convert()


def handwritten_digits(base_model, x, y, x_calibration, epochs: int, batch_size: int, layers=None):
    """PCQAT per layer on the digits CNN (conv2's BatchNormalization and ReLU annotated with it, so they fold)."""
    import tensorflow_model_optimization as tfmot

    layers = layers or DIGITS_LAYERS
    folded = {name for layer in layers for name in DIGITS_FOLDED.get(layer, ())}
    return handwritten(base_model, x, y, x_calibration, prune={k: v[0] for k, v in layers.items()},
                       cluster={k: v[1] for k, v in layers.items()}, quantize=set(layers) | folded,
                       scheme=tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=True),
                       epochs=epochs, batch_size=batch_size)


def handwritten_quick(base_model, x, y, x_calibration, epochs: int, batch_size: int):
    """The --quick plan: prune dense to 80%, then full-int8 PTQ."""
    return handwritten(base_model, x, y, x_calibration, prune={"dense": 0.8}, cluster={}, quantize=set(), scheme=None,
                       epochs=epochs, batch_size=batch_size)


def handwritten_mobilenet(base_model, layers, x, y, x_calibration, epochs: int, batch_size: int):
    """Prune 50% + sparsity-preserving clustering (16, linear init) on ``layers``, then full-int8 PTQ."""
    return handwritten(base_model, x, y, x_calibration, prune=dict.fromkeys(layers, 0.5),
                       cluster=dict.fromkeys(layers, 16), quantize=set(), scheme=None, epochs=epochs,
                       batch_size=batch_size, init="LINEAR")


# ---------------------------------------------------------------------------------------------------------------
# The same plans through tfopt_widgets.

def digits_plan():
    import tfopt_widgets as tw

    plan = tw.Plan()
    for layer, (sparsity, clusters) in DIGITS_LAYERS.items():
        plan.prune(layer, sparsity=sparsity).cluster(layer, clusters=clusters).quantize(layer)
    return plan


def mobilenet_plan(layers):
    import tfopt_widgets as tw

    return tw.Plan().prune(*layers, sparsity=0.5).cluster(*layers, clusters=16, init="linear")


def with_tw(model, plan, x, y, x_calibration, epochs, batch_size):
    import tfopt_widgets as tw

    optimized = tw.optimize(model, plan, (x, y), epochs=epochs, batch_size=batch_size)
    tflite = tw.convert(optimized, target="cpu", representative_data=x_calibration)
    return optimized.model, tflite.content


# ---------------------------------------------------------------------------------------------------------------
# Measuring

def outcome(model, content: bytes) -> dict:
    """What the run produced: per-layer sparsity and unique values of the file's kernels, ops, sizes, accuracy."""
    import numpy as np

    from tfopt_widgets.runtime.ops import user_layers
    from tfopt_widgets.tflite.file import TFLiteModel

    tflite = TFLiteModel(content, layer_origins=user_layers(model))
    layers = {}
    for name, kernel in tflite.weights().items():
        layers[name] = {"sparsity": round(float(np.mean(kernel == 0)), 4), "unique": int(np.unique(kernel).size)}
    return {"layers": layers, "ops": [op.op for op in tflite.ops], "size": len(content),
            "gzip_size": len(gzip.compress(content, 9))}


def same(a: dict, b: dict) -> dict:
    """Compare two outcomes: each check True/False with the values where they differ."""
    sparsity = {name: (a["layers"][name]["sparsity"], b["layers"].get(name, {}).get("sparsity"))
                for name in a["layers"]}
    unique = {name: (a["layers"][name]["unique"], b["layers"].get(name, {}).get("unique")) for name in a["layers"]}
    checks = {
        "layers": sorted(a["layers"]) == sorted(b["layers"]),
        # Pruning reaches its target exactly on both sides; 0.5 percentage points allows a tie at the threshold.
        "sparsity": all(y is not None and abs(x - y) <= 0.005 for x, y in sparsity.values()),
        "unique_values": all(x == y for x, y in unique.values()),
        "ops": a["ops"] == b["ops"],
        "size_within_1pct": abs(a["size"] - b["size"]) <= 0.01 * b["size"],
        "gzip_within_1pct": abs(a["gzip_size"] - b["gzip_size"]) <= 0.01 * b["gzip_size"],
    }
    details = {"sparsity tw/hand": sparsity, "unique tw/hand": unique, "size tw/hand": (a["size"], b["size"]),
               "gzip tw/hand": (a["gzip_size"], b["gzip_size"])}
    if not checks["ops"]:
        details["ops tw/hand"] = (a["ops"], b["ops"])
    return {"identical": all(checks.values()), "checks": checks, "details": details}


def accuracy(content: bytes, x, y) -> float:
    from tfopt_widgets.tflite.evaluation import evaluate

    return round(evaluate(content, (x, y), runs=1, warmup=0).value, 4)


def interleaved(case: str, run_tw, run_hand, repeats: int, warmup: bool) -> dict:
    """Run both variants ``repeats`` times, alternating which goes first; median wall time of each."""
    from tfopt_widgets.model.stack import keras

    def timed(run):
        keras.backend.clear_session()
        keras.utils.set_random_seed(SEED)
        cpu = _common.cpu_seconds()
        with _common.Stopwatch() as watch:
            result = run()
        return watch.seconds, _common.cpu_seconds() - cpu, result

    if warmup:  # TensorFlow's first traces of fit/convert in a process; not counted
        timed(run_tw)
        timed(run_hand)
    times = {"tw": [], "hand": []}
    cpu_times = {"tw": [], "hand": []}
    results = {}
    for repeat in range(repeats):
        order = [("tw", run_tw), ("hand", run_hand)]
        for name, run in order if repeat % 2 == 0 else order[::-1]:
            seconds, cpu, results[name] = timed(run)
            times[name].append(round(seconds, 2))
            cpu_times[name].append(round(cpu, 2))
            print(f"{case}: {name} run {repeat + 1}/{repeats}: {seconds:.1f} s wall, {cpu:.1f} s CPU "
                  f"(load {_common.load()[0]})", flush=True)
    tw_median, hand_median = _common.median(times["tw"]), _common.median(times["hand"])
    cpu_ratio = _common.median(cpu_times["tw"]) / _common.median(cpu_times["hand"])
    return {"times_s": times, "tw_median_s": round(tw_median, 2), "hand_median_s": round(hand_median, 2),
            "ratio": round(tw_median / hand_median, 3), "cpu_times_s": cpu_times, "cpu_ratio": round(cpu_ratio, 3),
            "results": results}


def profile(run, top: int = 14) -> list[dict]:
    """cProfile one run: the tfopt_widgets functions with the most cumulative time, and the total."""
    from tfopt_widgets.model.stack import keras

    keras.backend.clear_session()
    keras.utils.set_random_seed(SEED)
    profiler = cProfile.Profile()
    profiler.enable()
    run()
    profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    rows = []
    for (filename, line, function), (_, calls, _, cumulative, _) in stats.stats.items():
        if "tfopt_widgets" in filename or "/bench/" in filename:
            rows.append({"function": f"{Path(filename).name}:{line}({function})", "calls": calls,
                         "cumulative_s": round(cumulative, 3)})
    total = max((r[3] for r in stats.stats.values()), default=0.0)
    rows.sort(key=lambda r: r["cumulative_s"], reverse=True)
    return [{"function": "(whole run)", "calls": 1, "cumulative_s": round(total, 3)}, *rows[:top]]


def digits_case(args) -> dict:
    import numpy as np

    import tfopt_widgets as tw
    from tfopt_widgets import demo

    (x_train, y_train), (x_test, y_test) = demo.digits_data()
    base = demo.digits_model(epochs=1 if args.quick else 12, seed=SEED)
    epochs, batch_size = 2, 32
    if args.quick:  # one short stage: the smoke test checks the path, not the numbers
        x_train, y_train, epochs = x_train[:64], y_train[:64], 1
    x_calibration = x_train[np.linspace(0, len(x_train) - 1, min(200, len(x_train))).round().astype(int)]
    if args.quick:
        plan, title = tw.Plan().prune("dense", sparsity=0.8), "digits CNN (quick: prune dense, int8 PTQ)"
        hand = handwritten_quick
    else:
        plan, title = digits_plan(), "digits CNN (PCQAT per layer, int8)"
        hand = handwritten_digits

    def run_tw():
        return with_tw(base, plan, x_train, y_train, x_calibration, epochs, batch_size)

    def run_hand():
        return hand(base, x_train, y_train, x_calibration, epochs, batch_size)

    case = interleaved("digits", run_tw, run_hand, repeats=args.repeats or (1 if args.quick else 5),
                       warmup=not args.quick)
    return finish(title, base, case, (x_test, y_test), args, run_tw, run_hand, plan.to_dict()["layers"],
                  {"epochs": epochs, "batch_size": batch_size, "train_samples": len(x_train)})


def mobilenet_case(args) -> dict:
    import numpy as np

    from tfopt_widgets.model.stack import keras

    keras.utils.set_random_seed(SEED)
    base = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None)  # no download
    base.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    layers = [layer.name for layer in base.layers if type(layer).__name__ in ("Conv2D", "Dense")]
    rng = np.random.default_rng(SEED)
    x = rng.uniform(-1, 1, (32, 96, 96, 3)).astype("float32")
    y = rng.integers(0, 1000, 32)
    epochs, batch_size = 1, 8  # 4 fine-tuning steps per stage: the cost is the graph work, not the training
    plan = mobilenet_plan(layers)
    x_calibration = x[:16]

    def run_tw():
        return with_tw(base, plan, x, y, x_calibration, epochs, batch_size)

    def run_hand():
        return handwritten_mobilenet(base, layers, x, y, x_calibration, epochs, batch_size)

    case = interleaved("mobilenetv2-0.35", run_tw, run_hand, repeats=args.mobilenet_repeats, warmup=False)
    return finish(f"MobileNetV2-0.35 96x96 (prune 50% + cluster 16 on {len(layers)} layers, int8 PTQ)", base, case,
                  None, args, run_tw, run_hand, {"layers": layers, "sparsity": 0.5, "clusters": 16, "init": "linear"},
                  {"epochs": epochs, "batch_size": batch_size, "train_samples": len(x), "steps_per_stage": 4})


def mobilenet_collaborative_case(args, prune: bool) -> dict:
    """CQAT (or PCQAT with ``prune``) on MobileNetV2-0.35 at 64x64: every layer quantization-aware trained, the three
    largest Conv2D/Dense layers clustered into 16 values (and pruned to 50% first), 8 images, 1 epoch."""
    import numpy as np
    import tensorflow_model_optimization as tfmot

    import tfopt_widgets as tw
    from tfopt_widgets.model.stack import keras

    keras.utils.set_random_seed(SEED)
    base = keras.applications.MobileNetV2(input_shape=(64, 64, 3), alpha=0.35, weights=None, classes=10)
    base.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    info = tw.inspect(base)
    quantized = [layer.name for layer in info if layer.supports("quantize").ok]
    techniques = ("prune", "cluster", "quantize") if prune else ("cluster", "quantize")
    largest = [layer.name for layer in sorted(info, key=lambda layer: -layer.params)
               if layer.supports(*techniques).ok][:3]
    plan = tw.Plan().quantize(*quantized).cluster(*largest, clusters=16)
    if prune:
        plan.prune(*largest, sparsity=0.5)
    rng = np.random.default_rng(SEED)
    x = rng.uniform(-1, 1, (8, 64, 64, 3)).astype("float32")
    y = rng.integers(0, 10, 8)
    epochs, batch_size = 1, 8
    scheme = tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=prune)

    def run_tw():
        return with_tw(base, plan, x, y, x, epochs, batch_size)

    def run_hand():
        return handwritten(base, x, y, x, prune=dict.fromkeys(largest, 0.5) if prune else {},
                           cluster=dict.fromkeys(largest, 16), quantize=set(quantized), scheme=scheme,
                           epochs=epochs, batch_size=batch_size)

    name = "PCQAT" if prune else "CQAT"
    case = interleaved(f"mobilenetv2-0.35 {name}", run_tw, run_hand, repeats=args.collaborative_repeats,
                       warmup=False)
    return finish(f"MobileNetV2-0.35 64x64 ({name}: {len(quantized)} layers quantized, {', '.join(largest)} "
                  f"{'pruned 50% + ' if prune else ''}clustered 16)", base, case, None, args, run_tw, run_hand,
                  plan.to_dict()["layers"], {"epochs": epochs, "batch_size": batch_size, "train_samples": len(x)})


def finish(title, base, case, test_data, args, run_tw, run_hand, plan, training) -> dict:
    results = case.pop("results")
    outcomes = {name: outcome(*results[name]) for name in ("tw", "hand")}
    comparison = same(outcomes["tw"], outcomes["hand"])
    entry = {"case": title, "params": int(base.count_params()), "layers": len(base.layers), "plan": plan,
             "training": training, **case, "goal_ratio": GOAL_RATIO, "ratio_met": case["ratio"] <= GOAL_RATIO,
             **comparison, "ops": len(outcomes["tw"]["ops"])}
    if test_data is not None:
        entry["accuracy tw/hand"] = (accuracy(results["tw"][1], *test_data), accuracy(results["hand"][1], *test_data))
    # Profiled when asked, or when the digits ratio misses (MobileNetV2 runs take minutes each: only when asked).
    if args.profile or (not args.quick and not entry["ratio_met"] and test_data is not None):
        entry["profile_tw"] = profile(run_tw)
        entry["profile_hand_total_s"] = profile(run_hand)[0]["cumulative_s"]
    return entry


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="digits only, tiny training, 1 repeat (CI smoke test)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs of each variant (median; default 5)")
    parser.add_argument("--mobilenet-repeats", type=int, default=3, help="timed runs of each variant on MobileNetV2")
    parser.add_argument("--collaborative-repeats", type=int, default=1,
                        help="timed runs of each variant of MobileNetV2 CQAT and PCQAT")
    parser.add_argument("--only", choices=("digits", "mobilenet", "cqat", "pcqat"), action="append",
                        help="run only these cases (repeatable)")
    parser.add_argument("--profile", action="store_true", help="cProfile one run of each variant")
    parser.add_argument("--no-mobilenet", action="store_true", help="skip MobileNetV2 (always skipped by --quick)")
    parser.add_argument("--out", type=Path, default=_common.RESULTS)
    args = parser.parse_args(argv)

    info = _common.machine()
    cases = []
    runs = {"digits": digits_case}
    if not (args.quick or args.no_mobilenet):
        runs.update(mobilenet=mobilenet_case, cqat=lambda a: mobilenet_collaborative_case(a, prune=False),
                    pcqat=lambda a: mobilenet_collaborative_case(a, prune=True))
    for name, run in runs.items():
        if args.only and name not in args.only:
            continue
        cases.append(run(args))
        report(cases, args, info)  # after each case, so a long run that is stopped still leaves its results
    return 0


def report(cases: list[dict], args, info: dict) -> None:

    lines = ["# Overhead of tw.optimize + tw.convert over hand-written tfmot + TFLite code", "",
             (f"Median wall time of interleaved runs (same seeds); goal: ratio <= {GOAL_RATIO}. The CPU-time ratio "
              "(user + system time of the process, all threads) is less disturbed by other jobs on a shared machine. "
              "'identical' = same "
             "per-layer sparsity and unique values in the .tflite kernels, same op list, sizes within 1%."), ""]
    rows = []
    for c in cases:
        failed = [name for name, ok in c["checks"].items() if not ok]
        rows.append([c["case"], len(c["times_s"]["tw"]), c["tw_median_s"], c["hand_median_s"], f"**{c['ratio']:.3f}**",
                     f"**{c['cpu_ratio']:.3f}**",
                     "met" if c["ratio_met"] else f"missed by {c['ratio'] - GOAL_RATIO:+.3f}",
                     "yes" if c["identical"] else "NO: " + ", ".join(failed),
                     c.get("accuracy tw/hand", "")])
    lines += _common.table(["case", "repeats", "tw (s)", "hand-written (s)", "wall ratio", "CPU-time ratio",
                            "goal <= 1.05 (wall)", "identical",
                            "accuracy tw/hand"], rows)
    for c in cases:
        lines += ["", f"## {c['case']}", ""]
        lines += _common.table(["layer", "sparsity tw / hand", "unique values tw / hand"],
                               [[name, f"{s[0]:.3f} / {s[1]}", (f"{c['details']['unique tw/hand'][name][0]} / "
                                 f"{c['details']['unique tw/hand'][name][1]}")]
                                for name, s in c["details"]["sparsity tw/hand"].items()][:12])
        count = len(c["details"]["sparsity tw/hand"])
        if count > 12:
            lines.append(f"| ... {count - 12} more layers (all in the JSON) | | |")
        lines += ["", (f"Sizes tw / hand: {c['details']['size tw/hand'][0]:,} / {c['details']['size tw/hand'][1]:,} B; "
                      f"gzip {c['details']['gzip tw/hand'][0]:,} / {c['details']['gzip tw/hand'][1]:,} B; "
                      f"{c['ops']} ops ({'same list' if c['checks']['ops'] else 'lists differ'}). "
                      f"Wall times (s): tw {c['times_s']['tw']}, hand {c['times_s']['hand']}; process CPU times (s): "
                      f"tw {c['cpu_times_s']['tw']}, hand {c['cpu_times_s']['hand']}.")]
        if "profile_tw" in c:
            lines += ["", f"cProfile of one tw run (hand-written run: {c['profile_hand_total_s']} s):", ""]
            lines += _common.table(["function", "calls", "cumulative (s)"],
                                   [[p["function"], p["calls"], p["cumulative_s"]] for p in c["profile_tw"]])
    # A run of some cases only (--only) gets its own files, so the committed full run stays whole.
    name = "overhead" if not args.only else "overhead-" + "-".join(dict.fromkeys(args.only))
    _common.write(name, args.quick, args.out, {"quick": args.quick, "machine": info, "cases": cases}, lines)


if __name__ == "__main__":
    sys.exit(main())
