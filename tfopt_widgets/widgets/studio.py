"""The Studio: the whole tool in one notebook cell, a view and remote control over the engine.

>>> studio = tw.Studio(model, train_data=(x_train, y_train), validation_data=(x_test, y_test), target="cpu")
>>> studio                          # header, layer table, weight view, run panel, results, export
>>> studio.plan.prune("dense", sparsity=0.75)   # the table follows
>>> studio.run(wait=True)           # what "Optimize and convert" does; wait=True blocks until it is done
>>> studio.results                  # float32 baseline first, then one row per run
>>> studio.analyze(wait=True)       # "Analyze sensitivity": tw.sensitivity, shown as a heat map in the table
>>> studio.suggest_plan(budget=0.01)  # "Suggest plan": tw.suggest_plan fills the table (still editable)

Runs and analyses happen in a background thread so the kernel stays responsive and "Cancel" can stop them (a
conversion runs in a worker process, which Cancel kills: tw.run's ``worker``); errors are shown in the widget
(``studio.error``) rather than lost in a log. The run panel shows each stage as it goes (``studio.progress``).
"""

from __future__ import annotations

import html
import threading
from pathlib import Path

import ipywidgets as widgets
import traitlets

from ..errors import Cancelled, DataError, Error, TargetError
from ..pipeline import plan_summary, training_inputs, write_atomically
from ..plan import Plan
from ..progress import Progress, interruptible
from ..targets import QUANTIZATIONS, TARGETS, get_target
from .export_panel import ExportPanel
from .layer_table import LayerTable
from .results_view import ResultsView
from .run_panel import RunPanel
from .sensitivity_panel import SensitivityPanel, suggestion_text
from .weight_view import WeightView, folded_batch_norms

PICKABLE_TARGETS = ("cpu", "gpu", "edgetpu", "hexagon")
MODE_NAMES = {"none": "float32 (none)", "dynamic": "dynamic range", "float16": "float16", "int8": "int8 (full integer)",
              "int16x8": "int16x8"}  # float32 is the baseline every run is compared with


class Studio(widgets.VBox):
    """Per-layer quantize / prune / cluster for a tf_keras model, converted and measured for a hardware target.

    ``train_data`` fine-tunes (and calibrates int8); ``validation_data`` is what accuracy is measured on (the
    training data when it is absent). ``studio.plan`` is the live :class:`~tfopt_widgets.Plan`. ``sensitivity``
    takes a :class:`~tfopt_widgets.SensitivityReport` measured before (e.g. on a Dask cluster) to show at once.
    """

    target = traitlets.Unicode("cpu", help="the hardware target converted for: cpu, gpu, edgetpu or hexagon")
    quantization = traitlets.Unicode("", help="the post-training mode; '' uses the target's natural mode")
    error = traitlets.Unicode("", help="the last error, shown in the widget; '' when there is none")

    def __init__(self, model, *, train_data=None, validation_data=None, target: str = "cpu",
                 quantization: str | None = None, plan: Plan | None = None, epochs: int = 2,
                 learning_rate: float | None = None, sensitivity=None, budget: float = 0.01):
        from ..model.inspection import inspect
        from ..techniques.optimization import kernels, optimizer_setting
        from ..tflite.worker import shared_worker

        self.model = model
        self.info = inspect(model)
        self.train_data, self.validation_data = train_data, validation_data
        self._lock = threading.RLock()
        self.progress = Progress()  # the current (or last) run's progress; each run or analysis gets a new one
        self._thread: threading.Thread | None = None
        self._baseline = None  # the float32 baseline's RunResult, made on the first run
        self._last_run = None  # the last run's RunResult
        self._sensitivity = None
        self._suggestion = None  # (plan, target, mode, estimate) of the last "Suggest plan"
        self._result_handlers, self._error_handlers = widgets.CallbackDispatcher(), widgets.CallbackDispatcher()

        self.table = LayerTable(self.info, plan if plan is not None else Plan(), selected=_largest_layer(self.info))
        self.table.on_error(self._show_error)
        self.weights = WeightView(layer=self.table.selected)
        self.weights.set_weights(kernels(model))
        traitlets.dlink((self.table, "selected"), (self.weights, "layer"))
        self.panel = RunPanel(epochs=epochs, learning_rate=learning_rate or 0.0,
                              optimizer=optimizer_setting(model) or "")
        self.panel.on_run(lambda _: self.run())
        self.panel.on_cancel(lambda _: self.cancel())
        self.sensitivity_panel = SensitivityPanel(budget=budget)
        self.sensitivity_panel.on_analyze(lambda _: self.analyze())
        self.sensitivity_panel.on_suggest(lambda _: self.suggest_plan())
        traitlets.dlink((self.sensitivity_panel, "budget"), (self.table, "budget"))
        traitlets.dlink((self.panel, "running"), (self.sensitivity_panel, "busy"))
        self.results_view = ResultsView()
        self.export = ExportPanel(self, on_error=self._show_error)
        self._error_html = widgets.HTML(layout=widgets.Layout(flex="1 1 auto"))
        dismiss = widgets.Button(description="Dismiss", layout=widgets.Layout(width="auto"))
        dismiss.on_click(lambda _: setattr(self, "error", ""))
        self._error_box = widgets.HBox([self._error_html, dismiss], layout=widgets.Layout(display="none"))
        self._error_box.add_class("tfopt-error")
        header = self._header()
        work = widgets.HBox([widgets.VBox([self.weights], layout=widgets.Layout(flex="1 1 420px", min_width="0")),
                             widgets.VBox([_heading("Run"), self.panel, _heading("Export"), self.export],
                                          layout=widgets.Layout(flex="1 1 360px", min_width="0"))],
                            layout=widgets.Layout(flex_flow="row wrap", width="100%"))
        super().__init__([header, self._error_box, self.sensitivity_panel, self.table, work, _heading("Results"),
                          self.results_view], layout=widgets.Layout(width="100%"))
        self.add_class("tfopt-studio")
        self.target = get_target(target).name
        self.quantization = quantization or ""
        self._target_changed({"new": self.target})
        if sensitivity is not None:
            self.sensitivity = sensitivity
        if train_data is not None or validation_data is not None:
            shared_worker().start()  # it loads TensorFlow meanwhile, so the first run does not wait for it

    # -- header: model facts, target and mode pickers ---------------------------------------------------------
    def _header(self) -> widgets.Widget:
        info = self.info
        facts = widgets.HTML(f"<div style='line-height:1.5'><b style='font-size:15px'>{html.escape(info.name)}</b> &nbsp; "
                             f"{len(info.layers):,} layers · {info.params:,} params · "
                             f"{info.weight_bytes / 1e6:,.2f} MB float32 weights</div>")
        self._target_picker = widgets.Dropdown(options=[(TARGETS[n].title, n) for n in PICKABLE_TARGETS],
                                               description="Target", layout=widgets.Layout(width="230px"),
                                               style={"description_width": "50px"})
        self._mode_picker = widgets.Dropdown(description="Mode", layout=widgets.Layout(width="250px"),
                                             style={"description_width": "45px"})
        self._summary = widgets.HTML()
        widgets.link((self, "target"), (self._target_picker, "value"))
        self._mode_picker.observe(lambda change: setattr(self, "quantization", change["new"] or ""), "value")
        return widgets.VBox([facts, widgets.HBox([self._target_picker, self._mode_picker, self._summary],
                                                 layout=widgets.Layout(flex_flow="row wrap", align_items="center"))])

    @traitlets.validate("target")
    def _valid_target(self, proposal):
        name = get_target(proposal["value"]).name
        if name not in PICKABLE_TARGETS:
            raise TargetError(f"The Studio converts for {', '.join(PICKABLE_TARGETS)}; float32 is the baseline "
                              "every run is compared with.", field="target")
        return name

    @traitlets.observe("target")
    def _target_changed(self, change) -> None:
        if not hasattr(self, "_mode_picker"):
            return
        target = TARGETS[change["new"]]
        self.table.show_target(target)
        natural = target.quantization_for(None, calibrated=self.train_data is not None)
        options = [(MODE_NAMES.get(mode, mode) + (" (default)" if mode == natural else ""), mode)
                   for mode in target.allowed_quantizations]
        self._mode_picker.options = options
        self._mode_picker.layout.display = None if len(options) > 1 else "none"
        keep = self.quantization if self.quantization in target.allowed_quantizations else natural
        self._mode_picker.value = keep
        self.quantization = keep
        self._show_summary()

    @traitlets.validate("quantization")
    def _valid_quantization(self, proposal):
        mode = proposal["value"]
        if mode and mode not in TARGETS[self.target].allowed_quantizations:
            TARGETS[self.target].quantization_for(mode, calibrated=True)  # raises TargetError with the reason
        return mode

    @traitlets.observe("quantization")
    def _quantization_changed(self, change) -> None:
        if hasattr(self, "_mode_picker") and change["new"] and self._mode_picker.value != change["new"]:
            self._mode_picker.value = change["new"]
        if hasattr(self, "_summary"):
            self._show_summary()

    def _show_summary(self) -> None:
        target = TARGETS[self.target]
        mode = QUANTIZATIONS.get(self.quantization, "")
        self._summary.value = (f"<div class='tfopt-target-summary' style='line-height:1.35;font-size:12px'>"
                               f"{html.escape(target.summary)}<br><i>Mode:</i> {html.escape(mode)}</div>")

    # -- the plan ---------------------------------------------------------------------------------------------
    @property
    def plan(self) -> Plan:
        """The live Plan: table edits change it; editing it (or assigning another) updates the table."""
        return self.table.plan

    @plan.setter
    def plan(self, plan: Plan) -> None:
        self.table.plan = plan

    @property
    def results(self):
        """Every run as a pandas DataFrame, the float32 baseline first."""
        return self.results_view.results

    # -- running ----------------------------------------------------------------------------------------------
    def run(self, wait: bool = False) -> Studio:
        """Optimize with the plan, convert for the target and evaluate: what "Optimize and convert" does.

        Runs in a background thread; ``wait=True`` blocks until it is done. Errors go to ``studio.error``.
        """
        settings = {"plan": self.plan.copy(), "target": self.target, "quantization": self.quantization or None,
                    "epochs": int(self.panel.epochs), "learning_rate": float(self.panel.learning_rate) or None}
        return self._start(lambda: self._run_job(settings), wait)

    def analyze(self, wait: bool = False, **options) -> Studio:
        """Measure each layer's sensitivity (``tw.sensitivity``): what "Analyze sensitivity" does.

        Measured on the validation data (or the training data), int8 calibrated on the training inputs; ``options``
        go to ``tw.sensitivity`` (e.g. ``samples=200``, ``levels=...``, ``executor=client.get_executor()``); on a
        target that runs int4 weights (cpu) the quantize levels are int8 and int4, so "Suggest plan" can mix
        precisions. Runs in the background like :meth:`run`; the table then shows the drops as a heat map.
        """
        return self._start(lambda: self._analyze_job(options), wait)

    def _start(self, job, wait: bool) -> Studio:
        """Run ``job()`` (which returns the status line) in the background thread, one job at a time."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                self._show_error(Error("A run is already in progress; cancel it or wait for it to finish."))
                return self
            self.progress = Progress()
            self.progress.on_update(self.panel.show)
            self.error = ""
            self.panel.running = True
            self.table.disabled = True
            self._thread = threading.Thread(target=self._work, args=(job,), name="tfopt-studio-run", daemon=True)
            self._thread.start()
        if wait:
            self.wait()
        return self

    def wait(self, timeout: float | None = None) -> None:
        """Block until the current run or analysis (if any) has finished."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def cancel(self) -> None:
        """Stop the current run or analysis: fine-tuning at its next step, a conversion (in its worker process) or
        an evaluation within 0.2 s; the user's model is unchanged and no file is written."""
        self.progress.cancel()

    def _work(self, job) -> None:
        try:
            message = job()
        except Cancelled:
            self.panel.finish("Cancelled: your model is unchanged.", "warning")
        except Error as error:
            self._show_error(error)
            self.panel.finish("Failed: see the error above.", "danger")
        except Exception as error:  # noqa: BLE001 - a run must never die silently in a thread
            self._show_error(Error(f"Unexpected {type(error).__name__} during the run: {error}"))
            self.panel.finish("Failed: see the error above.", "danger")
        else:
            self.panel.finish(message)
        finally:
            self.table.disabled = False

    def _run_job(self, settings: dict) -> str:
        from ..pipeline import run

        baseline = self._baseline if self._baseline is not None else True
        result = run(self.model, train_data=self.train_data, validation_data=self.validation_data,
                     baseline=baseline, on_baseline=self._baseline_measured, progress=self.progress, worker=True,
                     **settings)
        row = result.to_row()
        self.results_view.add(row)
        with self._lock:
            self._last_run = result
            suggestion = self._suggestion
        if suggestion is not None and suggestion["plan"] == result.plan and suggestion["target"] == result.target:
            measured = result.drop
            self.sensitivity_panel.show(suggestion_text(suggestion) + f" Measured after this run: {measured:+.4f}"
                                        + (" (within the budget)." if measured <= suggestion["budget"] else
                                           f" (over the budget by {measured - suggestion['budget']:.4f})."))
        optimized = result.optimized
        self.weights.set_weights(optimized=optimized.weights() if optimized is not None else {},
                                 tflite=result.tflite.weights(), tflite_mode=result.tflite.quantization,
                                 tflite_levels=result.tflite.stored_levels(),
                                 tflite_scaled=folded_batch_norms(result.tflite, self.info))
        self.table.show_placement({layer: (place.accelerated, place.reason or "") for layer, place in
                                  result.tflite.compatibility.by_layer().items()}, TARGETS[result.target].title)
        unmeasured = ""
        try:
            errors = interruptible(result.layer_errors, lambda: self.progress("layer errors", 0, 0))
        except Cancelled:
            raise
        except Error as error:  # the run stands; its error column stays empty, and the message says why
            errors, unmeasured = None, f" Layer errors not measured: {error}"
        self.table.show_layer_errors(errors, result.label)
        self._result_handlers(row)
        return (f"Done: {row['run']}, {row['gzip_size']:,} B gzipped"
                + (f", accuracy {row['accuracy']:.3f}." if row.get("accuracy") is not None else ".")
                + "".join(f" Note: {notice}" for notice in result.notices) + unmeasured)

    last_run = property(lambda self: self._last_run, doc="The last run's RunResult (None before the first run); "
                        "its .layer_errors() are kept once measured.")
    optimized = property(lambda self: getattr(self._last_run, "optimized", None),
                         doc="The last run's OptimizedModel (None before a run, or when it fine-tuned nothing).")
    tflite = property(lambda self: getattr(self._last_run, "tflite", None),
                      doc="The last run's TFLiteModel (None before the first run).")

    def _baseline_measured(self, baseline) -> None:
        with self._lock:
            self._baseline = baseline
        self.results_view.add(baseline.to_row())

    @property
    def baseline(self):
        """The float32 baseline's :class:`~tfopt_widgets.RunResult` (``.tflite``, ``.metrics``), made on the first
        run; None before it."""
        return self._baseline

    # -- sensitivity --------------------------------------------------------------------------------------------
    @property
    def sensitivity(self):
        """The :class:`~tfopt_widgets.SensitivityReport` the heat map shows (None before "Analyze sensitivity")."""
        return self._sensitivity

    @sensitivity.setter
    def sensitivity(self, report) -> None:
        from ..analysis import SensitivityReport

        if report is not None and not isinstance(report, SensitivityReport):
            raise Error(f"Studio.sensitivity takes a tw.SensitivityReport (from tw.sensitivity), got "
                        f"{type(report).__name__}.", field="sensitivity")
        layers = [] if report is None else [entry.layer for entry in report.layers]
        unknown = [name for name in layers if self.info.get(name) is None]
        if unknown:
            raise Error(f"This sensitivity report is of another model: layer {unknown[0]!r} is not in model "
                        f"{self.info.name!r}.", field="sensitivity")
        self._sensitivity = report
        self.table.show_sensitivity(report)
        self.sensitivity_panel.analyzed = report is not None
        if report is None:
            self.sensitivity_panel.show("")
        else:
            int8 = "" if report.int8_value is None else f", all int8 {report.int8_value:.4f}"
            self.sensitivity_panel.show(f"{len(report.rows)} measurements on {report.samples} samples: float "
                                        f"{report.metric} {report.baseline:.4f}{int8}. Pick a budget and suggest a "
                                        "plan, or click cells of the heat map.")

    def _analyze_job(self, options: dict) -> str:
        from ..analysis import sensitivity

        data = self.validation_data if self.validation_data is not None else self.train_data
        if data is None:
            raise DataError("Sensitivity is measured on labelled data: pass validation_data=(x, y) or "
                            "train_data=(x, y) to tw.Studio.", field="validation_data")
        options.setdefault("representative_data", training_inputs(self.train_data))
        if TARGETS[self.target].precision_refusal("int4", "float") is None:
            options.setdefault("levels", {"quantize": ("int8", "int4")})
        self.progress("sensitivity", 0, 0)
        report = sensitivity(self.model, data, progress=self.progress, **options)
        self.sensitivity = report
        return f"Sensitivity measured: {len(report.rows)} variants scored in {report.wall_s:.1f} s."

    def suggest_plan(self, budget: float | None = None) -> Plan:
        """Fill the table with ``tw.suggest_plan`` for the target and mode: what "Suggest plan" does.

        ``budget`` (default: the budget box) is the largest accepted estimated drop. The plan replaces the current
        one (the table stays editable); it is returned too.
        """
        from ..analysis import suggest_plan

        report = self._sensitivity
        if report is None:
            error = Error("There is no sensitivity report yet: click “Analyze sensitivity” (studio.analyze()) "
                          "first.", field="sensitivity")
            self._show_error(error)
            raise error
        if budget is not None:
            self.sensitivity_panel.budget = budget
        budget = self.sensitivity_panel.budget
        mode = self.quantization or None
        plan = suggest_plan(report, budget=budget, target=self.target, quantization=mode)
        estimate = report.estimate(plan, self.target, mode)
        unplanned = report.estimate(Plan(), self.target, mode)
        with self._lock:
            self._suggestion = {"plan": plan.copy(), "target": self.target, "budget": budget, "estimate": estimate,
                                "unplanned": unplanned, "title": TARGETS[self.target].title}
            suggestion = self._suggestion
        self.plan.assign(plan)
        self.sensitivity_panel.show(suggestion_text(suggestion) + " Click “Optimize and convert” to measure it.")
        return self.plan

    # -- events and errors ------------------------------------------------------------------------------------
    def on_result(self, callback, remove: bool = False) -> None:
        """Call ``callback(row)`` with each finished run's results row (or stop with ``remove=True``)."""
        self._result_handlers.register_callback(callback, remove=remove)

    def on_error(self, callback, remove: bool = False) -> None:
        """Call ``callback(error)`` for every error the Studio shows (or stop with ``remove=True``)."""
        self._error_handlers.register_callback(callback, remove=remove)

    def _show_error(self, error: Exception) -> None:
        self.error = str(error)
        self._error_handlers(error)

    @traitlets.observe("error")
    def _error_changed(self, change) -> None:
        if not hasattr(self, "_error_box"):
            return
        self._error_html.value = f"<div class='tfopt-error-message'>⚠ {html.escape(change['new'])}</div>"
        self._error_box.layout.display = "flex" if change["new"] else "none"

    # -- export -----------------------------------------------------------------------------------------------
    def save_plan(self, path=None) -> Path:
        """Write the plan as JSON (default: ``<model name>-plan.json`` in the working folder)."""
        return write_atomically(Path(path or f"{self.info.name}-plan.json"), self.plan.to_json() + "\n")

    def save_tflite(self, path=None) -> Path:
        """Write the last run's .tflite file (default: ``<model>-<target>-<mode>.tflite`` in the working folder)."""
        tflite = self.tflite
        if tflite is None:
            raise Error("There is no converted model yet: click “Optimize and convert” first.", field="tflite")
        return write_atomically(path or f"{self.info.name}-{tflite.target}-{tflite.quantization}.tflite",
                                tflite.content)

    def export_report(self, path="report.html", **kwargs) -> Path:
        """Write the plan, weight histograms, every result and the target compatibility as one self-contained HTML
        file (plus Markdown with PNG figures next to it); ``kwargs`` as for ``tw.report``."""
        from ..writeups.reporting import studio_report

        return studio_report(self, path, **kwargs)

    def _repr_mimebundle_(self, **kwargs):
        # Viewers without a widget front-end (nbconvert, GitHub) show this HTML instead of "Loading widget...".
        from ..writeups.reporting import studio_summary_html

        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is not None:
            bundle["text/html"] = studio_summary_html(self)
        return bundle

    def __repr__(self) -> str:
        return f"<Studio {self.info.name!r}: {len(self.info.layers)} layers, target {self.target!r}, " \
               f"{plan_summary(self.plan, self.info)}, {len(self.results_view.rows)} results>"


def _largest_layer(info) -> str:
    weighted = [layer for layer in info.layers if layer.supports("prune").ok or layer.supports("cluster").ok]
    return max(weighted, key=lambda layer: layer.params).name if weighted else ""


def _heading(text: str) -> widgets.HTML:
    return widgets.HTML(f"<b style='font-size:14px'>{html.escape(text)}</b>")


__all__ = ["PICKABLE_TARGETS", "Studio"]
