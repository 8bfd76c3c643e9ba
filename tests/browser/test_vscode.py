"""VS Code without VS Code: widgets rendered by VS Code's own widget manager (`@vscode/jupyter-ipywidgets8`).

The test page (tests/browser/vscode/, its own npm project so that installing tfopt-widgets never fetches it) loads
third-party widget front-ends from this environment's `share/jupyter/nbextensions/`, as VS Code does for a local
kernel with CDNs off. It renders saved notebook widget state (`ipywidgets.embed.embed_data`, which must keep
defaults: without anywidget's `_esm` the view cannot start), and runs live against `jupyter server` through
@jupyterlab/services' KernelConnection: a click in the page must reach Python.
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.browser


@pytest.fixture
def proxy_page(page, vscode_proxy_site):
    page.goto(vscode_proxy_site + "/")
    page.wait_for_selector("body[data-ready=true]")
    yield page
    page.evaluate("window.vscodeProxy.disconnect()")


@pytest.fixture
def live_execute(proxy_page, jupyter_server):
    """`live_execute(code) -> stdout`: the page starts a kernel on `jupyter server` and runs code in it; widgets the
    code displays are rendered by VS Code's manager into `#live`."""
    proxy_page.evaluate("(s) => window.vscodeProxy.connect(s)",
                        {"baseUrl": jupyter_server.url, "token": jupyter_server.token})

    def execute(code: str) -> str:
        result = proxy_page.evaluate("(code) => window.vscodeProxy.execute(code)", code)
        assert result["error"] is None, f"kernel raised {result['error']} while running:\n{code}"
        return result["out"]

    return execute


def saved_state(*widgets) -> dict:
    """The widget state a notebook saves for these widgets, as `ipywidgets.embed.embed_data` gives it (defaults
    kept): theirs and their children's only, not that of every widget alive in this test process."""
    from ipywidgets.embed import dependency_state, embed_data

    state = dependency_state(list(widgets), drop_defaults=False)
    return json.loads(json.dumps(embed_data(views=list(widgets), state=state, drop_defaults=False)))


def proxy_errors(page) -> list[str]:
    return page.evaluate("window.vscodeProxy.errors")


def loaded_from_nbextensions(page) -> list[str]:
    """Modules VS Code's manager loaded through its script loader (the environment's nbextensions folder)."""
    return [line.removeprefix("loaded ").rsplit("@", 1)[0] for line in page.evaluate("window.vscodeProxy.log")
            if line.startswith("loaded ")]


def test_saved_anywidget_state_renders_in_vscode_manager(proxy_page, page_log, shot, counter_source):
    namespace: dict = {}
    # The counter widget's own source, from the conftest (not user input).
    exec(counter_source, namespace)  # noqa: S102
    counter = namespace["Counter"](clicks=7)
    state = saved_state(counter)

    assert proxy_page.evaluate("(state) => window.vscodeProxy.renderSaved(state)", state) == 1
    proxy_page.locator("#saved").get_by_role("button", name="count clicks").wait_for()
    shot("saved", proxy_page.locator("#saved"))
    assert proxy_page.locator("#saved").get_by_text("clicks: 7").is_visible()
    assert "anywidget" in loaded_from_nbextensions(proxy_page)
    assert not proxy_errors(proxy_page)
    assert not page_log.external_requests and not page_log.page_errors


def test_live_click_reaches_python_through_vscode_manager(proxy_page, live_execute, page_log, shot, counter_source):
    page, execute = proxy_page, live_execute
    execute(counter_source + "\ncounter = Counter()\ndisplay(counter)")
    button = page.locator("#live").get_by_role("button", name="count clicks")
    button.click()
    button.click()
    page.locator("#live").get_by_text("clicks: 2").wait_for()
    assert execute("import time\nfor _ in range(50):\n    if counter.clicks == 2: break\n    time.sleep(0.1)\n"
                   "print(counter.clicks)").strip() == "2"
    execute("counter.clicks = 41")
    page.locator("#live").get_by_text("clicks: 41").wait_for()
    shot("live", page.locator("#live"))
    assert not proxy_errors(page)
    assert not page_log.external_requests and not page_log.page_errors



# -- the Studio ----------------------------------------------------------------------------------------------------

STUDIO_BARS = """(root) => [...root.querySelectorAll('.tfopt-weight-view rect.bar')]
  .filter((rect) => rect.getClientRects().length > 0 && rect.getBBox().height > 0).length"""


def test_saved_studio_state_renders_in_vscode_manager(proxy_page, page_log, shot, digits):
    import tfopt_widgets as tw

    model, train, test = digits
    studio = tw.Studio(model, train_data=train, validation_data=test, target="cpu")
    state = saved_state(studio)

    page = proxy_page
    assert page.evaluate("(state) => window.vscodeProxy.renderSaved(state)", state) == 1
    saved = page.locator("#saved")
    saved.locator(".tfopt-studio").wait_for()
    saved.get_by_label("prune sparsity for dense", exact=True).wait_for()
    page.wait_for_function(f"(root) => ({STUDIO_BARS})(root) > 0", arg=saved.element_handle())
    shot("saved-studio", saved)

    assert saved.get_by_text("digits_cnn", exact=True).is_visible()
    assert saved.get_by_role("button", name="Optimize and convert").is_visible()
    assert {"anywidget", "bqplot"} <= set(loaded_from_nbextensions(page))
    assert not proxy_errors(page)
    assert not page_log.external_requests and not page_log.page_errors
    print(f"saved widget state of the digits Studio: {len(json.dumps(state)):,} characters of JSON")


def test_live_studio_table_edit_reaches_python_through_vscode_manager(proxy_page, live_execute, page_log, shot):
    page, execute = proxy_page, live_execute
    execute("import tfopt_widgets as tw\nfrom tfopt_widgets.demo import digits_data, digits_model\n"
            "(x_train, y_train), (x_test, y_test) = digits_data()\n"
            "studio = tw.Studio(digits_model(train=False), train_data=(x_train, y_train), "
            "validation_data=(x_test, y_test))\ndisplay(studio)")
    live = page.locator("#live")
    sparsity = live.get_by_label("prune sparsity for dense", exact=True)
    sparsity.fill("0.6")
    sparsity.press("Tab")
    live.get_by_label("show weights of conv2", exact=True).click()
    answer = execute("import time\nfor _ in range(100):\n"
                     "    if 'dense' in studio.plan and studio.weights.layer == 'conv2': break\n"
                     "    time.sleep(0.1)\n"
                     "print(studio.plan.to_dict()['layers'].get('dense'), studio.weights.layer)")
    assert "'sparsity': 0.6" in answer and answer.strip().endswith("conv2"), answer
    live.get_by_text("Weights of").wait_for()
    page.wait_for_function(f"(root) => ({STUDIO_BARS})(root) > 0", arg=live.element_handle())
    shot("live-studio", live)
    assert not proxy_errors(page)
    assert not page_log.external_requests and not page_log.page_errors


def test_saved_mobilenetv2_studio_is_compact_and_renders_in_vscode_manager(proxy_page, page_log, shot):
    import tf_keras as keras

    import tfopt_widgets as tw

    model = keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3))  # weights=None: no download
    state = saved_state(tw.Studio(model))
    size = len(json.dumps(state))
    print(f"saved widget state of a MobileNetV2 Studio: {size:,} characters of JSON")
    assert size < 400_000, "the Studio's state must stay compact (bins and stats only, never raw weights)"

    page = proxy_page
    page.evaluate("(state) => window.vscodeProxy.renderSaved(state)", state)
    saved = page.locator("#saved")
    saved.get_by_label("prune sparsity for Conv1", exact=True).wait_for()
    assert saved.get_by_text(f"{len(model.layers)} of {len(model.layers)} layers shown").is_visible()
    page.wait_for_function(f"(root) => ({STUDIO_BARS})(root) > 0", arg=saved.element_handle())
    shot("saved-mobilenetv2", saved)
    assert not proxy_errors(page)
    assert not page_log.external_requests and not page_log.page_errors
