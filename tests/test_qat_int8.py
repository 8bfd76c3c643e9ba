"""Int8 files of partly quantization-aware models: a QAT layer feeding a layer that QAT left alone.

TF 2.21's converter quantized such a layer's bias with the calibrated range of its input while the input tensor kept
its QAT scale (the demo, QAT of conv1 only: conv2's bias 15x too large, int8 accuracy 0.24 against Keras' 0.99);
runtime.tflite.consistent_biases re-quantizes those biases.
"""

import numpy as np
import pytest

import tfopt_widgets as tw
from tfopt_widgets.runtime.tflite import consistent_biases


def _keras_accuracy(model, x, y) -> float:
    return float((np.argmax(model.predict(x, verbose=0), -1) == y).mean())


@pytest.mark.parametrize("plan", [tw.Plan().quantize("conv1"), tw.Plan().quantize("conv1").cluster("conv2", clusters=16)],
                         ids=["qat-conv1", "qat-conv1+cluster-conv2"])
def test_partial_qat_int8_accuracy_matches_keras(digits, frozen, plan):
    _, (xt, yt), (xv, yv) = digits
    opt = tw.optimize(frozen, plan, (xt, yt), epochs=2)
    keras_accuracy = _keras_accuracy(opt.model, xv, yv)
    tfl = tw.convert(opt, "cpu", representative_data=xt)
    int8 = tw.evaluate(tfl, (xv, yv)).value
    assert keras_accuracy > 0.9
    assert abs(int8 - keras_accuracy) <= 0.02, (int8, keras_accuracy)
    assert consistent_biases(tfl.content) is tfl.content  # every bias already at input scale x weight scale


def test_consistent_biases_leaves_plain_int8_files_alone(converted):
    tfl = converted("cpu", calibrate=True)
    assert consistent_biases(tfl.content) is tfl.content
