"""Bring the models users really have into the shape tfmot needs.

* Keras 3 -> tf_keras: since TF 2.16 ``import keras`` gives Keras 3, whose models tfmot rejects. A Sequential or
  Functional Keras 3 model of standard layers is rebuilt as a tf_keras model with the same graph, layer names and
  weights (:func:`to_tf_keras`).
* Nested models: a model used as a layer inside another (transfer learning) is inlined, its layers renamed
  ``outer/inner``, so tfmot can annotate them (:func:`flatten`).

Both build new layers and copy weights: the user's model is never touched.

>>> tf_model = tw.to_tf_keras(keras3_model)
"""

from __future__ import annotations

import inspect as _inspect
import warnings

from ..errors import ModelError
from ..runtime.training import is_keras3_functional
from .stack import application_layer, check_model, is_keras3_model, keras, np, skips_first_node, tf

# Keyword arguments tf_keras layers take through **kwargs rather than their __init__ signatures.
_BASE_LAYER_ARGUMENTS = {"name", "trainable", "dtype", "input_shape", "batch_input_shape", "batch_size",
                         "input_dim", "activity_regularizer", "autocast", "dynamic", "weights",
                         "zero_output_for_mask", "implementation"}
# Keras 3 settings with no tf_keras equivalent, and the values that mean "not used" (anything else is refused).
_DROPPABLE = {"lora_rank": (None, 0), "lora_alpha": (None,), "quantization_config": (None,),
              "synchronized": (False,), "optional": (False,), "input_axes": (None,), "output_axes": (None,),
              "gradient_checkpointing": (False,), "rms_scaling": (False,)}
# Serialized Keras 3 objects that become tf_keras objects of the same class name.
_OBJECT_MODULES = {"keras.initializers": "initializers", "keras.regularizers": "regularizers",
                   "keras.constraints": "constraints"}


# Keras 3 activations that tf_keras has under the same name AND the same definition.
_SAME_ACTIVATIONS = {"linear", "relu", "sigmoid", "tanh", "softmax", "elu", "selu", "softplus", "softsign",
                     "exponential", "swish", "gelu"}


# Registered with Keras: tfmot's quantize_apply clones the model from its config, and an Activation holding an
# unregistered function cannot be deserialized ("Unable to clone model": MobileNetV3 from Keras 3).
@keras.saving.register_keras_serializable(package="tfopt_widgets")
def hard_sigmoid(x):
    # Keras 3's definition, relu6(x + 3) / 6; tf_keras's hard_sigmoid (0.2 x + 0.5, clipped) is a different curve.
    return tf.nn.relu6(x + 3.0) * (1.0 / 6.0)


@keras.saving.register_keras_serializable(package="tfopt_widgets")
def hard_silu(x):
    return x * hard_sigmoid(x)


@keras.saving.register_keras_serializable(package="tfopt_widgets")
def relu6(x):
    return tf.nn.relu6(x)


# Keras 3 activations rebuilt as functions with Keras 3's definitions (checked numerically in the tests).
_REDEFINED_ACTIVATIONS = {"hard_sigmoid": hard_sigmoid, "hard_silu": hard_silu, "hard_swish": hard_silu,
                          "silu": "swish", "relu6": relu6}


# Keras 3 ops (keras.ops.*) recorded in functional graphs, and the TF functions that compute the same.
_OPERATIONS = {"Add": tf.math.add, "Subtract": tf.math.subtract, "Multiply": tf.math.multiply,
               "Divide": tf.math.truediv, "TrueDivide": tf.math.truediv, "Maximum": tf.math.maximum,
               "Minimum": tf.math.minimum, "Negative": tf.math.negative, "Relu": tf.nn.relu, "Relu6": tf.nn.relu6,
               "Sigmoid": tf.math.sigmoid, "HardSigmoid": hard_sigmoid, "HardSilu": hard_silu}


class ModelNotice(UserWarning):
    """tfopt-widgets changed the form of the model it works on (e.g. converted Keras 3 to tf_keras)."""


def prepare(model, *, purpose: str):
    """The tf_keras, flat model the engine works on, and notices saying what was done to get it.

    Keras 3 models are rebuilt with :func:`to_tf_keras`; models with nested models inside are inlined with
    :func:`flatten`. Anything else is checked and returned as it is (no copy).
    """
    notices = []
    if is_keras3_model(model):
        model = to_tf_keras(model)
        notices.append(f"Model {model.name!r} is a Keras 3 model; it was rebuilt as a tf_keras model with the same "
                       "layers, names and weights (tfmot works only with tf_keras). Your model is unchanged.")
    check_model(model, purpose=purpose)
    nested = [layer.name for layer in model.layers if isinstance(layer, keras.Model)]
    if nested:
        model = flatten(model)
        notices.append(f"Model {model.name!r} contains nested model(s) {', '.join(map(repr, nested))}; their layers "
                       "were inlined as 'outer/inner' so each can be optimized. Your model is unchanged.")
    for notice in notices:
        warnings.warn(notice, ModelNotice, stacklevel=3)
    return model, notices


# -- Keras 3 -> tf_keras -----------------------------------------------------------------------------------------
def to_tf_keras(model):
    """Rebuild a Keras 3 Sequential or Functional model as a tf_keras model: same graph, names and weights.

    Raises :class:`ModelError` naming the first layer that has no tf_keras equivalent.
    """
    if not is_keras3_model(model):
        if isinstance(model, keras.Model):
            return model
        raise ModelError(f"to_tf_keras expects a Keras 3 model, got {type(model).__name__}.", field="model")
    import keras as keras3

    if isinstance(model, keras3.Sequential):
        return _compiled_like(model, _sequential(model))
    if is_keras3_functional(model):
        return _compiled_like(model, _functional(model))
    raise ModelError(f"Model {model.name!r} is a subclassed Keras 3 model ({type(model).__name__}); only "
                     "Sequential and Functional models can be rebuilt. Rebuild it with the Functional API.",
                     field="model")


def _compiled_like(model3, rebuilt):
    """Compile ``rebuilt`` with the Keras 3 model's loss, metrics and optimizer where tf_keras has the same ones."""
    if not getattr(model3, "compiled", False):
        return rebuilt
    config = model3.get_compile_config() or {}
    if not isinstance(config.get("loss"), (str, list, dict, type(None))):
        return rebuilt
    optimizer = config.get("optimizer")
    if isinstance(optimizer, dict):
        cls = getattr(keras.optimizers, optimizer.get("class_name", ""), None)
        if cls is None:
            optimizer = "adam"
        else:
            accepted = set(_inspect.signature(cls.__init__).parameters)
            settings = {k: v for k, v in optimizer["config"].items() if k in accepted and k != "name"}
            optimizer = cls(**settings)
    try:
        rebuilt.compile(optimizer=optimizer or "adam", loss=config.get("loss"), metrics=config.get("metrics"),
                        loss_weights=config.get("loss_weights"), weighted_metrics=config.get("weighted_metrics"))
    except (TypeError, ValueError):
        pass  # a loss or metric object of Keras 3's own: the caller passes loss= to tw.optimize instead
    return rebuilt


def load_model(path):
    """Load a model file (.keras, .h5, SavedModel) as a tf_keras model; Keras 3 files are rebuilt with tf_keras."""
    from pathlib import Path

    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path} does not exist.", field="model")
    try:
        return keras.models.load_model(path)
    except Exception as tf_keras_error:  # noqa: BLE001 - any failure: try the file as Keras 3 before giving up
        try:
            import keras as keras3

            return to_tf_keras(keras3.saving.load_model(path))
        except ModelError:
            raise
        except Exception:  # noqa: BLE001
            raise ModelError(f"Could not load {path} with tf_keras ({tf_keras_error}) nor with Keras 3. Save it with "
                             "model.save('model.keras') from tf_keras or Keras 3.", field="model") from None


def _sequential(model):
    if not model.built or not model.inputs:
        raise ModelError(f"Keras 3 model {model.name!r} is not built; give it an Input first.", field="model")
    shape = tuple(model.inputs[0].shape)
    layers = [keras.Input(shape=shape[1:], batch_size=shape[0], dtype=model.inputs[0].dtype)]
    layers += [_layer(layer) for layer in model.layers]
    rebuilt = keras.Sequential(layers, name=model.name)
    _copy_weights(model.layers, rebuilt)
    return rebuilt


def _functional(model):
    config = model.get_config()
    by_name = {layer.name: layer for layer in model.layers}
    tensors: dict[tuple, object] = {}
    for entry in config["layers"]:
        name = entry["name"]
        if entry["class_name"] == "InputLayer":
            settings = entry["config"]
            shape = settings.get("batch_shape") or settings.get("batch_input_shape")
            tensors[(name, 0, 0)] = keras.Input(shape=tuple(shape[1:]), batch_size=shape[0],
                                                dtype=settings.get("dtype"), sparse=settings.get("sparse"),
                                                name=name)
            continue
        layer = _layer(by_name[name]) if name in by_name else _operation(entry)
        for node_index, node in enumerate(entry["inbound_nodes"]):
            args = _resolve(node.get("args", []), tensors, name)
            kwargs = _resolve(node.get("kwargs", {}), tensors, name)
            outputs = layer(*args, **kwargs)
            for tensor_index, tensor in enumerate(tf.nest.flatten(outputs)):
                tensors[(name, node_index, tensor_index)] = tensor
    rebuilt = keras.Model(_endpoints(config["input_layers"], tensors), _endpoints(config["output_layers"], tensors),
                          name=model.name)
    _copy_weights([layer for layer in model.layers if type(layer).__name__ != "InputLayer"], rebuilt)
    return rebuilt


def _operation(entry):
    """A TF function for a Keras 3 op used in a functional graph (``x + 3.0``); tf_keras wraps it as TFOpLambda."""
    function = _OPERATIONS.get(entry["class_name"]) if entry.get("module", "").startswith("keras.src.ops") else None
    if function is None:
        raise ModelError(f"Operation {entry['name']!r} ({entry.get('module')}.{entry['class_name']}) in the Keras 3 "
                         "model has no tf_keras equivalent; express it with standard layers.",
                         layer=entry["name"], field="model")
    return function


def _endpoints(spec, tensors):
    if spec and isinstance(spec[0], str):
        return tensors[tuple(spec)]
    return [tensors[tuple(item)] for item in spec]


def _resolve(value, tensors, layer_name):
    """Replace Keras 3's serialized tensor references with the tf_keras tensors built so far."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            return tensors[tuple(value["config"]["keras_history"])]
        return {key: _resolve(item, tensors, layer_name) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_resolve(item, tensors, layer_name) for item in value)
    return value


def _layer(layer3):
    """A new tf_keras layer with the same class and settings as Keras 3 ``layer3`` (weights come later)."""
    if is_keras3_model(layer3) and hasattr(layer3, "layers"):
        return to_tf_keras(layer3)
    cls_name = type(layer3).__name__
    cls = getattr(keras.layers, cls_name, None) or application_layer(cls_name)
    if cls is None or not isinstance(cls, type):
        raise ModelError(f"Layer {layer3.name!r} ({cls_name}) has no tf_keras equivalent, so the Keras 3 model cannot "
                         "be rebuilt for tfmot. Replace it with standard layers, or build the model with tf_keras.",
                         layer=layer3.name, field="model")
    config = _convert_config(layer3.get_config(), cls, layer3.name)
    try:
        return cls.from_config(config)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"Layer {layer3.name!r} ({cls_name}) could not be rebuilt in tf_keras: {exc}",
                         layer=layer3.name, field="model") from None


def _convert_config(config: dict, cls, layer_name: str) -> dict:
    accepted = _BASE_LAYER_ARGUMENTS.union(*(_inspect.signature(base.__init__).parameters for base in cls.__mro__
                                              if issubclass(base, keras.layers.Layer)))
    result = {}
    for key, value in config.items():
        if key not in accepted:
            if key in _DROPPABLE and value in _DROPPABLE[key]:
                continue
            raise ModelError(f"Layer {layer_name!r} ({cls.__name__}) uses the Keras 3 setting {key}={value!r}, which "
                             "tf_keras does not have. Remove it (or build the model with tf_keras).",
                             layer=layer_name, field=key)
        result[key] = _activation(value, layer_name) if key == "activation" else _convert_value(value, layer_name)
    return result


def _activation(value, layer_name: str):
    if not isinstance(value, str):
        return _convert_value(value, layer_name)
    if value in _SAME_ACTIVATIONS:
        return value
    if value in _REDEFINED_ACTIVATIONS:
        return _REDEFINED_ACTIVATIONS[value]
    raise ModelError(f"Layer {layer_name!r} uses the Keras 3 activation {value!r}, which tfopt-widgets cannot rebuild "
                     "in tf_keras. Use a standard activation (relu, sigmoid, tanh, softmax, hard_silu, ...).",
                     layer=layer_name, field="activation")


def _convert_value(value, layer_name: str):
    if isinstance(value, dict) and "class_name" in value and "config" in value:
        if value["class_name"] in ("DTypePolicy", "FloatDTypePolicy", "Policy"):
            return value["config"]["name"]
        kind = _OBJECT_MODULES.get(value.get("module"))
        if kind is None:
            raise ModelError(f"Layer {layer_name!r} uses {value.get('module')}.{value['class_name']}, which cannot be "
                             "rebuilt in tf_keras.", layer=layer_name, field=value["class_name"])
        module = getattr(keras, kind)
        cls = getattr(module, value["class_name"], None)
        if cls is None:
            raise ModelError(f"Layer {layer_name!r} uses {kind[:-1]} {value['class_name']}, which tf_keras does not "
                             "have.", layer=layer_name, field=value["class_name"])
        accepted = set(_inspect.signature(cls.__init__).parameters)
        settings = {k: v for k, v in value["config"].items() if k in accepted or v not in _DROPPABLE.get(k, ())}
        return cls(**settings)
    return value


def _copy_weights(source_layers, model) -> None:
    targets = {layer.name: layer for layer in model.layers}
    for source in source_layers:
        target = targets[source.name]
        weights = source.get_weights()
        if len(weights) != len(target.weights):
            raise ModelError(f"Layer {source.name!r} has {len(weights)} weights in Keras 3 but {len(target.weights)} "
                             "in tf_keras; it cannot be rebuilt faithfully.", layer=source.name, field="model")
        target.set_weights([np.array(w, copy=True) for w in weights])


# -- nested models -----------------------------------------------------------------------------------------------
def flatten(model):
    """A copy of tf_keras ``model`` with every nested model inlined; inner layers are named ``outer/inner``."""
    inputs = [keras.Input(shape=tuple(t.shape[1:]), batch_size=t.shape[0], dtype=t.dtype,
                          name=name) for t, name in zip(model.inputs, model.input_names)]
    outputs = _inline(model, inputs, prefix="")
    flat = keras.Model(inputs, outputs, name=model.name)
    if getattr(model, "optimizer", None) is not None and getattr(model, "compiled_loss", None) is not None:
        settings = model._get_compile_args(user_metrics=True)
        optimizer = settings["optimizer"]
        settings["optimizer"] = type(optimizer).from_config(optimizer.get_config())  # never share its state
        flat.compile(**settings)
    return flat


def _inline(model, inputs: list, prefix: str):
    """Call copies of ``model``'s layers on ``inputs``; returns the outputs (nested models inlined recursively)."""
    if isinstance(model, keras.Sequential):
        x = inputs[0]
        for layer in model.layers:
            x = _call_copy(layer, [x], {}, prefix)
        return x
    config = model.get_config()
    by_name = {layer.name: layer for layer in model.layers}
    tensors = {}
    for (name, _, _), tensor in zip(_as_list(config["input_layers"]), inputs):
        tensors[(name, 0, 0)] = tensor
    for entry in config["layers"]:
        name = entry["name"]
        if entry["class_name"] == "InputLayer":
            continue
        first = 1 if skips_first_node(by_name[name]) else 0
        for node_index, node in enumerate(entry["inbound_nodes"], start=first):
            args, kwargs = _node_call(node, tensors)
            outputs = _call_copy(by_name[name], args, kwargs, prefix)
            for tensor_index, tensor in enumerate(tf.nest.flatten(outputs)):
                tensors[(name, node_index, tensor_index)] = tensor
    outputs = [tensors[(name, node, index)] for name, node, index in _as_list(config["output_layers"])]
    return outputs[0] if len(outputs) == 1 else outputs


def _as_list(spec):
    return [spec] if spec and isinstance(spec[0], str) else list(spec)


def _node_call(node, tensors):
    """Arguments of one call recorded in a tf_keras Functional config: [[name, node, tensor, kwargs], ...].

    A call on one tensor may be recorded unwrapped ([name, node, tensor, kwargs]: TFOpLambda layers), and kwargs
    may hold other layers' outputs as [name, node, tensor] (``x + y`` records y that way).
    """
    references = node if isinstance(node, list) else node.get("args", [])
    if references and isinstance(references[0], str):
        references = [references]
    args = [tensors[(name, node_index, tensor_index)] for name, node_index, tensor_index, *_ in references]
    kwargs = {}
    for reference in references:
        if len(reference) > 3 and isinstance(reference[3], dict):
            kwargs.update({key: _tensor_or_value(value, tensors) for key, value in reference[3].items()})
    return ([args[0]] if len(args) == 1 else [args]), kwargs


def _tensor_or_value(value, tensors):
    """A kwarg of a recorded call: the tensor a [name, node, tensor] reference stands for, else ``value``."""
    if isinstance(value, list):
        if len(value) == 3 and isinstance(value[0], str) and tuple(value) in tensors:
            return tensors[tuple(value)]
        return [_tensor_or_value(item, tensors) for item in value]
    return value


def _call_copy(layer, args, kwargs, prefix: str):
    if isinstance(layer, keras.Model):
        inner_inputs = args[0] if isinstance(args[0], list) else [args[0]]
        return _inline(layer, inner_inputs, prefix=f"{prefix}{layer.name}/")
    config = layer.get_config()
    config["name"] = f"{prefix}{layer.name}"
    copy = type(layer).from_config(config)
    outputs = copy(*args, **kwargs)
    copy.set_weights([np.array(w, copy=True) for w in layer.get_weights()])
    return outputs
