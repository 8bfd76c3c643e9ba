"""What tw.sensitivity found: per layer and technique the metric drop (SensitivityReport), and how a plan
made from it fared when carried out (PlanCheck)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import DataError
from ..plan import Plan

__all__ = ["DEFAULT_LEVELS", "LayerSize", "PlanCheck", "SensitivityReport", "SensitivityRow"]

TECHNIQUES = ("quantize", "prune", "cluster")
DEFAULT_LEVELS = {"quantize": ("int8",), "prune": (0.5, 0.75, 0.9), "cluster": (8, 16, 32)}
# The quantize levels a scan can measure: "int4" (int4 weights per channel by LiteRT Quantizer, float activations) is
# asked for with levels={"quantize": ("int8", "int4")}.
QUANTIZE_LEVELS = ("int8", "int4")
# Evaluation samples by default: enough to resolve a drop of 0.5 % on accuracy, few enough for hundreds of variants.
EVALUATION_SAMPLES = 500
_WEIGHT_DTYPES = ("int8", "float16", "float32")


@dataclass(frozen=True)
class SensitivityRow:
    """One measurement: ``layer`` compressed alone with ``technique`` at ``level``.

    ``value`` is the metric of that file, ``drop`` the baseline's value minus it (positive: worse). ``size`` holds
    the estimated gzip bytes of the layer's kernel afterwards per weight encoding ("int8", "float16", "float32").
    Quantize rows add ``keep_float_value`` (the full-int8 file with this layer float) and ``quant_error`` (RMS
    int8 error of the layer's output, from the QuantizationDebugger). An int4 row (level "int4") measures the float
    file with only this layer's weights int4; its ``size`` adds "int4" (the layer's int4 kernel, packed).
    """

    layer: str
    technique: str
    level: object
    value: float
    drop: float
    size: dict = field(default_factory=dict)
    keep_float_value: float | None = None
    quant_error: float | None = None


@dataclass(frozen=True)
class LayerSize:
    """A layer's kernel: parameters, estimated gzip bytes per encoding, and its share of the int8 file's gzip size."""

    layer: str
    class_name: str
    params: int
    size: dict
    share: float


class SensitivityReport:
    """What :func:`sensitivity` measured. ``to_dataframe()`` is the layer x (technique, level) matrix of drops.

    ``baseline`` is the metric of the float file, ``int8_value`` of the full-int8 file, ``int8_gzip_size`` the
    gzip size of that file. ``layers`` holds each layer's size and share; ``rows`` every measurement.
    """

    def __init__(self, model_name: str, metric: str, baseline: float, int8_value: float | None, rows: list,
                 layers: list, int8_gzip_size: int | None, float_gzip_size: int, samples: int, levels: dict,
                 wall_s: float, workers: int | None, executor: str | None = None):
        self.model_name, self.metric, self.baseline, self.int8_value = model_name, metric, baseline, int8_value
        self.rows, self.layers = list(rows), list(layers)
        self.int8_gzip_size, self.float_gzip_size = int8_gzip_size, float_gzip_size
        self.samples, self.levels, self.wall_s, self.workers = samples, levels, wall_s, workers
        self.executor = executor  # what scored the variants: "threads", "processes" or the executor's class name
        self.layer_sizes = {entry.layer: entry for entry in self.layers}

    def row(self, layer: str, technique: str, level=None) -> SensitivityRow | None:
        """The measurement of ``layer`` under ``technique`` at ``level`` (without one, the first: int8 for quantize)."""
        for row in self.rows:
            if row.layer == layer and row.technique == technique and (level is None or row.level == level):
                return row
        return None

    def drop(self, layer: str, technique: str, level=None) -> float | None:
        row = self.row(layer, technique, level)
        return None if row is None else row.drop

    def to_dataframe(self, values: str = "drop"):
        """Layers x (technique, level) of ``values`` ("drop", "value", or a size encoding "int8"/"float32")."""
        import pandas as pd

        records = {}
        for row in self.rows:
            cell = getattr(row, values) if values in ("drop", "value") else row.size.get(values)
            records.setdefault(row.layer, {})[(row.technique, row.level)] = cell
        order = [entry.layer for entry in self.layers] + [n for n in records if n not in self.layer_sizes]
        frame = pd.DataFrame.from_dict({n: records[n] for n in order if n in records}, orient="index")
        columns = [(t, lv) for t in TECHNIQUES for lv in self.levels.get(t, ()) if (t, lv) in frame.columns]
        frame = frame[columns]
        frame.columns = pd.MultiIndex.from_tuples(columns, names=["technique", "level"])
        frame.index.name = "layer"
        return frame

    def layers_dataframe(self):
        """One row per layer: type, params, int8 gzip bytes, share of the int8 file, quant error, keep-float gain."""
        import pandas as pd

        rows = []
        for entry in self.layers:
            quant = self.row(entry.layer, "quantize", "int8")
            rows.append({"layer": entry.layer, "type": entry.class_name, "params": entry.params,
                         "int8_gzip_bytes": entry.size.get("int8"), "share": entry.share,
                         "quant_error": quant.quant_error if quant else None,
                         "keep_float_gain": (quant.keep_float_value - self.int8_value)
                         if quant and quant.keep_float_value is not None and self.int8_value is not None else None})
        return pd.DataFrame(rows).set_index("layer")

    def plot(self, ax=None):
        """A heat map of the drops (matplotlib); returns the figure."""
        import matplotlib.pyplot as plt

        frame = self.to_dataframe()
        if ax is None:
            _, ax = plt.subplots(figsize=(1.0 + 0.7 * frame.shape[1], 1.0 + 0.28 * frame.shape[0]))
        data = frame.to_numpy(dtype=float)
        limit = max(1e-6, float(np.nanmax(np.abs(data))) if np.isfinite(data).any() else 1.0)
        image = ax.imshow(data, cmap="RdYlGn_r", vmin=-limit, vmax=limit, aspect="auto")
        ax.set_xticks(range(frame.shape[1]), [f"{t}\n{lv}" for t, lv in frame.columns], fontsize=8)
        ax.set_yticks(range(frame.shape[0]), frame.index, fontsize=8)
        ax.set_title(f"{self.model_name}: {self.metric} drop per layer (baseline {self.baseline:.4f})", fontsize=9)
        ax.figure.colorbar(image, ax=ax, label=f"{self.metric} drop")
        ax.figure.tight_layout()
        return ax.figure

    def estimate(self, plan: Plan, target="cpu", quantization: str | None = None) -> dict:
        """The additive estimate for ``plan`` on ``target``: ``drop`` and ``size`` (gzip bytes of the kernels)."""
        from .suggestion import estimate, target_profile

        return estimate(self, plan, target_profile(target, quantization))

    def verify(self, model, plan: Plan, train_data, data=None, *, target="cpu", representative_data=None,
               epochs: int = 1, metric=None, budget: float | None = None, **optimize_args) -> PlanCheck:
        """Carry ``plan`` out with :func:`tw.run <tfopt_widgets.run>` (tw.optimize, tw.convert for ``target``,
        tw.evaluate, beside the float32 baseline) and compare.

        ``data`` is what the drop is measured on (default: the training data's first 500 samples); the baseline
        is the float file on the same data. ``representative_data`` calibrates (default: the training inputs);
        ``optimize_args`` go to tw.run (``learning_rate``, ``progress``, ``loss``, ...). The result holds the
        estimate, the measurement, and by how much a ``budget`` was missed (0 when met).
        """
        from ..pipeline import run

        start = time.perf_counter()
        if data is None:
            if not isinstance(train_data, (tuple, list)):
                raise DataError("verify needs data=(x, y) to measure on when train_data is a dataset.", field="data")
            keras_model = model if hasattr(model, "inputs") else getattr(model, "model", model)
            data = (_head(train_data[0], EVALUATION_SAMPLES, len(keras_model.inputs) > 1),
                    _head(train_data[1], EVALUATION_SAMPLES, len(keras_model.outputs) > 1))
        result = run(model, plan, target, train_data, data, representative_data=representative_data, epochs=epochs,
                     metric=metric, runs=1, warmup=0, baseline=True, **optimize_args)
        estimate = self.estimate(plan, target)
        baseline = result.baseline.metrics
        missed = None if budget is None else max(0.0, result.drop - budget)
        return PlanCheck(estimated_drop=estimate["drop"], measured_drop=result.drop, budget=budget, missed_by=missed,
                         baseline=baseline.value, value=result.metrics.value, estimated_size=estimate["size"],
                         gzip_size=result.metrics.gzip_size, float_gzip_size=baseline.gzip_size,
                         float_layers=result.tflite.float_layers(), wall_s=time.perf_counter() - start)

    def to_dict(self) -> dict:
        return {"model": self.model_name, "metric": self.metric, "baseline": self.baseline,
                "int8_value": self.int8_value, "int8_gzip_size": self.int8_gzip_size,
                "float_gzip_size": self.float_gzip_size, "samples": self.samples, "wall_s": self.wall_s,
                "workers": self.workers, "executor": self.executor, "levels": {k: list(v) for k, v in self.levels.items()},
                "layers": [asdict(entry) for entry in self.layers], "rows": [asdict(row) for row in self.rows]}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=float)

    def __repr__(self) -> str:
        return (f"<SensitivityReport {self.model_name!r}: {len(self.rows)} measurements over {len(self.layers)} "
                f"layers; float {self.metric} {self.baseline:.4f}"
                + (f", int8 {self.int8_value:.4f}" if self.int8_value is not None else "") + ">")

    def _repr_html_(self) -> str:
        return self.to_dataframe().style.format("{:+.4f}", na_rep="").background_gradient(
            cmap="RdYlGn_r", axis=None).to_html()


def _head(value, count: int, several: bool):
    """The first ``count`` samples of an array, or with ``several`` (inputs or outputs) of each array of a list,
    tuple or dict."""
    if isinstance(value, dict):
        return {key: item[:count] for key, item in value.items()}
    if several and isinstance(value, (list, tuple)):
        return [item[:count] for item in value]
    return value[:count]


@dataclass(frozen=True)
class PlanCheck:
    """Estimate vs measurement of a plan (:meth:`SensitivityReport.verify`)."""

    estimated_drop: float
    measured_drop: float
    budget: float | None
    missed_by: float | None  # how far the measured drop is over the budget (0.0: within it)
    baseline: float
    value: float
    estimated_size: int
    gzip_size: int
    float_gzip_size: int
    float_layers: list
    wall_s: float

    @property
    def within_budget(self) -> bool | None:
        return None if self.missed_by is None else self.missed_by == 0.0

    def __str__(self) -> str:
        verdict = "" if self.budget is None else (
            f"; within the budget of {self.budget:.4f}" if self.within_budget
            else f"; missed the budget of {self.budget:.4f} by {self.missed_by:.4f}")
        return (f"drop estimated {self.estimated_drop:+.4f}, measured {self.measured_drop:+.4f} "
                f"({self.baseline:.4f} -> {self.value:.4f}){verdict}; gzip {self.float_gzip_size:,} -> "
                f"{self.gzip_size:,} B")
