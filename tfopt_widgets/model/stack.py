"""The stack as the engine sees it (TensorFlow, tf_keras and tfmot come from the script runtime), and model checks.

tfmot works only with Keras 2 (``tf_keras``). Since TF 2.16 a plain ``import keras`` gives Keras 3, whose models
reach tfmot and fail with messages that never mention Keras 3, so models are checked here first.
"""

from __future__ import annotations

from .. import runtime  # noqa: F401 -- its environment settings (Keras 2, log level) come before TensorFlow loads
from ..errors import ModelError
from ..quiet import imported_quietly

# Whatever engine path loads TensorFlow first (tw.*, the demo, a widget) loads it here, with its C++ start-up lines
# (oneDNN, CUDA drivers, cuInit: absl writes them before any log setting applies) kept out of the output; the first
# device query, where cuInit fails on a machine without a GPU, happens inside too.
imported_quietly("tensorflow", lambda tensorflow: tensorflow.config.list_physical_devices())

from ..runtime.ops import ORIGINS_ATTRIBUTE, layer_origins
from ..runtime.training import application_layers, keras, np, skips_first_node, tf, tfmot

__all__ = [
    "ORIGINS_ATTRIBUTE",
    "application_layer",
    "application_layers",
    "check_model",
    "copy_model",
    "is_keras3_model",
    "keras",
    "layer_origins",
    "np",
    "record_origins",
    "skips_first_node",
    "tf",
    "tfmot",
]


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


def record_origins(model, origins: dict[str, str]) -> None:
    """Store ``layer_origins`` on ``model`` so that later steps (conversion) can name the user's layers."""
    # object.__setattr__ skips Keras attribute tracking: the map is metadata, not part of the model's state.
    object.__setattr__(model, ORIGINS_ATTRIBUTE, dict(origins))
