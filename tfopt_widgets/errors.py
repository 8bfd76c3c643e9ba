"""Errors raised by tfopt-widgets.

Every error a user can cause is an instance of :class:`Error`. Messages say what was wrong, where (the layer or
field) and what to do, so a notebook user never has to read a tfmot traceback.
"""

from __future__ import annotations


class Error(Exception):
    """Base class of every error this package raises on purpose.

    ``layer`` and ``field`` name where the problem is, when that is known.
    """

    def __init__(self, message: str, *, layer: str | None = None, field: str | None = None):
        super().__init__(message)
        self.layer = layer
        self.field = field


class ModelError(Error):
    """The model cannot be used as given (Keras 3, subclassed, not built, ...)."""


class PlanError(Error):
    """A plan asks for something that is invalid or that a layer does not support."""


class DataError(Error):
    """Training, calibration or evaluation data is empty or does not fit the model."""


class TargetError(Error):
    """An unknown hardware target, or a quantization mode the target cannot run."""


class ConversionError(Error):
    """TensorFlow Lite conversion failed."""


class Cancelled(Error):
    """The run was cancelled by the user; their model is unchanged."""
