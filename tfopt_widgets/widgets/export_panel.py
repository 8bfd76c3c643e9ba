"""Export buttons: save the plan as JSON, save the last .tflite file, show the plan as Python code.

"Show Python code" appears only when the engine has ``Plan.to_python``. Files go to the kernel's working folder
(the notebook's folder), and the message says exactly where. A refused export goes to ``on_error`` (the Studio shows
it).
"""

from __future__ import annotations

import html

import ipywidgets as widgets

from ..errors import Error
from ..plan import Plan


class ExportPanel(widgets.VBox):
    """Buttons that export what the Studio holds; ``studio`` provides save_plan(), save_tflite() and plan.

    ``on_error(error)`` gets an export the engine refuses (without it the error is raised).
    """

    def __init__(self, studio, on_error=None):
        self._studio, self._on_error = studio, on_error
        self.plan_button = widgets.Button(description="Save plan JSON", icon="download",
                                          tooltip="Write the plan to <model>-plan.json next to the notebook",
                                          layout=widgets.Layout(width="auto"))
        self.tflite_button = widgets.Button(description="Save .tflite", icon="download",
                                            tooltip="Write the last converted file next to the notebook",
                                            layout=widgets.Layout(width="auto"))
        buttons = [self.plan_button, self.tflite_button]
        self.code_button = None
        if hasattr(Plan, "to_python"):
            self.code_button = widgets.Button(description="Show Python code", icon="code",
                                              layout=widgets.Layout(width="auto"))
            self.code_button.on_click(lambda _: self.show_code())
            buttons.append(self.code_button)
        self.message = widgets.HTML()
        super().__init__([widgets.HBox(buttons, layout=widgets.Layout(flex_flow="row wrap")), self.message])
        self.add_class("tfopt-export")
        self.plan_button.on_click(lambda _: self._save(studio.save_plan, "plan"))
        self.tflite_button.on_click(lambda _: self._save(studio.save_tflite, ".tflite file"))

    def _report(self, error: Error) -> None:
        if self._on_error is None:
            raise error
        self._on_error(error)

    def _save(self, save, what: str) -> None:
        try:
            path = save()
        except Error as error:
            self._report(error)
            return
        self.message.value = f"Saved the {html.escape(what)} to <code>{html.escape(str(path.resolve()))}</code>."

    def show_code(self) -> None:
        """Show the plan as a standalone Python script (needs Plan.to_python)."""
        studio = self._studio
        settings = {"target": studio.target, "model": studio.model, "quantization": studio.quantization or None,
                    "epochs": int(studio.panel.epochs), "learning_rate": float(studio.panel.learning_rate) or None}
        try:
            try:
                code = studio.plan.to_python(**settings)
            except TypeError:  # an engine whose to_python takes no settings
                code = studio.plan.to_python()
        except Error as error:
            self._report(error)
            return
        self.message.value = (f"<pre style='max-height:300px;overflow:auto;font-size:12px'>{html.escape(code)}</pre>")
