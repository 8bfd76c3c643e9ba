"""The built-in demo: a small CNN trained on scikit-learn's bundled 8x8 digits (no download).

>>> from tfopt_widgets import demo
>>> (x_train, y_train), (x_test, y_test) = demo.digits_data()
>>> model = demo.digits_model()          # trained in a few seconds on the CPU
"""

from __future__ import annotations


def digits_data(test_fraction: float = 0.25, seed: int = 0):
    """The 1,797 digit images as ``((x_train, y_train), (x_test, y_test))``.

    Images are float32 in [0, 1] with shape (n, 8, 8, 1); labels are int64 class ids 0-9.
    """
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]
    y = digits.target.astype("int64")
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = round(len(x) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return (x[train], y[train]), (x[test], y[test])


def digits_model(epochs: int = 12, seed: int = 0, train: bool = True):
    """A compiled tf_keras CNN for the digits, trained for ``epochs`` (untrained with ``train=False``).

    Its layers cover what the tool handles: Conv2D, a Conv2D + BatchNormalization + ReLU group (folded by
    quantization), pooling, Dense layers and layers without weights.
    """
    from .model.stack import keras

    keras.utils.set_random_seed(seed)
    layers = keras.layers
    inputs = keras.Input(shape=(8, 8, 1), name="image")
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = layers.Conv2D(32, 3, padding="same", name="conv2")(x)
    x = layers.BatchNormalization(name="bn2")(x)
    x = layers.ReLU(name="relu2")(x)
    x = layers.MaxPooling2D(2, name="pool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(64, activation="relu", name="dense")(x)
    x = layers.Dropout(0.2, name="dropout")(x)
    outputs = layers.Dense(10, activation="softmax", name="classifier")(x)
    model = keras.Model(inputs, outputs, name="digits_cnn")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    if train:
        (x_train, y_train), _ = digits_data()
        model.fit(x_train, y_train, epochs=epochs, batch_size=32, verbose=0)
    return model


def synthetic_images(count: int, size: int = 96, channels: int = 3, seed: int = 0):
    """``count`` smooth random images in [-1, 1] (MobileNet's input range), float32 of shape (count, size, size,
    channels): blocks of 8x8 pixels of one colour plus a little noise, so convolutions see edges and areas."""
    import numpy as np

    rng = np.random.default_rng(seed)
    blocks = -(-size // 8)
    coarse = rng.uniform(-1, 1, (count, blocks, blocks, channels))
    x = np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2)[:, :size, :size]
    return np.clip(x + rng.normal(0, 0.1, x.shape), -1, 1).astype("float32")


def mobilenet_v2(size: int = 96, alpha: float = 0.35, classes: int = 1000, seed: int = 0, logits: bool = True):
    """An untrained tf_keras MobileNetV2 (nothing is downloaded) that behaves like a network: benchmarks and tests.

    With ``weights=None`` every BatchNormalization has moving mean 0 and variance 1, so activations shrink block
    after block and the logits come out near 1e-12, which no int8 file can represent. One forward pass in training
    mode over 128 :func:`synthetic_images` (momentum 0) sets those statistics, and the activations have their usual
    ranges. ``logits=True`` leaves out the softmax (an untrained softmax is nearly flat).
    """
    from .model.stack import keras

    keras.utils.set_random_seed(seed)
    model = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=alpha, weights=None, classes=classes,
                                           classifier_activation=None if logits else "softmax")
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    momentum = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    model(synthetic_images(128, size, seed=seed), training=True)
    for layer, value in zip(norms, momentum):
        layer.momentum = value
    return model


def logit_fidelity(y_true, y_pred) -> float:
    """A metric for an untrained network: 1 minus the RMS error of ``y_pred`` relative to the RMS of the float
    model's logits ``y_true`` (1.0: identical; below 0 when the error is larger than the logits themselves).

    Its top-1 class says little, its logits do: pass ``metric=logit_fidelity`` with ``y = model.predict(x)``.
    """
    import numpy as np

    reference = np.asarray(y_true, dtype=np.float64)
    error = np.sqrt(np.mean((np.asarray(y_pred, dtype=np.float64) - reference) ** 2))
    return float(1.0 - error / max(np.sqrt(np.mean(reference ** 2)), 1e-12))
