"""tw.optimize on the digits demo with real tfmot: each technique, the collaborative schemes, bad input.

Every test that optimizes uses the `frozen` fixture: the user's model must come out bit-identical.
"""

import numpy as np
import pytest

import tfopt_widgets as tw
from tfopt_widgets.model.stack import keras, tf, tfmot

ALL_WEIGHTED = ("conv1", "conv2", "dense", "classifier")


def accuracy(model, data):
    x, y = data
    return float(np.mean(np.argmax(model.predict(x, verbose=0), axis=1) == y))


def test_qat_wraps_planned_layers_and_folds_batch_norm(digits, frozen):
    _, train, test = digits
    opt = tw.optimize(frozen, tw.Plan().quantize(*ALL_WEIGHTED), train, epochs=1)
    wrapped = {opt.layer_origins[layer.name] for layer in opt.model.layers
               if isinstance(layer, tfmot.quantization.keras.QuantizeWrapper)}
    # bn2 and relu2 come with conv2 (folding); flatten/dropout get output quantizers from tfmot itself.
    assert {"conv1", "conv2", "bn2", "relu2", "dense", "classifier"} <= wrapped
    assert opt.layer_origins["quant_dense"] == "dense"
    assert accuracy(opt.model, test) > 0.9, "QAT after a fine-tune keeps the float accuracy"
    assert list(opt.history) == ["quantize"]


def test_pruning_reaches_the_target_sparsity_exactly(digits, frozen):
    _, train, test = digits
    opt = tw.optimize(frozen, tw.Plan().prune("dense", "conv2", sparsity=0.75), train, epochs=2)
    stats = opt.layer_stats()
    assert stats.loc["dense", "sparsity"] == pytest.approx(0.75, abs=1e-3)
    assert stats.loc["conv2", "sparsity"] == pytest.approx(0.75, abs=1e-3)
    assert not any("prune" in layer.name for layer in opt.model.layers), "pruning wrappers are stripped"
    assert [layer.name for layer in opt.model.layers] == [layer.name for layer in frozen.layers]
    assert accuracy(opt.model, test) > 0.85


def test_constant_schedule_and_blocks(digits, frozen):
    _, train, _ = digits
    plan = tw.Plan().prune("dense", sparsity=0.5, schedule="constant", block_size=(1, 4))
    kernel = tw.optimize(frozen, plan, train, epochs=1).weights()["dense"]
    assert np.mean(kernel == 0) == pytest.approx(0.5, abs=0.01)
    blocks = kernel.reshape(kernel.shape[0], -1, 4)
    assert np.all((blocks == 0).all(axis=2) | (blocks != 0).all(axis=2)), "zeros come in 1x4 blocks"


def test_clustering_leaves_exactly_the_planned_number_of_values(digits, frozen):
    _, train, _ = digits
    plan = tw.Plan().cluster("dense", clusters=16).cluster("conv2", clusters=8, init="linear")
    stats = tw.optimize(frozen, plan, train, epochs=1).layer_stats()
    assert stats.loc["dense", "unique_values"] == 16
    assert stats.loc["conv2", "unique_values"] == 8


@pytest.mark.parametrize("plan, scheme, sparsity, max_unique", [
    (tw.Plan().prune("dense", sparsity=0.75).quantize(*ALL_WEIGHTED), "PQAT", 0.75, None),
    (tw.Plan().cluster("dense", clusters=16).quantize(*ALL_WEIGHTED), "CQAT", None, 16),
    (tw.Plan().prune("dense", sparsity=0.75).cluster("dense", clusters=16), "sparsity-preserving clustering",
     0.75, 16),
    (tw.Plan().prune("dense", sparsity=0.75).cluster("dense", clusters=16).quantize(*ALL_WEIGHTED), "PCQAT",
     0.75, 16),
])
def test_collaborative_schemes_preserve_what_came_before(digits, frozen, plan, scheme, sparsity, max_unique):
    _, train, test = digits
    opt = tw.optimize(frozen, plan, train, epochs=1)
    stats = opt.layer_stats()
    assert stats.loc["dense", "scheme"] == scheme
    if sparsity is not None:
        assert stats.loc["dense", "sparsity"] == pytest.approx(sparsity, abs=0.005)
    if max_unique is not None:
        # int8 rounding may merge two close centroids, never split one
        assert 2 <= stats.loc["dense", "unique_values"] <= max_unique
    assert accuracy(opt.model, test) > 0.85


def test_separable_conv_split_by_qat_maps_back_to_the_users_layer():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.SeparableConv2D(8, 3, name="sep")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inputs, keras.layers.Dense(10, name="out")(x))
    model.compile(loss="sparse_categorical_crossentropy")
    x_train = np.random.default_rng(0).random((32, 8, 8, 1), "float32")
    y_train = np.arange(32) % 10
    opt = tw.optimize(model, tw.Plan().quantize("sep", "out"), (x_train, y_train), epochs=1)
    split = [name for name, origin in opt.layer_origins.items() if origin == "sep"]
    assert len(split) == 2 and "sep" not in split
    assert opt.weights()["sep"].shape == (1, 1, 1, 8), "the pointwise kernel (1 input channel, 8 filters)"


def test_progress_tf_data_callbacks_and_learning_rate(digits, frozen):
    _, (x, y), _ = digits
    dataset = tf.data.Dataset.from_tensor_slices((x[:256], y[:256])).batch(64)
    reports, epochs_seen = [], []
    callback = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: epochs_seen.append(epoch))
    opt = tw.optimize(frozen, tw.Plan().prune("dense", sparsity=0.5).cluster("conv2", clusters=8), dataset,
                      epochs=2, callbacks=[callback], learning_rate=1e-4,
                      progress=lambda stage, step, total: reports.append((stage, step, total)))
    assert reports[0] == ("prune", 0, 8) and reports[-1] == ("cluster", 8, 8)
    assert [r for r in reports if r[0] == "prune"] == [("prune", i, 8) for i in range(9)]
    assert epochs_seen == [0, 1, 0, 1]
    assert set(opt.history) == {"prune", "cluster"}


def test_cancel_from_progress_stops_cleanly(digits, frozen):
    _, train, _ = digits

    def progress(stage, step, total):
        if step == 3:
            raise tw.Cancelled("stopped by the user")

    with pytest.raises(tw.Cancelled):
        tw.optimize(frozen, tw.Plan().prune("dense", sparsity=0.5), train, epochs=1, progress=progress)


@pytest.mark.parametrize("plan, error, words", [
    (tw.Plan(), tw.PlanError, "plan is empty"),
    (tw.Plan().quantize("dense_1"), tw.PlanError, "does not have.*Did you mean 'dense'"),
    (tw.Plan().prune("flatten", sparsity=0.5), tw.PlanError, "Cannot prune layer 'flatten'.*no weights"),
    (tw.Plan().cluster("bn2", clusters=8), tw.PlanError, "Cannot cluster layer 'bn2'"),
    (tw.Plan().quantize("bn2"), tw.PlanError, "folded into 'conv2'; quantize 'conv2' too"),
])
def test_plan_errors_name_the_layer(digits, frozen, plan, error, words):
    with pytest.raises(error, match=words):
        tw.optimize(frozen, plan, digits[1], epochs=1)


@pytest.mark.parametrize("data, field, words", [
    ((np.zeros((0, 8, 8, 1), "float32"), np.zeros(0)), "train_data", "empty"),
    ((np.zeros((10, 8, 8), "float32"), np.zeros(10)), "train_data", r"shape \(10, 8, 8\).*\(n, 8, 8, 1\)"),
    ((np.zeros((10, 8, 8, 1), "float32"), np.zeros(9)), "train_data", "10 inputs but 9 labels"),
    (np.zeros((10, 8, 8, 1), "float32"), "train_data", r"\(x, y\) pair"),
])
def test_bad_data_is_a_data_error(digits, frozen, data, field, words):
    with pytest.raises(tw.DataError, match=words) as error:
        tw.optimize(frozen, tw.Plan().prune("dense", sparsity=0.5), data, epochs=1)
    assert error.value.field == field


def test_bad_validation_data_and_epochs(digits, frozen):
    plan = tw.Plan().prune("dense", sparsity=0.5)
    with pytest.raises(tw.DataError) as error:
        tw.optimize(frozen, plan, digits[1], epochs=1, validation_data=(np.zeros((3, 4)), np.zeros(3)))
    assert error.value.field == "validation_data"
    with pytest.raises(tw.Error, match="epochs") as error:
        tw.optimize(frozen, plan, digits[1], epochs=0)
    with pytest.raises(tw.PlanError, match="tw.Plan"):
        tw.optimize(frozen, {"dense": "prune"}, digits[1])


def test_uncompiled_model_needs_a_loss(digits):
    from tfopt_widgets.demo import digits_model

    model = digits_model(train=False)
    fresh = keras.models.clone_model(model)  # clone_model drops the compile state
    with pytest.raises(tw.ModelError, match="not compiled.*loss="):
        tw.optimize(fresh, tw.Plan().prune("dense", sparsity=0.5), digits[1], epochs=1)
    opt = tw.optimize(fresh, tw.Plan().prune("dense", sparsity=0.5), digits[1], epochs=1,
                      loss="sparse_categorical_crossentropy")
    assert opt.layer_stats().loc["dense", "sparsity"] == pytest.approx(0.5, abs=1e-3)


def test_subclassed_model_is_refused_with_the_fix(digits):
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.flat = keras.layers.Flatten()
            self.dense = keras.layers.Dense(10)

        def call(self, x):
            return self.dense(self.flat(x))

    model = Subclassed()
    model.build((None, 8, 8, 1))
    with pytest.raises(tw.ModelError, match="subclassed.*Functional API"):
        tw.optimize(model, tw.Plan().prune("dense", sparsity=0.5), digits[1])


def test_pcqat_keeps_its_zeros_beside_quantized_layers_that_have_none(digits, frozen):
    # tfmot shares one weight quantizer among all Dense layers; the classifier (no zeros) used to switch the
    # shared quantizer's preserve_sparsity off and PCQAT's dense lost every zero (0.75 -> 0.0 at 2 epochs).
    _, train, _ = digits
    plan = (tw.Plan().quantize(*ALL_WEIGHTED).prune("dense", sparsity=0.75).cluster("dense", clusters=16)
            .prune("conv1", sparsity=0.5))
    stats = tw.optimize(frozen, plan, train, epochs=2).layer_stats()
    assert stats.loc["dense", "sparsity"] == pytest.approx(0.75, abs=0.005)
    assert stats.loc["dense", "unique_values"] <= 16
    assert stats.loc["conv1", "sparsity"] == pytest.approx(0.5, abs=0.01)
