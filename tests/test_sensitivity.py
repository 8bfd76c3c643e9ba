"""tw.sensitivity, selective int8 (keep float), tw.suggest_plan and scale-out, on the digits demo (real models)."""

import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import tfopt_widgets as tw


@pytest.fixture(scope="module")
def report(digits):
    model, _, test = digits
    return tw.sensitivity(model, test)


def test_report_covers_every_supporting_layer_and_technique(report, digits):
    model, _, (x_test, y_test) = digits
    info = tw.inspect(model)
    for technique in ("prune", "cluster"):
        supporting = [layer.name for layer in info if layer.supports(technique).ok]
        assert supporting, technique
        for name in supporting:
            for level in tw.sensitivity.__globals__["DEFAULT_LEVELS"][technique]:
                row = report.row(name, technique, level)
                assert row is not None, (name, technique, level)
                assert math.isfinite(row.drop) and -0.1 < row.drop <= 1.0
                assert row.value == pytest.approx(report.baseline - row.drop)
    # Quantize: every layer that leaves an op of its own (BatchNormalization and ReLU fold into conv2's op).
    quantized = {row.layer for row in report.rows if row.technique == "quantize"}
    assert {"conv1", "conv2", "dense", "classifier"} <= quantized
    assert not {"bn2", "relu2", "dropout"} & quantized
    for name in ("conv1", "conv2", "dense", "classifier"):
        row = report.row(name, "quantize")
        assert row.quant_error is not None and 0 <= row.quant_error < 0.1
        assert row.keep_float_value is not None and math.isfinite(row.keep_float_value)
    # The baseline is the float file, measured like tw.evaluate does.
    float_metrics = tw.evaluate(tw.convert(model, "float32"), (x_test, y_test), runs=1)
    assert report.baseline == pytest.approx(float_metrics.accuracy)
    assert report.int8_value is not None and abs(report.baseline - report.int8_value) < 0.05
    # Sizes: each layer's share of the int8 file; the big Dense holds most of it.
    shares = {entry.layer: entry.share for entry in report.layers}
    assert max(shares, key=shares.get) == "dense" and 0.5 < shares["dense"] < 1.0 and sum(shares.values()) < 1.2
    frame = report.to_dataframe()
    assert list(frame.index[:4]) == ["conv1", "conv2", "dense", "classifier"]
    assert ("prune", 0.9) in frame.columns and ("quantize", "int8") in frame.columns
    assert np.isfinite(frame.loc["dense"].to_numpy(dtype=float)).all()


def test_drops_and_sizes_are_sensible(report):
    # Pruning more of the big Dense hurts more, and compresses it more.
    assert report.drop("dense", "prune", 0.9) > report.drop("dense", "prune", 0.5)
    assert report.drop("dense", "prune", 0.9) > 0.01
    sizes = [report.row("dense", "prune", s).size["int8"] for s in (0.5, 0.75, 0.9)]
    assert sizes == sorted(sizes, reverse=True)
    layer = next(entry for entry in report.layers if entry.layer == "dense")
    assert report.row("dense", "cluster", 8).size["int8"] < layer.size["int8"] < layer.size["float32"]
    # Fewer clusters never share better than more (with a little noise from the data).
    assert report.drop("conv1", "prune", 0.9) >= report.drop("conv1", "cluster", 32) - 0.01


def test_plot_and_json(report, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    figure = report.plot()
    figure.savefig(tmp_path / "sensitivity.png")
    assert (tmp_path / "sensitivity.png").stat().st_size > 1000
    data = report.to_dict()
    assert data["baseline"] == report.baseline and len(data["rows"]) == len(report.rows)
    assert "<table" in report._repr_html_()


def test_user_model_untouched(frozen, digits):
    _, _, test = digits
    small = tw.sensitivity(frozen, test, techniques=("prune", "cluster"), levels={"prune": (0.9,), "cluster": (8,)},
                           samples=200)
    assert {row.technique for row in small.rows} == {"prune", "cluster"}
    assert small.int8_value is None and small.samples == 200


def test_a_tf_data_dataset_gives_its_first_samples(digits):
    from tfopt_widgets.model.stack import tf

    model, _, (x_test, y_test) = digits
    options = {"techniques": ("prune",), "levels": {"prune": (0.9,)}, "samples": 100, "executor": "threads"}
    batched = tw.sensitivity(model, tf.data.Dataset.from_tensor_slices((x_test, y_test)).batch(32), **options)
    unbatched = tw.sensitivity(model, tf.data.Dataset.from_tensor_slices((x_test, y_test)), **options)
    first = tw.sensitivity(model, (x_test[:100], y_test[:100]), **options)
    assert batched.samples == unbatched.samples == 100
    assert batched.baseline == unbatched.baseline == first.baseline
    assert batched.drop("dense", "prune", 0.9) == first.drop("dense", "prune", 0.9)
    with pytest.raises(tw.DataError, match=r"must be an \(x, y\) pair of arrays; got ndarray"):
        tw.sensitivity(model, x_test)


def on_the_int8_grid(y_true, y_pred):
    """The share of output probabilities that are whole multiples of 1/256 (a softmax computed in int8)."""
    return float(np.mean(np.isclose(np.asarray(y_pred) * 256, np.round(np.asarray(y_pred) * 256), atol=1e-4)))


def test_only_this_layer_variants_keep_the_output_float(digits):
    model, _, test = digits
    report = tw.sensitivity(model, test, techniques=("quantize",), samples=100, metric=on_the_int8_grid)
    assert report.baseline < 0.5 and report.int8_value == 1.0  # the full-int8 file's softmax is int8
    # With only conv1 (or conv2, dense) int8, the softmax and the output stay float: not charged to those layers.
    for name in ("conv1", "conv2", "dense"):
        assert report.row(name, "quantize").value < 0.5, name
    assert report.row("classifier", "quantize").value == 1.0  # its softmax op is part of the classifier


def test_keep_float_stays_float_and_falls_back_on_the_edge_tpu(digits, frozen, tmp_path):
    _, (x_train, _), (x_test, y_test) = digits
    plan = tw.Plan().keep_float("conv2")
    assert tw.Plan.from_json(plan.to_json()) == plan and plan.float_layers == ["conv2"]
    plan.validate(frozen)
    tfl = tw.convert(frozen, "edgetpu", representative_data=x_train[:200], plan=plan)
    assert tfl.float_layers() == ["conv2"]
    # Read back from the saved file: conv2's op computes in float32, the rest in int8, I/O stays int8.
    saved = tw.TFLiteModel.load(tfl.save(tmp_path / "kept.tflite"))
    convs = [op for op in saved.ops if op.op == "CONV_2D"]
    assert [saved.tensors[op.inputs[1]].dtype for op in convs] == ["int8", "float32"]
    assert saved.inputs[0].dtype == "int8" and saved.outputs[0].dtype == "int8"
    placement = tfl.compatibility.by_layer()
    assert placement["conv1"].accelerated is True
    assert placement["conv2"].accelerated is False and "float" in placement["conv2"].reason
    assert placement["dense"].accelerated is False  # the Edge TPU maps one subgraph: all after conv2 is CPU
    assert tw.evaluate(tfl, (x_test, y_test), runs=1).accuracy > 0.9
    # A folded BatchNormalization keeps its convolution float; the cpu target runs it all.
    cpu = tw.convert(frozen, "cpu", representative_data=x_train[:200], keep_float=["bn2"])
    assert cpu.float_layers() == ["conv2"] and all(p.accelerated for p in cpu.compatibility)
    assert cpu.inputs[0].dtype == "float32" and cpu.outputs[0].dtype == "float32"  # the cpu target's float I/O
    assert tw.convert(frozen, "cpu", representative_data=x_train[:200]).float_layers() == []


def test_keep_float_beside_quantization_aware_trained_layers(digits, frozen):
    # Every other layer is int8 already (QAT): TFLite's QuantizationDebugger object refuses such a model ("Please
    # check if the quantized model is in debug mode"); tw.convert's denylist does not need it.
    _, (x_train, y_train), test = digits
    plan = tw.Plan().quantize("conv1", "conv2", "bn2", "relu2", "dense").keep_float("classifier")
    optimized = tw.optimize(frozen, plan, (x_train, y_train), epochs=1)
    for target in ("cpu", "edgetpu"):
        tfl = tw.convert(optimized, target, representative_data=x_train[:200])
        assert tfl.float_layers() == ["classifier"], target
    assert tw.evaluate(tfl, test, runs=1).accuracy > 0.8


def test_keep_float_in_the_plan_format():
    plan = tw.Plan().prune("dense", sparsity=0.5).keep_float("dense", "conv1")
    data = plan.to_dict()
    assert data["version"] == 1 and data["layers"]["conv1"] == {"keep_float": True}
    assert tw.Plan.from_dict(data) == plan
    # A version-1 file written before keep_float existed still reads the same.
    old = {"format": "tfopt-widgets/plan", "version": 1, "layers": {"dense": {"quantize": True}}}
    assert tw.Plan.from_dict(old) == tw.Plan().quantize("dense")
    with pytest.raises(tw.PlanError, match="keep_float"):
        tw.Plan.from_dict({**old, "layers": {"dense": {"keep_float": "yes"}}})
    assert plan.remove("conv1", "keep_float").float_layers == ["dense"]
    assert "conv1" not in plan


def test_keep_float_conflicts_and_unknown_layers(digits, frozen):
    _, (x_train, _), _ = digits
    with pytest.raises(tw.PlanError, match="both quantize"):
        tw.Plan().quantize("dense").keep_float("dense").validate(frozen)
    with pytest.raises(tw.PlanError, match="dropout"):
        tw.convert(frozen, "cpu", representative_data=x_train[:50], keep_float=["dropout"])
    with pytest.raises(tw.TargetError, match="keep_float"):
        tw.convert(frozen, "cpu", quantization="dynamic", keep_float=["dense"])


def test_suggest_plan_respects_budget_and_target(report, digits):
    model = digits[0]
    sizes = []
    for budget in (0.0, 0.01, 0.05):
        plan = tw.suggest_plan(report, budget=budget, target="cpu")
        plan.validate(model)
        estimate = report.estimate(plan, "cpu")
        assert estimate["drop"] <= budget + 1e-9
        sizes.append(estimate["size"])
    assert sizes == sorted(sizes, reverse=True)  # a larger budget never gives a larger file
    unplanned = report.estimate(tw.Plan(), "cpu")["size"]
    assert sizes[1] < unplanned
    # Edge TPU: all int8, so no layer is kept float, and the int8 conversion's own drop counts against the budget.
    for budget in (0.0, 0.02):
        edgetpu = tw.suggest_plan(report, budget=budget, target="edgetpu")
        assert edgetpu.float_layers == []
        assert report.estimate(edgetpu, "edgetpu")["drop"] <= max(budget, report.baseline - report.int8_value) + 1e-9
    # Pruning only: the plan must leave the layers that cannot take it alone.
    pruned_only = tw.SensitivityReport(report.model_name, report.metric, report.baseline, report.int8_value,
                                       [r for r in report.rows if r.technique != "cluster"], report.layers,
                                       report.int8_gzip_size, report.float_gzip_size, report.samples,
                                       report.levels, 0.0, None)
    plan = tw.suggest_plan(pruned_only, budget=0.01, target="cpu")
    for entry in plan:
        if entry.prune:
            assert report.drop(entry.layer, "prune", entry.prune.sparsity) <= 0.01


def test_suggested_plan_measured_against_the_estimate(report, digits, frozen):
    _, train, test = digits
    plan = tw.suggest_plan(report, budget=0.01, target="cpu")
    check = report.verify(frozen, plan, train, test, target="cpu", budget=0.01, epochs=1)
    assert math.isfinite(check.measured_drop) and check.estimated_drop <= 0.01 + 1e-9
    assert check.gzip_size < check.float_gzip_size / 3
    if check.within_budget:
        assert check.missed_by == 0.0 and "within the budget" in str(check)
    else:  # the report says by how much it missed
        assert check.missed_by == pytest.approx(check.measured_drop - 0.01)
        assert f"{check.missed_by:.4f}" in str(check)


def test_dask_executor_gives_the_same_numbers(digits):
    distributed = pytest.importorskip("distributed")
    model, _, test = digits
    options = {"techniques": ("quantize", "prune"), "levels": {"prune": (0.75,)}, "samples": 200}
    local = tw.sensitivity(model, test, **options)
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as client:
        remote = tw.sensitivity(model, test, executor=client.get_executor(), **options)
    assert [(r.layer, r.technique, r.level, r.value) for r in remote.rows] == \
        [(r.layer, r.technique, r.level, r.value) for r in local.rows]
    assert remote.baseline == local.baseline and remote.int8_value == local.int8_value


@pytest.mark.slow
def test_optimize_with_a_mirrored_strategy_over_two_cpus():
    # Logical devices must be set before TensorFlow initializes, so this runs in a fresh interpreter.
    script = textwrap.dedent("""
        import numpy as np
        from tfopt_widgets.model.stack import tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import tfopt_widgets as tw
        from tfopt_widgets.demo import digits_data, digits_model
        model = digits_model(epochs=3)
        (x_train, y_train), (x_test, y_test) = digits_data()
        before = [w.copy() for w in model.get_weights()]
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        plan = tw.Plan().prune("dense", sparsity=0.5, schedule="constant")
        opt = tw.optimize(model, plan, (x_train, y_train), epochs=1, strategy=strategy)
        assert strategy.num_replicas_in_sync == 2
        assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
        sparsity = float(np.mean(opt.weights()["dense"] == 0))
        accuracy = tw.evaluate(tw.convert(opt, "float32"), (x_test, y_test), runs=1).accuracy
        print("RESULT", sparsity, accuracy)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    _, sparsity, accuracy = next(line for line in done.stdout.splitlines() if line.startswith("RESULT")).split()
    assert float(sparsity) == pytest.approx(0.5, abs=0.01) and float(accuracy) > 0.8


@pytest.mark.slow
def test_mobilenet_v2_sensitivity_keep_float_and_suggested_plan():
    from tfopt_widgets.demo import logit_fidelity, mobilenet_v2, synthetic_images

    model = mobilenet_v2(32, classes=8)  # untrained, BatchNormalization statistics from synthetic images
    x = synthetic_images(96, 32, seed=1)
    y = model.predict(x, verbose=0)  # the float model's logits: the metric is fidelity to them
    report = tw.sensitivity(model, (x, y), levels={"prune": (0.5, 0.9), "cluster": (16,)}, samples=64,
                            metric=logit_fidelity)
    assert report.baseline == pytest.approx(1.0, abs=1e-4)
    assert report.executor == "threads"  # in a script (pytest), whatever the size
    # The strided depthwise convolutions after a ZeroPadding2D are measured under their own names.
    assert report.row("block_1_depthwise", "quantize") is not None and report.row("block_1_pad", "quantize") is None
    assert report.drop("predictions", "prune", 0.9) > report.drop("predictions", "prune", 0.5) > 0
    quantize = [row for row in report.rows if row.technique == "quantize"]
    assert len(quantize) > 50 and all(row.keep_float_value is not None for row in quantize)
    # One layer int8 with the output float costs far less than the whole model int8.
    assert float(np.median([row.drop for row in quantize])) < (report.baseline - report.int8_value) / 3

    # Selective int8: the layer whose int8 costs most stays float (the Edge TPU's fallback is tested on the digits).
    worst = max((row for row in quantize if row.layer in report.layer_sizes), key=lambda row: row.drop).layer
    plan = tw.Plan().keep_float(worst)
    cpu = tw.convert(model, "cpu", representative_data=x, plan=plan)
    assert cpu.float_layers() == [worst] and cpu.inputs[0].dtype == "float32"
    assert all(placement.accelerated for placement in cpu.compatibility)

    # The suggested plan, carried out: the report says whether the measured drop kept to the budget.
    # An untrained network loses much to int8 alone: over a budget below that, nothing fits (an empty plan).
    int8_drop = report.baseline - report.int8_value
    assert len(tw.suggest_plan(report, budget=int8_drop / 10, target="edgetpu")) == 0
    budget = int8_drop + 0.05
    suggested = tw.suggest_plan(report, budget=budget, target="cpu")
    assert len(suggested) > 0 and report.estimate(suggested, "cpu")["drop"] <= budget + 1e-9
    check = report.verify(model, suggested, (x, y), (x, y), target="cpu", metric=logit_fidelity, budget=budget,
                          epochs=1, loss="mse")
    assert math.isfinite(check.measured_drop) and check.gzip_size < check.float_gzip_size
    assert check.missed_by == pytest.approx(max(0.0, check.measured_drop - budget))
    assert set(check.float_layers) == set(suggested.float_layers)


def test_default_executor_follows_session_model_size_and_metric():
    from tfopt_widgets.analysis.jobs import PROCESSES_FROM_BYTES
    from tfopt_widgets.analysis.jobs import default_executor as choose

    big = b"\0" * PROCESSES_FROM_BYTES
    assert choose(big, None, 2, interactive=True) == "processes"
    assert choose(big, None, 2, interactive=False) == "threads"  # a script's workers would run it again
    assert choose(big, None, 2) == "threads"  # pytest's main module is a file
    assert choose(b"\0" * 1000, None, 2, interactive=True) == "threads"  # quicker than starting processes
    assert choose(big, lambda y, p: 0.0, 2, interactive=True) == "threads"  # cannot be pickled
    in_a_cell = type("metric", (), {"__module__": "__main__", "__call__": lambda self, y, p: 0.0})()
    assert choose(big, in_a_cell, 2, interactive=True) == "threads"  # a notebook cell's function: not importable
    assert choose(big, None, 1, interactive=True) == "threads"
