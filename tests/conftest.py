"""Shared fixtures: the digits demo, trained once per test session."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="session")
def digits():
    """(model, (x_train, y_train), (x_test, y_test)): the demo CNN, trained for a few epochs."""
    from tfopt_widgets.demo import digits_data, digits_model

    return digits_model(epochs=5), *digits_data()


@pytest.fixture
def frozen(digits):
    """Asserts after the test that the digits model's weights are bit-identical to before it."""
    model = digits[0]
    before = [np.array(w, copy=True) for w in model.get_weights()]
    yield model
    after = model.get_weights()
    assert len(before) == len(after)
    for old, new in zip(before, after):
        assert old.dtype == new.dtype and np.array_equal(old, new), "the user's model was changed"


@pytest.fixture(scope="session")
def converted(digits):
    """``converted(target, quantization=None, calibrate=False)``: the digits model as a TFLiteModel, cached per session.

    ``calibrate=True`` passes 200 training images as representative data (int8 and int16x8 need them).
    """
    from tfopt_widgets import convert

    model, (x_train, _), _ = digits
    cache = {}

    def get(target, quantization=None, calibrate=False):
        key = (target, quantization, calibrate)
        if key not in cache:
            cache[key] = convert(model, target, representative_data=x_train[:200] if calibrate else None,
                                 quantization=quantization)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def zoo():
    """bench/zoo.py as a module (its architecture builders serve tests too)."""
    spec = importlib.util.spec_from_file_location("zoo", BENCH / "zoo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["zoo"] = module  # its dataclasses look their module up by name
    sys.path.insert(0, str(BENCH))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
    return module
