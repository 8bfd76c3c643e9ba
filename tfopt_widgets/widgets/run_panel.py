"""The run panel: fine-tuning settings, "Optimize and convert", progress per stage and step, and cancel.

It only collects settings and shows progress; the Studio does the work (in a background thread) and calls
:meth:`RunPanel.show_progress`.

>>> panel = RunPanel(epochs=2)
>>> panel.on_run(lambda panel: print(panel.epochs))
>>> panel.run()       # what a click on the button does
2
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import traitlets

# Words for the engine's stage names in the progress label.
STAGE_WORDS = {
    "baseline": "float32 baseline: converting and evaluating",
    "prune": "pruning: fine-tuning",
    "cluster": "clustering: fine-tuning",
    "quantize": "quantization-aware training",
    "convert": "converting to TensorFlow Lite",
    "evaluate": "evaluating the TFLite file",
    "sensitivity": "sensitivity: scoring each layer compressed alone",
}


class RunPanel(widgets.VBox):
    """Epochs, learning rate, the run and cancel buttons and a progress bar."""

    epochs = traitlets.Int(2, help="fine-tuning epochs per stage (prune, cluster, quantize)")
    learning_rate = traitlets.Float(0.0, help="fine-tuning learning rate; 0 keeps the model's optimizer setting")
    running = traitlets.Bool(False, help="True while a run is in progress")
    stage = traitlets.Unicode("", help="the stage running now (baseline, prune, cluster, quantize, convert, "
                                       "evaluate, sensitivity) or '' when idle")
    step = traitlets.Int(0, help="steps done in the current stage")
    total = traitlets.Int(0, help="steps in the current stage (0: unknown)")
    message = traitlets.Unicode("", help="the last status line (done, cancelled)")

    def __init__(self, *, epochs: int = 2, learning_rate: float = 0.0):
        self._run_handlers, self._cancel_handlers = widgets.CallbackDispatcher(), widgets.CallbackDispatcher()
        self.epochs_input = widgets.BoundedIntText(value=epochs, min=1, max=1000, description="Epochs",
                                                   layout=widgets.Layout(width="150px"),
                                                   style={"description_width": "55px"})
        self.learning_rate_input = widgets.BoundedFloatText(
            value=learning_rate, min=0.0, max=1.0, step=1e-4, description="Learning rate",
            tooltip="0 keeps the model's own optimizer setting", layout=widgets.Layout(width="200px"),
            style={"description_width": "95px"})
        self.run_button = widgets.Button(description="Optimize and convert", button_style="primary", icon="play",
                                         tooltip="Fine-tune with the plan, convert for the target, evaluate",
                                         layout=widgets.Layout(width="auto"))
        self.cancel_button = widgets.Button(description="Cancel", icon="stop", disabled=True,
                                            tooltip="Stop the run; your model stays unchanged",
                                            layout=widgets.Layout(width="auto"))
        self.bar = widgets.IntProgress(value=0, min=0, max=1, layout=widgets.Layout(width="100%"))
        self.label = widgets.HTML()
        super().__init__([widgets.HBox([self.epochs_input, self.learning_rate_input, self.run_button,
                                        self.cancel_button], layout=widgets.Layout(flex_flow="row wrap")),
                          self.bar, self.label], layout=widgets.Layout(width="100%"))
        self.add_class("tfopt-run-panel")
        widgets.link((self, "epochs"), (self.epochs_input, "value"))
        widgets.link((self, "learning_rate"), (self.learning_rate_input, "value"))
        self.epochs, self.learning_rate = epochs, learning_rate
        self.run_button.on_click(lambda _: self.run())
        self.cancel_button.on_click(lambda _: self.cancel())

    # -- events ---------------------------------------------------------------------------------------------
    def on_run(self, callback, remove: bool = False) -> None:
        """Call ``callback(panel)`` when "Optimize and convert" is clicked (or stop with ``remove=True``)."""
        self._run_handlers.register_callback(callback, remove=remove)

    def on_cancel(self, callback, remove: bool = False) -> None:
        """Call ``callback(panel)`` when "Cancel" is clicked (or stop with ``remove=True``)."""
        self._cancel_handlers.register_callback(callback, remove=remove)

    def run(self) -> None:
        """Do what a click on "Optimize and convert" does."""
        if not self.running:
            self._run_handlers(self)

    def cancel(self) -> None:
        """Do what a click on "Cancel" does."""
        self._cancel_handlers(self)

    # -- progress -------------------------------------------------------------------------------------------
    @traitlets.observe("running")
    def _running_changed(self, change) -> None:
        self.run_button.disabled = change["new"]
        self.cancel_button.disabled = not change["new"]
        self.epochs_input.disabled = self.learning_rate_input.disabled = change["new"]

    def show_progress(self, stage: str, step: int, total: int) -> None:
        """Show ``step`` of ``total`` in ``stage`` (total 0: a stage of unknown length)."""
        with self.hold_trait_notifications():
            self.stage, self.step, self.total = stage, int(step), int(total)
        self.bar.max = max(int(total), 1)
        self.bar.value = min(int(step), self.bar.max) if total else 0
        self.bar.bar_style = "info"
        words = STAGE_WORDS.get(stage, stage)
        count = f" (step {step:,} of {total:,})" if total else "..."
        self.label.value = f"<span class='tfopt-progress'>{html.escape(words)}{count}</span>"

    def finish(self, message: str, style: str = "success") -> None:
        """End of a run: idle state and ``message`` (``style``: success, warning or danger)."""
        with self.hold_trait_notifications():
            self.stage, self.message, self.running = "", message, False
        self.bar.bar_style = style
        self.bar.value = self.bar.max if style == "success" else self.bar.value
        self.label.value = f"<span class='tfopt-progress'>{html.escape(message)}</span>"
