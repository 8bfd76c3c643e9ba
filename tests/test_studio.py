"""Widget protocol tests of the Studio: set traits as the front-end does, then assert on the Plan and results.

No browser here (tests/browser/ drives JupyterLab); the run is real (tfmot fine-tuning, conversion, LiteRT).
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

import tfopt_widgets as tw
from tfopt_widgets.model.inspection import LayerInfo, ModelInfo, Support, WeightInfo
from tfopt_widgets.widgets.layer_table import LayerTable
from tfopt_widgets.widgets.table_state import EMPTY_ENTRY, plan_state
from tfopt_widgets.widgets.weight_view import WeightView

XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture
def studio(digits):
    model, train, test = digits
    return tw.Studio(model, train_data=train, validation_data=test, target="cpu")


def edit(widget, **traits):
    """What the front-end does: set synced traits from JSON (a round trip makes them plain JSON values)."""
    for name, value in traits.items():
        setattr(widget, name, json.loads(json.dumps(value)))


def entry(**fields) -> dict:
    """A layer's `plan_state` entry as the front-end sends it: every field, the ones not given unplanned."""
    return {**EMPTY_ENTRY, **fields}


def table_rows(table) -> dict:
    """{layer: {field: value}} from the table's named columns, as the front-end reads them."""
    columns = table.layers
    return {name: {field: values[i] for field, values in columns.items()} for i, name in enumerate(columns["name"])}


def synced_bytes(widget) -> int:
    """Bytes of the widget's synced state as JSON, without the ES module (sent once per page, not per model)."""
    state = widget.get_state()
    state.pop("_esm", None)
    return len(json.dumps(state, separators=(",", ":")))


def test_table_edits_change_the_plan(studio):
    row = table_rows(studio.table)
    dense = row["dense"]
    assert [dense[f] for f in ("class_name", "output_shape", "params", "weight_bytes")] == ["Dense", "64", 32832, 131328]
    supports = {name: [t for t in ("quantize", "prune", "cluster") if row[name][f"supports_{t}"]] for name in row}
    assert supports["dense"] == ["quantize", "prune", "cluster"] and supports["pool"] == ["quantize"]  # no kernel
    assert "no weights to prune" in studio.table.reasons[row["pool"]["prune_reason"]]

    edit(studio.table, plan_state={"dense": entry(quantize=True, sparsity=0.75, clusters=16, init="linear")})
    planned = studio.plan["dense"]
    assert planned.quantize and planned.prune.sparsity == 0.75 and planned.cluster.clusters == 16
    assert planned.cluster.init == "linear" and planned.scheme == "PCQAT"

    # Quantizing conv2 quantizes the BatchNormalization and ReLU folded into it; unticking them unticks the group.
    edit(studio.table, plan_state={**studio.table.plan_state, "conv2": entry(quantize=True)})
    assert studio.plan.layers("quantize") == ["dense", "conv2", "bn2", "relu2"]
    assert studio.table.plan_state["bn2"]["quantize"] is True
    state = dict(studio.table.plan_state)
    state.pop("bn2")
    edit(studio.table, plan_state=state)
    assert studio.plan.layers("quantize") == ["dense"]

    # Sparsity off keeps the rest; other prune settings survive a sparsity edit.
    studio.plan.prune("classifier", sparsity=0.5, schedule="constant")
    edit(studio.table, plan_state={**studio.table.plan_state, "classifier": entry(sparsity=0.6)})
    assert studio.plan["classifier"].prune.schedule == "constant" and studio.plan["classifier"].prune.sparsity == 0.6
    edit(studio.table, plan_state={**studio.table.plan_state, "dense": entry(quantize=True, clusters=16, init="linear")})
    assert studio.plan["dense"].prune is None and studio.plan["dense"].cluster.clusters == 16
    assert studio.error == ""


def test_rejected_edit_shows_the_error_and_reverts_the_table(studio):
    studio.plan.quantize("dense")
    edit(studio.table, plan_state={"dense": entry(quantize=True), "pool": entry(sparsity=0.5)})
    assert "Cannot prune layer 'pool'" in studio.error and "no weights" in studio.error
    assert "pool" not in studio.plan and studio.table.plan_state == {"dense": entry(quantize=True)}

    edit(studio.table, plan_state={"dense": entry(quantize=True, sparsity=1.5)})
    assert "sparsity" in studio.error and "'dense'" in studio.error and studio.plan["dense"].prune is None
    assert "display" in studio._error_box.layout.keys and studio._error_box.layout.display == "flex"


def test_error_callbacks_register_once_and_remove_by_equality(studio):
    class Listener:
        def __init__(self):
            self.errors = []

        def error(self, error):
            self.errors.append(error)

    listener = Listener()
    studio.on_error(listener.error)
    studio.on_error(listener.error)  # registered once
    edit(studio.table, plan_state={"pool": entry(sparsity=0.5)})
    assert len(listener.errors) == 1 and isinstance(listener.errors[0], tw.PlanError)
    studio.on_error(listener.error, remove=True)  # another bound method object, equal to the registered one
    edit(studio.table, plan_state={"pool": entry(sparsity=0.5)})
    assert len(listener.errors) == 1 and "Cannot prune layer 'pool'" in studio.error
    with pytest.raises(tw.PlanError, match="Cannot prune layer 'pool'"):  # a table on its own raises
        edit(LayerTable(studio.info), plan_state={"pool": entry(sparsity=0.5)})


def test_python_plan_edits_and_assignment_reach_the_table(studio):
    studio.plan.prune("dense", sparsity=0.5).cluster("conv1", clusters=8, init="density")
    assert studio.table.plan_state == {"dense": entry(sparsity=0.5), "conv1": entry(clusters=8, init="density")}
    old = studio.plan
    studio.plan = tw.Plan().quantize("classifier")
    assert studio.table.plan_state == {"classifier": entry(quantize=True)}
    old.quantize("dense")  # the replaced plan is no longer followed
    assert "dense" not in studio.table.plan_state
    edit(studio.table, plan_state={})
    assert len(studio.plan) == 0


def test_target_and_mode_pickers(studio):
    assert studio.quantization == "int8"  # the CPU's natural mode when training data can calibrate
    assert studio._mode_picker.layout.display is None and len(studio._mode_picker.options) == 5
    studio.quantization = "dynamic"
    assert studio._mode_picker.value == "dynamic"
    studio._target_picker.value = "edgetpu"  # the dropdown, as a click does
    assert studio.target == "edgetpu" and studio.quantization == "int8"
    assert studio._mode_picker.layout.display == "none" and "fixed batch" in studio._summary.value
    with pytest.raises(tw.TargetError, match="edgetpu"):
        studio.quantization = "float16"
    with pytest.raises(tw.TargetError):
        studio.target = "float32"


def test_run_fills_results_histograms_and_badges(studio, frozen, tmp_path):
    # Pruning-preserving QAT (two stages: prune, then quantize); clustering has its own engine tests.
    edit(studio.table, plan_state={"dense": entry(quantize=True, sparsity=0.75), "conv1": entry(quantize=True),
                                   "conv2": entry(quantize=True), "classifier": entry(quantize=True)})
    studio.panel.epochs = 1
    stages = []
    studio.panel.observe(lambda change: stages.append(change["new"]), "stage")
    rows = []
    studio.on_result(rows.append)
    studio.run(wait=True)

    assert studio.error == "", studio.error
    results = studio.results
    assert results["run"].tolist()[0] == "float32 baseline" and len(results) == 2
    assert rows[0]["run"] == results["run"][1]
    base, run = results.iloc[0], results.iloc[1]
    assert (base["target"], base["mode"]) == ("float32", "none") and (run["target"], run["mode"]) == ("cpu", "int8")
    assert run["size"] < base["size"] / 3 and run["gzip_size"] < run["size"] and run["accuracy"] > 0.8
    assert run["latency_ms"] > 0 and run["epochs"] == 1 and run["plan"]["dense"]["prune"]["sparsity"] == 0.75
    assert {"baseline", "prune", "quantize", "convert", "evaluate"} <= set(stages)
    assert studio.panel.message.startswith("Done") and not studio.panel.running and not studio.table.disabled

    studio.table.selected = "dense"  # a click on the layer name
    histogram = studio.weights.histogram
    assert set(histogram["counts"]) == {"float", "optimized", "tflite"} and len(histogram["edges"]) == 41
    assert all(sum(counts) == 64 * 512 for counts in histogram["counts"].values())
    stats = histogram["stats"]
    assert stats["float"]["sparsity"] < 0.01 and stats["optimized"]["sparsity"] >= 0.74
    assert stats["tflite"]["sparsity"] >= 0.74 and stats["optimized"]["unique_values"] <= 256
    assert 0 <= stats["tflite"]["error_max"] < 0.05
    assert all(bars.visible for bars in studio.weights._bars)
    if hasattr(studio.tflite, "compatibility"):  # placement badges once the targets work has landed
        assert studio.table.placement and studio.table.target_title == "CPU"
    saved = studio.save_tflite(tmp_path / "digits.tflite")
    assert saved.read_bytes() == studio.tflite.content


def test_cancel_mid_run_leaves_the_model_unchanged(digits, frozen):
    model, train, test = digits
    studio = tw.Studio(model, train_data=train, validation_data=test, target="edgetpu",
                       plan=tw.Plan().prune("dense", sparsity=0.5))
    studio.panel.epochs = 3

    def cancel_on_step(change):
        if studio.panel.stage == "prune" and change["new"] >= 2:
            studio.panel.cancel()  # what a click on "Cancel" does

    studio.panel.observe(cancel_on_step, "step")
    studio.panel.run()  # a click on "Optimize and convert": returns at once, the run is in a thread
    assert studio.panel.running
    studio.wait(timeout=120)
    assert studio.panel.message.startswith("Cancelled") and studio.error == ""
    assert list(studio.results["run"]) == ["float32 baseline"] and studio.tflite is None
    assert not studio.panel.running and not studio.table.disabled


def test_errors_of_a_run_show_in_the_widget(digits, frozen):
    model, _, test = digits
    studio = tw.Studio(model, validation_data=test, plan=tw.Plan().quantize("dense"))
    errors = []
    studio.on_error(errors.append)
    studio.run(wait=True)
    assert "needs train_data" in studio.error and isinstance(errors[0], tw.DataError)
    assert studio.panel.message.startswith("Failed") and studio._error_box.layout.display == "flex"
    with pytest.raises(tw.Error, match="no converted model"):
        studio.save_tflite()


def test_constructor_rejects_unknown_arguments(digits):
    with pytest.raises(TypeError, match="epoch"):
        tw.Studio(digits[0], epoch=3)


def test_export_saves_the_plan(studio, tmp_path):
    studio.plan.prune("dense", sparsity=0.5)
    path = studio.save_plan(tmp_path / "plan.json")
    assert tw.Plan.load(path) == studio.plan
    if hasattr(tw.Plan, "to_python"):  # "Show Python code" exists once the engine can write the script
        studio.export.show_code()
        assert "dense" in studio.export.message.value and "<pre" in studio.export.message.value and not studio.error
    else:
        assert studio.export.code_button is None


def test_layer_names_are_sent_as_text_and_escaped_in_html():
    info = ModelInfo("m", [LayerInfo(XSS, "Dense", 12, (None, 3), [WeightInfo("k", (3, 4), "float32", 48)],
                                     support={t: Support(True) for t in ("quantize", "prune", "cluster")})],
                     [], 12, 48)
    table = LayerTable(info)
    assert table.layers["name"][0] == XSS  # raw in the state; the front-end sets it with textContent only
    edit(table, plan_state={XSS: entry(quantize=True)})
    assert table.plan[XSS].quantize
    view = WeightView()
    view.set_weights({XSS: np.ones((3, 4), "float32")})
    view.layer = XSS
    assert XSS not in view.title.value and "&lt;img" in view.title.value


def test_500_layer_model_table_state_is_fast_and_small():
    from tfopt_widgets.model.stack import keras

    inputs = keras.Input((4,))
    x = inputs
    for i in range(500):
        x = keras.layers.Dense(4, name=f"dense_{i}")(x)
    model = keras.Model(inputs, x)
    started = time.perf_counter()
    table = LayerTable(tw.inspect(model))
    elapsed = time.perf_counter() - started
    table.plan.prune(*[f"dense_{i}" for i in range(0, 500, 2)], sparsity=0.5)
    size = synced_bytes(table)
    # A layer is about 55 bytes in the named columns (name, type, shape, params, bytes, 3 support flags and a kernel
    # flag as 1/0, 3 reason ids; each field name sent once) and a planned layer about 120 (the precision words
    # included): 501 layers + 250 planned ones fit in 60 KB,
    # i.e. 120 B a layer, with room for longer names.
    assert size < 60_000, size
    assert elapsed < 5, elapsed


def test_magic_builds_a_studio_from_named_variables(digits):
    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.user_ns.update(net=digits[0], train=digits[1])
    shell.run_line_magic("load_ext", "tfopt_widgets")
    studio = shell.run_line_magic("tfopt", "net --target edgetpu --train train")
    assert isinstance(studio, tw.Studio) and studio.target == "edgetpu" and studio.train_data is digits[1]
    assert studio.validation_data is None
    with pytest.raises(UsageError, match="no variable named 'missing'"):
        shell.run_line_magic("tfopt", "net --train missing")


def test_sensitivity_heat_map_and_suggested_plan_fill_the_table(digits, frozen):
    _, train, test = digits
    studio = tw.Studio(frozen, train_data=train, validation_data=test, target="cpu", epochs=1)
    bar = studio.sensitivity_panel
    assert bar.suggest_button.disabled and studio.table.sensitivity == {}
    live_plan = studio.plan
    bar.analyze()  # a click on "Analyze sensitivity": a background job, like a run
    assert studio.panel.running and bar.analyze_button.disabled
    studio.wait(timeout=300)
    assert studio.error == "" and studio.panel.message.startswith("Sensitivity measured")
    report = studio.sensitivity
    assert isinstance(report, tw.SensitivityReport) and not bar.suggest_button.disabled

    # The heat map: one column per technique and level, each layer's drops and int8 kernel sizes as measured. The
    # cpu runs int4 weights, so the Studio measures them too (the int4 column, beside int8).
    heat = studio.table.sensitivity
    columns = [(column["technique"], column["level"]) for column in heat["columns"]]
    assert columns == [("quantize", "int8"), ("quantize", "int4"), ("prune", 0.5), ("prune", 0.75), ("prune", 0.9),
                       ("cluster", 8), ("cluster", 16), ("cluster", 32)]
    for row in report.rows:
        column = columns.index((row.technique, row.level))
        assert heat["drops"][row.layer][column] == pytest.approx(row.drop, abs=1e-5)
    assert heat["sizes"]["dense"]["before"] == report.layer_sizes["dense"].size["int8"]
    assert heat["sizes"]["dense"]["after"][4] == report.row("dense", "prune", 0.9).size["int8"]  # column 4
    assert heat["sizes"]["dense"]["after"][1] == report.layer_sizes["dense"].size["int4"]  # its int4 kernel
    assert heat["drops"]["pool"][1:] == [None] * 7  # pooling has no kernel: int8 only
    assert "dropout" not in heat["drops"] and synced_bytes(studio.table) < 10_000

    # "Suggest plan" with the budget box fills the live plan (the same object), then the table stays editable.
    bar.budget_input.value = 0.02  # typed into the box
    assert studio.table.budget == 0.02
    bar.suggest()
    expected = tw.suggest_plan(report, budget=0.02, target="cpu", quantization="int8")
    assert studio.plan is live_plan and studio.plan == expected and len(expected) > 0
    assert studio.table.plan_state == plan_state(expected)
    assert "Suggested for CPU within 0.0200" in bar.status.value
    edit(studio.table, plan_state={**studio.table.plan_state, "classifier": entry(clusters=8)})
    assert studio.plan["classifier"].cluster.clusters == 8
    edit(studio.table, plan_state=plan_state(expected))
    studio.run(wait=True)
    assert studio.error == "", studio.error
    assert "Measured after this run" in bar.status.value
    assert studio.results["plan"].iloc[-1] == expected.to_dict()["layers"]

    # Another model's report is refused with the layer named.
    with pytest.raises(tw.Error, match="another model"):
        studio.sensitivity = tw.SensitivityReport("other", "accuracy", 1.0, None, [], [
            tw.sensitivity.__globals__["LayerSize"]("not_here", "Dense", 1, {"int8": 1}, 1.0)], None, 1, 1, {}, 0.0, 1)
    studio.sensitivity = None
    assert studio.table.sensitivity == {} and bar.suggest_button.disabled


def test_keep_float_from_the_table_runs_without_fine_tuning(studio):
    edit(studio.table, plan_state={"conv2": entry(keep_float=True)})
    assert studio.plan.float_layers == ["conv2"] and not studio.plan["conv2"].techniques
    # Ticking quantize on a kept-float layer is refused by the front-end's rule too: one or the other.
    edit(studio.table, plan_state={"conv2": entry(quantize=True, keep_float=True)})
    assert "both" in studio.error and studio.plan.float_layers == ["conv2"] and not studio.plan["conv2"].quantize
    studio.error = ""
    studio.run(wait=True)
    assert studio.error == "", studio.error
    assert studio.tflite.float_layers() == ["conv2"] and studio.optimized is None
    assert studio.results["epochs"].iloc[-1] is None or np.isnan(studio.results["epochs"].iloc[-1])


def test_cancel_during_sensitivity_keeps_the_old_report(digits, frozen):
    _, train, test = digits
    studio = tw.Studio(frozen, train_data=train, validation_data=test)

    def cancel_on_step(change):
        if studio.panel.stage == "sensitivity" and change["new"] >= 1:
            studio.cancel()

    studio.panel.observe(cancel_on_step, "step")
    studio.analyze(wait=True, samples=100)
    assert studio.panel.message.startswith("Cancelled") and studio.error == ""
    assert studio.sensitivity is None and studio.sensitivity_panel.suggest_button.disabled
    assert not studio.panel.running and not studio.sensitivity_panel.analyze_button.disabled
    with pytest.raises(tw.Error, match="Analyze sensitivity"):
        studio.suggest_plan()


def test_suggestion_says_when_the_int8_conversion_alone_is_over_the_budget():
    from tfopt_widgets.widgets.sensitivity_panel import suggestion_text

    over = {"plan": tw.Plan(), "budget": 0.01, "title": "Edge TPU", "estimate": {"drop": 0.05, "size": 900},
            "unplanned": {"size": 900}}
    text = suggestion_text(over)
    assert "nothing fits the budget" in text and "int8 conversion alone" in text and "+0.0500" in text
    within = {**over, "plan": tw.Plan().prune("dense", sparsity=0.5), "estimate": {"drop": 0.004, "size": 500}}
    assert "1 pruned" in suggestion_text(within) and "alone" not in suggestion_text(within)


def test_table_refuses_a_combination_qat_cannot_preserve_with_the_reason():
    from tfopt_widgets.model.stack import keras

    inputs = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.Conv2DTranspose(2, 3, name="up")(x)
    model = keras.Model(inputs, x)
    model.compile("adam", "mse")
    studio = tw.Studio(model, target="cpu")
    edit(studio.table, plan_state={"up": entry(quantize=True)})
    edit(studio.table, plan_state={"up": entry(quantize=True, clusters=8)})  # tick "cluster" next to "quantize"
    assert "cluster-preserving QAT keeps shared values only in Conv2D and Dense" in studio.error
    assert studio.plan["up"].cluster is None and studio.table.plan_state == {"up": entry(quantize=True)}
    edit(studio.table, plan_state={"up": entry(quantize=True), "conv": entry(quantize=True, sparsity=0.5, clusters=8)})
    assert studio.plan["conv"].scheme == "PCQAT"


def test_precision_column_runs_and_the_error_column_follows_the_file(studio, frozen):
    # Issue 15 items 3 and 4: precisions picked in the table are what the file holds; after the run every quantized
    # layer has its error over step in the table, the numbers RunResult.layer_errors() measures.
    table = studio.table
    assert table.precision_choices["target"] == "CPU"
    table.apply_edits([{"layer": "conv2", "field": "weights", "value": "int4"},
                       {"layer": "dense", "field": "activations", "value": "int16"},
                       {"layer": "classifier", "field": "weights", "value": "float"}])
    assert studio.error == "" and len(studio.plan.precisions) == 3
    assert table.layer_errors == {}
    studio.run(wait=True)
    assert studio.error == "", studio.error
    got = {layer: p.plan_words for layer, p in studio.tflite.precisions().items() if p.weights is not None}
    assert got["conv2"] == ("int4", "float") and got["dense"] == ("int8", "int16") and got["classifier"][0] == "float"
    assert "int4 x1" in studio.results["run"].iloc[-1]
    errors = table.layer_errors
    assert errors["run"] == studio.results["run"].iloc[-1] and errors["samples"] > 0
    assert errors["ideal"] == pytest.approx(0.29, abs=0.005) and errors["flagged_above"] == pytest.approx(0.7)
    layers = errors["layers"]
    assert {"conv1", "conv2", "dense"} <= set(layers)
    assert layers["conv2"]["ratio"] is None and layers["conv2"]["rms"] > 0  # float output: its RMS error
    assert layers["conv1"]["activations"] == "int8" and 0 < layers["conv1"]["ratio"] < 0.7
    assert not layers["conv1"]["flagged"] and layers["dense"]["activations"] == "int16"
    # The weight view does not compare a kernel the file holds with its BatchNormalization folded in (scaled per
    # output channel) with the Keras kernel; the others it does.
    assert studio.tflite.folded_layers()["conv2"] == ("bn2", "relu2") and "dense" not in studio.tflite.folded_layers()
    table.selected = "conv2"
    assert "bn2 is folded into this kernel" in studio.weights.title.value
    assert "error_max" not in studio.weights.histogram["stats"]["tflite"]
    table.selected = "dense"
    assert "folded" not in studio.weights.title.value and "error_max" in studio.weights.histogram["stats"]["tflite"]
    # The target picker decides what the column offers.
    studio.target = "edgetpu"
    assert table.precision_choices["target"] == "Edge TPU" and table.precision_choices["weights"]["int4"]
