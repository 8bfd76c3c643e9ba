"""The layer table's edit protocol: the page sends edits (layer, field, value) numbered per view; Python applies them
in order to the live Plan, pushes `plan_state` and answers with the number.

Messages go through the widget's comm exactly as the kernel delivers them (`comm.handle_msg`); the comm under the
widget records what it would send to the page instead of dropping it (what `comm.DummyComm` does without a kernel).
"""

from __future__ import annotations

import json
import threading

import comm
import pytest

import tfopt_widgets as tw
from tfopt_widgets.widgets.layer_table import LayerTable
from tfopt_widgets.widgets.table_state import EMPTY_ENTRY, plan_state


class RecordingComm(comm.DummyComm):
    """The comm a widget opens without a kernel, keeping what it would send to the page."""

    def __init__(self, *args, **kwargs):
        self.sent = []
        super().__init__(*args, **kwargs)

    def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        # A round trip through JSON, as the kernel does: only what survives it reaches the page.
        self.sent.append((msg_type, json.loads(json.dumps(data))))


@pytest.fixture
def recording(monkeypatch):
    monkeypatch.setattr(comm, "create_comm", RecordingComm)


# Two convolutions that each fold a BatchNormalization and a ReLU when quantized, and layers around them; the source
# is run here and in a notebook by tests/browser/test_table_edits.py.
STEM_AND_SEP = """
from tfopt_widgets.model.stack import keras

layers = keras.layers
inputs = keras.Input((16, 16, 3), name="image")
x = layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
x = layers.BatchNormalization(name="stem_bn")(x)
x = layers.ReLU(name="stem_relu")(x)
x = layers.DepthwiseConv2D(3, padding="same", name="sep")(x)
x = layers.BatchNormalization(name="sep_bn")(x)
x = layers.ReLU(name="sep_relu")(x)
x = layers.Conv2D(16, 1, name="project")(x)
x = layers.GlobalAveragePooling2D(name="pool")(x)
model = keras.Model(inputs, layers.Dense(4, name="head")(x), name="stem_and_sep")
"""


@pytest.fixture(scope="module")
def info():
    namespace: dict = {}
    exec(STEM_AND_SEP, namespace)  # noqa: S102 - this file's own source above
    return tw.inspect(namespace["model"])


@pytest.fixture
def table(info, recording):
    table = LayerTable(info)
    table.errors = []
    table.on_error(table.errors.append)
    return table


def deliver(table, content: dict) -> None:
    """A custom message from the page, as the kernel hands it to the widget's comm."""
    table.comm.handle_msg({"content": {"comm_id": table.comm.comm_id,
                                       "data": {"method": "custom", "content": json.loads(json.dumps(content))}},
                           "buffers": []})


def edits(view: str, seq: int, *changes: tuple) -> dict:
    """The message a view sends: {kind, view, seq, edits: [{layer, field, value}]}."""
    return {"kind": "edits", "view": view, "seq": seq,
            "edits": [{"layer": layer, "field": field, "value": value} for layer, field, value in changes]}


def answers(table) -> list[tuple]:
    """What went to the page since the table was made: ("state", plan_state) updates and ("applied", view, seq)."""
    out = []
    for _, data in table.comm.sent:
        if data.get("method") == "update" and "plan_state" in data["state"]:
            out.append(("state", data["state"]["plan_state"]))
        elif data.get("method") == "custom":
            out.append(("applied", data["content"]["view"], data["content"]["seq"]))
    return out


def entry(**fields) -> dict:
    return {**EMPTY_ENTRY, **fields}


def test_edits_from_one_stale_base_all_land_and_folded_groups_stay_whole(table):
    # Three ticks a few ms apart: each message was built before Python answered the one before.
    deliver(table, edits("page", 1, ("stem", "quantize", True)))
    deliver(table, edits("page", 2, ("sep", "quantize", True)))
    deliver(table, edits("page", 3, ("head", "sparsity", 0.5)))
    assert table.plan.layers("quantize") == ["stem", "stem_bn", "stem_relu", "sep", "sep_bn", "sep_relu"]
    assert table.plan["head"].prune.sparsity == 0.5
    assert table.plan_state["stem_bn"] == entry(quantize=True) and table.plan_state["sep_relu"] == entry(quantize=True)
    # Each answer follows the state it produced: the page drops its pending edit only once that state is there.
    sent = answers(table)
    assert [a for a in sent if a[0] == "applied"] == [("applied", "page", 1), ("applied", "page", 2),
                                                      ("applied", "page", 3)]
    for seq in (1, 2, 3):
        at = sent.index(("applied", "page", seq))
        assert sent[at - 1][0] == "state", sent
    assert sent[sent.index(("applied", "page", 1)) - 1][1] == {name: entry(quantize=True) for name in
                                                               ("stem", "stem_bn", "stem_relu")}

    # Unticking a folded member releases its convolution's group, and only that one.
    deliver(table, edits("page", 4, ("stem_bn", "quantize", False)))
    assert table.plan.layers("quantize") == ["sep", "sep_bn", "sep_relu"]
    assert table.plan_state == {**{name: entry(quantize=True) for name in ("sep", "sep_bn", "sep_relu")},
                                "head": entry(sparsity=0.5)}
    assert table.errors == []


def test_a_message_that_arrives_early_waits_for_the_ones_sent_before_it(table):
    # A subshell can deliver message 2 while message 1 still waits behind a busy cell on the main shell.
    deliver(table, edits("page", 2, ("head", "sparsity", 0.8)))
    assert "head" not in table.plan and answers(table) == []
    deliver(table, edits("page", 3, ("head", "sparsity", 0)))
    assert "head" not in table.plan
    deliver(table, edits("page", 1, ("head", "sparsity", 0.5), ("project", "clusters", 8)))
    # Applied 1, 2, 3 in that order: the last sparsity edit (0: off) wins, the clustering from 1 stays.
    assert table.plan["head"].prune is None and table.plan["project"].cluster.clusters == 8
    assert [a for a in answers(table) if a[0] == "applied"] == [("applied", "page", n) for n in (1, 2, 3)]
    deliver(table, edits("page", 2, ("head", "sparsity", 0.8)))  # a repeat of an applied number is ignored
    assert table.plan["head"].prune is None


def test_views_number_their_edits_apart_and_python_edits_between_them_stay(table):
    deliver(table, edits("left", 1, ("head", "sparsity", 0.5)))
    table.plan.cluster("project", clusters=8, init="linear")  # a cell edits the plan between two ticks
    deliver(table, edits("right", 1, ("stem", "quantize", True)))
    deliver(table, edits("left", 2, ("head", "clusters", 16), ("head", "init", "density")))
    plan = table.plan
    assert plan["project"].cluster.clusters == 8 and plan["project"].cluster.init == "linear"
    assert plan["head"].prune.sparsity == 0.5 and (plan["head"].cluster.clusters, plan["head"].cluster.init) == (
        16, "density")
    assert plan.layers("quantize") == ["stem", "stem_bn", "stem_relu"]
    assert table.plan_state == plan_state(plan)
    applied = [a for a in answers(table) if a[0] == "applied"]
    assert applied == [("applied", "left", 1), ("applied", "right", 1), ("applied", "left", 2)]


def test_quantize_and_keep_float_untick_each_other(table):
    deliver(table, edits("page", 1, ("project", "keep_float", True)))
    assert table.plan.float_layers == ["project"]
    deliver(table, edits("page", 2, ("project", "quantize", True)))
    assert table.plan.float_layers == [] and table.plan["project"].quantize
    deliver(table, edits("page", 3, ("project", "keep_float", True)))
    assert table.plan.float_layers == ["project"] and not table.plan["project"].quantize
    assert table.errors == []


def test_refused_edits_are_reported_the_rest_of_a_bulk_edit_lands(table):
    deliver(table, edits("page", 1, ("pool", "sparsity", 0.5), ("head", "sparsity", 0.5), ("head", "clusters", 8),
                         ("nowhere", "quantize", True), ("head", "colour", "red")))
    assert table.plan["head"].prune.sparsity == 0.5 and table.plan["head"].cluster.clusters == 8
    assert "pool" not in table.plan and "nowhere" not in table.plan
    assert len(table.errors) == 1 and isinstance(table.errors[0], tw.PlanError)
    message = str(table.errors[0])
    assert message.startswith("3 of 5 edits were refused") and "Cannot prune layer 'pool'" in message
    assert table.errors[0].layer == "pool"
    assert ("applied", "page", 1) in answers(table)  # answered all the same: the page drops its pending edits

    deliver(table, edits("page", 2, ("head", "sparsity", 1.5)))
    assert "'head'" in str(table.errors[-1]) and "sparsity" in str(table.errors[-1])
    assert table.plan["head"].prune.sparsity == 0.5 and table.plan_state["head"]["sparsity"] == 0.5

    # A quantize edit the layer refuses leaves its keep-float mark alone.
    deliver(table, edits("page", 3, ("image", "keep_float", True)))
    deliver(table, edits("page", 4, ("image", "quantize", True)))
    assert "Cannot quantize layer 'image'" in str(table.errors[-1])
    assert table.plan.float_layers == ["image"] and not table.plan["image"].quantize


def test_malformed_messages_are_reported_and_do_not_stop_later_ones(table):
    deliver(table, {"kind": "edits", "view": "page", "edits": []})  # no number
    assert "without a view and number" in str(table.errors[-1])
    deliver(table, {"kind": "edits", "view": "page", "seq": 1, "edits": "stem"})
    assert "expected a list of edits" in str(table.errors[-1])
    deliver(table, edits("page", 2, ("stem", "quantize", True)))
    assert table.plan["stem"].quantize
    deliver(table, {"kind": "something else"})  # other custom messages are not the table's
    assert len(table.errors) == 2


def test_without_an_error_callback_a_refused_edit_raises_after_the_others(info, recording, caplog):
    table = LayerTable(info)
    with pytest.raises(tw.PlanError, match="Cannot prune layer 'pool'"):
        table.apply_edits([{"layer": "pool", "field": "sparsity", "value": 0.5},
                           {"layer": "head", "field": "sparsity", "value": 0.5}])
    assert table.plan["head"].prune.sparsity == 0.5
    # From the page, ipywidgets logs what a message handler raises; the numbering goes on and both are answered.
    deliver(table, edits("page", 1, ("pool", "clusters", 8)))
    assert "Cannot cluster layer 'pool'" in caplog.text
    deliver(table, edits("page", 2, ("head", "clusters", 8)))
    assert table.plan["head"].cluster.clusters == 8
    assert [a for a in answers(table) if a[0] == "applied"] == [("applied", "page", 1), ("applied", "page", 2)]


def test_edits_on_a_comm_thread_while_a_cell_edits_the_plan(table):
    # JupyterLab delivers widget messages on a kernel subshell: the table's thread and the cell's share the plan.
    def page():
        for seq in range(1, 101):
            deliver(table, edits("page", seq, ("head", "sparsity", round(seq / 200, 3))))

    thread = threading.Thread(target=page)
    thread.start()
    for clusters in range(2, 102):
        table.plan.cluster("project", clusters=clusters)
    thread.join()
    assert table.plan["head"].prune.sparsity == 0.5 and table.plan["project"].cluster.clusters == 101
    assert table.plan_state == plan_state(table.plan)
    applied = [a[2] for a in answers(table) if a[0] == "applied"]
    assert applied == list(range(1, 101))


def test_precision_column_edits_fill_in_and_clear_the_pair(table):
    # Issue 15 item 4: weights / activations per row. The first word fills in the other, "" clears both.
    deliver(table, edits("v", 1, ("project", "weights", "int4"), ("head", "activations", "int16"),
                         ("pool", "activations", "int8")))
    assert table.errors == []
    assert table.plan["project"].precision.describe() == "int4 weights, float activations"
    assert table.plan["head"].precision.describe() == "int8 weights, int16 activations"
    assert table.plan["pool"].precision.weights is None  # no kernel: only activations
    assert table.plan_state["project"] == entry(weights="int4", activations="float")
    assert table.plan_state["pool"] == entry(activations="int8")
    deliver(table, edits("v", 2, ("project", "activations", "")))
    assert table.plan["project"].precision is None and "project" not in table.plan_state


def test_precision_column_refuses_what_the_library_refuses_and_changes_nothing(table):
    deliver(table, edits("v", 1, ("pool", "weights", "int4")))
    assert "pool" in str(table.errors[-1]) and "no weights" in str(table.errors[-1])
    deliver(table, edits("v", 2, ("stem", "quantize", True), ("stem", "weights", "int4")))
    assert table.errors[-1].layer == "stem" and "precision" in str(table.errors[-1])
    assert table.plan["stem"].quantize and table.plan["stem"].precision is None
    # The target decides what is offered, and refuses the rest with its reason.
    table.show_target("edgetpu")
    offered = table.precision_choices
    assert offered["weights"]["int8"] == "" and "8-bit" in offered["weights"]["int4"]
    assert offered["activations"]["int8"] == "" and offered["activations"]["int16"]
    deliver(table, edits("v", 3, ("project", "weights", "int4")))
    assert table.errors[-1].layer == "project" and "Edge TPU" in str(table.errors[-1])
    assert table.plan["project"].precision is None
    table.show_target("cpu")
    assert all(reason == "" for words in ("weights", "activations") for reason in table.precision_choices[words].values())


def test_precision_edits_keep_other_settings_of_the_layer(table):
    table.plan.precision("head", weights="int4", granularity="block32")
    table.plan.prune("head", sparsity=0.5)
    deliver(table, edits("v", 1, ("head", "activations", "int8")))  # blocks need float activations: back to channels
    assert table.errors == []
    assert table.plan["head"].precision.describe() == "int4 weights, int8 activations"
    assert table.plan["head"].prune.sparsity == 0.5
