"""The sensitivity bar: "Analyze sensitivity", an accuracy budget, "Suggest plan" and what they found.

Like the run panel it only collects settings and shows text; the Studio measures (``tw.sensitivity`` in its
background thread), shows the heat map in the layer table and fills the plan (``tw.suggest_plan``).

>>> bar = SensitivityPanel(budget=0.01)
>>> bar.on_suggest(lambda bar: print(bar.budget))
>>> bar.suggest()      # what a click on "Suggest plan" does
0.01
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import traitlets

_MUTED = "font-size:11px;line-height:1.4;color:var(--jp-ui-font-color2,#616161)"


class SensitivityPanel(widgets.VBox):
    """Buttons to measure sensitivity and to suggest a plan within ``budget``, and a status line."""

    budget = traitlets.Float(0.01, help="the largest accepted metric drop (0.01: one accuracy point)")
    analyzed = traitlets.Bool(False, help="True once a sensitivity report is shown: Suggest plan is enabled")
    busy = traitlets.Bool(False, help="True while the Studio is busy (a run or an analysis): buttons are disabled")

    def __init__(self, *, budget: float = 0.01):
        self._analyze_handlers, self._suggest_handlers = widgets.CallbackDispatcher(), widgets.CallbackDispatcher()
        self.analyze_button = widgets.Button(
            description="Analyze sensitivity", icon="th",
            tooltip="Compress each layer alone (int8, pruning, clustering; no fine-tuning) and measure the drop",
            layout=widgets.Layout(width="auto"))
        self.budget_input = widgets.BoundedFloatText(
            value=budget, min=0.0, max=1.0, step=0.005, description="Budget",
            tooltip="the largest accepted drop of the metric, e.g. 0.01 = one accuracy point",
            layout=widgets.Layout(width="150px"), style={"description_width": "50px"})
        self.suggest_button = widgets.Button(
            description="Suggest plan", icon="magic", disabled=True, button_style="info",
            tooltip="Fill the table with the smallest plan whose estimated drop stays within the budget",
            layout=widgets.Layout(width="auto"))
        self.status = widgets.HTML(layout=widgets.Layout(flex="1 1 300px"))
        # What the Budget box and the table's "float" column mean, in words on the page, not only in tooltips.
        self.help = widgets.HTML(
            f"<div class='tfopt-sensitivity-help' style='{_MUTED}'><b>Budget</b>: the largest drop of the metric "
            "you accept (0.01 = one accuracy point); “Suggest plan” picks the smallest file whose estimated drop "
            "stays within it. <b>float</b> column: that layer stays float when the rest of the model is converted "
            "to int8.</div>")
        # The swatches have light backgrounds of their own: their text is dark in every theme.
        swatch = "color:#1a1a1a;padding:0 4px;background:"
        self.legend = widgets.HTML(
            f"<span class='tfopt-legend' style='{_MUTED}'>"
            "Heat map of the drop with each layer compressed alone: "
            "<span style='border-bottom:2px solid #7e57c2'>8b</span> int8, "
            "<span style='border-bottom:2px solid #ef6c00'>50 75 90</span> % pruned, "
            "<span style='border-bottom:2px solid #00897b'>8 16 32</span> clusters; "
            f"<span style='{swatch}#c7ebc9'>within the budget</span> "
            f"<span style='{swatch}#fde6b0'>over it</span> "
            f"<span style='{swatch}#f4a3a3'>10× over</span>. "
            "Click a cell to plan it, a heading to sort.</span>", layout=widgets.Layout(display="none"))
        super().__init__([widgets.HBox([self.analyze_button, self.budget_input, self.suggest_button, self.status],
                                       layout=widgets.Layout(flex_flow="row wrap", align_items="center")),
                          self.help, self.legend], layout=widgets.Layout(width="100%"))
        self.add_class("tfopt-sensitivity-panel")
        widgets.link((self, "budget"), (self.budget_input, "value"))
        self.budget = budget
        self.analyze_button.on_click(lambda _: self.analyze())
        self.suggest_button.on_click(lambda _: self.suggest())

    # -- events -----------------------------------------------------------------------------------------------
    def on_analyze(self, callback, remove: bool = False) -> None:
        """Call ``callback(panel)`` when "Analyze sensitivity" is clicked (or stop with ``remove=True``)."""
        self._analyze_handlers.register_callback(callback, remove=remove)

    def on_suggest(self, callback, remove: bool = False) -> None:
        """Call ``callback(panel)`` when "Suggest plan" is clicked (or stop with ``remove=True``)."""
        self._suggest_handlers.register_callback(callback, remove=remove)

    def analyze(self) -> None:
        """Do what a click on "Analyze sensitivity" does."""
        if not self.busy:
            self._analyze_handlers(self)

    def suggest(self) -> None:
        """Do what a click on "Suggest plan" does."""
        if self.analyzed and not self.busy:
            self._suggest_handlers(self)

    # -- state ------------------------------------------------------------------------------------------------
    @traitlets.observe("analyzed", "busy")
    def _enable(self, _change=None) -> None:
        self.analyze_button.disabled = self.busy
        self.suggest_button.disabled = self.busy or not self.analyzed
        self.budget_input.disabled = self.busy
        self.legend.layout.display = None if self.analyzed else "none"

    def show(self, text: str) -> None:
        """A status line (plain text)."""
        self.status.value = f"<span class='tfopt-sensitivity-status' style='font-size:12px'>{html.escape(text)}</span>"


def suggestion_text(suggestion: dict) -> str:
    """What the bar says of a suggested plan (the Studio's record of its last ``suggest_plan``): "Suggested for
    CPU within 0.0100: 2 pruned, 1 clustered, 1 kept float, 2 with int4 weights; estimated drop +0.0080, ..."."""
    plan, estimate, unplanned = suggestion["plan"], suggestion["estimate"], suggestion["unplanned"]
    counts = [(len(plan.layers("prune")), "pruned"), (len(plan.layers("cluster")), "clustered"),
              (len(plan.float_layers), "kept float"),
              (sum(spec.weights == "int4" for spec in plan.precisions.values()), "with int4 weights")]
    what = ", ".join(f"{n} {words}" for n, words in counts if n) or "nothing fits the budget"
    text = (f"Suggested for {suggestion['title']} within {suggestion['budget']:.4f}: {what}; estimated drop "
            f"{estimate['drop']:+.4f}, kernels {unplanned['size']:,} → {estimate['size']:,} B gzipped.")
    if estimate["drop"] > suggestion["budget"]:
        text += (" The int8 conversion alone is estimated over the budget: pick a float mode (float16) or a larger "
                 "budget.")
    return text


__all__ = ["SensitivityPanel", "suggestion_text"]
