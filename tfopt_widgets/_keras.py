"""The one place that imports TensorFlow, tf_keras and tfmot.

tfmot works only with Keras 2 (``tf_keras``). Since TF 2.16 a plain ``import keras`` gives Keras 3, whose models
reach tfmot and fail with messages that never mention Keras 3, so models are checked here first.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# tfmot sets this on import anyway; setting it first makes `tf.keras` mean tf_keras whatever the import order.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402

from .errors import ModelError  # noqa: E402

__all__ = ["tf", "keras", "tfmot", "np", "check_model", "copy_model", "is_keras3_model", "layer_origins",
           "record_origins", "skips_first_node", "application_layer", "application_layers", "ORIGINS_ATTRIBUTE"]

# Set by tw.optimize on the model it returns: {layer name in that model: the user's layer name}.
ORIGINS_ATTRIBUTE = "_tfopt_layer_origins"


def is_keras3_model(obj) -> bool:
    """True for a Keras 3 model or layer (``import keras`` on TF >= 2.16), which tfmot cannot handle."""
    for cls in type(obj).__mro__:
        module = cls.__module__ or ""
        if module.startswith("tf_keras"):
            return False
        if module == "keras" or module.startswith("keras."):
            return True
    return False


def check_model(model, *, purpose: str = "optimize") -> None:
    """Raise :class:`ModelError` unless ``model`` is a built tf_keras Sequential or Functional model."""
    if is_keras3_model(model):
        raise ModelError(
            f"{model.__class__.__name__} {getattr(model, 'name', '')!r} is a Keras 3 model; the TensorFlow Model "
            "Optimization Toolkit works only with Keras 2. Build or load the model with `import tf_keras as keras` "
            "(pip package tf-keras), or set TF_USE_LEGACY_KERAS=1 before importing TensorFlow.",
            field="model")
    if not isinstance(model, keras.Model):
        raise ModelError(
            f"Expected a tf_keras Model, got {type(model).__module__}.{type(model).__name__}. Pass the Keras model "
            "itself (for a saved file, load it with tf_keras.models.load_model first).", field="model")
    is_graph = isinstance(model, keras.Sequential) or getattr(model, "_is_graph_network", False)
    if not is_graph:
        raise ModelError(
            f"Model {model.name!r} is a subclassed model ({type(model).__name__}); tfmot can {purpose} only "
            "Sequential or Functional models. Rebuild it with the Functional API (keras.Input -> layers -> "
            "keras.Model) and copy the weights across.", field="model")
    if not model.built or not model.inputs:
        raise ModelError(
            f"Model {model.name!r} is not built: its input shape is unknown. Give the first layer an input shape "
            "(keras.Input(shape=...)) or call model.build(input_shape) first.", field="model")


def skips_first_node(layer) -> bool:
    """Whether a Functional config numbers ``layer``'s calls from 1: a nested model built on its own Input has a
    node 0 of its own construction, which the outer model's config leaves out (ConvNeXt's Sequential stem)."""
    from tf_keras.src.engine import functional

    return functional._should_skip_first_node(layer)


def application_layers() -> dict:
    """{class name: class} of the layers that Keras applications define for themselves (ConvNeXt's LayerScale).

    Keras 3's applications define the same layers with the same settings and weights, so a ported model gets
    tf_keras's own class. They are not registered with Keras: tfmot's quantize_apply, which rebuilds the model from
    its config, needs them as custom objects ("'str' object is not callable" otherwise).
    """
    from tf_keras.src.applications import convnext

    return {"LayerScale": convnext.LayerScale}


def application_layer(class_name: str):
    """The class of :func:`application_layers` named ``class_name``, or None."""
    return application_layers().get(class_name)


def copy_model(model):
    """An independent copy of ``model``: new layers, same config and weights.

    ``clone_model`` with a ``clone_function`` shares unchanged layers with its source, so fine-tuning the result
    would silently train the user's model too. This copy shares nothing.
    """
    copy = keras.models.clone_model(model)
    copy.set_weights([np.array(w, copy=True) for w in model.get_weights()])
    return copy


def layer_origins(model) -> dict[str, str]:
    """Map each layer name of ``model`` to the user's layer it came from.

    tfmot renames layers (``quant_conv1``) and splits some (SeparableConv2D into two). ``tw.optimize`` records
    the map on the model it returns; for any other model, wrapper layers are unwrapped to their inner layer's name.
    """
    recorded = getattr(model, ORIGINS_ATTRIBUTE, None) or {}
    origins = {}
    for layer in model.layers:
        inner = getattr(layer, "layer", None)
        origins[layer.name] = recorded.get(layer.name) or (inner.name if inner is not None else layer.name)
    return origins


def record_origins(model, origins: dict[str, str]) -> None:
    """Store ``layer_origins`` on ``model`` so that later steps (conversion) can name the user's layers."""
    # object.__setattr__ skips Keras attribute tracking: the map is metadata, not part of the model's state.
    object.__setattr__(model, ORIGINS_ATTRIBUTE, dict(origins))
