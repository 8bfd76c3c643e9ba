"""The layer table: one row per layer with its size, per-row quantize / prune / cluster controls, its post-training
precision (weights / activations) and, after a run, its error in the converted file.

It shows and edits a :class:`~tfopt_widgets.Plan` (the spec); the plan stays the one source of truth. Every value
that crosses to the front-end is named, and state is sent compactly so a 500-layer model stays small: the layers go
as named columns (each field name sent once, not once a layer), support reasons are sent once and referenced by
index, and the plan holds only the layers that have something planned.

The page sends edits, not plans: a custom message ``{"kind": "edits", "view": id, "seq": n, "edits": [{"layer",
"field", "value"}, ...]}`` numbered per view. Python applies them in that order to the live Plan (holding one that
arrives early until those before it are in), pushes the resulting ``plan_state`` and then answers
``{"kind": "applied", "view": id, "seq": n}``; until that answer the page shows ``plan_state`` with its own pending
edits on top. An edit is one field of one row, so an edit made before Python's previous answer arrived cannot undo
what that answer added (the BatchNormalization and activation folded into a quantized convolution).

>>> table = LayerTable(tw.inspect(model), plan)
>>> table.apply_edits([{"layer": "dense", "field": "sparsity", "value": 0.5}])  # what a message from the page does
>>> plan["dense"].prune.sparsity
0.5
>>> table.apply_edits([{"layer": "conv2", "field": "weights", "value": "int4"}])     # the precision column
>>> plan["conv2"].precision.describe()
'int4 weights, float activations'
>>> table.show_sensitivity(tw.sensitivity(model, (x_test, y_test)))   # the heat map columns
>>> table.show_layer_errors(result.layer_errors(), result.label)      # the error column, after a run
"""

from __future__ import annotations

import threading

import anywidget
import traitlets
from ipywidgets import CallbackDispatcher

from ..errors import Error, PlanError
from ..plan import CLUSTER_INITS, LayerPlan, Plan, check_precision
from ..plan.specs import precision_spec
from ..targets import get_target
from .frontend import bundle
from .table_state import (
    EMPTY_ENTRY,
    errors_state,
    layer_columns,
    plan_state,
    precision_choices,
    precision_words,
    row_state,
    sensitivity_state,
)


class LayerTable(anywidget.AnyWidget):
    """Every layer of a model with per-row quantize / prune / cluster controls that edit a Plan.

    Selecting a row (``selected``) picks the layer the weight view shows. ``placement`` carries each layer's
    placement badge after a conversion. Edits that the plan rejects are reported through ``on_error``.
    """

    _esm = bundle()
    _view = traitlets.Unicode("layer-table", help="which view of the shared front-end bundle renders this").tag(
        sync=True)

    layers = traitlets.Dict(help="the layers as named columns, {field: [value per layer]} (see layer_columns); "
                                 "reasons are indices into `reasons` (-1: none)").tag(sync=True)
    reasons = traitlets.List(traitlets.Unicode(), help="support reasons, each sent once").tag(sync=True)
    plan_state = traitlets.Dict(help="the plan: {layer: {quantize, sparsity (0: off), clusters (0: off), init, "
                                     "keep_float, weights, activations ('': no precision)}}, only planned layers. "
                                     "Python sets it after every change; the page sends edits as messages (setting "
                                     "it from Python applies the difference)").tag(sync=True)
    cluster_inits = traitlets.List(traitlets.Unicode(), default_value=list(CLUSTER_INITS),
                                   help="cluster centroid initializations offered").tag(sync=True)
    selected = traitlets.Unicode("", help="the layer whose weights the weight view shows").tag(sync=True)
    checked = traitlets.List(traitlets.Unicode(), help="rows ticked for bulk edits").tag(sync=True)
    placement = traitlets.Dict(help="after a conversion: {layer: {accelerated: true/false/null, reason: index "
                                    "into `placement_reasons` (-1: none)}}").tag(sync=True)
    placement_reasons = traitlets.List(traitlets.Unicode(), help="placement reasons, each sent once").tag(sync=True)
    quantize_groups = traitlets.Dict(help="{layer: the convolution it is quantized folded into}: its quantize box "
                                          "follows that convolution's").tag(sync=True)
    target_title = traitlets.Unicode("", help="the accelerator named by placement badges").tag(sync=True)
    disabled = traitlets.Bool(False, help="True while a run uses the plan: controls are read-only").tag(sync=True)
    sensitivity = traitlets.Dict(help="the sensitivity heat map (see sensitivity_state); {} hides its columns").tag(
        sync=True)
    budget = traitlets.Float(0.01, help="the accepted metric drop: heat map cells within it are green").tag(sync=True)
    precision_choices = traitlets.Dict(help="what the target lets the precision column offer (see "
                                            "table_state.precision_choices)").tag(sync=True)
    layer_errors = traitlets.Dict(help="each layer's error in the last converted file (see table_state.errors_state); "
                                       "{} hides the column's numbers").tag(sync=True)

    def __init__(self, info, plan: Plan | None = None, *, selected: str = "", target="cpu"):
        columns, reasons = layer_columns(info)
        groups = {layer.name: layer.group for layer in info.layers if layer.group}
        super().__init__(layers=columns, reasons=reasons, selected=selected, quantize_groups=groups)
        self._info = info
        self._target = None
        self.show_target(target)
        self._lock = threading.RLock()
        self._error_handlers = CallbackDispatcher()
        self._plan = None
        self._views: dict[str, dict] = {}  # per page view: the next edit number expected, and edits that came early
        self.on_msg(self._page_message)
        # One bound method, kept: Plan.on_change(remove=True) compares callbacks by identity, and every attribute
        # access creates a new bound method.
        self._follow_plan = self._plan_changed
        self.plan = plan if plan is not None else Plan()

    # -- the plan, both ways ----------------------------------------------------------------------------------
    @property
    def plan(self) -> Plan:
        """The live Plan this table edits."""
        return self._plan

    @plan.setter
    def plan(self, plan: Plan) -> None:
        if not isinstance(plan, Plan):
            raise PlanError(f"LayerTable.plan must be a tw.Plan, got {type(plan).__name__}.", field="plan")
        with self._lock:
            if self._plan is not None:
                self._plan.on_change(self._follow_plan, remove=True)
            self._plan = plan
            plan.on_change(self._follow_plan)
            self._plan_changed(plan)

    def _plan_changed(self, plan: Plan) -> None:
        with self._lock:
            state = plan_state(plan)
            if state != self.plan_state:
                self.set_trait("plan_state", state)

    @traitlets.observe("plan_state")
    def _table_edited(self, change) -> None:
        with self._lock:
            if change["new"] == plan_state(self._plan):
                return  # our own update echoing back
            try:
                self._apply_all(change["old"] or {}, change["new"] or {})
            except Error as error:
                self._report(error)
            finally:
                # Whatever was accepted is in the plan; show exactly that (reverting a rejected edit).
                state = plan_state(self._plan)
                if state != self.plan_state:
                    self.set_trait("plan_state", state)

    # -- edits from the page ----------------------------------------------------------------------------------
    def apply_edits(self, edits) -> None:
        """Apply edits to the live plan in order, as the page's messages do: each ``{"layer", "field", "value"}`` sets
        one field of ``plan_state`` (quantize, sparsity, clusters, init, keep_float, weights, activations) for one
        layer.

        Quantizing a layer also unticks keep float and the reverse; quantizing a convolution quantizes what folds
        into it. An edit the plan refuses changes nothing and is reported through :meth:`on_error` (raised without a
        callback) once the others have been applied.
        """
        if not isinstance(edits, (list, tuple)):
            self._report(PlanError(f"The table sent {edits!r}; expected a list of edits.", field="edits"))
            return
        refused = []
        with self._lock, self.hold_sync():  # one state update per batch, sent before the answer
            for edit in edits:
                try:
                    self._apply_edit(edit)
                except PlanError as error:
                    refused.append(error)
        if len(refused) == 1:
            self._report(refused[0])
        elif refused:
            first = refused[0]
            self._report(PlanError(f"{len(refused)} of {len(edits)} edits were refused; the first: {first}",
                                   layer=first.layer, field=first.field))

    def _apply_edit(self, edit) -> None:
        if not isinstance(edit, dict) or not {"layer", "field", "value"} <= set(edit) or not isinstance(
                edit["layer"], str):
            raise PlanError(f"The table sent the edit {edit!r}; expected {{layer, field, value}}.", field="edits")
        layer, field, value = edit["layer"], edit["field"], edit["value"]
        if field not in EMPTY_ENTRY:
            raise PlanError(f"The table sent an edit of {field!r} for layer {layer!r}; the fields are "
                            f"{', '.join(EMPTY_ENTRY)}.", layer=layer, field=field)
        if self._info.get(layer) is None:
            raise PlanError(f"The table sent an edit for layer {layer!r}, which the model does not have.",
                            layer=layer, field="layer")
        row = {**row_state(self._plan[layer]), field: value}
        if field in ("weights", "activations"):  # "" clears the precision; a first word fills in the other
            row.update(precision_words(row, field, value, self._info[layer]))
        if field in ("quantize", "keep_float") and value:  # one or the other, as the page's boxes behave
            row["keep_float" if field == "quantize" else "quantize"] = False
            if field == "quantize":
                self._check(layer, "quantize")  # before keep float is dropped: a refused edit changes nothing
        self._apply(layer, row)

    def _page_message(self, _widget, content, _buffers) -> None:
        """An edits message from a view of the page: applied in the view's own numbering, then answered."""
        if not isinstance(content, dict) or content.get("kind") != "edits":
            return
        view, seq, edits = content.get("view"), content.get("seq"), content.get("edits")
        if not isinstance(view, str) or isinstance(seq, bool) or not isinstance(seq, int):
            self._report(PlanError(f"The table sent edits without a view and number: {content!r}.", field="edits"))
            return
        unreported = []
        with self._lock:
            numbering = self._views.setdefault(view, {"next": 1, "early": {}})
            if seq >= numbering["next"]:
                numbering["early"][seq] = edits
            # Apply every message that is now next in line: one can arrive before another sent ahead of it, when
            # JupyterLab moves the widget comms to a kernel subshell while the first waits on the busy main shell.
            while numbering["next"] in numbering["early"]:
                number = numbering["next"]
                numbering["next"] += 1
                try:
                    self.apply_edits(numbering["early"].pop(number))
                except Error as error:  # no on_error callback: raised once the rest are in
                    unreported.append(error)
                finally:
                    self.send({"kind": "applied", "view": view, "seq": number})
        if unreported:
            raise unreported[0]

    # -- whole plans from Python (setting plan_state) ---------------------------------------------------------
    def _apply_all(self, old: dict, new: dict) -> None:
        for layer in sorted(set(old) | set(new)):
            before, after = _entry(layer, old.get(layer)), _entry(layer, new.get(layer))
            if before != after:
                self._apply(layer, after)

    def _apply(self, layer: str, after: dict) -> None:
        try:
            self._apply_row(layer, after)
        except PlanError as error:
            if error.layer is not None:
                raise
            # Plan's own checks do not know which row sent the value: say so.
            raise PlanError(f"Layer {layer!r}: {error}", layer=layer, field=error.field) from None

    def _apply_row(self, layer: str, after: dict) -> None:
        plan = self._plan
        if self._info.get(layer) is None:
            raise PlanError(f"The table sent an edit for layer {layer!r}, which the model does not have.",
                            layer=layer, field="layer")
        quantize, sparsity, clusters = after["quantize"], after["sparsity"], after["clusters"]
        init, keep_float = after["init"], after["keep_float"]
        if keep_float and quantize:
            raise PlanError(f"Layer {layer!r} cannot be both quantization-aware trained and kept float; untick one "
                            "of them.", layer=layer, field="keep_float")
        precision = self._precision(layer, after["weights"], after["activations"])
        if precision is not None:  # checked before anything changes: a refused precision changes nothing
            check_precision(LayerPlan(layer, quantize=bool(quantize), keep_float=bool(keep_float), precision=precision),
                            self._info[layer], self._target)
        wanted = [t for t, on in (("prune", sparsity), ("cluster", clusters), ("quantize", quantize)) if on]
        if len(wanted) > 1 and not (support := self._info[layer].supports(*wanted)).ok:
            raise PlanError(f"Layer {layer!r} ({self._info[layer].class_name}): {support.reason}", layer=layer,
                            field=wanted[-1])
        if bool(keep_float) != self._plan[layer].keep_float:
            self._plan.keep_float(layer, enabled=bool(keep_float))
        self._set_quantize(layer, bool(quantize))
        entry = plan[layer]
        if not sparsity:
            plan.remove(layer, "prune")
        elif entry.prune is None or entry.prune.sparsity != sparsity:
            self._check(layer, "prune")
            spec = entry.prune or None
            options = {} if spec is None else {"schedule": spec.schedule, "begin": spec.begin, "end": spec.end,
                                               "begin_step": spec.begin_step, "end_step": spec.end_step,
                                               "block_size": spec.block_size}
            plan.prune(layer, sparsity=_number(sparsity, layer, "sparsity"), **options)
        if not clusters:
            plan.remove(layer, "cluster")
        elif entry.cluster is None or (entry.cluster.clusters, entry.cluster.init) != (clusters, init):
            self._check(layer, "cluster")
            keep = entry.cluster.preserve_sparsity if entry.cluster else False
            plan.cluster(layer, clusters=_number(clusters, layer, "clusters", integer=True), init=init,
                         preserve_sparsity=keep)
        if precision != plan[layer].precision:
            if precision is None:
                plan.remove(layer, "precision")
            else:
                plan.precision(layer, weights=precision.weights, activations=precision.activations,
                               granularity=precision.granularity, algorithm=precision.algorithm)

    def _precision(self, layer: str, weights: str, activations: str):
        """The PrecisionSpec the row's weights / activations words ask for (None: no precision), keeping the
        granularity and algorithm the layer's precision has where they still apply."""
        if not weights and not activations:
            return None
        spec = self._plan[layer].precision
        words = (weights or None, activations or "float")
        if spec is not None:
            try:
                return precision_spec(*words, spec.granularity, spec.algorithm, layer=layer)
            except PlanError:
                pass  # e.g. blocks of int4 weights, now int8: back to the defaults
        return precision_spec(*words, "channel", "minmax", layer=layer)

    def _set_quantize(self, layer: str, on: bool) -> None:
        """Quantize a layer together with the BatchNormalization/activation that fold into it (or none of them)."""
        if self._plan[layer].quantize == on:
            return
        if on:
            self._check(layer, "quantize")
        head = self._info.quantize_group_head(layer) or layer
        group = [head, *self._info.group_members(head)]
        if on:
            self._plan.quantize(*group)
        else:
            for name in group:
                self._plan.remove(name, "quantize")

    def _check(self, layer: str, technique: str) -> None:
        support = self._info[layer].supports(technique)
        if not support.ok:
            raise PlanError(f"Cannot {technique} layer {layer!r} ({self._info[layer].class_name}): {support.reason}",
                            layer=layer, field=technique)

    # -- placement badges -------------------------------------------------------------------------------------
    def show_placement(self, placement: dict, target_title: str = "") -> None:
        """Badges from ``{layer: (accelerated True/False/None, reason)}``; an empty dict clears them."""
        reasons: dict[str, int] = {}
        state = {}
        for layer, (accelerated, reason) in placement.items():
            index = reasons.setdefault(reason, len(reasons)) if reason else -1
            state[layer] = {"accelerated": None if accelerated is None else bool(accelerated), "reason": index}
        with self.hold_sync():
            self.placement_reasons = list(reasons)
            self.placement = state
            self.target_title = target_title

    def show_target(self, target) -> None:
        """Offer the precisions ``target`` (a name or Target) runs, and check new precisions against it."""
        self._target = get_target(target)
        self.precision_choices = precision_choices(self._target)

    def show_layer_errors(self, errors, run: str = "") -> None:
        """The error column from a ``RunResult.layer_errors()`` DataFrame of the run labelled ``run``; None clears
        it."""
        self.layer_errors = errors_state(errors, run)

    # -- sensitivity heat map ---------------------------------------------------------------------------------
    def show_sensitivity(self, report) -> None:
        """Heat map columns from a :class:`~tfopt_widgets.SensitivityReport`; None hides them."""
        self.sensitivity = sensitivity_state(report)

    # -- errors -----------------------------------------------------------------------------------------------
    def on_error(self, callback, remove: bool = False) -> None:
        """Call ``callback(error)`` when an edit from the table is rejected (or stop with ``remove=True``).

        Without a callback the error is raised.
        """
        self._error_handlers.register_callback(callback, remove=remove)

    def _report(self, error: Error) -> None:
        if not self._error_handlers.callbacks:
            raise error
        self._error_handlers(error)


def _entry(layer: str, value) -> dict:
    """A `plan_state` entry from the front-end with every field (those left out from EMPTY_ENTRY)."""
    if value is None:
        return dict(EMPTY_ENTRY)
    if not isinstance(value, dict):
        raise PlanError(f"The table sent {value!r} for layer {layer!r}; expected a dict with the fields "
                        f"{', '.join(EMPTY_ENTRY)}.", layer=layer, field="plan_state")
    return {**EMPTY_ENTRY, **value}


def _number(value, layer: str, field: str, integer: bool = False):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PlanError(f"{field} for layer {layer!r} must be a number; got {value!r}.", layer=layer, field=field)
    if integer:
        if float(value) != int(value):
            raise PlanError(f"{field} for layer {layer!r} must be a whole number; got {value!r}.", layer=layer,
                            field=field)
        return int(value)
    return float(value)


__all__ = ["LayerTable"]
