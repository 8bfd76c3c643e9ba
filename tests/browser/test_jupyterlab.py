"""The browser harness itself, on things that do not need the Studio: HTML output and an anywidget round trip.

A model named `<img src=x onerror=alert(1)>` (tf_keras refuses '<' in layer names but allows it in model names)
must show literally in `tw.inspect(model)`'s table and run nothing.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

MARKUP_NAME = "<img src=x onerror=alert(1)>"

TINY_MODEL = f"""
import tf_keras as keras
import tfopt_widgets as tw

inputs = keras.Input(shape=(4,), name="features")
outputs = keras.layers.Dense(2, name="dense")(inputs)
model = keras.Model(inputs, outputs, name={MARKUP_NAME!r})
tw.inspect(model)
"""



def test_inspect_html_shows_markup_in_names_as_text(open_notebook, page, page_log, shot):
    notebook = open_notebook([TINY_MODEL])
    caption = notebook.output(0).locator("table caption")
    caption.wait_for()
    shot("inspect", notebook.output(0))

    assert caption.inner_text().startswith(f"{MARKUP_NAME}: 2 layers")
    assert notebook.output(0).locator("img").count() == 0
    assert notebook.output(0).locator("td", has_text="dense").count() >= 1
    assert not page_log.dialogs and not page_log.external_requests


def test_anywidget_click_reaches_python_and_back(open_notebook, page, page_log, shot, counter_source):
    notebook = open_notebook([counter_source + "\ncounter = Counter()\ncounter"])
    button = page.get_by_role("button", name="count clicks")
    button.wait_for()
    button.click()
    button.click()
    page.get_by_text("clicks: 2").wait_for()
    # Python sees the clicks (they may arrive on a comm subshell: poll briefly rather than read once).
    assert notebook.execute(
        "import time\nfor _ in range(50):\n    if counter.clicks == 2: break\n    time.sleep(0.1)\nprint(counter.clicks)"
    ).strip() == "2"
    notebook.execute("counter.clicks = 41")
    page.get_by_text("clicks: 41").wait_for()
    shot("counter", notebook.output(0))
    assert not page_log.dialogs and not page_log.external_requests

