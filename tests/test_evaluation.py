"""tw.evaluate with LiteRT on converted digits files: accuracy against Keras, int8 I/O, metrics, bad data."""

import numpy as np
import pytest

import tfopt_widgets as tw


@pytest.fixture(scope="module")
def keras_accuracy(digits):
    model, _, (x_test, y_test) = digits
    return float(np.mean(model.predict(x_test, verbose=0).argmax(-1) == y_test))


@pytest.mark.parametrize("key", [("float32", None, False), ("edgetpu", None, True), ("cpu", None, False),
                                 ("gpu", None, False), ("hexagon", None, True), ("cpu", "int16x8", True)],
                         ids=["float32", "edgetpu-int8", "cpu-dynamic", "gpu-float16", "hexagon-int8", "int16x8"])
def test_accuracy_matches_keras(digits, converted, keras_accuracy, key):
    _, _, (x_test, y_test) = digits
    tfl = converted(*key)
    metrics = tw.evaluate(tfl, (x_test, y_test), runs=5, warmup=1)
    assert metrics.metric == "accuracy"
    assert abs(metrics.accuracy - keras_accuracy) <= 0.03, (key, metrics.accuracy, keras_accuracy)
    assert (metrics.target, metrics.quantization) == (tfl.target, tfl.quantization)
    assert (metrics.size, metrics.gzip_size, metrics.samples) == (tfl.size, tfl.gzip_size, len(x_test))
    assert metrics.latency_ms > 0


def test_metrics_dict_and_other_data_forms(digits, converted):
    from tfopt_widgets.model.stack import tf

    _, _, (x_test, y_test) = digits
    tfl = converted("edgetpu", calibrate=True)
    metrics = tw.evaluate(tfl, (x_test, y_test), runs=3)
    row = metrics.as_dict()
    assert set(row) == {"target", "quantization", "size", "gzip_size", "metric", "value", "accuracy", "latency_ms",
                        "samples"}
    one_hot = np.eye(10, dtype=np.float32)[y_test]
    assert tw.evaluate(tfl, (x_test, one_hot), runs=1).accuracy == metrics.accuracy
    batched = tf.data.Dataset.from_tensor_slices((x_test, y_test)).batch(32)
    assert tw.evaluate(tfl, batched, runs=1).accuracy == metrics.accuracy
    assert tw.evaluate(tfl.content, batched.unbatch(), runs=1).accuracy == metrics.accuracy


def test_user_metric(digits, converted):
    _, _, (x_test, y_test) = digits

    def mean_confidence(y_true, y_pred):
        assert y_pred.dtype == np.float32 and y_pred.shape == (len(y_true), 10)  # dequantized int8 outputs
        return float(y_pred.max(-1).mean())

    metrics = tw.evaluate(converted("hexagon", calibrate=True), (x_test, y_test), metric=mean_confidence, runs=1)
    assert metrics.metric == "mean_confidence" and metrics.accuracy is None and 0.1 < metrics.value <= 1.0


def test_bad_data(digits, converted):
    _, _, (x_test, y_test) = digits
    tfl = converted("float32")
    with pytest.raises(tw.DataError, match="empty") as error:
        tw.evaluate(tfl, (x_test[:0], y_test[:0]))
    assert error.value.field == "data"
    with pytest.raises(tw.DataError, match=r"\(449, 8, 8\).*\(n, 8, 8, 1\)"):
        tw.evaluate(tfl, (x_test[..., 0], y_test))
    with pytest.raises(tw.DataError, match="449 inputs .* 448 labels"):
        tw.evaluate(tfl, (x_test, y_test[:-1]))
    with pytest.raises(tw.DataError, match=r"\(x, y\) pair"):
        tw.evaluate(tfl, x_test)
    with pytest.raises(tw.Error, match="runs"):
        tw.evaluate(tfl, (x_test, y_test), runs=0)
