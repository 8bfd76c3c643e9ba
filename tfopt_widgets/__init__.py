"""tfopt-widgets: interactive model optimization for TensorFlow/Keras in notebooks.

>>> import tfopt_widgets as tw
>>> info = tw.inspect(model)
>>> plan = tw.Plan().quantize("conv1", "dense").prune("dense", sparsity=0.75)
>>> opt = tw.optimize(model, plan, (x_train, y_train), epochs=2)
>>> tfl = tw.convert(opt.model, target="edgetpu", representative_data=x_train[:100])
>>> tw.evaluate(tfl, data=(x_test, y_test))
>>> tw.run(model, plan, "edgetpu", (x_train, y_train), (x_test, y_test), baseline=True)   # all three, vs float32
>>> tw.Studio(model, train_data=(x_train, y_train), validation_data=(x_test, y_test))   # in a notebook

TensorFlow is imported on first use of an engine function, so importing the package is fast.
"""

from __future__ import annotations

import importlib

from .errors import Cancelled, ConversionError, DataError, Error, ModelError, PlanError, TargetError
from .plan import Plan

__version__ = "0.1.0"

# public name -> module that defines it; loaded on first access so `import tfopt_widgets` does not import TF.
_LAZY = {
    "inspect": "model.inspection",
    "ModelInfo": "model.inspection",
    "LayerInfo": "model.inspection",
    "Support": "model.inspection",
    "optimize": "techniques.optimization",
    "OptimizedModel": "techniques.optimization",
    "convert": "tflite.conversion",
    "TFLiteModel": "tflite.conversion",
    "TARGETS": "targets",
    "evaluate": "tflite.evaluation",
    "Metrics": "tflite.evaluation",
    "to_tf_keras": "model.porting",
    "load_model": "model.porting",
    "ModelNotice": "model.porting",
    "sensitivity": "analysis",
    "SensitivityReport": "analysis",
    "suggest_plan": "analysis",
    "run": "pipeline",
    "RunResult": "pipeline",
    "Progress": "progress",
    "demo": None,
    "Studio": "widgets.studio",
    "report": "writeups.reporting",
}

__all__ = ["TARGETS", "Cancelled", "ConversionError", "DataError", "Error", "LayerInfo", "Metrics", "ModelError",
           "ModelInfo", "ModelNotice", "OptimizedModel", "Plan", "PlanError", "Progress", "RunResult",
           "SensitivityReport", "Studio",
           "Support", "TFLiteModel", "TargetError", "convert", "demo", "evaluate", "inspect", "load_model", "optimize",
           "report", "run", "sensitivity", "suggest_plan", "to_tf_keras"]


def load_ipython_extension(ipython):
    """``%load_ext tfopt_widgets``: adds the ``%tfopt model [--target T] [--train X] [--validation Y]`` magic."""
    from .widgets.magic import register

    register(ipython)


# Names whose modules load TensorFlow: it starts with its start-up log lines left out (pipeline.start_engine).
_NO_ENGINE = ("TARGETS", "Progress", "demo")


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'tfopt_widgets' has no attribute {name!r}")
    if name not in _NO_ENGINE:
        from .pipeline import start_engine

        start_engine()
    module = importlib.import_module(f".{_LAZY[name] or name}", __name__)
    value = module if _LAZY[name] is None else getattr(module, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
