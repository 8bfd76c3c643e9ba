"""Edits in the layer table all land: ticks a few milliseconds apart, ticks while a cell keeps the kernel busy, and
a bulk edit among them, in a real JupyterLab; then the same through VS Code's widget manager.

The model is tests/test_layer_table.py's, not the demo: two convolutions ("stem", "sep") that each fold a
BatchNormalization and a ReLU when quantized, so that every tick makes Python add layers the page did not send.
While the ticks go out the page watches the boxes: one that unticks itself after its click (a stale state from
Python drawn over a pending edit) fails the test, as does any edit missing from `studio.plan` afterwards.
"""

from __future__ import annotations

import json

import pytest
import test_layer_table
import test_vscode

pytestmark = pytest.mark.browser

proxy_page, live_execute = test_vscode.proxy_page, test_vscode.live_execute

STEM_AND_SEP = "import tfopt_widgets as tw\n" + test_layer_table.STEM_AND_SEP + "studio = tw.Studio(model)\n"
GROUPS = {"stem": ["stem", "stem_bn", "stem_relu"], "sep": ["sep", "sep_bn", "sep_relu"]}

# Clicks the controls named `labels` (`gaps[i]` ms after the one before), each found again at its turn (rows are
# redrawn on every answer), then watches for `watch` ms: returns [label, ms after its click] for every clicked
# checkbox, and every one in `watched`, seen unticked meanwhile.
TICK_AND_WATCH = """async ({labels, gaps, watch, watched = []}) => {
  const find = (label) => document.querySelector(`[aria-label="${label}"]`)
    || [...document.querySelectorAll('button')].find((button) => button.textContent === label);
  const clicked = new Map(watched.map((label) => [label, performance.now()]));
  const unticked = [];
  const look = () => {
    for (const [label, at] of clicked) {
      const box = find(label);
      if (box && box.type === 'checkbox' && !box.checked) unticked.push([label, Math.round(performance.now() - at)]);
    }
  };
  const timer = setInterval(look, 4);
  for (let i = 0; i < labels.length; i++) {
    await new Promise((resolve) => setTimeout(resolve, gaps[i]));
    find(labels[i]).click();
    clicked.set(labels[i], performance.now());
  }
  await new Promise((resolve) => setTimeout(resolve, watch));
  clearInterval(timer);
  look();
  return unticked;
}"""


def until(run, condition: str, timeout_s: float = 30) -> str:
    """Runs (in the kernel, through `run(code) -> stdout`) a poll of `condition` until it holds or `timeout_s`
    passes, then prints `studio.plan` as JSON; returns that JSON."""
    return run(f"import json, time\n_end = time.monotonic() + {timeout_s}\n"
               f"while not ({condition}) and time.monotonic() < _end:\n    time.sleep(0.05)\n"
               "print(json.dumps(studio.plan.to_dict()['layers']))").strip().splitlines()[-1]


def run_cell(page, index: int) -> None:
    """Runs the index-th cell as a user does, without waiting for it to finish."""
    page.evaluate("""(index) => {
      window.jupyterapp.shell.currentWidget.content.activeCellIndex = index;
      window.jupyterapp.commands.execute('notebook:run-cell');
    }""", index)


def quantized(plan_json: str) -> set[str]:
    return {name for name, entry in json.loads(plan_json).items() if entry.get("quantize")}


def checked_boxes(root, names) -> dict[str, bool]:
    return {name: root.get_by_label(f"quantize {name}", exact=True).is_checked() for name in names}


def test_ticks_a_few_ms_apart_and_a_bulk_edit_all_land(open_notebook, page, page_log, shot):
    notebook = open_notebook([STEM_AND_SEP + "studio"])
    table = notebook.output(0).locator(".tfopt-table")
    table.get_by_label("quantize stem", exact=True).wait_for()
    shot("before-edits", notebook.output(0).locator(".tfopt-studio"))

    # Three quantize ticks 3 ms apart, each sent before Python answered the one before.
    unticked = page.evaluate(TICK_AND_WATCH, {"labels": ["quantize stem", "quantize sep", "quantize project"],
                                              "gaps": [0, 3, 3], "watch": 1500})
    plan = until(notebook.execute, "len(studio.plan.layers('quantize')) >= 7")
    assert quantized(plan) == {*GROUPS["stem"], *GROUPS["sep"], "project"}, plan
    assert unticked == [], f"boxes unticked themselves after their click: {unticked}"
    # The page shows what Python holds, the folded layers included.
    assert all(checked_boxes(table, [*GROUPS["stem"], *GROUPS["sep"], "project"]).values())

    # A bulk edit (two rows pruned) and, 2 ms later, a tick on one of them: both land.
    for name in ("project", "head"):
        table.get_by_label(f"select {name}", exact=True).check()
    table.get_by_label("bulk prune sparsity for selected layers").fill("0.5")
    unticked = page.evaluate(TICK_AND_WATCH, {"labels": ["apply to selected", "keep stem float"],
                                              "gaps": [0, 2], "watch": 1000})
    plan = json.loads(until(notebook.execute, "'head' in studio.plan and studio.plan['stem'].keep_float"))
    assert plan["project"]["prune"]["sparsity"] == 0.5 and plan["project"]["quantize"] is True, plan
    assert plan["head"]["prune"]["sparsity"] == 0.5 and plan["stem"]["keep_float"] is True, plan
    # Keeping stem float unticks its quantization, and so its group's, everywhere.
    assert quantized(json.dumps(plan)) == {*GROUPS["sep"], "project"}, plan
    assert unticked == [], unticked
    assert checked_boxes(table, GROUPS["stem"]) == dict.fromkeys(GROUPS["stem"], False)
    assert table.get_by_label("prune sparsity for head", exact=True).input_value() == "0.5"
    assert notebook.execute("print(repr(studio.error))").strip() == "''"
    shot("after-edits", notebook.output(0).locator(".tfopt-studio"))
    assert not page_log.page_errors


def test_ticks_while_a_cell_runs_all_land_after_it(open_notebook, page, page_log, shot):
    notebook = open_notebook([STEM_AND_SEP + "studio", "import time\ntime.sleep(6)"], run=False)
    app = "window.jupyterapp.shell.currentWidget"
    run_cell(page, 0)
    table = notebook.output(0).locator(".tfopt-table")
    table.get_by_label("quantize stem", exact=True).wait_for(timeout=90_000)
    page.wait_for_function(f"{app}.sessionContext.session.kernel.status === 'idle'", polling=100)

    # The second cell keeps the kernel's main shell busy; tick stem, then sep 1.5 s later, then watch until the
    # cell has ended.
    run_cell(page, 1)
    page.wait_for_function(f"{app}.sessionContext.session.kernel.status === 'busy'", polling=50)
    ticks = ["quantize stem", "quantize sep"]
    unticked = page.evaluate(TICK_AND_WATCH, {"labels": ticks, "gaps": [200, 1500], "watch": 100})
    shot("ticked-while-busy", notebook.output(0).locator(".tfopt-studio"))
    assert page.evaluate(f"{app}.sessionContext.session.kernel.status") == "busy"
    # Still watching until the cell has ended and a moment after.
    unticked += page.evaluate(TICK_AND_WATCH, {"labels": [], "gaps": [], "watch": 5000, "watched": ticks})
    page.wait_for_function(f"{app}.sessionContext.session.kernel.status === 'idle'", timeout=30_000, polling=100)
    assert notebook.output(1).locator(".jp-OutputArea-output").count() == 0  # the sleep ended without an error

    plan = until(notebook.execute, "len(studio.plan.layers('quantize')) >= 6")
    assert quantized(plan) == {*GROUPS["stem"], *GROUPS["sep"]}, plan
    unticked += page.evaluate(TICK_AND_WATCH, {"labels": [], "gaps": [], "watch": 500, "watched": ticks})
    assert unticked == [], f"boxes unticked themselves after their click: {unticked}"
    assert all(checked_boxes(table, [*GROUPS["stem"], *GROUPS["sep"]]).values())
    assert not page_log.page_errors


def test_ticks_a_few_ms_apart_land_through_vscode_manager(proxy_page, live_execute, page_log, shot):
    page, execute = proxy_page, live_execute
    execute(STEM_AND_SEP + "display(studio)")
    live = page.locator("#live")
    live.get_by_label("quantize stem", exact=True).wait_for()
    ticks = ["quantize stem", "quantize sep"]
    unticked = page.evaluate(TICK_AND_WATCH, {"labels": ticks, "gaps": [0, 3], "watch": 0})
    sparsity = live.get_by_label("prune sparsity for head", exact=True)
    sparsity.fill("0.25")
    sparsity.press("Tab")  # commits the box, as leaving it does
    unticked += page.evaluate(TICK_AND_WATCH, {"labels": [], "gaps": [], "watch": 1500, "watched": ticks})
    plan = json.loads(until(execute, "'head' in studio.plan and len(studio.plan.layers('quantize')) >= 6"))
    assert quantized(json.dumps(plan)) == {*GROUPS["stem"], *GROUPS["sep"]}, plan
    assert plan["head"]["prune"]["sparsity"] == 0.25, plan
    assert unticked == [], unticked
    assert all(checked_boxes(live, [*GROUPS["stem"], *GROUPS["sep"]]).values())
    shot("live-edits", live)
    assert not test_vscode.proxy_errors(page)
    assert not page_log.external_requests and not page_log.page_errors
