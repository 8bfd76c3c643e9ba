"""The run panel: fine-tuning settings, "Optimize and convert", progress per stage, and cancel.

It only collects settings and shows progress; the Studio does the work (in a background thread) and shows each
report of its :class:`~tfopt_widgets.Progress` here (:meth:`RunPanel.show`): the stage in words, a bar that fills
with the steps of a fine-tuning stage (epoch and step counted) or moves without an end for a stage of unknown
length (conversion with its calibration, evaluation), and the time taken.

>>> panel = RunPanel(epochs=2)
>>> panel.on_run(lambda panel: print(panel.epochs))
>>> panel.run()       # what a click on the button does
2
"""

from __future__ import annotations

import html
import time

import ipywidgets as widgets
import traitlets

from ..progress import STAGE_WORDS, Progress

__all__ = ["STAGE_WORDS", "RunPanel"]

# The bar's colour per state (JupyterLab's variables, with the same colours for front-ends without them).
BAR_COLOURS = {"info": "var(--jp-brand-color1, #1976d2)", "success": "var(--jp-success-color1, #388e3c)",
               "warning": "var(--jp-warn-color1, #f57c00)", "danger": "var(--jp-error-color1, #d32f2f)"}
# The page is redrawn at most this often while steps arrive (a stage change always shows at once).
REDRAW_S = 0.1


class RunPanel(widgets.VBox):
    """Epochs, learning rate, the run and cancel buttons, a progress bar and a status line."""

    epochs = traitlets.Int(2, help="fine-tuning epochs per stage (prune, cluster, quantize)")
    learning_rate = traitlets.Float(0.0, help="fine-tuning learning rate; 0 keeps the model's optimizer setting")
    optimizer = traitlets.Unicode("", help="the model's own optimizer setting in words ('Adam at learning rate "
                                           "0.001'), which learning rate 0 keeps; '' when not known")
    running = traitlets.Bool(False, help="True while a run is in progress")
    stage = traitlets.Unicode("", help="the stage running now (baseline, prune, cluster, quantize, convert, "
                                       "evaluate, sensitivity) or '' when idle")
    step = traitlets.Int(0, help="steps done in the current stage")
    total = traitlets.Int(0, help="steps in the current stage (0: unknown)")
    kind = traitlets.Unicode("", help="'determinate' (steps of a known total), 'indeterminate' (a stage of unknown "
                                      "length) or '' when idle")
    elapsed = traitlets.Float(0.0, help="seconds since the run began")
    message = traitlets.Unicode("", help="the last status line (done, cancelled)")

    def __init__(self, *, epochs: int = 2, learning_rate: float = 0.0, optimizer: str = ""):
        self._run_handlers, self._cancel_handlers = widgets.CallbackDispatcher(), widgets.CallbackDispatcher()
        self._drawn_at = 0.0
        self._drawn_stage = None
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
        # What learning rate 0 means, in the panel itself (a tooltip is not seen by keyboard or touch users).
        self.learning_rate_note = widgets.HTML()
        self.learning_rate_note.add_class("tfopt-learning-rate-note")
        self.bar = widgets.HTML()
        self.label = widgets.HTML()
        super().__init__([widgets.HBox([self.epochs_input, self.learning_rate_input, self.run_button,
                                        self.cancel_button], layout=widgets.Layout(flex_flow="row wrap")),
                          self.learning_rate_note, self.bar, self.label], layout=widgets.Layout(width="100%"))
        self.add_class("tfopt-run-panel")
        widgets.link((self, "epochs"), (self.epochs_input, "value"))
        widgets.link((self, "learning_rate"), (self.learning_rate_input, "value"))
        self.epochs, self.learning_rate, self.optimizer = epochs, learning_rate, optimizer
        self.run_button.on_click(lambda _: self.run())
        self.cancel_button.on_click(lambda _: self.cancel())
        self._show_learning_rate()
        self._draw_bar(0, 1, "info")

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

    # -- settings -------------------------------------------------------------------------------------------
    @traitlets.observe("learning_rate", "optimizer")
    def _learning_rate_changed(self, change) -> None:
        if hasattr(self, "learning_rate_note"):
            self._show_learning_rate()

    def _show_learning_rate(self) -> None:
        own = f"the model's own optimizer setting ({self.optimizer})" if self.optimizer else \
            "the model's own optimizer setting"
        text = (f"Learning rate 0 = {own}." if not self.learning_rate else
                f"Fine-tuning at learning rate {self.learning_rate:g}, not {own}.")
        self.learning_rate_note.value = f"<span style='font-size:12px;opacity:0.8'>{html.escape(text, False)}</span>"

    # -- progress -------------------------------------------------------------------------------------------
    @traitlets.observe("running")
    def _running_changed(self, change) -> None:
        self.run_button.disabled = change["new"]
        self.cancel_button.disabled = not change["new"]
        self.epochs_input.disabled = self.learning_rate_input.disabled = change["new"]
        if change["new"]:
            self._drawn_stage = None
            with self.hold_trait_notifications():
                self.message, self.elapsed = "", 0.0

    def show(self, progress: Progress) -> None:
        """Show a report of the run's :class:`~tfopt_widgets.Progress` (called in the run's thread)."""
        with self.hold_trait_notifications():
            self.stage, self.step, self.total = progress.stage, progress.step, progress.total
            self.kind, self.elapsed = progress.kind, progress.elapsed
        now = time.monotonic()
        if progress.stage == self._drawn_stage and now - self._drawn_at < REDRAW_S and \
                progress.step < progress.total:
            return
        self._drawn_stage, self._drawn_at = progress.stage, now
        self._draw_bar(progress.step if progress.total else None, max(progress.total, 1), "info", progress.words())
        self.label.value = (f"<span class='tfopt-progress'>{html.escape(progress.describe(), False)} "
                            f"<span style='opacity:0.7'>({_seconds(progress.elapsed)} in all)</span></span>")

    def show_progress(self, stage: str, step: int, total: int) -> None:
        """Show ``step`` of ``total`` in ``stage`` (total 0: a stage of unknown length), without timing."""
        progress = Progress(epochs=None)
        progress(stage, step, total)
        self.show(progress)

    def finish(self, message: str, style: str = "success") -> None:
        """End of a run: idle state and ``message`` (``style``: success, warning or danger)."""
        seconds = self.elapsed
        with self.hold_trait_notifications():
            self.stage, self.kind, self.message, self.running = "", "", message, False
        # A full bar in the state's colour (an empty one would show the track, which Chromium darkens next to a
        # light accent colour).
        self._draw_bar(max(self.total, 1), max(self.total, 1), style,
                       "run finished" if style == "success" else "run stopped")
        took = f" <span style='opacity:0.7'>({_seconds(seconds)})</span>" if seconds else ""
        self.label.value = f"<span class='tfopt-progress'>{html.escape(message, False)}{took}</span>"

    def _draw_bar(self, value: int | None, maximum: int, style: str, words: str = "idle") -> None:
        """A native <progress>: with a value it fills (determinate); without one the browser animates it
        (indeterminate). Its accessible name says what runs."""
        filled = "" if value is None else f" value='{min(int(value), maximum)}'"
        self.bar.value = (f"<progress class='tfopt-progress-bar' max='{maximum}'{filled} "
                          f"aria-label='progress: {html.escape(words, quote=True)}' "
                          f"style='width:100%;height:12px;accent-color:{BAR_COLOURS[style]}'></progress>")


def _seconds(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
