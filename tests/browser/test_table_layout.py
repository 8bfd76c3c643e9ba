"""The layer table fits in JupyterLab with the file browser open: at 1,400 px wide the whole table shows; at
1,000 px (a notebook column of about 570 px) it scrolls sideways inside its own box. At both, no text is cut: not a
heading, a type name, a badge, a button (the error line's Dismiss included), nor a select's longest option.

The placement column shows the longest target name ("Hexagon DSP") and each kind of badge; the error line shows a
real error, from typing a sparsity the plan refuses.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

LAYOUT_STUDIO = """
import tfopt_widgets as tw
from tfopt_widgets.demo import digits_model

studio = tw.Studio(digits_model(train=False), target="hexagon")
studio.table.show_placement({"conv1": (True, ""), "conv2": (True, ""), "bn2": (True, ""), "relu2": (True, ""),
                             "dense": (False, "stays float: runs on the CPU"), "dropout": (None, "")}, "Hexagon DSP")
studio
"""

# Everything in the table and the error line whose content is wider or taller than its box, a select narrower than
# its longest option, and the table's box beyond the output area's; `fits`: also the grid scrolling sideways.
CUT = """(root, fits) => {
  const problems = [];
  const name = (node) => `${node.tagName.toLowerCase()}.${node.className} "${(node.textContent || node.value || '').slice(0, 30)}"`;
  const box = (node) => node.getBoundingClientRect();
  const grid = root.querySelector('.tfopt-grid');
  const area = root.closest('.jp-OutputArea-output');
  if (box(grid).right > box(area).right + 0.5) problems.push(`the table ends ${box(grid).right - box(area).right} px beyond the output area`);
  if (area.scrollWidth > area.clientWidth) problems.push('the output area scrolls sideways, not the table');
  const selector = ['.tfopt-table .tfopt-lines', '.tfopt-table button', '.tfopt-table input', '.tfopt-badge',
                    '.tfopt-head [role=columnheader]', '.tfopt-toolbar > *', '.tfopt-error button', '.tfopt-error-message'];
  for (const node of root.querySelectorAll(selector.join(', '))) {
    if (!node.getClientRects().length) continue;
    if (node.scrollWidth > node.clientWidth || node.scrollHeight > node.clientHeight) {
      problems.push(`cut: ${name(node)}: ${node.scrollWidth}x${node.scrollHeight} in ${node.clientWidth}x${node.clientHeight}`);
    }
  }
  for (const select of root.querySelectorAll('.tfopt-table select')) {
    const natural = select.cloneNode(true);
    natural.style.width = 'auto';
    select.after(natural);
    const need = box(natural).width;
    natural.remove();
    if (box(select).width + 0.5 < need) problems.push(`select ${select.getAttribute('aria-label')}: ${box(select).width} px for ${need}`);
  }
  if (fits && grid.scrollWidth > grid.clientWidth) problems.push(`the grid needs ${grid.scrollWidth} px, has ${grid.clientWidth}`);
  if (fits) {
    for (const cell of root.querySelectorAll('.tfopt-head [role=columnheader]')) {
      if (box(cell).right > box(grid).right + 0.5) problems.push(`heading ${name(cell)} ends beyond the table`);
    }
  }
  return problems;
}"""

# The rendered text of a heading (its text's own box, not its cell's).
TEXT_BOX = """(node) => {
  const range = document.createRange();
  range.selectNodeContents(node);
  const r = range.getBoundingClientRect();
  return {left: r.left, right: r.right};
}"""


def show_file_browser(page) -> None:
    page.evaluate("() => window.jupyterapp.commands.execute('filebrowser:activate')")
    page.wait_for_function("() => !window.jupyterapp.shell.leftCollapsed "
                           "&& document.querySelector('.jp-FileBrowser').getBoundingClientRect().width > 100")


@pytest.mark.parametrize("width", [1400, 1000])
def test_table_fits_beside_the_file_browser(open_notebook, page, page_log, shot, width):
    page.set_viewport_size({"width": width, "height": 1400})
    notebook = open_notebook([LAYOUT_STUDIO])
    studio = notebook.output(0).locator(".tfopt-studio")
    page.get_by_label("prune sparsity for dense", exact=True).wait_for()
    show_file_browser(page)
    sparsity = page.get_by_label("prune sparsity for dense", exact=True)
    sparsity.fill("1.5")
    sparsity.press("Enter")
    studio.locator(".tfopt-error-message").get_by_text("sparsity").wait_for()
    page.get_by_label("placement of dense: CPU fallback: stays float: runs on the CPU").wait_for()
    page.wait_for_timeout(300)  # the notebook settles into its new width
    grid = studio.locator(".tfopt-grid")
    grid.scroll_into_view_if_needed()
    grid.evaluate("(g) => { document.activeElement.blur(); g.scrollLeft = 0; }")  # Enter left it at the box
    # The window as it is, file browser and all (an element screenshot of a tall output re-lays the page out).
    shot(f"{width}px")

    fits = width >= 1400
    assert studio.evaluate(CUT, fits) == []
    # Type names are whole, on two lines at most, and also in the cell's title.
    batch_norm = grid.get_by_role("row").filter(has=page.get_by_label("select bn2", exact=True)).get_by_role("cell").nth(2)
    assert batch_norm.get_attribute("title") == "BatchNormalization"
    assert batch_norm.inner_text().replace("\n", "") == "BatchNormalization"
    # "output shape" and "size" (the column after it since the parameter count moved into its title) read as two
    # headings.
    shape_text = grid.get_by_role("columnheader").filter(has_text="output shape").locator(".tfopt-lines")
    size_text = grid.get_by_role("columnheader").filter(has_text="size").locator(".tfopt-lines")
    gap = size_text.evaluate(TEXT_BOX)["left"] - shape_text.evaluate(TEXT_BOX)["right"]
    assert gap >= 8, f"'output shape' and 'size' are {gap:.1f} px apart"
    assert grid.get_by_role("columnheader").filter(has_text="on Hexagon DSP").is_visible()

    if not fits:
        # Narrower than the table: it scrolls sideways in its own box, and scrolled to the end its last column
        # shows whole.
        assert grid.evaluate("(g) => g.scrollWidth > g.clientWidth && getComputedStyle(g).overflowX") == "auto"
        grid.evaluate("(g) => { g.scrollLeft = g.scrollWidth; }")
        page.wait_for_timeout(100)
        edges = grid.evaluate("""(g) => {
          const cells = g.querySelectorAll('.tfopt-head [role=columnheader]');
          return {grid: g.getBoundingClientRect().right, last: cells[cells.length - 1].getBoundingClientRect().right};
        }""")
        assert edges["last"] <= edges["grid"] + 0.5, edges
        shot(f"{width}px-scrolled")
    assert not page_log.page_errors
