"""Benchmark: tw.inspect and the Studio on large models, and the layer table of a 500-layer model in Chromium.

Per model (tf_keras applications, ``weights=None``: nothing is downloaded): time of ``tw.inspect``, of building a
``tw.Studio`` (it inspects, reads every kernel and bins the selected layer), of binning every layer's histogram
(what clicking through the whole table computes: ``studio.weights.layer = name`` for each layer), and the size of
the widget state sent to the front-end: the JSON of ``ipywidgets.embed.embed_data(views=[studio],
drop_defaults=False)``, i.e. every model of the Studio's widget tree (what a notebook saves and the comm carries
when the view opens), plus the largest update one layer click sends. Goals: ResNet50 ready in <= 2 s, state
<= 300 KB.

Browser figure: the saved state of a 500-layer model's layer table (and of its whole Studio) rendered by VS Code's
widget manager in Debian's Chromium (tests/browser's proxy page and launch settings): time from handing over the
state to "500 of 500 layers shown" with rows drawn, on a fresh page and again on the same page (median of 3).

    python bench/scale.py            # ResNet50, EfficientNetB0, MobileNetV2 (224x224) + the 500-layer render
    python bench/scale.py --quick    # MobileNetV2-0.35 at 96x96 + one 60-layer table render (skipped without Chromium)
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

ROOT = Path(__file__).resolve().parents[1]
GOAL_READY_S = 2.0
GOAL_STATE_KB = 300
RENDER_REPEATS = 3


def build(name: str):
    from tfopt_widgets.model.stack import keras

    apps = keras.applications
    if name == "ResNet50":
        return apps.ResNet50(weights=None)
    if name == "EfficientNetB0":
        return apps.EfficientNetB0(weights=None)
    if name == "MobileNetV2":
        return apps.MobileNetV2(weights=None)
    if name == "MobileNetV2-0.35-96":
        return apps.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None)
    raise ValueError(name)


def deep_model(layers: int):
    """A model of exactly ``layers`` layers (input included): Dense / BatchNormalization / ReLU blocks."""
    from tfopt_widgets.model.stack import keras

    inputs = keras.Input((16,), name="features")
    x = inputs
    kinds = (lambda i: keras.layers.Dense(16, name=f"dense_{i}"),
             lambda i: keras.layers.BatchNormalization(name=f"bn_{i}"),
             lambda i: keras.layers.ReLU(name=f"relu_{i}"))
    for i in range(layers - 1):
        x = kinds[i % 3](i)(x)
    return keras.Model(inputs, x, name=f"deep_{layers}")


def state_json(*widgets) -> str:
    """The saved state of ``widgets`` and what they contain (embed_data's default would add every live widget)."""
    from ipywidgets.embed import dependency_state, embed_data

    views = list(widgets)
    return json.dumps(embed_data(views=views, drop_defaults=False, state=dependency_state(views, drop_defaults=False)))


def measure_model(name: str) -> dict:
    import tfopt_widgets as tw

    with _common.Stopwatch() as built:
        model = build(name)
    with _common.Stopwatch() as inspected:
        info = tw.inspect(model)
    with _common.Stopwatch() as studio_built:
        studio = tw.Studio(model)
    state = state_json(studio)
    # Every layer's histogram, as clicking through the whole table computes them.
    weighted = [layer.name for layer in info.layers if layer.params]
    with _common.Stopwatch() as all_histograms:
        slowest, largest_update = 0.0, 0
        for layer in weighted:
            start = time.perf_counter()
            studio.weights.layer = layer
            slowest = max(slowest, time.perf_counter() - start)
            # What the click sends: the histogram trait plus the three bar series (x, y as float arrays).
            update = len(json.dumps(studio.weights.histogram)) + sum(
                8 * (len(bars.x) + len(bars.y)) for bars in studio.weights._bars)
            largest_update = max(largest_update, update)
    studio.close()
    result = {
        "model": name, "layers": len(info.layers), "params": int(info.params), "build_s": round(built.seconds, 2),
        "inspect_s": round(inspected.seconds, 3), "studio_s": round(studio_built.seconds, 3),
        "ready_s": round(studio_built.seconds, 3),  # the Studio inspects by itself: building it is "ready"
        "histograms_every_layer_s": round(all_histograms.seconds, 3), "histogram_layers": len(weighted),
        "slowest_layer_click_s": round(slowest, 4), "state_bytes": len(state.encode()),
        "largest_click_update_bytes": largest_update, "load": _common.load()[0],
    }
    print(f"{name}: inspect {result['inspect_s']} s, Studio {result['studio_s']} s, every histogram "
          f"{result['histograms_every_layer_s']} s, state {result['state_bytes'] / 1000:.0f} KB", flush=True)
    del model, studio
    return result


# ---------------------------------------------------------------------------------------------------------------
# The browser figure

def _proxy_site(folder: Path):
    """tests/browser's VS Code proxy page served from ``folder``; None (and why) when it cannot be set up."""
    import importlib.util

    # tests/browser/conftest.py: the proxy page's paths and the Chromium settings (loaded by path: under pytest the
    # name "conftest" is taken by tests/conftest.py).
    spec = importlib.util.spec_from_file_location("tfopt_browser_conftest", ROOT / "tests" / "browser" / "conftest.py")
    browser = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(browser)
    except Exception as error:  # noqa: BLE001
        return None, f"tests/browser/conftest.py could not be loaded: {error}"
    bundle = browser.PROXY / "dist" / "page.js"
    if not bundle.exists():
        return None, f"{bundle} is not built (cd tests/browser/vscode && npm ci && npm run build)"
    if not Path(browser.CHROMIUM).exists():
        return None, f"Chromium not found at {browser.CHROMIUM}"
    shutil.copy(browser.PROXY / "page.html", folder / "index.html")
    shutil.copy(bundle, folder / "page.js")
    shutil.copy(browser.PROXY / "node_modules" / "requirejs" / "require.js", folder / "require.js")
    (folder / "nbextensions").symlink_to(browser.NBEXTENSIONS, target_is_directory=True)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", browser.free_port()),
                                             functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return (server, browser), None


def render_times(layers: int, repeats: int = RENDER_REPEATS, studio: bool = True) -> dict:
    """Seconds from handing the saved state to the page until the table shows every layer (median of fresh pages)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return {"skipped": "playwright is not installed (pip install -e '.[test]')"}
    import tfopt_widgets as tw
    from tfopt_widgets.widgets.layer_table import LayerTable

    model = deep_model(layers)
    table = LayerTable(tw.inspect(model))
    states = {"layer table": state_json(table)}
    if studio:
        states["whole Studio"] = state_json(tw.Studio(model))
    with tempfile.TemporaryDirectory() as folder:
        site, why = _proxy_site(Path(folder))
        if site is None:
            return {"skipped": why}
        server, browser = site
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        result = {"layers": layers, "state_bytes": {k: len(v.encode()) for k, v in states.items()}}
        try:
            with sync_playwright() as playwright:
                chromium = playwright.chromium.launch(executable_path=browser.CHROMIUM, headless=True,
                                                      args=browser.CHROMIUM_ARGS)
                result["chromium"] = chromium.version
                for label, text in states.items():
                    times, warm = [], []
                    for _ in range(repeats):
                        page = chromium.new_page(viewport=browser.VIEWPORT)
                        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(
                            ("http://127.0.0.1", "data:", "blob:")) else route.abort())
                        page.goto(url)
                        page.wait_for_selector("body[data-ready=true]")
                        state = json.loads(text)
                        start = time.perf_counter()
                        page.evaluate("(state) => window.vscodeProxy.renderSaved(state)", state)
                        saved = page.locator("#saved")
                        saved.get_by_text(f"{layers} of {layers} layers shown", exact=False).wait_for(timeout=60_000)
                        saved.locator(".tfopt-row:not(.tfopt-head)").first.wait_for(timeout=60_000)
                        times.append(round(time.perf_counter() - start, 3))
                        result.setdefault("rows_in_dom", {})[label] = saved.locator(
                            ".tfopt-row:not(.tfopt-head)").count()
                        # Again on the same page: the widget modules are loaded now, so this is the table's own work.
                        start = time.perf_counter()
                        page.evaluate("(state) => window.vscodeProxy.renderSaved(state)", state)
                        page.wait_for_function(
                            "(text) => [...document.querySelectorAll('#saved .tfopt-status')]"
                            ".filter((e) => e.textContent.includes(text)).length >= 2",
                            arg=f"{layers} of {layers} layers shown", timeout=60_000)
                        warm.append(round(time.perf_counter() - start, 3))
                        page.close()
                    result[label] = {"times_s": times, "median_s": _common.median(times), "warm_times_s": warm,
                                     "warm_median_s": _common.median(warm)}
                    print(f"render {label} of {layers} layers: fresh page {times} s, again {warm} s", flush=True)
                chromium.close()
        finally:
            server.shutdown()
            server.server_close()
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="MobileNetV2-0.35 at 96x96 and a 60-layer render")
    parser.add_argument("--no-browser", action="store_true", help="skip the Chromium render")
    parser.add_argument("--out", type=Path, default=_common.RESULTS)
    args = parser.parse_args(argv)

    info = _common.machine()
    names = ["MobileNetV2-0.35-96"] if args.quick else ["ResNet50", "EfficientNetB0", "MobileNetV2"]
    # The first Studio in a fresh process also pays one-time costs (importing ipywidgets/bqplot/anywidget, TF's first
    # eager ops): reported apart as "first in a fresh kernel", then every model is measured warm.
    first = None if args.quick else {**measure_model(names[0]), "model": f"{names[0]} (first in a fresh kernel)"}
    models = [measure_model(name) for name in names]
    if first:
        models.insert(0, first)
    render = {"skipped": "--no-browser"} if args.no_browser else render_times(60, 1, studio=False) if args.quick else render_times(500)

    lines = ["# Scale: tw.inspect and the Studio on large models", "",
             (f"Ready = building tw.Studio (it inspects the model, reads every kernel, bins the largest layer); goals: "
             f"<= {GOAL_READY_S} s and <= {GOAL_STATE_KB} KB of state for ResNet50. State = JSON of "
             "`embed_data(views=[studio], drop_defaults=False)` (every widget model of the Studio). 'Every histogram': "
             "selecting each weighted layer in turn (binning in Python and updating the plot)."), ""]
    rows = []
    for m in models:
        goal = ""
        if m["model"].startswith("ResNet50"):
            goal = ("met" if m["ready_s"] <= GOAL_READY_S and m["state_bytes"] <= GOAL_STATE_KB * 1000 else "missed")
        rows.append([m["model"], m["layers"], f"{m['params']:,}", m["inspect_s"], f"**{m['ready_s']}**",
                     f"{m['histograms_every_layer_s']} ({m['histogram_layers']} layers)", m["slowest_layer_click_s"],
                     f"**{m['state_bytes'] / 1000:.0f}**", f"{m['largest_click_update_bytes'] / 1000:.1f}", m["load"],
                     goal])
    lines += _common.table(["model", "layers", "params", "inspect (s)", "Studio ready (s)", "every histogram (s)",
                            "slowest click (s)", "state (KB)", "largest click update (KB)", "load (1 min)",
                            "goal"], rows)
    lines += ["", "## Layer table render in Chromium (VS Code's widget manager, saved state)", ""]
    if "skipped" in render:
        lines.append(f"Skipped: {render['skipped']}.")
    else:
        lines += _common.table(
            ["what", "layers", "state (KB)", "fresh page (s)", "median (s)", "again, modules loaded (s)", "median (s)",
             "rows in the DOM"],
            [[label, render["layers"], f"{render['state_bytes'][label] / 1000:.0f}", render[label]["times_s"],
              f"**{render[label]['median_s']}**", render[label]["warm_times_s"], f"**{render[label]['warm_median_s']}**",
              render["rows_in_dom"][label]]
             for label in ("layer table", "whole Studio") if label in render])
        lines += ["", (f"Chromium {render['chromium']}; time from `renderSaved(state)` to \"{render['layers']} of "
                      f"{render['layers']} layers shown\" with the first row drawn: on a fresh page (the widget modules "
                      "load first), then a second render on the same page. The table draws only the rows in view "
                      "(virtualized).")]
    _common.write("scale", args.quick, args.out, {"quick": args.quick, "machine": info, "models": models,
                                                  "render": render}, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
