"""Analysis before any training: tw.sensitivity (``scan``) compresses one layer at a time and scores each variant
file (``variants`` makes them, ``jobs`` scores them in threads, processes or any Executor; workers load no
TensorFlow); ``findings`` holds the report (SensitivityReport, PlanCheck) and tw.suggest_plan (``suggestion``)
turns it into a plan within a budget.

Imports ``tflite``, ``targets``, ``plan``, ``model``, ``data``, the runtime and ``errors``; SensitivityReport.verify
carries a plan out with tw.run (``pipeline``). No submodule is named after a public function (the README's rule).
"""

from .findings import DEFAULT_LEVELS, TECHNIQUES, PlanCheck, SensitivityReport, SensitivityRow
from .scan import sensitivity
from .suggestion import suggest_plan

__all__ = ["DEFAULT_LEVELS", "TECHNIQUES", "PlanCheck", "SensitivityReport", "SensitivityRow", "sensitivity",
           "suggest_plan"]
