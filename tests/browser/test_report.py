"""tw.report's HTML opened from disk in headless Chromium with JavaScript off and the network cut: it must read."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

import tfopt_widgets as tw

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


@pytest.mark.browser
@pytest.mark.slow
def test_report_reads_offline_without_javascript(browser, digits, tmp_path):
    model, (x_train, _), test = digits
    plan = tw.Plan().quantize("conv1", "conv2", "dense").prune("dense", sparsity=0.5)
    baseline, int8 = tw.convert(model, "float32"), tw.convert(model, "cpu", representative_data=x_train[:100])
    path = tw.report(tmp_path / "report.html", model=model, plan=plan, title="Digits <report>",
                     runs=[("float32", baseline, tw.evaluate(baseline, test, runs=5)),
                           ("CPU int8 (post-training)", int8, tw.evaluate(int8, test, runs=5))])
    context = browser.new_context(viewport={"width": 1100, "height": 900}, java_script_enabled=False)
    attempted = []

    def guard(route):
        url = urlsplit(route.request.url)
        if url.scheme in ("file", "data") or url.hostname == "127.0.0.1":
            route.continue_()
        else:
            attempted.append(route.request.url)
            route.abort()

    context.route("**/*", guard)
    page = context.new_page()
    try:
        page.goto(path.as_uri())
        assert page.title() == "Digits <report>"
        images = page.locator("img")
        assert images.count() == 3  # conv1, conv2, dense
        for i in range(images.count()):
            box = images.nth(i).bounding_box()
            assert box is not None and box["width"] > 400 and box["height"] > 100, "the figure was decoded and drawn"
        assert page.get_by_role("heading", name="Results").is_visible()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "report-offline.png"), full_page=True)
    finally:
        context.close()
    assert attempted == [], "the report fetched something from the network"
