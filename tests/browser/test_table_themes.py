"""The layer table and the Studio's error line read in dark themes: JupyterLab's "JupyterLab Dark", and VS Code's dark
theme through VS Code's widget manager (its `--vscode-*` colours on the document, as VS Code sets them; the table
reads them before JupyterLab's `--jp-*`, so it needs no mapping of one to the other).

Each text's colour is measured against what is really under it: the backgrounds of the element and of every
ancestor composited in order (the error line's tint is see-through), every colour turned into sRGB by drawing it
(color-mix() and `color(srgb ...)` included). WCAG asks 4.5:1 of text this size. Light and dark screenshots before
and after an edit are kept.
"""

from __future__ import annotations

import pytest
import test_vscode

pytestmark = pytest.mark.browser

proxy_page = test_vscode.proxy_page

THEMED_STUDIO = """
import tfopt_widgets as tw
from tfopt_widgets.demo import digits_model

studio = tw.Studio(digits_model(train=False), target="edgetpu")
studio.table.show_placement({"conv1": (True, ""), "dense": (False, "stays float: runs on the CPU"),
                             "dropout": (None, "")}, "Edge TPU")
studio.plan.prune("dense", sparsity=0.5)
studio.error = "Layer 'pool' (MaxPooling2D): it has no weights to prune; untick it."
studio
"""

# What the user reads in the table and the error line: (what, selector).
TEXTS = [
    ("heading", ".tfopt-head .tfopt-lines"), ("layer name", ".tfopt-rows .tfopt-name"),
    ("type or shape", ".tfopt-rows [role=cell] > .tfopt-lines"), ("number", ".tfopt-rows .tfopt-num"),
    ("number box", ".tfopt-rows input[type=number]"), ("select", ".tfopt-table select"),
    ("toolbar button", ".tfopt-toolbar button"), ("status", ".tfopt-status"), ("label", ".tfopt-muted"),
    ("badge", ".tfopt-badge"), ("error", ".tfopt-error-message"), ("dismiss", ".tfopt-error button"),
]

# For each shown, enabled element of TEXTS: its text colour and the colour under it, as sRGB, and their WCAG ratio;
# and the colour under the table.
CONTRAST = """(root, texts) => {
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = 1;
  const context = canvas.getContext('2d', { willReadFrequently: true });
  const rgba = (css) => {
    context.clearRect(0, 0, 1, 1);
    context.fillStyle = 'rgba(0, 0, 0, 0)';
    context.fillStyle = css;
    context.fillRect(0, 0, 1, 1);
    const [r, g, b, a] = context.getImageData(0, 0, 1, 1).data;
    return [r, g, b, a / 255];
  };
  const over = (top, below) => below.map((c, i) => top[3] * top[i] + (1 - top[3]) * c);
  const under = (node) => {
    const layers = [];
    for (let n = node; n; n = n.parentElement) layers.push(rgba(getComputedStyle(n).backgroundColor));
    return layers.reverse().reduce((colour, layer) => over(layer, colour), [255, 255, 255]);
  };
  const luminance = (rgb) => {
    const [r, g, b] = rgb.map((c) => { c /= 255; return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const ratio = (a, b) => {
    const [high, low] = [luminance(a), luminance(b)].sort((x, y) => y - x);
    return (high + 0.05) / (low + 0.05);
  };
  const found = [];
  for (const [what, selector] of texts) {
    for (const node of root.querySelectorAll(selector)) {
      if (!node.getClientRects().length || node.matches(':disabled')) continue;
      const background = under(node);
      const colour = over(rgba(getComputedStyle(node).color), background);
      found.push({ what, text: (node.value || node.textContent).trim().slice(0, 40), colour: colour.map(Math.round),
                   background: background.map(Math.round), ratio: ratio(colour, background) });
    }
  }
  return { found, table: luminance(under(root.querySelector('.tfopt-rows .tfopt-row:not(.tfopt-odd):not(.tfopt-selected)'))) };
}"""


def assert_readable(root, dark: bool) -> None:
    """Every text of TEXTS at 4.5:1 or more against what is under it; the table dark (or light) as the theme is."""
    measured = root.evaluate(CONTRAST, TEXTS)
    seen = {item["what"] for item in measured["found"]}
    assert seen == {what for what, _ in TEXTS}, f"not measured: {({what for what, _ in TEXTS}) - seen}"
    poor = [item for item in measured["found"] if item["ratio"] < 4.5]
    assert poor == [], "\n".join(f"{p['what']} {p['text']!r}: {p['colour']} on {p['background']}: {p['ratio']:.2f}"
                                 for p in poor)
    assert (measured["table"] < 0.2) == dark, f"the table's background has luminance {measured['table']:.2f}"


def test_table_and_error_read_in_jupyterlab_light_and_dark(open_notebook, page, page_log, shot, jupyterlab_theme):
    notebook = open_notebook([THEMED_STUDIO])
    studio = notebook.output(0).locator(".tfopt-studio")
    page.get_by_label("placement of dense: CPU fallback: stays float: runs on the CPU").wait_for()
    studio.locator(".tfopt-error-message").wait_for()
    assert_readable(studio, dark=False)
    shot("light-before-edit", studio)

    jupyterlab_theme("JupyterLab Dark")
    assert_readable(studio, dark=True)
    shot("dark-before-edit", studio)
    # An edit in the dark: the ticked row, its folded neighbours and the selected row still read.
    page.get_by_label("quantize conv2", exact=True).check()
    page.get_by_label("show weights of conv2", exact=True).click()
    page.get_by_label("quantize bn2", exact=True).wait_for()
    page.wait_for_function("() => document.querySelector('[aria-label=\"quantize bn2\"]').checked")
    assert_readable(studio, dark=True)
    shot("dark-after-edit", studio)

    jupyterlab_theme("JupyterLab Light")
    assert_readable(studio, dark=False)
    shot("light-after-edit", studio)
    assert not page_log.page_errors


# VS Code's "Dark Modern" colours that the table and the error line read, set on the document as VS Code sets every
# theme colour for a notebook output, with the body in the editor's colours.
VSCODE_DARK = """
html { --vscode-editor-background: #1f1f1f; --vscode-editor-foreground: #cccccc; --vscode-foreground: #cccccc;
  --vscode-descriptionForeground: #9d9d9d; --vscode-input-background: #313131; --vscode-input-foreground: #cccccc;
  --vscode-input-border: #3c3c3c; --vscode-panel-border: #2b2b2b; --vscode-editorWidget-background: #202020;
  --vscode-button-background: #0078d4; --vscode-button-foreground: #ffffff; --vscode-focusBorder: #0078d4;
  --vscode-textLink-foreground: #4daafc; --vscode-inputValidation-errorBackground: #5a1d1d;
  --vscode-inputValidation-errorBorder: #be1100; --vscode-errorForeground: #f85149; }
body { background-color: var(--vscode-editor-background); color: var(--vscode-editor-foreground); }
"""


def test_table_and_error_read_in_vscode_dark(proxy_page, page_log, shot):
    import tfopt_widgets as tw
    from tfopt_widgets.demo import digits_model

    studio = tw.Studio(digits_model(train=False), target="edgetpu")
    studio.table.show_placement({"conv1": (True, ""), "dense": (False, "stays float: runs on the CPU"),
                                 "dropout": (None, "")}, "Edge TPU")
    studio.plan.prune("dense", sparsity=0.5)
    studio.error = "Layer 'pool' (MaxPooling2D): it has no weights to prune; untick it."
    page = proxy_page
    page.evaluate("(css) => { document.body.classList.replace('vscode-light', 'vscode-dark'); "
                  "document.head.appendChild(Object.assign(document.createElement('style'), {textContent: css})); }",
                  VSCODE_DARK)
    page.evaluate("(state) => window.vscodeProxy.renderSaved(state)", test_vscode.saved_state(studio))
    saved = page.locator("#saved")
    saved.get_by_label("placement of dense: CPU fallback: stays float: runs on the CPU").wait_for()
    assert_readable(saved.locator(".tfopt-studio"), dark=True)
    # The table's colours are VS Code's own: its inputs and its error tint.
    colours = saved.evaluate("""(root) => [getComputedStyle(root.querySelector('.tfopt-rows input[type=number]')).backgroundColor,
      getComputedStyle(root.querySelector('.tfopt-error')).backgroundColor]""")
    assert colours == ["rgb(49, 49, 49)", "rgb(90, 29, 29)"], colours
    shot("vscode-dark", saved)
    assert not test_vscode.proxy_errors(page)
    assert not page_log.external_requests and not page_log.page_errors
