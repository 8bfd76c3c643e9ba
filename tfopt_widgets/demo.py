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
    n_test = int(round(len(x) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return (x[train], y[train]), (x[test], y[test])


def digits_model(epochs: int = 12, seed: int = 0, train: bool = True):
    """A compiled tf_keras CNN for the digits, trained for ``epochs`` (untrained with ``train=False``).

    Its layers cover what the tool handles: Conv2D, a Conv2D + BatchNormalization + ReLU group (folded by
    quantization), pooling, Dense layers and layers without weights.
    """
    from ._keras import keras

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
