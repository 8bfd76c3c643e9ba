"""Plan: editing, combinations, JSON round trip, and every malformed input (no TensorFlow needed here)."""

import json

import pytest

import tfopt_widgets as tw
from tfopt_widgets.plan.specs import FORMAT_VERSION
from tfopt_widgets.runtime.training import pruning_steps


def test_edits_chain_and_combine_into_tfmot_schemes():
    plan = (tw.Plan().quantize("conv1", "dense").prune("dense", sparsity=0.75)
            .cluster("conv2", clusters=16).prune("conv2", sparsity=0.5).cluster("classifier", clusters=8)
            .prune("classifier", sparsity=0.5).quantize("classifier"))
    assert [e.layer for e in plan] == ["conv1", "dense", "conv2", "classifier"]
    assert {e.layer: e.scheme for e in plan} == {
        "conv1": "QAT", "dense": "PQAT", "conv2": "sparsity-preserving clustering", "classifier": "PCQAT"}
    assert plan.layers("prune") == ["dense", "conv2", "classifier"]
    assert plan["dense"].prune.sparsity == 0.75 and plan["nothing"].is_empty()


def test_remove_a_technique_or_the_whole_layer():
    plan = tw.Plan().quantize("dense").prune("dense", sparsity=0.5).cluster("conv1", clusters=4)
    plan.remove("dense", "prune")
    assert plan["dense"].techniques == ("quantize",)
    plan.remove("dense", "quantize")
    assert "dense" not in plan
    plan.remove("conv1").remove("not-planned")
    assert len(plan) == 0
    with pytest.raises(tw.PlanError, match="Unknown technique"):
        plan.remove("conv1", "distill")


def test_json_round_trip_keeps_every_setting():
    plan = (tw.Plan().quantize("a").prune("a", sparsity=0.6, schedule="constant", begin=0.1, end=0.5,
                                           block_size=(1, 4))
            .cluster("b", clusters=8, init="density", preserve_sparsity=True)
            .prune("c", sparsity=0.9, begin_step=3, end_step=40))
    text = plan.to_json()
    assert json.loads(text)["version"] == FORMAT_VERSION
    again = tw.Plan.from_json(text)
    assert again == plan
    assert again["a"].prune.block_size == (1, 4) and again["c"].prune.end_step == 40


def test_save_and_load(tmp_path):
    plan = tw.Plan().cluster("dense", clusters=16)
    plan.save(tmp_path / "plan.json")
    assert tw.Plan.load(tmp_path / "plan.json") == plan


@pytest.mark.parametrize("call, field", [
    (lambda p: p.prune("dense", sparsity=0.0), "sparsity"),
    (lambda p: p.prune("dense", sparsity=1.0), "sparsity"),
    (lambda p: p.prune("dense", sparsity=-0.5), "sparsity"),
    (lambda p: p.prune("dense", sparsity="half"), "sparsity"),
    (lambda p: p.prune("dense", sparsity=0.5, schedule="cosine"), "schedule"),
    (lambda p: p.prune("dense", sparsity=0.5, begin=0.9, end=0.2), "begin"),
    (lambda p: p.prune("dense", sparsity=0.5, end=1.5), "end"),
    (lambda p: p.prune("dense", sparsity=0.5, block_size=(0, 4)), "block_size"),
    (lambda p: p.prune("dense", sparsity=0.5, begin_step=10, end_step=5), "begin_step"),
    (lambda p: p.cluster("dense", clusters=1), "clusters"),
    (lambda p: p.cluster("dense", clusters=8.5), "clusters"),
    (lambda p: p.cluster("dense", clusters=8, init="kmeans"), "init"),
    (lambda p: p.quantize(), "layers"),
    (lambda p: p.quantize(3), "layers"),
])
def test_bad_settings_name_the_field(call, field):
    plan = tw.Plan()
    with pytest.raises(tw.PlanError) as error:
        call(plan)
    assert error.value.field == field
    assert len(plan) == 0, "a rejected edit must not change the plan"


@pytest.mark.parametrize("text, field, words", [
    ("{not json", "json", "not valid JSON"),
    ('{"layers": {}}', "format", "Not a tfopt-widgets plan"),
    ('{"format": "tfopt-widgets/plan", "version": 99, "layers": {}}', "version", "newer"),
    ('{"format": "tfopt-widgets/plan", "layers": {}}', "version", "version"),
    ('{"format": "tfopt-widgets/plan", "version": 1, "layers": []}', "layers", "object"),
    ('{"format": "tfopt-widgets/plan", "version": 1, "layers": {"d": {"distill": true}}}', "distill", "Unknown"),
    ('{"format": "tfopt-widgets/plan", "version": 1, "layers": {"d": {"quantize": "yes"}}}', "quantize", "true"),
    ('{"format": "tfopt-widgets/plan", "version": 1, "layers": {"d": {"prune": {"sparsity": 2}}}}', "sparsity",
     "between 0 and 1"),
    ('{"format": "tfopt-widgets/plan", "version": 1, "layers": {"d": {"prune": {}}}}', "sparsity", "needs"),
    ('{"format": "tfopt-widgets/plan", "version": 1, "layers": {"d": {"cluster": {"clusters": 8, "k": 1}}}}',
     "k", "Unknown cluster setting"),
])
def test_malformed_json_is_a_plan_error(text, field, words):
    with pytest.raises(tw.PlanError, match=words) as error:
        tw.Plan.from_json(text)
    assert error.value.field == field


def test_observers_see_every_edit_and_can_be_removed():
    seen = []
    plan = tw.Plan()
    plan.on_change(lambda p: seen.append(len(p)))
    plan.quantize("a").prune("b", sparsity=0.5).remove("a")
    assert seen == [1, 2, 1]
    callback = plan._observers[0]
    plan.on_change(callback, remove=True)
    plan.clear()
    assert seen == [1, 2, 1]


@pytest.mark.parametrize("total", [1, 7, 43, 86, 430, 5000])
@pytest.mark.parametrize("end", [0.5, 0.8, 1.0])
def test_pruning_reaches_its_end_step_on_tfmots_grid(total, end):
    begin, end_step, frequency = pruning_steps(tw.Plan().prune("d", sparsity=0.5, end=end)["d"].prune, total)
    assert 0 <= begin < end_step
    assert (end_step - begin) % frequency == 0, "the last pruning step must land on the schedule's grid"
    assert end_step <= max(total - 1, begin + 1)
