"""Models with several inputs and outputs: every step on a tiny two-input, two-output tf_keras model.

The model is bench/zoo.py's ``two_in_two_out``: an image and a feature vector in, a class (softmax) and a value
(regression) out, compiled with a loss dict keyed by output name. Its converted files list their inputs in the
converter's own order (``features``, ``image``), not the Keras order (``image``, ``features``), so every step that
feeds them must go by name.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import tfopt_widgets as tw
from tfopt_widgets.plan.script import FILL_IN
from tfopt_widgets.tflite.file import TFLiteModel

SAMPLES = 16
BATCH = 4
# Runs a generated script as __main__ with tfopt_widgets made unimportable (as tests/test_writeups.py does).
WITHOUT_PACKAGE = ("import runpy, sys; sys.modules['tfopt_widgets'] = None; "
                   "runpy.run_path(sys.argv[1], run_name='__main__')")


@pytest.fixture(scope="module")
def multi(zoo):
    """(model, x: [image, features], y: [label, value])."""
    rng = np.random.default_rng(0)
    x = [rng.uniform(0, 1, (SAMPLES, 16, 16, 3)).astype("float32"), rng.normal(size=(SAMPLES, 8)).astype("float32")]
    y = [rng.integers(0, 5, SAMPLES).astype("int64"), rng.normal(size=(SAMPLES, 1)).astype("float32")]
    from tfopt_widgets.model.stack import keras

    keras.utils.set_random_seed(0)
    return zoo.two_in_two_out(keras)[0], x, y


@pytest.fixture
def unchanged(multi):
    """The model, asserted bit-identical after the test."""
    model = multi[0]
    before = [np.array(w, copy=True) for w in model.get_weights()]
    yield model
    after = model.get_weights()
    assert len(before) == len(after)
    assert all(old.dtype == new.dtype and np.array_equal(old, new) for old, new in zip(before, after)), \
        "the user's model was changed"


def dataset(x, y, batch=BATCH):
    from tfopt_widgets.model.stack import tf

    return tf.data.Dataset.from_tensor_slices((tuple(x), tuple(y))).batch(batch)


def pcqat_plan() -> tw.Plan:
    return (tw.Plan().quantize("conv", "features_dense", "label", "value").prune("conv", "label", sparsity=0.5)
            .cluster("conv", "label", clusters=4))


@pytest.fixture(scope="module")
def pcqat(multi):
    """tw.optimize's PCQAT result, fine-tuned on a tf.data dataset of ((image, features), (label, value))."""
    model, x, y = multi
    return tw.optimize(model, pcqat_plan(), dataset(x, y), epochs=1)


def test_inspect(multi):
    info = tw.inspect(multi[0])
    assert [layer.name for layer in info.layers if layer.class_name == "InputLayer"] == ["image", "features"]
    for name in ("conv", "features_dense", "label", "value"):
        assert info[name].supports("quantize", "prune").ok, name


def test_optimize_qat_on_lists_and_dicts(multi, unchanged):
    _, x, y = multi
    plan = tw.Plan().quantize("conv", "features_dense", "label", "value")
    opt = tw.optimize(unchanged, plan, (x, y), epochs=1, batch_size=BATCH, validation_data=(tuple(x), tuple(y)))
    assert list(opt.history) == ["quantize"]
    assert {"quant_label_loss", "quant_value_loss"} <= set(opt.history["quantize"])
    stats = opt.layer_stats()  # its forward pass feeds zeros to both inputs
    assert list(stats.index) == ["conv", "features_dense", "label", "value"]
    # Inputs and labels keyed by name, in any order; a loss dict on the model still matches the renamed outputs.
    keyed = ({"features": x[1], "image": x[0]}, {"value": y[1], "label": y[0]})
    assert list(tw.optimize(unchanged, plan, keyed, epochs=1, batch_size=BATCH).history) == ["quantize"]


def test_optimize_pcqat_on_a_dataset(multi, unchanged, pcqat):
    from tfopt_widgets.model.stack import tf

    stats = pcqat.layer_stats()  # its forward pass feeds zeros to both inputs
    kernels = pcqat.weights()
    for layer in ("conv", "label"):
        assert stats.loc[layer, "scheme"] == "PCQAT"
        assert stats.loc[layer, "sparsity"] == pytest.approx(0.5, abs=0.02)
        # 4 shared values (and the zeros) per output channel: int8 fake quantization scales each channel
        kernel = kernels[layer].reshape(-1, kernels[layer].shape[-1])
        assert max(np.unique(kernel[:, c][kernel[:, c] != 0]).size for c in range(kernel.shape[1])) <= 4
    # A dataset of dicts keyed by input and output name works too (mapped to the model's order).
    _, x, y = multi
    keyed = tf.data.Dataset.from_tensor_slices(({"features": x[1], "image": x[0]},
                                                {"value": y[1], "label": y[0]})).batch(BATCH)
    plan = tw.Plan().quantize("conv", "features_dense", "label", "value").prune("label", sparsity=0.5)
    assert tw.optimize(unchanged, plan, keyed, epochs=1).layer_stats().loc["label", "sparsity"] == \
        pytest.approx(0.5, abs=0.02)


def test_convert_and_evaluate(multi, unchanged, pcqat):
    from tfopt_widgets.model.stack import tf

    _, x, y = multi
    cpu = tw.convert(unchanged, "cpu", representative_data=x)
    assert cpu.quantization == "int8"
    assert [t.name for t in cpu.inputs] == ["serving_default_features:0", "serving_default_image:0"]
    assert cpu.input_names == ["image", "features"] and cpu.output_names == ["label", "value"]  # the Keras order
    edgetpu = tw.convert(pcqat, "edgetpu", representative_data=dataset(x, y))
    assert [(t.dtype, t.shape) for t in edgetpu.inputs] == [("int8", (1, 8)), ("int8", (1, 16, 16, 3))]
    assert edgetpu.output_names == ["quant_label", "quant_value"]

    # Calibration datasets yielding inputs alone, one sample at a time or keyed by name in batches.
    inputs_only = tf.data.Dataset.from_tensor_slices(tuple(x))
    keyed_batches = tf.data.Dataset.from_tensor_slices({"features": x[1], "image": x[0]}).batch(5)
    for data in (inputs_only, keyed_batches):
        assert tw.convert(unchanged, "hexagon", representative_data=data).quantization == "int8"

    keras_label, keras_value = unchanged.predict(x, verbose=0)
    for tfl, data in ((cpu, (x, y)), (edgetpu, dataset(x, y, batch=3)), (edgetpu, dataset(x, y).unbatch())):
        metrics = tw.evaluate(tfl, data, runs=2, warmup=0)
        assert metrics.metric == "accuracy (output 'label')" and metrics.samples == SAMPLES
        assert metrics.accuracy == metrics.value and 0.0 <= metrics.value <= 1.0

    seen = {}

    def label_error(y_true, y_pred):  # lists in the Keras output order
        seen["shapes"] = [np.shape(part) for part in (*y_true, *y_pred)]
        return -float(np.abs(y_pred[0] - keras_label).max())

    metrics = tw.evaluate(cpu, (x, y), metric=label_error, runs=1)
    assert seen["shapes"] == [(SAMPLES,), (SAMPLES, 1), (SAMPLES, 5), (SAMPLES, 1)]
    assert metrics.metric == "label_error" and metrics.accuracy is None and metrics.value > -0.05  # int8: close
    # Keyed by name, the same; the float file from bytes (no Keras order known) takes dicts.
    keyed = ({"features": x[1], "image": x[0]}, {"value": y[1], "label": y[0]})
    assert tw.evaluate(cpu, keyed, metric=label_error, runs=1).value == metrics.value
    float_bytes = tw.convert(unchanged, "float32").content

    def value_error(y_true, y_pred):  # without the Keras order: the file's (value, label by tensor order)
        return -float(min(np.abs(part - keras_value).max() for part in y_pred if part.shape[-1] == 1))

    assert tw.evaluate(float_bytes, keyed, metric=value_error, runs=1).value > -1e-5
    # A list for a file of bytes is in the file's own order: wrong here, and the error says which input.
    with pytest.raises(tw.DataError, match="input 'features' has shape \\(16, 16, 16, 3\\)"):
        tw.evaluate(float_bytes, (x, y), runs=1)


def test_keep_float_and_calibration_by_name():
    """Two same-shaped inputs that the file lists the other way round, with very different ranges: calibrating
    them in the file's order with Keras-ordered data would clip one to the other's range."""
    from tfopt_widgets.model.stack import keras

    keras.utils.set_random_seed(0)
    alpha, zeta = keras.Input((4,), name="alpha"), keras.Input((4,), name="zeta")
    joined = keras.layers.Concatenate(name="join")([alpha, zeta])
    out = keras.layers.Dense(3, name="out")(keras.layers.Dense(8, activation="relu", name="hidden")(joined))
    aux = keras.layers.Dense(1, name="aux")(joined)
    model = keras.Model([alpha, zeta], [out, aux], name="ordered")
    rng = np.random.default_rng(1)
    x = [rng.uniform(0, 100, (64, 4)).astype("float32"), rng.uniform(0, 1, (64, 4)).astype("float32")]
    expected = model.predict(x, verbose=0)

    def closeness(y_true, y_pred):
        return -max(float(np.abs(p - e).max() / np.abs(e).max()) for p, e in zip(y_pred, expected))

    y = [np.zeros(64, "int64"), np.zeros((64, 1), "float32")]
    for tfl in (tw.convert(model, "cpu", representative_data=x),
                tw.convert(model, "cpu", representative_data={"zeta": x[1], "alpha": x[0]}, keep_float=["aux"])):
        assert [t.name for t in tfl.inputs] == ["serving_default_zeta:0", "serving_default_alpha:0"]
        assert tfl.input_names == ["alpha", "zeta"]
        assert tw.evaluate(tfl, (x, y), metric=closeness, runs=1).value > -0.05
    assert tfl.float_layers() == ["aux"]


def test_sensitivity(multi, unchanged):
    _, x, y = multi
    levels = {"prune": (0.5,)}
    by_arrays = tw.sensitivity(unchanged, (x, y), techniques=("prune",), levels=levels, executor="threads")
    # A tf.data dataset: its first `samples` samples.
    by_dataset = tw.sensitivity(unchanged, dataset(x, y), techniques=("quantize", "prune"), levels=levels,
                                executor="threads", samples=8)
    unbatched = tw.sensitivity(unchanged, dataset(x, y).unbatch(), techniques=("prune",), levels=levels,
                               executor="threads", samples=8)
    assert unbatched.baseline == by_dataset.baseline and unbatched.samples == 8
    assert by_arrays.metric == by_dataset.metric == "accuracy (output 'label')"
    assert (by_arrays.samples, by_dataset.samples) == (SAMPLES, 8)
    assert {row.layer for row in by_arrays.rows} == {"conv", "features_dense", "label", "value"}
    assert by_dataset.row("conv", "quantize") is not None and by_dataset.int8_value is not None


@pytest.mark.parametrize("call", ["optimize", "convert", "evaluate", "sensitivity"])
def test_bad_data_names_the_input(multi, call):
    model, x, y = multi
    nan = [x[0], x[1].copy()]
    nan[1][3, 2] = np.nan
    cases = [
        (x[0], "must be a list of 2 arrays in that order or a dict keyed by input name"),
        (nan, r"input 'features' values contain nan \(sample 3"),
        ([x[0], x[1][:-1]], "'image': 16, 'features': 15"),
        ([x[0], x[1][:, :4]], r"input 'features' has shape \(16, 4\)"),
        ({"image": x[0], "extra": x[1]}, "extra" if call != "evaluate" else "'image', 'extra'"),
    ]
    for inputs, words in cases:
        with pytest.raises(tw.DataError, match=words) as error:
            if call == "optimize":
                tw.optimize(model, tw.Plan().quantize("conv"), (inputs, y), epochs=1)
            elif call == "convert":
                tw.convert(model, "edgetpu", representative_data=inputs)
            elif call == "evaluate":
                tw.evaluate(tw.convert(model, "float32"), (inputs, y), runs=1)
            else:
                tw.sensitivity(model, (inputs, y), techniques=("prune",), levels={"prune": (0.5,)})
        assert error.value.field == {"optimize": "train_data", "convert": "representative_data"}.get(call, "data")
    if call in ("optimize", "sensitivity"):
        with pytest.raises(tw.DataError, match=r"labels of output 'label' hold class 7"):
            tw.sensitivity(model, (x, [np.full(SAMPLES, 7), y[1]])) if call == "sensitivity" else \
                tw.optimize(model, tw.Plan().quantize("conv"), (x, [np.full(SAMPLES, 7), y[1]]), epochs=1)
        with pytest.raises(tw.DataError, match="misses output 'value'"):
            tw.optimize(model, tw.Plan().quantize("conv"), (x, {"label": y[0]}), epochs=1)


@pytest.mark.slow
def test_generated_script_runs(multi, unchanged, tmp_path):
    """Plan.to_python's script on the two-input model: the loss dict survives tfmot's renamed outputs, and int8
    calibration feeds both inputs (by name)."""
    _, x, y = multi
    model_path = tmp_path / "model.keras"
    unchanged.save(model_path)
    np.savez(tmp_path / "data.npz", image=x[0], features=x[1], label=y[0], value=y[1])
    # x as a list in the model's order, y as a dict keyed by output name.
    body = (f"data = np.load({str(tmp_path / 'data.npz')!r})\n"
            '    return [data["image"], data["features"]], {"value": data["value"], "label": data["label"]}')
    output = tmp_path / "model.tflite"
    script = pcqat_plan().to_python(str(model_path), "cpu", model=unchanged, epochs=1, batch_size=BATCH,
                                    output_path=str(output))
    path = tmp_path / "reproduce.py"
    path.write_text(script.replace(FILL_IN, body))
    process = subprocess.run([sys.executable, "-c", WITHOUT_PACKAGE, str(path)], cwd=tmp_path, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600, check=False)
    assert process.returncode == 0, process.stdout[-4000:]
    # The file's outputs are named after the quantized model's output layers; a loaded file knows no Keras order.
    tfl = TFLiteModel.load(output, input_names=["image", "features"], output_names=["quant_label", "quant_value"])
    assert [(t.name, t.dtype) for t in tfl.inputs] == [("serving_default_features:0", "float32"),
                                                       ("serving_default_image:0", "float32")]
    assert any(t.dtype == "int8" and t.constant for t in tfl.tensors)
    assert tw.evaluate(tfl, (x, y), runs=1).metric == "accuracy (output 'quant_label')"
