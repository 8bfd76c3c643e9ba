"""tw.Progress on real runs: the stages and their kinds, the text bar, the run panel, and Cancel during a conversion
(the conversion runs in a worker process that a cancel kills)."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest

import tfopt_widgets as tw
from tfopt_widgets.pipeline import plan_summary
from tfopt_widgets.tflite.worker import shared_worker
from tfopt_widgets.widgets.run_panel import RunPanel

# The requirement: Cancel stops any stage within 2 s.
CANCEL_WITHIN_S = 2.0


def test_progress_reports_each_stage_as_determinate_or_indeterminate(digits, frozen):
    _, train, test = digits
    text = io.StringIO()
    progress = tw.Progress(text=text)
    reports = []
    progress.on_update(lambda p: reports.append((p.stage, p.kind, p.step, p.total, p.epoch)))
    plan = tw.Plan().prune("dense", sparsity=0.5).quantize("conv1", "dense")
    result = tw.run(frozen, plan, "cpu", train, test, epochs=2, baseline=True, progress=progress, worker=True)

    order = list(dict.fromkeys(stage for stage, *_ in reports))
    assert order == ["baseline", "prune", "quantize", "convert", "evaluate"]
    steps_per_epoch = -(-len(train[1]) // 32)
    for stage in ("prune", "quantize"):
        seen = [(kind, step, total, epoch) for name, kind, step, total, epoch in reports if name == stage]
        assert {kind for kind, *_ in seen} == {"determinate"}
        assert {total for _, _, total, _ in seen} == {2 * steps_per_epoch}
        steps = [step for _, step, _, _ in seen]
        assert steps == sorted(steps) and steps[0] == 0 and steps[-1] == 2 * steps_per_epoch
        assert {epoch for *_, epoch in seen} == {1, 2}
    for stage in ("baseline", "convert", "evaluate"):
        assert {(kind, step, total) for name, kind, step, total, _ in reports if name == stage} == \
            {("indeterminate", 0, 0)}, stage
    assert result.tflite.quantization == "int8" and result.label == "CPU, int8, 2 layers quantized, 1 pruned"

    # The text bar (not a terminal here): one line per stage when it ends, with its epochs and steps.
    lines = text.getvalue().splitlines()
    converting = "converting to TensorFlow Lite (calibration included)"
    assert [line.split(":")[0].split(",")[0] for line in lines] == [
        "float32 baseline", "pruning", "quantization-aware training", converting,
        "measuring the TFLite file with LiteRT on this CPU"]
    assert f"pruning: fine-tuning, 2 epochs, {2 * steps_per_epoch} steps: " in lines[1]
    assert lines[1].endswith(" s")


def test_run_panel_shows_a_determinate_bar_for_steps_and_an_indeterminate_one_otherwise():
    panel = RunPanel(optimizer="Adam at learning rate 0.001")
    progress = tw.Progress(epochs=2)
    progress.on_update(panel.show)
    progress("quantize", 30, 84)
    assert (panel.stage, panel.kind, panel.step, panel.total) == ("quantize", "determinate", 30, 84)
    assert "value='30'" in panel.bar.value and "max='84'" in panel.bar.value
    assert "quantization-aware training: epoch 1 of 2, step 30 of 84" in panel.label.value
    progress("convert", 0, 0)
    assert panel.kind == "indeterminate" and "value=" not in panel.bar.value, "no value: the browser animates it"
    assert "converting to TensorFlow Lite" in panel.label.value and " s in all" in panel.label.value
    assert "aria-label='progress: converting to TensorFlow Lite" in panel.bar.value
    panel.finish("Cancelled: your model is unchanged.", "warning")
    assert panel.kind == "" and "Cancelled" in panel.label.value and "--jp-warn-color1" in panel.bar.value

    # Learning rate 0 says, in the panel, what it keeps.
    assert "Learning rate 0 = the model's own optimizer setting (Adam at learning rate 0.001)." \
        in panel.learning_rate_note.value
    panel.learning_rate = 0.0005
    assert "Fine-tuning at learning rate 0.0005, not the model's own" in panel.learning_rate_note.value


def test_cancel_raises_at_the_next_report_and_is_thread_safe():
    progress = tw.Progress()
    progress("prune", 1, 10)
    threading.Thread(target=progress.cancel).start()
    deadline = time.monotonic() + 5
    while not progress.cancelled and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(tw.Cancelled, match="unchanged"):
        progress("prune", 2, 10)


def test_plan_summary_counts_the_layers_the_user_chose(digits):
    model = digits[0]
    info = tw.inspect(model)
    head = next(layer.group for layer in info.layers if layer.group)  # conv2, with bn2 and relu2 folded in
    members = info.group_members(head)
    plan = tw.Plan().quantize("conv1", head, *members, "dense", "classifier").prune("dense", "conv1", sparsity=0.5)
    assert len(plan) == 4 + len(members)
    assert plan_summary(plan, info) == "4 layers quantized, 2 pruned"
    assert plan_summary(tw.Plan().keep_float("conv1"), info) == "1 layer kept float"
    assert plan_summary(tw.Plan(), info) == "no plan"
    studio = tw.Studio(model, plan=plan)
    assert "4 layers quantized, 2 pruned" in repr(studio)
    assert studio.panel.optimizer == "Adam at learning rate 0.001"


def _mobilenet():
    """A model whose int8 conversion with 200 calibration samples takes seconds (3-7 s on 2 cores)."""
    from tfopt_widgets.model.stack import keras

    model = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None, classes=10)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    return model, rng.random((200, 96, 96, 3)).astype("float32"), rng.integers(0, 10, 200)


def test_cancel_during_a_conversion_stops_it_within_2_s(tmp_path, monkeypatch):
    model, x, y = _mobilenet()
    before = [np.array(w, copy=True) for w in model.get_weights()]
    worker = shared_worker()
    tiny = _tiny()
    worker.convert(tiny, "float32")  # the worker is up: the cancel below meets the conversion, not the start-up
    started = worker.started
    monkeypatch.chdir(tmp_path)

    progress = tw.Progress()
    cancel = {}

    def click_cancel():  # a click on Cancel arrives from another thread while the run waits for the worker
        cancel["alive"] = worker.alive
        cancel["at"] = time.monotonic()
        progress.cancel()

    def on_update(p):
        # The third report of the stage is the second heartbeat: the worker has had the job for 0.4 s.
        cancel["reports"] = cancel.get("reports", 0) + (p.stage == "convert")
        if cancel["reports"] == 3:
            threading.Timer(0.5, click_cancel).start()

    progress.on_update(on_update)
    with pytest.raises(tw.Cancelled):
        tw.run(model, None, "cpu", (x, y), data=(x[:10], y[:10]), progress=progress, worker=True)
    returned = time.monotonic()

    assert progress.stage == "convert" and cancel["alive"], "the cancel came while the worker converted"
    assert returned - cancel["at"] < CANCEL_WITHIN_S
    assert not worker.alive, "the worker was killed, not left converting"
    after = model.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(before, after)), "the user's model was changed"
    assert list(tmp_path.iterdir()) == [], "a cancelled run writes no file"

    # The process goes on: the next conversion starts a new worker and gives what tw.convert gives here.
    again = worker.convert(tiny, "float32")
    assert worker.started == started + 1 and again.content == tw.convert(tiny, "float32").content


def test_cancel_during_an_evaluation_stops_it_within_2_s(digits, frozen):
    test = digits[2]
    progress = tw.Progress()
    cancel = {}

    def click_cancel():
        cancel["at"] = time.monotonic()
        progress.cancel()

    def on_update(p):
        cancel["reports"] = cancel.get("reports", 0) + (p.stage == "evaluate")
        if cancel["reports"] == 3:  # the evaluation has run for 0.4 s: a million timed runs take far longer
            threading.Timer(0.5, click_cancel).start()

    progress.on_update(on_update)
    with pytest.raises(tw.Cancelled):
        tw.run(frozen, None, "float32", data=test, runs=1_000_000, progress=progress)
    assert progress.stage == "evaluate" and time.monotonic() - cancel["at"] < CANCEL_WITHIN_S
    assert not [t for t in threading.enumerate() if t.name == "tfopt-evaluate" and t.is_alive()], \
        "the evaluation stopped, not left running unseen"


def test_the_worker_gives_the_file_tw_convert_gives(digits):
    model, train, _ = digits
    opt = tw.optimize(model, tw.Plan().quantize("conv1", "dense").prune("dense", sparsity=0.5).keep_float("conv2"),
                      train, epochs=1)
    worker = shared_worker()
    for target in ("cpu", "edgetpu"):
        here = tw.convert(opt, target, representative_data=train[0])
        there = worker.convert(opt, target, representative_data=train[0], keep_float=["conv2"])
        assert there.content == here.content and there.quantization == here.quantization == "int8"
        assert there.layer_origins == here.layer_origins and there.float_layers() == ["conv2"]
    # A plan crosses as its JSON: per-layer precisions (LiteRT Quantizer, in the worker) give the same file.
    plan = tw.Plan().precision("conv2", weights="int4").precision("classifier", weights="float")
    here = tw.convert(model, "cpu", plan=plan, representative_data=train[0][:200])
    there = worker.convert(model, "cpu", plan=plan, representative_data=train[0][:200])
    assert there.content == here.content and there.precisions() == here.precisions()
    with pytest.raises(tw.TargetError, match="int8_io"):  # an error of the conversion comes back as itself
        worker.convert(model, "float32", int8_io=True)
    assert not worker.in_process


def _tiny():
    from tfopt_widgets.model.stack import keras

    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(2, name="dense")(inputs), name="tiny")
