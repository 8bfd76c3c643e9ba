"""The Studio's plots in dark themes: JupyterLab's "JupyterLab Dark" and VS Code's dark theme.

The plots' text follows the theme's colours and reads against the background under it (WCAG contrast: 4.5 for
text, 3 for the bars), with the page's own styles, no injected fix-ups. VS Code's look is made the way VS Code's
Jupyter extension makes it: `vscode-dark` on the body, the theme's `--vscode-*` colours on the document, and the
widget output's container (`.cell-output-ipywidget-background`) mapping JupyterLab's `--jp-*` variables to them.
The Studio gets results rows without a run here (tests/browser/test_console.py runs it for real).
"""

from __future__ import annotations

import re

import pytest
import test_vscode
from test_studio_jupyterlab import wait_for_bars

from tfopt_widgets.widgets.weight_view import SERIES

pytestmark = pytest.mark.browser

# test_vscode's fixtures: the page with VS Code's widget manager, and code run in a live kernel rendered there.
proxy_page, live_execute = test_vscode.proxy_page, test_vscode.live_execute

# A Studio of an untrained digits CNN with 'dense' pruned (zeros from the engine, no fine-tuning) and two results
# rows, so that both plots draw.
DARK_STUDIO = """
import numpy as np
import tfopt_widgets as tw
from tfopt_widgets.demo import digits_data, digits_model
from tfopt_widgets.techniques.optimization import kernels

(x_train, y_train), (x_test, y_test) = digits_data()
model = digits_model(train=False)
studio = tw.Studio(model, train_data=(x_train, y_train), validation_data=(x_test, y_test))
pruned = {name: np.where(np.abs(k) < np.quantile(np.abs(k), 0.6), 0.0, k) for name, k in kernels(model).items()}
studio.weights.set_weights(optimized=pruned)
studio.table.selected = "dense"
for row in ({"run": "float32 baseline", "target": "float32", "mode": "none", "size": 110_000, "gzip_size": 100_000,
             "accuracy": 0.95, "latency_ms": 0.004},
            {"run": "Edge TPU (int8)", "target": "edgetpu", "mode": "int8", "size": 30_000, "gzip_size": 21_000,
             "accuracy": 0.94, "latency_ms": 0.008, "accelerated_share": 1.0}):
    studio.results_view.add(row)
studio
"""

# VS Code's "Dark Modern" theme colours, as VS Code sets them on a notebook output's document.
VSCODE_DARK = {
    "--vscode-editor-background": "#1f1f1f", "--vscode-editor-foreground": "#cccccc",
    "--vscode-input-background": "#313131", "--vscode-input-foreground": "#cccccc",
    "--vscode-panel-border": "#2b2b2b", "--vscode-focusBorder": "#0078d4", "--vscode-button-background": "#0078d4",
    "--vscode-button-foreground": "#ffffff", "--vscode-textLink-foreground": "#4daafc",
    "--vscode-descriptionForeground": "#9d9d9d", "--vscode-errorForeground": "#f85149",
    "--vscode-notebook-cellEditorBackground": "#1f1f1f",
}
# What VS Code's Jupyter extension does for widget outputs: a transparent container that maps JupyterLab's
# variables (which widgets read) to the theme's.
VSCODE_WIDGET_BRIDGE = """
body { background-color: var(--vscode-editor-background); color: var(--vscode-editor-foreground); }
.cell-output-ipywidget-background {
  background: transparent !important; color: var(--vscode-editor-foreground);
  --jp-content-font-color0: var(--vscode-editor-foreground); --jp-content-font-color1: var(--vscode-editor-foreground);
  --jp-content-font-color2: var(--vscode-editor-foreground); --jp-content-font-color3: var(--vscode-editor-foreground);
  --jp-ui-font-color0: var(--vscode-editor-foreground); --jp-ui-font-color1: var(--vscode-editor-foreground);
  --jp-ui-font-color2: var(--vscode-editor-foreground); --jp-ui-font-color3: var(--vscode-editor-foreground);
  --jp-border-color1: var(--vscode-panel-border); --jp-border-color2: var(--vscode-panel-border);
  --jp-brand-color1: var(--vscode-textLink-foreground);
  --jp-widgets-input-color: var(--vscode-input-foreground);
  --jp-widgets-input-background-color: var(--vscode-input-background);
  --jp-widgets-color: var(--vscode-editor-foreground); --jp-widgets-label-color: var(--vscode-editor-foreground);
}
.vscode-dark .cell-output-ipywidget-background {
  --jp-layout-color0: var(--vscode-input-background); --jp-layout-color1: var(--vscode-input-background);
  --jp-layout-color2: var(--vscode-input-background); --jp-layout-color3: var(--vscode-input-background);
}
"""


def vscode_theme(page, dark: bool, *containers: str) -> None:
    """Gives the VS Code proxy page VS Code's dark theme (or back its light one), with `containers` as widget
    output containers."""
    page.evaluate("""([dark, colours, css, containers]) => {
      document.body.classList.remove('vscode-light', 'vscode-dark');
      document.body.classList.add(dark ? 'vscode-dark' : 'vscode-light');
      for (const [name, value] of Object.entries(colours)) {
        if (dark) document.documentElement.style.setProperty(name, value);
        else document.documentElement.style.removeProperty(name);
      }
      let style = document.getElementById('vscode-theme');
      if (!style) {
        style = document.head.appendChild(document.createElement('style'));
        style.id = 'vscode-theme';
      }
      style.textContent = dark ? css : '';
      for (const selector of containers) {
        document.querySelector(selector).classList.toggle('cell-output-ipywidget-background', dark);
      }
    }""", [dark, VSCODE_DARK, VSCODE_WIDGET_BRIDGE, list(containers)])
    page.wait_for_timeout(100)


# For each plot: its text (axis labels, ticks, run names) with the colour it is drawn in, the bars' fills, and the
# colour under the plot (the first ancestor with a background that is not transparent).
PLOT_COLOURS = """(root) => {
  const under = (node) => {
    for (let n = node; n; n = n.parentElement) {
      const colour = getComputedStyle(n).backgroundColor;
      if (colour && colour !== 'rgba(0, 0, 0, 0)' && colour !== 'transparent') return colour;
    }
    return 'rgb(255, 255, 255)';
  };
  // Plots shown (the weight view's stored-levels plot is hidden until a converted file has integer weights).
  return [...root.querySelectorAll('.tfopt-plot')].filter((figure) => figure.getClientRects().length > 0).map((figure) => ({
    background: under(figure),
    plotarea: getComputedStyle(figure.querySelector('.plotarea_background')).fill,
    theme_text: (() => {  // the theme's text colour where the plot is, resolved by the browser
      const probe = figure.appendChild(document.createElement('span'));
      probe.style.color = 'var(--jp-content-font-color1)';
      const colour = getComputedStyle(probe).color;
      probe.remove();
      return colour;
    })(),
    texts: [...figure.querySelectorAll('text')]
      .filter((t) => t.textContent.trim() && t.getClientRects().length > 0)
      .map((t) => ({ text: t.textContent, fill: getComputedStyle(t).fill,
                     kind: t.classList.contains('axislabel') ? 'label' : t.closest('.tick') ? 'tick' : 'mark' })),
    bars: [...new Set([...figure.querySelectorAll('rect.bar')].map((r) => getComputedStyle(r).fill))],
  }));
}"""

# The Studio's own words around the plots (zeros box, latency caption, Budget / float help) and their background.
TEXT_COLOURS = """(root, selectors) => selectors.map((selector) => {
  const node = root.querySelector(selector);
  let colour = 'rgb(255, 255, 255)';
  for (let n = node; n; n = n.parentElement) {
    const c = getComputedStyle(n).backgroundColor;
    if (c && c !== 'rgba(0, 0, 0, 0)' && c !== 'transparent') { colour = c; break; }
  }
  return { selector, text: node.textContent.slice(0, 40), fill: getComputedStyle(node).color, background: colour };
})"""
STUDIO_TEXTS = [".tfopt-zeros", ".tfopt-latency-caption", ".tfopt-sensitivity-help"]


def _rgba(css: str) -> tuple[float, float, float, float]:
    numbers = [float(n) for n in re.findall(r"[\d.]+", css)]
    if css.startswith("#"):
        return tuple(int(css[i:i + 2], 16) for i in (1, 3, 5)) + (1.0,)
    return (*numbers[:3], numbers[3] if len(numbers) > 3 else 1.0)


def contrast(foreground: str, background: str) -> float:
    """WCAG contrast ratio of `foreground` (alpha blended over `background`) against `background`."""
    *bg, _ = _rgba(background)
    *fg, alpha = _rgba(foreground)
    fg = [alpha * f + (1 - alpha) * b for f, b in zip(fg, bg)]

    def luminance(rgb):
        linear = [c / 255 / 12.92 if c / 255 <= 0.04045 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in rgb]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    high, low = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def assert_plots_readable(root, dark: bool, levels: bool = False) -> list[dict]:
    """Every plot drawn, their text at 4.5:1 or more against what is under them, the bars at 3:1, the plot area
    the page's own background; `dark`: that background is dark; `levels`: the weight view also shows the converted
    file's stored levels (after a run). Returns the measurements."""
    plots = root.evaluate(PLOT_COLOURS)
    expected = ["the weight histogram", *(["the stored levels"] if levels else []), "the results plot"]
    assert len(plots) == len(expected), f"expected {', '.join(expected)}; got {len(plots)} plots"
    for plot in plots:
        background = plot["background"]
        assert (contrast(background, "rgb(0, 0, 0)") < 3) == dark, f"background {background} (dark={dark})"
        assert _rgba(plot["plotarea"])[3] == 0, f"plot area filled with {plot['plotarea']}: not the theme's"
        kinds = {text["kind"] for text in plot["texts"]}
        assert {"label", "tick"} <= kinds, plot["texts"]
        for text in plot["texts"]:
            ratio = contrast(text["fill"], background)
            assert ratio >= 4.5, f"{text['text']!r} ({text['kind']}) in {text['fill']} on {background}: {ratio:.2f}"
        for fill in plot["bars"]:
            assert contrast(fill, background) >= 3, f"bars in {fill} on {background}"
    return plots


def assert_studio_text_readable(root) -> None:
    for item in root.evaluate(TEXT_COLOURS, STUDIO_TEXTS):
        ratio = contrast(item["fill"], item["background"])
        assert ratio >= 4.5, f"{item['selector']} ({item['text']!r}) in {item['fill']} on {item['background']}: {ratio:.2f}"


def _rgb(colour: str) -> str:
    return "rgb({}, {}, {})".format(*(int(colour[i:i + 2], 16) for i in (1, 3, 5)))


def test_plots_follow_jupyterlab_dark_theme(open_notebook, page, page_log, shot, jupyterlab_theme):
    notebook = open_notebook([DARK_STUDIO])
    studio_box = notebook.output(0).locator(".tfopt-studio")
    wait_for_bars(page, studio_box, ("float", "optimized"))
    studio_box.locator(".tfopt-results .tfopt-plot .dot").first.wait_for()
    assert_plots_readable(studio_box, dark=False)
    jupyterlab_theme("JupyterLab Dark")
    plots = assert_plots_readable(studio_box, dark=True)
    shot("dark", studio_box)
    # The labels are the theme's text colour (bqplot's own default makes them orange in a dark JupyterLab).
    for plot in plots:
        labels = {text["fill"] for text in plot["texts"] if text["kind"] == "label"}
        assert labels == {plot["theme_text"]}, plot["texts"]
    assert {_rgb(colour) for _, _, colour in SERIES[:2]} <= set(plots[0]["bars"])
    assert_studio_text_readable(studio_box)
    assert not page_log.page_errors, page_log.page_errors


def test_plots_follow_vscode_dark_theme(proxy_page, live_execute, page_log, shot):
    page, execute = proxy_page, live_execute
    vscode_theme(page, True, "#live")
    execute(DARK_STUDIO.replace("\nstudio\n", "\ndisplay(studio)\n"))
    live = page.locator("#live")
    live.locator(".tfopt-studio").wait_for()
    wait_for_bars(page, live, ("float", "optimized"))
    live.locator(".tfopt-results .tfopt-plot .dot").first.wait_for()
    assert_plots_readable(live, dark=True)
    assert_studio_text_readable(live)
    shot("dark", live)
    assert not page.evaluate("window.vscodeProxy.errors")
    assert not page_log.page_errors, page_log.page_errors

