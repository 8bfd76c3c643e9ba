"""Conformance matrix: every public step of tfopt-widgets on a zoo of architectures, each in its own process.

For each architecture (tf_keras applications with ``weights=None`` at the smallest input each accepts, the same
families built with Keras 3, and non-classifier shapes built here) a worker process builds the model and random,
seeded data of the right shapes, then runs the steps of :data:`STEPS` in order: ``tw.inspect``, ``tw.Studio``,
``tw.optimize`` with QAT, PQAT, CQAT and PCQAT plans, ``tw.convert`` for cpu, gpu, edgetpu and hexagon,
``tw.evaluate``, ``tw.sensitivity`` + ``tw.suggest_plan`` and ``Plan.to_python`` (the script run in a fresh
process). Training is 1 epoch of 2 steps of 4 samples: the matrix checks that each step works, not accuracy.

Every cell has a status, its seconds and a few numbers:

- ``ok``: the step worked.
- ``no``: a limitation the library reports up front: an exception of tfopt_widgets' own types (``tw.Error`` and its
  subclasses PlanError, ModelError, DataError, TargetError, ConversionError), or a technique that no layer of the
  model supports per ``LayerInfo.supports()``; the cell holds the library's reason.
- ``crash``: any other exception (a bug): its type, message and the last frames of its traceback; also a worker
  process that died (its exit status and faulthandler's stack, or the end of its log), and a generated script
  that failed (the end of its output).
- ``timeout``: the architecture's worker ran past ``--timeout`` and was killed in this step (with the stack where
  it was, when it could say), or before reaching it.
- ``skipped``: not run, and why (not selected, a reduced step set, a large model, nothing to evaluate).

    python bench/zoo.py                          # the full matrix: bench/results/zoo.json + zoo.md (2-3 h on 2 cores)
    python bench/zoo.py --quick                  # 3 tiny architectures (CI smoke): zoo-quick.json + zoo-quick.md
    python bench/zoo.py --only unet,mobilenet_v2 --steps pcqat,convert_edgetpu --timeout 300
    python bench/zoo.py --list                   # the architectures and steps
    python bench/zoo.py --readme                 # print the README's "Supported models" table made from zoo.json
    python bench/zoo.py --readme --write-readme  # ... and put it between the zoo markers in README.md

Keras 3 rows (``*_k3``; Keras 3 has no RegNet) run a reduced step set (:data:`KERAS3_STEPS`) to keep the full matrix
short (``--jobs N`` runs N architectures at once on a larger machine); ``Plan.to_python`` runs only on the small models (the non-classifier shapes and the digits-sized
CNN). ``tw.sensitivity`` measures every technique on small models and pruning + clustering (one level each) on
the others, on 8 samples, in threads.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_MARKERS = ("<!-- zoo:start -->", "<!-- zoo:end -->")

SEED = 0
SAMPLES = 16  # random samples per architecture: training, calibration and evaluation data alike
BATCH_SIZE = 4
STEPS_PER_EPOCH = 2  # one epoch of 2 steps per tw.optimize stage
CLASSES = 10
LARGEST = 3  # PQAT / CQAT / PCQAT prune and cluster the 3 largest layers that allow it, and quantize every layer
SPARSITY = 0.5
CLUSTERS = 16
SENSITIVITY_SAMPLES = 8
DEFAULT_TIMEOUT_S = 600
QUICK = ("digits_cnn", "regression", "autoencoder")
LOG_TAIL_LINES = 30
WHERE_GRACE_S = 3  # at the time limit, how long the worker may take to say where it is
TRACEBACK_FRAMES = 8
FOOTNOTE_CHARS = 300  # README footnotes; zoo.md has every message in full


# ---------------------------------------------------------------------------------------------------------------
# Data: seeded random arrays of the right shapes

def rng():
    import numpy as np

    return np.random.default_rng(SEED)


def images(shape) -> object:
    return rng().uniform(0, 1, (SAMPLES, *shape)).astype("float32")


def class_ids(classes: int = CLASSES, shape=()) -> object:
    return rng().integers(0, classes, (SAMPLES, *shape)).astype("int64")


def tokens(length: int, vocabulary: int) -> object:
    return rng().integers(1, vocabulary, (SAMPLES, length)).astype("int32")


def negative_mse(y_true, y_pred) -> float:
    """evaluate / sensitivity metric for regression and reconstruction (higher is better)."""
    import numpy as np

    return -float(np.mean((np.asarray(y_true, "float32").reshape(np.shape(y_pred)) - y_pred) ** 2))


def compiled(model, loss="sparse_categorical_crossentropy", metrics=("accuracy",)):
    model.compile(optimizer="adam", loss=loss, metrics=list(metrics) if metrics else None)
    return model


# ---------------------------------------------------------------------------------------------------------------
# Architectures: builders take the Keras module (tf_keras or Keras 3) and return (compiled model, x, y)

def application(cls: str, size: int, **kwargs) -> Callable:
    """keras.applications.<cls> with its classifier (CLASSES classes) at ``size`` x ``size``."""
    def build(keras):
        model = getattr(keras.applications, cls)(input_shape=(size, size, 3), weights=None, classes=CLASSES,
                                                 **kwargs)
        return compiled(model), images((size, size, 3)), class_ids()
    return build


def application_with_head(cls: str, size: int, **kwargs) -> Callable:
    """keras.applications.<cls> without its top, average-pooled, with one Dense classifier (one flat graph)."""
    def build(keras):
        base = getattr(keras.applications, cls)(input_shape=(size, size, 3), weights=None, include_top=False,
                                                pooling="avg", **kwargs)
        outputs = keras.layers.Dense(CLASSES, activation="softmax", name="classifier")(base.output)
        model = keras.Model(base.input, outputs, name=f"{base.name}_head")
        return compiled(model), images((size, size, 3)), class_ids()
    return build


def digits_cnn(keras):
    """A digits-sized CNN (8x8x1): Conv2D + BatchNormalization + ReLU groups, a SeparableConv2D, pooling, Dense."""
    layers = keras.layers
    inputs = keras.Input((8, 8, 1), name="image")
    x = layers.Conv2D(8, 3, padding="same", name="conv1")(inputs)
    x = layers.BatchNormalization(name="bn1")(x)
    x = layers.ReLU(name="relu1")(x)
    x = layers.SeparableConv2D(16, 3, padding="same", activation="relu", name="sepconv")(x)
    x = layers.MaxPooling2D(name="pool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(32, activation="relu", name="dense")(x)
    outputs = layers.Dense(CLASSES, activation="softmax", name="classifier")(x)
    return compiled(keras.Model(inputs, outputs, name="digits_cnn")), images((8, 8, 1)), class_ids()


def text_cnn_lstm(keras):
    """Token ids -> Embedding -> Conv1D -> LSTM -> Dense classifier."""
    layers = keras.layers
    inputs = keras.Input((20,), dtype="int32", name="tokens")
    x = layers.Embedding(100, 16, name="embedding")(inputs)
    x = layers.Conv1D(16, 3, activation="relu", name="conv1d")(x)
    x = layers.LSTM(16, name="lstm")(x)
    outputs = layers.Dense(4, activation="softmax", name="classifier")(x)
    return compiled(keras.Model(inputs, outputs, name="text_cnn_lstm")), tokens(20, 100), class_ids(4)


def text_bigru(keras):
    """Token ids -> Embedding -> Bidirectional(GRU) -> Dense classifier."""
    layers = keras.layers
    inputs = keras.Input((20,), dtype="int32", name="tokens")
    x = layers.Embedding(100, 16, name="embedding")(inputs)
    x = layers.Bidirectional(layers.GRU(16), name="bigru")(x)
    outputs = layers.Dense(4, activation="softmax", name="classifier")(x)
    return compiled(keras.Model(inputs, outputs, name="text_bigru")), tokens(20, 100), class_ids(4)


def unet(keras):
    """A small U-Net: two downsamplings, Conv2DTranspose and UpSampling2D back up, skips, per-pixel softmax."""
    layers = keras.layers

    def block(x, filters, name):
        x = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv")(x)
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
        return layers.ReLU(name=f"{name}_relu")(x)

    inputs = keras.Input((32, 32, 3), name="image")
    d1 = block(inputs, 8, "down1")
    d2 = block(layers.MaxPooling2D(name="pool1")(d1), 16, "down2")
    bottom = block(layers.MaxPooling2D(name="pool2")(d2), 32, "bottom")
    u2 = layers.Conv2DTranspose(16, 2, strides=2, padding="same", name="up2_transpose")(bottom)
    u2 = block(layers.Concatenate(name="skip2")([u2, d2]), 16, "up2")
    u1 = layers.UpSampling2D(name="up1_upsample")(u2)
    u1 = block(layers.Concatenate(name="skip1")([u1, d1]), 8, "up1")
    outputs = layers.Conv2D(4, 1, activation="softmax", name="segmentation")(u1)
    return compiled(keras.Model(inputs, outputs, name="unet")), images((32, 32, 3)), class_ids(4, (32, 32))


def two_in_two_out(keras):
    """An image and a feature vector in; a class and a regression value out."""
    layers = keras.layers
    image = keras.Input((16, 16, 3), name="image")
    features = keras.Input((8,), name="features")
    x = layers.Conv2D(8, 3, activation="relu", name="conv")(image)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    f = layers.Dense(8, activation="relu", name="features_dense")(features)
    joined = layers.Concatenate(name="join")([x, f])
    label = layers.Dense(5, activation="softmax", name="label")(joined)
    value = layers.Dense(1, name="value")(joined)
    model = keras.Model([image, features], [label, value], name="two_in_two_out")
    model.compile(optimizer="adam", loss={"label": "sparse_categorical_crossentropy", "value": "mse"})
    x_data = (images((16, 16, 3)), rng().normal(size=(SAMPLES, 8)).astype("float32"))
    return model, x_data, (class_ids(5), rng().normal(size=(SAMPLES, 1)).astype("float32"))


def regression(keras):
    """Dense layers with an MSE loss."""
    layers = keras.layers
    inputs = keras.Input((8,), name="features")
    x = layers.Dense(32, activation="relu", name="dense1")(inputs)
    x = layers.Dense(16, activation="relu", name="dense2")(x)
    outputs = layers.Dense(1, name="value")(x)
    model = compiled(keras.Model(inputs, outputs, name="regression"), loss="mse", metrics=("mae",))
    x_data = rng().normal(size=(SAMPLES, 8)).astype("float32")
    return model, x_data, x_data.sum(axis=1, keepdims=True)


def autoencoder(keras):
    """Conv encoder -> Dense bottleneck -> Conv2DTranspose decoder, reconstructing its input (MSE)."""
    layers = keras.layers
    inputs = keras.Input((16, 16, 1), name="image")
    x = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="encode_conv")(inputs)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(16, activation="relu", name="bottleneck")(x)
    x = layers.Dense(8 * 8 * 8, activation="relu", name="expand")(x)
    x = layers.Reshape((8, 8, 8), name="reshape")(x)
    outputs = layers.Conv2DTranspose(1, 3, strides=2, padding="same", activation="sigmoid", name="decode")(x)
    model = compiled(keras.Model(inputs, outputs, name="autoencoder"), loss="mse", metrics=())
    x_data = images((16, 16, 1))
    return model, x_data, x_data


@dataclass(frozen=True)
class Arch:
    """One row of the matrix."""

    title: str
    build: Callable  # (keras module) -> (compiled model, x, y)
    keras3: bool = False
    small: bool = False  # Plan.to_python's script runs on small models only; sensitivity covers every technique
    metric: Callable | None = None  # tw.evaluate / tw.sensitivity metric; None: accuracy


# name -> (title, builder): the Keras applications, each also built with Keras 3 (name_k3) except RegNet.
APPLICATIONS = {
    "mobilenet": ("MobileNet 0.25, 32x32", application("MobileNet", 32, alpha=0.25)),
    "mobilenet_v2": ("MobileNetV2 0.35, 32x32", application("MobileNetV2", 32, alpha=0.35)),
    "mobilenet_v3_small": ("MobileNetV3Small 0.75, 32x32", application("MobileNetV3Small", 32, alpha=0.75)),
    "mobilenet_v3_large": ("MobileNetV3Large 0.75, 32x32", application("MobileNetV3Large", 32, alpha=0.75)),
    "efficientnet_b0": ("EfficientNetB0, 32x32", application("EfficientNetB0", 32)),
    "efficientnet_v2_b0": ("EfficientNetV2B0, 32x32", application("EfficientNetV2B0", 32)),
    "resnet50": ("ResNet50, 32x32", application("ResNet50", 32)),
    "resnet50_v2": ("ResNet50V2, 32x32", application("ResNet50V2", 32)),
    "densenet121": ("DenseNet121, 32x32", application("DenseNet121", 32)),
    "nasnet_mobile": ("NASNetMobile, 32x32", application("NASNetMobile", 32)),
    "xception": ("Xception, 71x71", application("Xception", 71)),
    "inception_v3": ("InceptionV3, 75x75", application("InceptionV3", 75)),
    "convnext_tiny": ("ConvNeXtTiny, 32x32", application("ConvNeXtTiny", 32)),
    "regnet_x002": ("RegNetX002, 32x32", application("RegNetX002", 32)),
    # Its own top at 32x32 is two Dense(4096) layers (34M parameters): pooled features + one Dense instead.
    "vgg16": ("VGG16 (pooled + Dense head), 32x32", application_with_head("VGG16", 32)),
}
KERAS3_MISSING = {"regnet_x002"}  # keras.applications (Keras 3) has no RegNet

ARCHITECTURES: dict[str, Arch] = {
    **{name: Arch(title, build) for name, (title, build) in APPLICATIONS.items()},
    **{f"{name}_k3": Arch(f"{title} (Keras 3)", build, keras3=True)
       for name, (title, build) in APPLICATIONS.items() if name not in KERAS3_MISSING},
    "digits_cnn": Arch("digits-sized CNN, 8x8x1", digits_cnn, small=True),
    "text_cnn_lstm": Arch("text: Embedding, Conv1D, LSTM", text_cnn_lstm, small=True),
    "text_bigru": Arch("text: Embedding, Bidirectional(GRU)", text_bigru, small=True),
    "unet": Arch("U-Net segmentation, 32x32", unet, small=True),
    "two_in_two_out": Arch("two inputs, two outputs", two_in_two_out, small=True),
    "regression": Arch("regression (MSE)", regression, small=True, metric=negative_mse),
    "autoencoder": Arch("conv/dense autoencoder", autoencoder, small=True, metric=negative_mse),
}


# ---------------------------------------------------------------------------------------------------------------
# What a step can say besides "ok"

class Limitation(Exception):
    """A step the model cannot take, known before trying (e.g. no layer supports the technique): status ``no``."""


class Skip(Exception):
    """A step that does not apply here (e.g. nothing converted to evaluate): status ``skipped``."""


class Work:
    """One architecture in the worker process: the model, its data, and what earlier steps produced."""

    def __init__(self, name: str, deadline: float):
        import numpy as np

        self.arch = ARCHITECTURES[name]
        self.deadline = deadline
        if self.arch.keras3:
            import keras
        else:
            from tfopt_widgets.model.stack import keras
        keras.utils.set_random_seed(SEED)
        self.model, self.x, self.y = self.arch.build(keras)
        self.multi_input = isinstance(self.x, (tuple, list))
        self.info = None
        self.plans, self.optimized, self.converted = {}, {}, {}
        self.np = np

    # data in the form the library takes: (x, y) arrays, or a batched tf.data.Dataset for several inputs/outputs
    @property
    def data(self):
        if not self.multi_input and not isinstance(self.y, (tuple, list)):
            return self.x, self.y
        import tensorflow as tf

        return tf.data.Dataset.from_tensor_slices((tuple(self.x), tuple(self.y))).batch(BATCH_SIZE)

    @property
    def calibration(self):
        return self.data if self.multi_input else self.x

    def layer_info(self):
        if self.info is None:
            import tfopt_widgets as tw

            self.info = tw.inspect(self.model)
        return self.info

    def supported(self, technique: str) -> list:
        """Layers that support ``technique``; Limitation with the library's reasons when there are none."""
        layers = [layer for layer in self.layer_info().layers if layer.supports(technique).ok]
        if not layers:
            reasons = {}
            for layer in self.layer_info().layers:
                if layer.class_name != "InputLayer":
                    reasons.setdefault(layer.supports(technique).reason, layer.class_name)
            text = "; ".join(f"{cls}: {reason}" for reason, cls in list(reasons.items())[:3])
            raise Limitation(f"No layer of the model supports {technique} (tw.inspect): {text}")
        return layers

    def quantize_heads(self) -> list[str]:
        """Every quantizable layer except those folded into a convolution (quantizing the head includes them)."""
        return [layer.name for layer in self.supported("quantize") if layer.group is None]

    def compression_plan(self, techniques: tuple[str, ...], make: Callable) -> tuple[object, dict[str, str]]:
        """``make(layers)``'s plan on the LARGEST layers (by parameters) that support ``techniques`` together
        (``LayerInfo.supports(*techniques)``), and {layer left out: the library's reason}.

        A layer that ``plan.validate`` still refuses (too few weights for the clusters, say) is left out and the next
        largest one taken, as a user would.
        """
        from tfopt_widgets.errors import PlanError

        for technique in techniques:
            self.supported(technique)  # a Limitation with the library's reasons when no layer supports it
        ranked = [layer.name for layer in sorted(self.layer_info().layers, key=lambda layer: layer.params,
                                                 reverse=True) if layer.supports(*techniques).ok]
        left_out: dict[str, str] = {}
        while True:
            chosen = [name for name in ranked if name not in left_out][:LARGEST]
            if not chosen:
                raise Limitation(f"No layer takes {' + '.join(techniques)} together: "
                                 + (" ".join(left_out.values()) or "none supports all of them (tw.inspect)."))
            plan = make(chosen)
            try:
                plan.validate(self.model)
                return plan, left_out
            except PlanError as error:
                if error.layer not in chosen:
                    raise
                left_out[error.layer] = str(error)

    def optimize(self, name: str, plan, left_out: dict[str, str] | None = None) -> dict:
        import tfopt_widgets as tw

        self.plans[name] = plan
        opt = tw.optimize(self.model, plan, self.data, epochs=1, batch_size=BATCH_SIZE,
                          steps_per_epoch=STEPS_PER_EPOCH)
        self.optimized[name] = opt
        numbers = {"planned_layers": len(plan), "quantized": len(plan.layers("quantize")),
                   "stages": list(opt.history)}
        if left_out:
            numbers["left_out"] = left_out
        compressed = [e.layer for e in plan if e.prune or e.cluster]
        if compressed:
            stats = opt.layer_stats()
            numbers["layers"] = {layer: {"scheme": plan[layer].scheme,
                                         "sparsity": _rounded(stats.loc[layer, "sparsity"]),
                                         "unique_values": _int(stats.loc[layer, "unique_values"])}
                                 for layer in compressed}
        return numbers

    def source(self):
        """What the conversions start from: the PCQAT result, else the QAT result, else the float model."""
        for name in ("pcqat", "qat"):
            if name in self.optimized:
                return name, self.optimized[name]
        return "float", self.model

    def seconds_left(self) -> float:
        return self.deadline - time.time()


def _rounded(value, digits: int = 3):
    return None if value is None or math.isnan(value) else round(float(value), digits)


def _int(value):
    return None if value is None or math.isnan(value) else int(value)


# ---------------------------------------------------------------------------------------------------------------
# Steps: each takes the Work and returns the cell's numbers (or raises)

def step_inspect(work: Work) -> dict:
    info = work.layer_info()
    counts = {t: sum(layer.supports(t).ok for layer in info.layers) for t in ("quantize", "prune", "cluster")}
    return {"layers": len(info.layers), "params": int(info.params), "supports": counts,
            "folded_into_a_convolution": sum(layer.group is not None for layer in info.layers),
            "notices": len(info.notices)}


def step_studio(work: Work) -> dict:
    from scale import state_json  # bench/scale.py's measure of the widget state

    import tfopt_widgets as tw

    with _common.Stopwatch() as built:
        studio = tw.Studio(work.model, train_data=work.data, validation_data=work.data, target="cpu")
    try:
        state = state_json(studio)
        return {"build_s": round(built.seconds, 3), "state_bytes": len(state.encode()),
                "layers": len(studio.info.layers)}
    finally:
        studio.close()


def step_qat(work: Work) -> dict:
    return work.optimize("qat", quantized(work))


def step_pqat(work: Work) -> dict:
    return work.optimize("pqat", *work.compression_plan(
        ("prune",), lambda largest: quantized(work).prune(*largest, sparsity=SPARSITY)))


def step_cqat(work: Work) -> dict:
    return work.optimize("cqat", *work.compression_plan(
        ("cluster",), lambda largest: quantized(work).cluster(*largest, clusters=CLUSTERS)))


def step_pcqat(work: Work) -> dict:
    return work.optimize("pcqat", *work.compression_plan(
        ("prune", "cluster"),
        lambda largest: quantized(work).prune(*largest, sparsity=SPARSITY).cluster(*largest, clusters=CLUSTERS)))


def quantized(work: Work):
    """A plan that quantizes every layer that can be (folded BatchNormalization/activations come with their head)."""
    import tfopt_widgets as tw

    return tw.Plan().quantize(*work.quantize_heads())


def convert_step(target: str) -> Callable:
    def step(work: Work) -> dict:
        import tfopt_widgets as tw

        source, model = work.source()
        with _common.Stopwatch() as converted:
            tfl = tw.convert(model, target, representative_data=work.calibration)
        work.converted[target] = tfl
        with _common.Stopwatch() as checked:
            summary = tfl.compatibility.summary
        return {"source": source, "convert_s": round(converted.seconds, 2), "compatibility_s": round(checked.seconds, 2),
                "mode": tfl.quantization, "size": tfl.size, "gzip_size": tfl.gzip_size,
                "ops": summary["ops"], "ops_accelerated": summary["ops_accelerated"],
                "op_share": _rounded(summary["op_share"]), "mac_share": _rounded(summary["mac_share"]),
                "partitions": summary["partitions"], "warnings": summary["warnings"][:2]}
    step.__name__ = f"step_convert_{target}"
    return step


def step_evaluate(work: Work) -> dict:
    import tfopt_widgets as tw

    target = next((t for t in ("edgetpu", "cpu") if t in work.converted), None)
    if target is None:
        raise Skip("no converted file to evaluate (convert_edgetpu and convert_cpu did not succeed or did not run)")
    metrics = tw.evaluate(work.converted[target], data=work.data, metric=work.arch.metric, runs=10, warmup=2)
    return {"file": target, "metric": metrics.metric, "value": _rounded(metrics.value, 4),
            "latency_ms": _rounded(metrics.latency_ms), "samples": metrics.samples, "size": metrics.size}


def step_sensitivity(work: Work) -> dict:
    import tfopt_widgets as tw

    techniques = ("quantize", "prune", "cluster") if work.arch.small else ("prune", "cluster")
    levels = {"prune": (SPARSITY,), "cluster": (CLUSTERS,)}
    report = tw.sensitivity(work.model, work.data, techniques=techniques, levels=levels, executor="threads",
                            metric=work.arch.metric, samples=SENSITIVITY_SAMPLES)
    plan = tw.suggest_plan(report, budget=0.01, target="cpu")
    return {"techniques": list(techniques), "levels": {k: list(v) for k, v in levels.items()},
            "rows": len(report.rows), "baseline": _rounded(report.baseline, 4), "suggested_layers": len(plan),
            "suggested": {scheme: sum(e.scheme == scheme for e in plan) for scheme in {e.scheme for e in plan}}}


# Runs the script as __main__ with tfopt_widgets made unimportable: it must stand on tf_keras + tfmot + TF alone
# (as tests/test_writeups.py runs it).
WITHOUT_PACKAGE = ("import runpy, sys; sys.modules['tfopt_widgets'] = None; "
                   "runpy.run_path(sys.argv[1], run_name='__main__')")


def step_to_python(work: Work) -> dict:
    from tfopt_widgets.plan.script import FILL_IN

    if not work.arch.small:
        raise Skip("large model (the script runs on the non-classifier shapes and the digits-sized CNN only)")
    name = next((n for n in ("pcqat", "qat") if n in work.optimized), None) or \
        next((n for n in ("pcqat", "qat") if n in work.plans), None)
    if name is None:
        raise Skip("no plan: neither the pcqat nor the qat step made one")
    plan = work.plans[name]
    with tempfile.TemporaryDirectory(prefix=f"zoo-{work.model.name}-") as temporary:
        folder = Path(temporary)
        model_path, output = folder / "model.keras", folder / "model.tflite"
        work.model.save(model_path)
        xs = work.x if work.multi_input else (work.x,)
        ys = work.y if isinstance(work.y, (tuple, list)) else (work.y,)
        work.np.savez(folder / "data.npz", **{f"x{i}": x for i, x in enumerate(xs)},
                      **{f"y{i}": y for i, y in enumerate(ys)})

        def expression(prefix, count):
            items = [f'data["{prefix}{i}"]' for i in range(count)]
            return items[0] if count == 1 else "(" + ", ".join(items) + ")"

        # What a reader writes into load_training_data(): the same arrays, from a file.
        body = (f'data = np.load({str(folder / "data.npz")!r})\n'
                f"    return {expression('x', len(xs))}, {expression('y', len(ys))}")
        script = plan.to_python(str(model_path), "edgetpu", model=work.model, epochs=1, batch_size=BATCH_SIZE,
                                output_path=str(output))
        path = folder / "reproduce.py"
        path.write_text(script.replace(FILL_IN, body))
        with _common.Stopwatch() as ran:
            process = subprocess.run([sys.executable, "-c", WITHOUT_PACKAGE, str(path)], cwd=folder, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     timeout=max(1.0, work.seconds_left()), check=False)
        if process.returncode != 0 or not output.exists():
            lines = [line for line in process.stdout.splitlines() if line.strip()]
            raise ScriptFailed(f"the generated script ({len(script.splitlines())} lines, plan of the {name} step) "
                               f"exited with status {process.returncode}"
                               f"{'' if output.exists() else ' and wrote no .tflite file'}"
                               f": {lines[-1].strip() if lines else 'no output'}\n"
                               + "\n".join(lines[-LOG_TAIL_LINES:]))
        return {"plan": name, "script_lines": len(script.splitlines()), "script_s": round(ran.seconds, 1),
                "tflite_size": output.stat().st_size}


class ScriptFailed(Exception):
    """Plan.to_python's script failed when run: a crash (the library generated it)."""


# name -> (column header, function), in the order the worker runs them (later steps use earlier results)
STEPS: dict[str, tuple[str, Callable]] = {
    "inspect": ("inspect", step_inspect),
    "studio": ("Studio", step_studio),
    "qat": ("QAT", step_qat),
    "pqat": ("PQAT", step_pqat),
    "cqat": ("CQAT", step_cqat),
    "pcqat": ("PCQAT", step_pcqat),
    "convert_cpu": ("cpu", convert_step("cpu")),
    "convert_gpu": ("gpu", convert_step("gpu")),
    "convert_edgetpu": ("Edge TPU", convert_step("edgetpu")),
    "convert_hexagon": ("Hexagon", convert_step("hexagon")),
    "evaluate": ("evaluate", step_evaluate),
    "sensitivity": ("sensitivity", step_sensitivity),
    "to_python": ("to_python", step_to_python),
}
KERAS3_STEPS = ("inspect", "studio", "qat", "convert_edgetpu", "evaluate")


# ---------------------------------------------------------------------------------------------------------------
# The worker: one architecture, one process; every event is a JSON line, flushed, so a killed worker leaves them

def classify(error: BaseException) -> dict:
    """A step's exception as a cell: ``no`` for the library's own errors and Limitation, ``crash`` otherwise."""
    from tfopt_widgets.errors import Error

    if isinstance(error, Skip):
        return {"status": "skipped", "reason": str(error)}
    if isinstance(error, (Error, Limitation)):
        cell = {"status": "no", "error_type": type(error).__name__, "reason": str(error)}
        # The library's error raised while handling another exception (e.g. "Fine-tuning failed: ValueError: ...")
        # is still its own report, but not one made up front: the cell says what it wraps, for a second look.
        inner = error.__cause__ or error.__context__
        if inner is not None and not isinstance(inner, (Error, Limitation)):
            cell["wraps"] = type(inner).__name__
        return cell
    frames = traceback.extract_tb(error.__traceback__)[-TRACEBACK_FRAMES:]
    kind = type(error)
    name = kind.__qualname__ if kind.__module__ in ("builtins", "__main__", "zoo") else \
        f"{kind.__module__}.{kind.__qualname__}"
    return {"status": "crash", "error": {
        "type": name, "message": str(error)[:4000],
        "traceback": [f"{Path(f.filename).name}:{f.lineno} in {f.name}: {f.line}" for f in frames]}}


def worker(name: str, steps: list[str], cells: Path, deadline: float) -> int:
    import faulthandler
    import warnings

    # A segmentation fault in TensorFlow or LiteRT leaves the Python stacks in a file of their own (the library
    # redirects file descriptor 2 while LiteRT runs, so stderr may not be where a crash report lands).
    fault_file = cells.with_suffix(".fault").open("w")
    faulthandler.enable(fault_file)

    def where(signum, frame):
        """At the time limit the parent asks (SIGUSR1) where the worker is, then kills it."""
        fault_file.write("Timeout (at the time limit)!\nThread main (most recent call first):\n")
        fault_file.writelines(f'  File "{f.filename}", line {f.lineno} in {f.name}\n'
                              for f in reversed(traceback.extract_stack(frame)))
        fault_file.flush()
        os._exit(124)

    signal.signal(signal.SIGUSR1, where)
    warnings.simplefilter("ignore")  # tw.ModelNotice and TensorFlow's deprecations: the log is not the result
    with cells.open("a") as events:
        def emit(**event):
            events.write(json.dumps({**event, "t": time.time()}, default=str) + "\n")
            events.flush()

        emit(event="start", step="build")
        with _common.Stopwatch() as watch:
            try:
                work = Work(name, deadline)
            # A model that cannot be built is a result too.
            except Exception as error:  # noqa: BLE001
                emit(event="built", status="crash", seconds=round(watch.seconds, 2), **_drop_status(classify(error)))
                return 0
        emit(event="built", status="ok", seconds=round(watch.seconds, 2), params=int(work.model.count_params()),
             layers=len(work.model.layers))
        for step in steps:
            faulthandler.enable(fault_file)  # again: TensorFlow or LiteRT may have installed their own handlers
            emit(event="start", step=step)
            with _common.Stopwatch() as watch:
                try:
                    cell = {"status": "ok", "numbers": STEPS[step][1](work)}
                # Every failure is a cell.
                except Exception as error:  # noqa: BLE001
                    cell = classify(error)
            emit(event="cell", step=step, cell={**cell, "seconds": round(watch.seconds, 2)})
    return 0


def _drop_status(cell: dict) -> dict:
    return {k: v for k, v in cell.items() if k != "status"}


# ---------------------------------------------------------------------------------------------------------------
# The parent: one worker per architecture, killed at the time limit

def steps_for(name: str, selected: list[str]) -> tuple[list[str], dict[str, str]]:
    """The steps the worker runs, and {step: why skipped} for the others."""
    arch = ARCHITECTURES[name]
    run, skipped = [], {}
    for step in STEPS:
        if step not in selected:
            skipped[step] = "not selected (--steps)"
        elif arch.keras3 and step not in KERAS3_STEPS:
            skipped[step] = "Keras 3 rows run a reduced step set (" + ", ".join(KERAS3_STEPS) + ")"
        else:
            run.append(step)
    return run, skipped


def run_architecture(name: str, selected: list[str], timeout: float, logs: Path) -> dict:
    arch = ARCHITECTURES[name]
    steps, skipped = steps_for(name, selected)
    cells_path, log_path = logs / f"{name}.jsonl", logs / f"{name}.log"
    cells_path.unlink(missing_ok=True)
    cells_path.with_suffix(".fault").unlink(missing_ok=True)
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--steps", ",".join(steps),
               "--cells", str(cells_path), "--deadline", str(time.time() + timeout)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    timed_out = False
    with _common.Stopwatch() as watch, log_path.open("wb") as log:
        # A session of its own: on timeout the whole group goes (the worker and a script it runs).
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
                                   start_new_session=True)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            process.send_signal(signal.SIGUSR1)  # the worker writes where it is and exits, if it runs Python now
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=WHERE_GRACE_S)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # the worker and a script it runs
            process.wait()
    ended = time.time()
    events = [json.loads(line) for line in cells_path.read_text().splitlines() if line.strip()] \
        if cells_path.exists() else []

    record = {"name": name, "title": arch.title, "keras": 3 if arch.keras3 else 2, "seconds": round(watch.seconds, 1),
              "exit_status": process.returncode, "timed_out": timed_out, "timeout_s": timeout, "cells": {}}
    current, started = None, None
    for event in events:
        if event["event"] == "start":
            current, started = event["step"], event["t"]
        elif event["event"] == "built":
            record["build"] = {k: v for k, v in event.items() if k not in ("event", "t")}
            current = None
        elif event["event"] == "cell":
            record["cells"][event["step"]] = event["cell"]
            current = None
    tail = _fault_stack(cells_path.with_suffix(".fault")) or _tail(log_path)
    build = record.get("build")
    for step in STEPS:
        if step in skipped:
            record["cells"][step] = {"status": "skipped", "reason": skipped[step], "seconds": None}
        elif step in record["cells"]:
            continue
        elif build is not None and build["status"] != "ok":
            record["cells"][step] = {"status": "skipped", "reason": "the model could not be built (see build)",
                                     "seconds": None}
        elif timed_out:
            into = f"{ended - started:.0f} s into this step" if step == current else (
                "while it was building the model" if current == "build" else
                f"before this step (in {current})" if current else "before this step")
            record["cells"][step] = {"status": "timeout",
                                     "seconds": round(ended - started, 1) if step == current else None,
                                     "reason": f"killed at the architecture's {timeout:.0f} s limit, {into}"}
            if step == current and tail:
                record["cells"][step]["where"] = tail
        else:  # the worker died without a Python exception (a signal, out of memory, an abort in C++)
            record["cells"][step] = (
                {"status": "crash", "seconds": round(ended - started, 1) if started else None,
                 "error": {"type": "WorkerDied", "message": f"the worker process exited with status "
                           f"{process.returncode} in this step{_signal_name(process.returncode)}",
                           "traceback": tail}}
                if step == current else
                {"status": "skipped", "seconds": None,
                 "reason": f"not reached: the worker process died in {current or 'its start-up'}"})
    if build is None:
        record["build"] = ({"status": "timeout", "reason": "killed while building the model"} if timed_out and
                           current == "build" else {"status": "crash", "error": {
                               "type": "WorkerDied", "message": f"the worker exited with status {process.returncode} "
                               f"before building the model{_signal_name(process.returncode)}", "traceback": tail}})
    record["cells"] = {step: record["cells"][step] for step in STEPS}
    return record


# TensorFlow's start-up chatter, which says nothing about why a worker died.
_NOISE = re.compile(r"^(I0000|W0000|E0000|WARNING: All log messages|WARNING:tensorflow:|Extension modules:)")


def _tail(path: Path) -> list[str]:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [line for line in lines if line.strip() and not _NOISE.match(line)][-LOG_TAIL_LINES:]


def _fault_stack(path: Path) -> list[str]:
    """The worker's last words: the error (or the timeout) and one thread's stack, most recent call first.

    After a fatal signal, faulthandler's report of the crashing thread ("Current thread"); at the time limit, the
    main thread's stack as the worker wrote it. The innermost frames, then those in tfopt_widgets and tfmot.
    """
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    fatal = next((i for i, line in enumerate(lines) if line.startswith("Fatal Python error")), None)
    lines = lines[fatal:] if fatal is not None else lines  # a crash after the dump made before the time limit
    headers = [line for line in lines if line.startswith(("Fatal Python error", "Timeout ("))][:1]
    threads, block = [], None
    for line in lines:
        if line.startswith(("Current thread", "Thread ")):
            block = [line]
            threads.append(block)
        elif block is not None and line.startswith("  File "):
            block.append(line.strip())
        else:
            block = None
    if not threads:
        return headers
    crashed = [b for b in threads if b[0].startswith("Current thread")]
    timed_out = bool(headers) and headers[0].startswith("Timeout")
    header, *frames = crashed[0] if crashed and not timed_out else threads[-1]
    inner = frames[:TRACEBACK_FRAMES // 2]
    ours = [f for f in frames[len(inner):] if "tfopt_widgets" in f or "tensorflow_model_optimization" in f]
    return [*headers, header, *inner, *(["..."] if ours else []), *ours[:TRACEBACK_FRAMES]]


def _signal_name(status: int | None) -> str:
    if status is None or status >= 0:
        return ""
    try:
        return f" (killed by {signal.Signals(-status).name})"
    except ValueError:
        return f" (signal {-status})"


def counts(records: list[dict]) -> dict:
    statuses = [cell["status"] for record in records for cell in record["cells"].values()]
    run = [s for s in statuses if s != "skipped"]
    return {"cells": len(statuses), "run": len(run), **{s: statuses.count(s)
                                                         for s in ("ok", "no", "crash", "timeout", "skipped")}}


# ---------------------------------------------------------------------------------------------------------------
# Reports: the result Markdown and the README's "Supported models" table

def cell_text(cell: dict) -> str:
    status = cell["status"]
    if status == "skipped":
        return "–"
    seconds = f" {cell['seconds']:.0f}s" if cell.get("seconds") is not None and cell["seconds"] >= 10 else \
        f" {cell['seconds']:.1f}s" if cell.get("seconds") is not None else ""
    label = "**crash**" if status == "crash" else "no*" if cell.get("wraps") else status
    return label + seconds


def message(cell: dict) -> str:
    """The full text of a non-ok cell."""
    if cell["status"] == "crash":
        error = cell["error"]
        frames = "\n".join(f"      {frame}" for frame in error.get("traceback", []))
        return f"{error['type']}: {error['message']}" + (f"\n    traceback (last frames):\n{frames}" if frames else "")
    if cell["status"] == "timeout" and cell.get("where"):
        frames = "\n".join(f"      {frame}" for frame in cell["where"])
        return f"{cell['reason']}\n    where it was:\n{frames}"
    if cell["status"] == "no":
        wraps = f" (raised while handling {cell['wraps']})" if cell.get("wraps") else ""
        return f"{cell['error_type']}{wraps}: {cell['reason']}" if cell.get("error_type") != "Limitation" else \
            cell["reason"]
    return cell.get("reason", "")


def markdown(result: dict) -> list[str]:
    records = result["architectures"]
    total = counts(records)
    lines = ["# Conformance matrix: every public step on a zoo of architectures", "",
             (f"Each architecture in its own process, {result['timeout_s']:.0f} s at most; random seeded data "
              f"({SAMPLES} samples), tw.optimize with 1 epoch of {STEPS_PER_EPOCH} steps of {BATCH_SIZE}. "
              "Cells: ok; no = a limitation the library reports (its own error type, or no layer supports the "
              "technique; no* = the library's error raised while handling another exception, worth a second "
              "look); **crash** = any other exception (a bug); timeout; – = skipped (why: below). "
              f"Keras 3 rows run {', '.join(KERAS3_STEPS)}; Plan.to_python runs on the small models only."), ""]
    lines += _common.table(["architecture", *(STEPS[s][0] for s in STEPS)],
                           [[record["name"], *(cell_text(record["cells"][s]) for s in STEPS)] for record in records])
    lines += ["", "## Time per architecture", ""]
    rows = []
    for record in records:
        c = counts([record])
        build = record.get("build", {})
        rows.append([record["name"], record["title"], record["keras"], _format_count(build.get("params")),
                     build.get("layers", ""), build.get("seconds", build.get("status", "")), record["seconds"],
                     f"{c['ok']} / {c['run']}", c["crash"],
                     "timeout" if record["timed_out"] else record["exit_status"]])
    lines += _common.table(["architecture", "model", "Keras", "params", "layers", "build (s)", "whole (s)",
                            "ok / run", "crashes", "exit"], rows)
    lines += ["", "## Conversions", "",
              ("File size and the share of ops on the target's accelerator (tfl.compatibility.summary['op_share']), "
               "converted from the PCQAT result (else QAT, else float; the source is in the JSON)."), ""]
    targets = [s for s in STEPS if s.startswith("convert_")]
    lines += _common.table(["architecture", *(STEPS[t][0] for t in targets)],
                           [[record["name"], *(_conversion_text(record["cells"][t]) for t in targets)]
                            for record in records if any(record["cells"][t]["status"] == "ok" for t in targets)])
    lines += ["", "## Totals", "",
              (f"- cells ok: **{total['ok']} / {total['run']}** run ({total['cells']} in the matrix, "
               f"{total['skipped']} skipped)"),
              f"- no (documented limitations): {total['no']}",
              f"- crashes: **{total['crash']}**",
              f"- timeouts: {total['timeout']}",
              (f"- whole run: {sum(r['seconds'] for r in records):.0f} s for {len(records)} architectures (the sum of "
              "their workers' times; rows rerun with --update replace the earlier ones)"), ""]
    adjusted = [f"- {record['name']} / {step}: {layer} left out: {reason}"
                for record in records for step, cell in record["cells"].items()
                for layer, reason in (cell.get("numbers") or {}).get("left_out", {}).items()]
    if adjusted:
        lines += ["## Plans fitted to documented limitations", "",
                  (f"PQAT / CQAT / PCQAT compress the {LARGEST} largest layers that allow it; `plan.validate` refused "
                   "these combinations on a layer, so the next largest was taken (the cell is ok):"), "",
                  *adjusted, ""]
    lines += ["## Every cell that is not ok", ""]
    reduced = 0
    for record in records:
        for step, cell in record["cells"].items():
            if cell["status"] == "ok":
                continue
            if cell["status"] == "skipped" and cell["reason"].startswith(("Keras 3 rows", "not selected")):
                reduced += 1
                continue
            text = message(cell).replace("\n", "\n  ")
            status = "no*" if cell.get("wraps") else cell["status"]
            lines.append(f"- **{record['name']} / {step}**: {status}: {text}")
        build = record.get("build", {})
        if build.get("status") not in ("ok", None):
            lines.append(f"- **{record['name']} / build**: {build['status']}: {message(build)}")
    if reduced:
        lines += ["", (f"{reduced} more cells were skipped because a step was not selected (--steps) or is outside "
                       "the Keras 3 rows' reduced step set.")]
    return lines


def _format_count(value) -> str:
    return "" if value is None else f"{value:,}"


def _conversion_text(cell: dict) -> str:
    if cell["status"] != "ok":
        return cell_text(cell)
    numbers = cell["numbers"]
    share = numbers.get("op_share")
    return f"{numbers['size'] / 1000:,.0f} KB, {share:.0%}" if share is not None else f"{numbers['size'] / 1000:,.0f} KB"


def readme_table(result: dict) -> str:
    """The README's "Supported models" section: ok or the documented limitation per architecture and step."""
    notes: dict[str, int] = {}

    def note(text: str) -> str:
        text = " ".join(text.split())
        if len(text) > FOOTNOTE_CHARS:  # the whole message is in zoo.md
            text = text[:FOOTNOTE_CHARS].rsplit(" ", 1)[0] + " …"
        notes.setdefault(text, len(notes) + 1)
        return f"[^zoo{notes[text]}]"

    def cell(value: dict) -> str:
        status = value["status"]
        share = (value.get("numbers") or {}).get("op_share")
        if status == "ok":
            return f"ok ({share:.0%})" if share is not None and share < 1 else "ok"
        if status == "skipped":
            return "–"
        if status == "timeout":
            return f"timeout (> {result['timeout_s']:.0f} s)"
        if status == "crash":
            error = value["error"]
            return "fails " + note(f"Not yet supported: {error['type']}: {error['message'].splitlines()[0][:300]}")
        reason = message(value)
        first = re.split(r"(?<=[.;:])\s", value["reason"], maxsplit=1)[0]
        return (first if len(first) <= 40 and first == value["reason"] else "no " + note(reason))

    records = result["architectures"]
    lines = ["## Supported models", "",
             (f"From `python bench/zoo.py` ({result['date']}, tfmot "
              f"{result['machine']['packages']['tensorflow-model-optimization']}, TF "
              f"{result['machine']['packages']['tensorflow']}): each architecture at a small input with random "
              "weights and data; ok = the step ran (for a conversion, with the share of ops on the target's "
              "accelerator when not all), no = a limitation the library reports (see the note), – = not measured. "
              "Details in `bench/results/zoo.md`."), ""]
    lines += _common.table(["model", *(STEPS[s][0] for s in STEPS)],
                           [[record["title"], *(cell(record["cells"][s]) for s in STEPS)] for record in records])
    if notes:
        lines.append("")
        lines += [f"[^zoo{number}]: {text}" for text, number in notes.items()]
    return "\n".join(lines) + "\n"


def write_readme(text: str, path: Path = README) -> None:
    start, end = README_MARKERS
    content = path.read_text()
    if start not in content or end not in content:
        raise SystemExit(f"{path} has no {start} ... {end} markers; add them where the table belongs.")
    before, rest = content.split(start, 1)
    _, after = rest.split(end, 1)
    path.write_text(f"{before}{start}\n{text}{end}{after}")


# ---------------------------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)} (CI smoke test)")
    parser.add_argument("--only", help="comma-separated architecture names (see --list)")
    parser.add_argument("--steps", help="comma-separated steps to run (default: all; see --list)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per architecture")
    parser.add_argument("--jobs", type=int, default=1, help="architectures run at once (default 1)")
    parser.add_argument("--out", type=Path, default=_common.RESULTS)
    parser.add_argument("--logs", type=Path, help="keep each worker's log and events in this folder")
    parser.add_argument("--update", action="store_true",
                        help="keep the other architectures of the existing zoo.json and rerun only these (--only)")
    parser.add_argument("--merge", type=Path, nargs="+", metavar="JSON",
                        help="combine result files of runs over different architectures (e.g. two machines or "
                             "processes) into zoo.json + zoo.md in --out; a later file's row replaces an earlier's")
    parser.add_argument("--list", action="store_true", help="print the architectures and steps")
    parser.add_argument("--readme", action="store_true", help="print the Supported models table from zoo.json")
    parser.add_argument("--write-readme", action="store_true", help="with --readme: write it into README.md")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--cells", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        status = worker(args.worker, [s for s in args.steps.split(",") if s], args.cells, args.deadline)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)  # every event is written: skip TensorFlow's teardown (seconds, sometimes a hang)
    if args.list:
        for name, arch in ARCHITECTURES.items():
            print(f"{name:24} {arch.title}")
        print("\nsteps:", ", ".join(STEPS), "\nKeras 3 rows:", ", ".join(KERAS3_STEPS))
        return 0
    if args.merge:
        results = [json.loads(path.read_text()) for path in args.merge]
        rows = {record["name"]: record for result in results for record in result["architectures"]}
        ordered = [rows[name] for name in ARCHITECTURES if name in rows]
        write(args, {**results[0], "architectures": ordered, "totals": counts(ordered),
                     "run_seconds": sum(result["run_seconds"] for result in results),
                     "complete": len(ordered) == len(ARCHITECTURES), "merged_from": [str(p) for p in args.merge]},
              echo=True)
        return 0
    if args.readme:
        stem = "zoo-quick" if args.quick else "zoo"
        text = readme_table(json.loads((args.out / f"{stem}.json").read_text()))
        print(text)
        if args.write_readme:
            write_readme(text)
        return 0

    names = list(QUICK) if args.quick else list(ARCHITECTURES)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
    steps = list(STEPS) if not args.steps else [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = [n for n in names if n not in ARCHITECTURES] + [s for s in steps if s not in STEPS]
    if unknown:
        parser.error(f"unknown {', '.join(unknown)}; see --list")

    info = _common.machine()
    logs = args.logs or Path(tempfile.mkdtemp(prefix="zoo-logs-"))
    logs.mkdir(parents=True, exist_ok=True)
    records: dict[str, dict] = {}
    start = time.perf_counter()
    order = names
    if args.update:  # rerun some rows of a full matrix: the rest are kept as they were measured
        previous = json.loads((args.out / f"{'zoo-quick' if args.quick else 'zoo'}.json").read_text())
        order = [record["name"] for record in previous["architectures"]]
        order += [name for name in names if name not in order]
        records.update({record["name"]: record for record in previous["architectures"] if record["name"] not in names})

    lock = threading.Lock()

    def one(name: str) -> None:
        record = run_architecture(name, steps, args.timeout, logs)
        c = counts([record])
        with lock:
            records[name] = record
            print(f"{name}: ok {c['ok']}, no {c['no']}, crash {c['crash']}, timeout {c['timeout']}, skipped "
                  f"{c['skipped']} ({record['seconds']:.0f} s, load {_common.load()[0]})", flush=True)
            # After each architecture, so a long run that is stopped still leaves its results.
            ordered = [records[n] for n in order if n in records]
            result = {"quick": args.quick, "machine": info, "timeout_s": args.timeout, "steps": list(STEPS),
                      "selected_steps": steps, "keras3_steps": list(KERAS3_STEPS), "architectures": ordered,
                      "totals": counts(ordered), "run_seconds": round(time.perf_counter() - start, 1),
                      "complete": len(ordered) == len(order)}
            write(args, result, echo=result["complete"])

    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        list(pool.map(one, names))
    if not args.logs:
        import shutil

        shutil.rmtree(logs, ignore_errors=True)
    return 0


def write(args, result: dict, echo: bool) -> None:
    """zoo[-quick].json and .md; the Markdown is printed once, when every architecture is done."""
    if echo:
        _common.write("zoo", args.quick, args.out, result, markdown(result))
        return
    with contextlib.redirect_stdout(io.StringIO()):
        _common.write("zoo", args.quick, args.out, result, markdown(result))


if __name__ == "__main__":
    sys.exit(main())
