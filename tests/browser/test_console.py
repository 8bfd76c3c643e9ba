"""No console errors from the widget during a whole Studio session: open, switch theme, plan, run, results.

In JupyterLab and in VS Code's widget manager, the page's console errors and uncaught page errors must all be
someone else's: each filter below names whose and why. The run is a real one (the digits CNN, pruning, fine-tuning,
conversion, evaluation), and screenshots of the Studio in light and dark themes before and after it are kept.
"""

from __future__ import annotations

import re

import pytest
import test_vscode
from test_plots_dark import assert_plots_readable, vscode_theme
from test_studio_jupyterlab import DIGITS_STUDIO, RUN_TIMEOUT_S, wait_for_bars, wait_for_python

pytestmark = pytest.mark.browser

proxy_page, live_execute = test_vscode.proxy_page, test_vscode.live_execute

# Errors that are demonstrably not the widget's, as (pattern, whose and why). None so far: JupyterLab 4.6 and VS
# Code's manager log no error of their own in these sessions (the "Kernel is running over TCP without encryption"
# line is a warning, not an error). Add one only with the evidence that it is not ours.
NOT_THE_WIDGETS: list[tuple[re.Pattern, str]] = []


def widget_errors(page_log) -> list[str]:
    """The page's console errors and page errors, less the ones NOT_THE_WIDGETS accounts for."""
    return [error for error in page_log.console_errors + page_log.page_errors
            if not any(pattern.search(error) for pattern, _ in NOT_THE_WIDGETS)]


PLAN_AND_SELECT = "studio.plan.prune('dense', sparsity=0.75)\nstudio.table.selected = 'dense'"


def test_studio_run_in_jupyterlab_logs_no_console_errors(open_notebook, page, page_log, shot, jupyterlab_theme):
    notebook = open_notebook([DIGITS_STUDIO])
    studio_box = notebook.output(0).locator(".tfopt-studio")
    studio_box.wait_for()
    wait_for_bars(page, studio_box, ("float",))
    notebook.execute(PLAN_AND_SELECT)
    page.get_by_label("prune sparsity for dense", exact=True).wait_for()
    shot("light-before-run", studio_box)
    jupyterlab_theme("JupyterLab Dark")
    shot("dark-before-run", studio_box)

    page.get_by_role("button", name="Optimize and convert").click()
    assert wait_for_python(notebook, "len(studio.results) == 2 and not studio.panel.running", timeout_s=RUN_TIMEOUT_S)
    assert notebook.execute("print(repr(studio.error))").strip() == "''"
    page.get_by_text(re.compile(r"^Done: ")).wait_for()
    results_shown(page, studio_box)
    zeros = int(notebook.execute("print(studio.weights.histogram['zeros']['optimized'])").strip().splitlines()[-1])
    assert zeros >= 0.74 * 64 * 512
    assert studio_box.get_by_label("exact zeros in optimized Keras").inner_text() == f"{zeros:,}"
    assert_plots_readable(studio_box, dark=True, levels=True)  # the run's int8 file: its stored levels too
    shot("dark-after-run", studio_box)
    jupyterlab_theme("JupyterLab Light")
    assert_plots_readable(studio_box, dark=False, levels=True)  # the run's int8 file: its stored levels too
    shot("light-after-run", studio_box)

    assert widget_errors(page_log) == []
    assert not page_log.dialogs and not page_log.external_requests


def test_studio_run_in_vscode_manager_logs_no_console_errors(proxy_page, live_execute, page_log, shot):
    page, execute = proxy_page, live_execute
    execute(DIGITS_STUDIO.replace("\nstudio\n", f"\n{PLAN_AND_SELECT}\ndisplay(studio)\n"))
    live = page.locator("#live")
    live.locator(".tfopt-studio").wait_for()
    wait_for_bars(page, live, ("float",))
    shot("light-before-run", live)
    vscode_theme(page, True, "#live")
    shot("dark-before-run", live)

    live.get_by_role("button", name="Optimize and convert").click()
    answer = execute(f"import time\n_end = time.monotonic() + {RUN_TIMEOUT_S}\n"
                     "while not (len(studio.results) == 2 and not studio.panel.running) and time.monotonic() < _end:\n"
                     "    time.sleep(0.2)\nprint(len(studio.results), repr(studio.error))")
    assert answer.strip().splitlines()[-1] == "2 ''", answer
    results_shown(page, live)
    assert_plots_readable(live, dark=True, levels=True)  # the run's int8 file: its stored levels too
    shot("dark-after-run", live)
    vscode_theme(page, False, "#live")
    assert_plots_readable(live, dark=False, levels=True)  # the run's int8 file: its stored levels too
    shot("light-after-run", live)

    assert not page.evaluate("window.vscodeProxy.errors")
    assert widget_errors(page_log) == []
    assert not page_log.external_requests


def results_shown(page, root) -> None:
    """Waits until the run shows: the three histogram series and both points of the results plot; and the latency
    caption is on screen."""
    wait_for_bars(page, root, ("float", "optimized", "tflite"))
    root.locator(".tfopt-results .tfopt-plot .dot").nth(1).wait_for()
    assert root.get_by_text("not on the target chip", exact=False).is_visible()
