"""The Studio in a real JupyterLab: edit the plan through the table's controls, run, and check both sides.

The controls are found by their accessible names ("prune sparsity for dense"), as a screen reader would, and the
run is checked in Python (`studio.plan`, `studio.results`) and in the page (histogram bars drawn, placement badge).
"""

from __future__ import annotations

import json
import re

import pytest

from tfopt_widgets.widgets.weight_view import SERIES

pytestmark = pytest.mark.browser

RUN_TIMEOUT_S = 240

DIGITS_STUDIO = """
import tfopt_widgets as tw
from tfopt_widgets.demo import digits_data, digits_model

(x_train, y_train), (x_test, y_test) = digits_data()
model = digits_model(epochs=3)
studio = tw.Studio(model, train_data=(x_train, y_train), validation_data=(x_test, y_test), target="cpu", epochs=1)
studio
"""

# bqplot draws each bar as a <rect class="bar"> filled with its series' colour; it animates heights from 0, so
# count drawn bars (shown, height > 0) per colour rather than waiting for nodes.
DRAWN_BARS = """(root) => {
  const drawn = {};
  for (const rect of root.querySelectorAll('.tfopt-weight-view rect.bar')) {
    const shown = rect.getClientRects().length > 0 && getComputedStyle(rect).visibility !== 'hidden';
    if (!shown || rect.getBBox().height <= 0) continue;
    const fill = getComputedStyle(rect).fill;
    drawn[fill] = (drawn[fill] || 0) + 1;
  }
  return drawn;
}"""


def _rgb(hex_colour: str) -> str:
    return "rgb({}, {}, {})".format(*(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)))


# The weight view's series (float, optimized, tflite) as the browser reports their fill.
SERIES_FILLS = {label: _rgb(colour) for label, _, colour in SERIES}


def wait_for_python(notebook, condition: str, timeout_s: float = 30) -> bool:
    """Polls `condition` (a Python expression) in the kernel until it is true or `timeout_s` passed.

    Output of the Studio's run thread (TensorFlow's converter logs) may land in this request's stdout, so the
    answer is the last line.
    """
    code = (f"import time as _t\n_end = _t.monotonic() + {timeout_s}\n"
            f"while not ({condition}) and _t.monotonic() < _end:\n    _t.sleep(0.1)\nprint(bool({condition}))")
    return notebook.execute(code, timeout_ms=int(timeout_s * 1000) + 30_000).strip().splitlines()[-1] == "True"


def wait_for_bars(page, studio_box, series: tuple[str, ...], timeout_ms: int = 30_000) -> None:
    """Waits until the weight view draws bars (shown, height > 0) of every named series."""
    fills = [SERIES_FILLS[name] for name in series]
    try:
        page.wait_for_function(
            f"([root, fills]) => {{ const drawn = ({DRAWN_BARS})(root); return fills.every((f) => drawn[f] > 0); }}",
            arg=[studio_box.element_handle(), fills], timeout=timeout_ms)
    except Exception as error:  # Playwright's TimeoutError: say what was drawn instead
        drawn = studio_box.evaluate(DRAWN_BARS)
        raise AssertionError(f"bars of {series} not drawn within {timeout_ms} ms; drawn per fill: {drawn}") from error


def test_studio_prune_and_cluster_through_the_table_then_run(open_notebook, page, page_log, shot):
    notebook = open_notebook([DIGITS_STUDIO])
    studio_box = notebook.output(0).locator(".tfopt-studio")
    studio_box.wait_for()
    page.get_by_label("prune sparsity for dense", exact=True).wait_for()
    wait_for_bars(page, studio_box, ("float",))
    shot("before-run", studio_box)

    # By keyboard, both ways a number box commits: Enter, and leaving it with Tab.
    sparsity = page.get_by_label("prune sparsity for dense", exact=True)
    sparsity.fill("0.5")
    sparsity.press("Enter")
    clusters = page.get_by_label("cluster count for conv2", exact=True)
    clusters.fill("8")
    clusters.press("Tab")
    assert wait_for_python(notebook, "'dense' in studio.plan and 'conv2' in studio.plan")
    plan = json.loads(notebook.execute("print(studio.plan.to_json())"))
    shot("planned", studio_box)

    page.get_by_role("button", name="Optimize and convert").click()
    assert wait_for_python(notebook, "len(studio.results) == 2 and not studio.panel.running",
                           timeout_s=RUN_TIMEOUT_S)
    assert notebook.execute("print(repr(studio.error))").strip() == "''"
    results = json.loads(notebook.execute("print(studio.results.to_json(orient='records'))"))

    # Python side: the table's edits are the plan that ran.
    assert set(plan["layers"]) == {"dense", "conv2"}, plan
    assert plan["layers"]["dense"]["prune"]["sparsity"] == pytest.approx(0.5), plan
    assert plan["layers"]["conv2"]["cluster"]["clusters"] == 8, plan
    assert [row["plan"] for row in results] == [{}, plan["layers"]], results
    assert [row["target"] for row in results] == ["float32", "cpu"], results
    assert results[1]["gzip_size"] < results[0]["gzip_size"]
    assert results[1]["accuracy"] > 0.5, results

    # Page side: the run finished, the weight view draws float, optimized and TFLite bars, and the planned layers
    # show a placement badge.
    page.get_by_text(re.compile(r"^Done: ")).wait_for()
    wait_for_bars(page, studio_box, ("float", "optimized", "tflite"))
    for layer in ("conv2", "dense"):
        badge = page.get_by_label(re.compile(f"^placement of {layer}: "))
        badge.wait_for()
        assert badge.inner_text() in ("CPU", "CPU fallback"), layer  # the target's own name when it runs there
    shot("after-run", studio_box)
    shot("weights-after-run", studio_box.locator(".tfopt-weight-view"))
    assert not page_log.dialogs and not page_log.external_requests



MARKUP_NAME = "<img src=x onerror=alert(1)>"


def test_studio_shows_a_markup_model_name_as_text(open_notebook, page, page_log, shot):
    # tf_keras refuses '<' in layer names but allows it in a model's name, which the Studio's header shows.
    notebook = open_notebook([f"""
import tf_keras as keras
import tfopt_widgets as tw

inputs = keras.Input(shape=(4,), name="features")
outputs = keras.layers.Dense(2, name="dense")(inputs)
tw.Studio(keras.Model(inputs, outputs, name={MARKUP_NAME!r}))
"""])
    studio_box = notebook.output(0).locator(".tfopt-studio")
    page.get_by_label("prune sparsity for dense", exact=True).wait_for()
    assert studio_box.get_by_text(MARKUP_NAME, exact=True).is_visible()
    assert studio_box.locator("img").count() == 0
    shot("markup-name", studio_box)
    assert not page_log.dialogs and not page_log.external_requests


def test_studio_sensitivity_heat_map_suggest_plan_and_cell_clicks(open_notebook, page, page_log, shot):
    notebook = open_notebook([DIGITS_STUDIO])
    studio_box = notebook.output(0).locator(".tfopt-studio")
    page.get_by_label("prune sparsity for dense", exact=True).wait_for()
    assert page.get_by_role("button", name="Suggest plan").is_disabled()

    page.get_by_role("button", name="Analyze sensitivity").click()
    assert wait_for_python(notebook, "studio.sensitivity is not None and not studio.panel.running",
                           timeout_s=RUN_TIMEOUT_S)
    assert notebook.execute("print(repr(studio.error))").strip() == "''"
    # Each measured layer gets a coloured cell per technique and level, named for screen readers.
    cell = page.get_by_label(re.compile(r"^sensitivity of dense to prune to 90% sparsity: [+-]\d"))
    cell.wait_for()
    drop = float(cell.get_attribute("aria-label").rsplit(": ", 1)[1])
    expected = float(notebook.execute("print(studio.sensitivity.drop('dense', 'prune', 0.9))"))
    assert drop == pytest.approx(expected, abs=1e-4)
    assert cell.evaluate("(node) => getComputedStyle(node).backgroundColor").startswith("rgb(")
    shot("sensitivity-heat-map", studio_box)

    # Sorting by a heat column puts the most sensitive layer first.
    page.get_by_label("sort by sensitivity to prune to 90% sparsity").click()
    worst = notebook.execute("r = studio.sensitivity\n"
                             "print(max((row for row in r.rows if row.technique == 'prune' and row.level == 0.9),"
                             " key=lambda row: row.drop).layer)").strip()
    first = studio_box.locator(".tfopt-rows .tfopt-row").first.locator(".tfopt-name")
    assert first.inner_text() == worst

    # Budget box, then "Suggest plan": the table shows the suggested plan, the status line its estimate.
    budget = page.get_by_label("Budget")
    budget.fill("0.02")
    budget.press("Enter")
    assert wait_for_python(notebook, "studio.sensitivity_panel.budget == 0.02")
    page.get_by_role("button", name="Suggest plan").click()
    assert wait_for_python(notebook, "len(studio.plan) > 0")
    page.get_by_text(re.compile(r"^Suggested for CPU within 0\.0200")).wait_for()
    plan = json.loads(notebook.execute("print(studio.plan.to_json())"))["layers"]
    for layer, entry in plan.items():
        if "prune" in entry:
            value = page.get_by_label(f"prune sparsity for {layer}", exact=True).input_value()
            assert float(value) == pytest.approx(entry["prune"]["sparsity"]), layer
        if entry.get("keep_float"):
            assert page.get_by_label(f"keep {layer} float", exact=True).is_checked(), layer
    shot("suggested-plan", studio_box)

    # Clicking a heat cell plans that level; the float box keeps a layer float.
    page.get_by_label(re.compile(r"^sensitivity of conv1 to cluster into 16 shared values: ")).click()
    assert wait_for_python(notebook, "studio.plan['conv1'].cluster is not None "
                                     "and studio.plan['conv1'].cluster.clusters == 16")
    assert page.get_by_label("cluster count for conv1", exact=True).input_value() == "16"
    page.get_by_label("keep classifier float", exact=True).check()
    assert wait_for_python(notebook, "studio.plan['classifier'].keep_float")
    assert not page_log.dialogs and not page_log.external_requests


def test_precision_column_bulk_edit_and_the_error_column_after_a_run(open_notebook, page, page_log, shot):
    # Issue 15 items 3 and 4: weights / activations per row and in bulk; after the run each layer's error over its
    # quantization step, a number in the cell, coloured on 8-bit outputs.
    notebook = open_notebook([DIGITS_STUDIO])
    studio_box = notebook.output(0).locator(".tfopt-studio")
    page.get_by_label("weights precision for conv2", exact=True).wait_for()
    assert page.get_by_label("weights precision for pool", exact=True).is_disabled()  # no kernel
    page.get_by_label("weights precision for conv2", exact=True).select_option("int4")
    page.get_by_label("activations precision for dense", exact=True).select_option("int16")
    # Bulk: the classifier float, through the toolbar.
    page.get_by_label("select classifier", exact=True).check()
    page.get_by_label("bulk weights precision for selected layers").select_option("float")
    page.get_by_role("button", name="apply to selected").click()
    assert wait_for_python(notebook, "len(studio.plan.precisions) == 3")
    described = json.loads(notebook.execute(
        "import json\nprint(json.dumps({k: v.describe() for k, v in studio.plan.precisions.items()}))"))
    assert described == {"conv2": "int4 weights, float activations", "dense": "int8 weights, int16 activations",
                         "classifier": "float"}, described
    # The filled-in word shows in the page: dense's weights became int8 when its activations were set.
    assert page.get_by_label("weights precision for dense", exact=True).input_value() == "int8"
    shot("precision-planned", studio_box)

    page.get_by_role("button", name="Optimize and convert").click()
    assert wait_for_python(notebook, "len(studio.results) == 2 and not studio.panel.running and "
                                     "studio.table.layer_errors", timeout_s=RUN_TIMEOUT_S)
    assert notebook.execute("print(repr(studio.error))").strip() == "''"
    errors = json.loads(notebook.execute("print(json.dumps(studio.table.layer_errors['layers']))"))
    page.get_by_text(re.compile(r"^Done: .*int4 x1")).wait_for()
    conv1 = page.get_by_label(re.compile(r"^error of conv1: "))
    conv1.wait_for()
    assert float(conv1.inner_text()) == pytest.approx(errors["conv1"]["ratio"], abs=0.005)
    assert conv1.evaluate("(node) => getComputedStyle(node).backgroundColor") != "rgba(0, 0, 0, 0)"
    assert page.get_by_label(re.compile(r"^error of conv2: ")).inner_text().startswith("±")  # float output: RMS
    assert studio_box.get_by_role("note").inner_text().startswith("error: each layer's output error")
    # Sorting by the error column puts the largest error over step first.
    page.get_by_label("sort by each layer's error in the last converted file").click()
    worst = max((name for name in errors if errors[name]["ratio"] is not None), key=lambda n: errors[n]["ratio"])
    assert studio_box.locator(".tfopt-rows .tfopt-row").first.locator(".tfopt-name").inner_text() == worst
    shot("layer-errors", studio_box)
    assert not page_log.dialogs and not page_log.external_requests
