"""tw.run, the one pipeline behind the Studio, the CLI and SensitivityReport.verify, on the real digits model."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest

import tfopt_widgets as tw


def test_run_gives_what_optimize_convert_evaluate_by_hand_give(digits, frozen):
    _, train, test = digits
    x_train = train[0]
    plan = tw.Plan().prune("dense", sparsity=0.5)
    from tfopt_widgets.model.stack import keras

    shout = keras.callbacks.LambdaCallback(on_epoch_end=lambda *_: warnings.warn("from the user's callback"))
    stages, measured_first = [], []
    with pytest.warns(UserWarning, match="from the user's callback"):  # other warnings are not swallowed
        result = tw.run(frozen, plan, "cpu", train, validation_data=test, epochs=1, baseline=True,
                        on_baseline=measured_first.append, progress=lambda stage, *_: stages.append(stage),
                        callbacks=[shout])
    opt = tw.optimize(frozen, plan, train, epochs=1, validation_data=test)
    tfl = tw.convert(opt, "cpu", representative_data=x_train)
    by_hand = tw.evaluate(tfl, test)

    assert isinstance(result, tw.RunResult) and isinstance(result.optimized, tw.OptimizedModel)
    assert result.optimized.plan == plan and result.epochs == 1 and result.target == "cpu"
    assert (result.tflite.target, result.tflite.quantization) == (tfl.target, tfl.quantization) == ("cpu", "int8")
    assert [op.op for op in result.tflite.ops] == [op.op for op in tfl.ops]
    assert result.tflite.size == pytest.approx(tfl.size, rel=0.01)
    assert result.tflite.gzip_size == pytest.approx(tfl.gzip_size, rel=0.05)
    assert [t.dtype for t in result.tflite.inputs] == [t.dtype for t in tfl.inputs]
    assert set(dataclasses.asdict(result.metrics)) == set(dataclasses.asdict(by_hand))
    assert result.metrics.samples == by_hand.samples == len(test[1]), "measured on the validation data"
    assert result.metrics.metric == by_hand.metric == "accuracy"
    assert result.metrics.accuracy == pytest.approx(by_hand.accuracy, abs=0.03) and by_hand.accuracy > 0.85
    assert {"baseline", "prune", "convert", "evaluate"} <= set(stages) and stages[0] == "baseline"

    # The baseline: the user's model converted as it is (float32), measured on the same data, given out first.
    base = result.baseline
    assert measured_first == [base] and base.label == "float32 baseline" and base.optimized is None
    assert (base.tflite.target, base.tflite.quantization) == ("float32", "none")
    assert {t.dtype for t in base.tflite.tensors if t.constant and len(t.shape) > 1} == {"float32"}
    float_metrics = tw.evaluate(tw.convert(frozen, "float32"), test)
    assert base.metrics.value == float_metrics.value and base.tflite.size == tw.convert(frozen, "float32").size
    assert result.drop == pytest.approx(base.metrics.value - result.metrics.value)
    assert result.tflite.gzip_size < base.tflite.gzip_size / 3

    row = result.to_row()
    assert row["run"] == "CPU, int8, 1 layer pruned" and row["epochs"] == 1
    assert (row["target"], row["mode"], row["size"], row["accuracy"]) == \
        ("cpu", "int8", result.tflite.size, result.metrics.accuracy)
    assert row["plan"]["dense"]["prune"]["sparsity"] == 0.5 and 0 < row["accelerated_share"] <= 1
    assert base.to_row()["accelerated_share"] is None and base.to_row()["plan"] == {}

    # The fine-tuned model again, for another target: no second fine-tuning, the same file as tw.convert gives.
    stages.clear()
    edgetpu = tw.run(frozen, plan, "edgetpu", train, validation_data=test, optimized=result.optimized,
                     baseline=base, progress=lambda stage, *_: stages.append(stage))
    by_hand = tw.convert(result.optimized, "edgetpu", representative_data=x_train)
    assert stages == ["convert", "evaluate"] and edgetpu.baseline is base and edgetpu.epochs is None
    assert edgetpu.tflite.size == pytest.approx(by_hand.size, rel=0.01)
    assert [op.op for op in edgetpu.tflite.ops] == [op.op for op in by_hand.ops]
    assert edgetpu.tflite.inputs[0].dtype == "int8" and edgetpu.tflite.inputs[0].shape[0] == 1
    assert edgetpu.metrics.accuracy == pytest.approx(tw.evaluate(by_hand, test).accuracy, abs=0.01)
    with pytest.raises(tw.PlanError, match="another plan"):
        tw.run(frozen, tw.Plan().prune("dense", sparsity=0.75), "cpu", train, optimized=result.optimized)


def test_cancel_from_progress_leaves_the_model_bit_identical(digits, frozen):
    _, train, test = digits
    seen, baselines = [], []

    def progress(stage, step, total):
        seen.append((stage, step))
        if stage == "prune" and step >= 2:
            raise tw.Cancelled("stop")

    with pytest.raises(tw.Cancelled):
        tw.run(frozen, tw.Plan().prune("dense", sparsity=0.5), "edgetpu", train, test, epochs=3, baseline=True,
               on_baseline=baselines.append, progress=progress)
    assert seen[-1] == ("prune", 2) and not any(stage == "convert" for stage, _ in seen)
    assert len(baselines) == 1 and baselines[0].tflite.target == "float32", "the baseline came before the cancel"


def test_keep_float_without_fine_tuning(digits, frozen):
    _, train, test = digits
    result = tw.run(frozen, tw.Plan().keep_float("conv2"), "cpu", train, test, runs=1, warmup=0)
    assert result.optimized is None and result.epochs is None and result.baseline is None and result.drop is None
    assert result.tflite.quantization == "int8" and result.tflite.float_layers() == ["conv2"]
    assert tw.run(frozen, None, "cpu", train, test, keep_float=["conv2"], runs=1, warmup=0) \
        .tflite.float_layers() == ["conv2"]
    assert tw.run(frozen, None, "cpu", train, test, quantization="dynamic", runs=1, warmup=0) \
        .tflite.quantization == "dynamic"


def test_notices_are_collected_and_warned_once():
    import keras as keras3

    model = keras3.Sequential([keras3.Input((3,)), keras3.layers.Dense(2, name="dense")], name="k3")
    x = np.random.default_rng(0).random((16, 3)).astype("float32")
    y = np.arange(16) % 2
    with pytest.warns(tw.ModelNotice) as caught:
        result = tw.run(model, target="cpu", data=(x, y), baseline=True, runs=1, warmup=0)
    assert any("Keras 3" in notice for notice in result.notices), result.notices
    assert any("Keras 3" in notice for notice in result.baseline.notices)
    warned = [str(w.message) for w in caught if issubclass(w.category, tw.ModelNotice)]
    assert len(warned) == len(set(warned)) and set(warned) == {*result.notices, *result.baseline.notices}
    assert result.tflite.quantization == "dynamic", "no training data: nothing calibrates int8"


def test_bad_calls_are_refused_before_any_work(digits):
    model, train, test = digits
    with pytest.raises(tw.DataError, match="labelled data"):
        tw.run(model, tw.Plan())
    with pytest.raises(tw.DataError, match="needs train_data"):
        tw.run(model, tw.Plan().quantize("dense"), "cpu", data=test)
    with pytest.raises(TypeError, match="epoch"):
        tw.run(model, None, "cpu", train, epoch=3)
    with pytest.raises(tw.TargetError, match="tpu"):
        tw.run(model, None, "tpu", train)
    with pytest.raises(tw.PlanError, match="dict"):
        tw.run(model, {"dense": "prune"}, "cpu", train)


def test_a_run_with_precisions_names_the_mix_the_file_holds(digits, frozen):
    # Issue 15: the results row names the mix ("int4 x1, int8 x2, float x1"), read back from the file itself.
    model, (x_train, y_train), (x_test, y_test) = digits
    plan = tw.Plan().precision("conv2", weights="int4").precision("classifier", weights="float")
    result = tw.run(model, plan, "cpu", (x_train, y_train), (x_test, y_test), runs=1, warmup=0)
    precisions = result.tflite.precisions()
    assert precisions["bn2"].weights == "int4"  # folded into conv2's op: the mix counts that op once, as conv2
    words = {layer: p.plan_words[0] for layer, p in precisions.items() if p.weights is not None
             and layer not in ("bn2", "relu2")}
    assert words["conv2"] == "int4" and words["classifier"] == "float"
    counts = [(word, list(words.values()).count(word)) for word in ("int4", "int8", "float")]
    expected = ", ".join(f"{word} x{n}" for word, n in counts if n)
    assert result.label == f"CPU, int8, 2 layers given a precision ({expected})"


def test_layer_errors_of_a_run_are_measured_on_its_data_once(digits, frozen):
    # Issue 15 item 3: what the Studio's error column and tw.report show after a run.
    model, (x_train, y_train), (x_test, y_test) = digits
    plan = tw.Plan().precision("conv2", weights="int4").precision("dense", activations="int16")
    result = tw.run(model, plan, "cpu", (x_train, y_train), (x_test, y_test), baseline=True, runs=1, warmup=0)
    errors = result.layer_errors(samples=8)
    assert errors is result.layer_errors(samples=8)  # measured once, then kept
    assert errors.attrs["samples"] == 8
    by_layer = errors.set_index("layer")
    assert by_layer.loc["conv2", "weights"] == "int4" and by_layer.loc["dense", "activations"] == "int16"
    # The same numbers as asking the file directly with the same data.
    direct = result.tflite.layer_errors(x_test, samples=8).set_index("layer")
    np.testing.assert_allclose(by_layer["rms_error"], direct["rms_error"])
    assert result.baseline.layer_errors() is None  # the float32 file is the reference itself
