"""Recurrent layers and loops in conversion: which layers run a recurrent loop, the batch they convert with, and
the WHILE loops that TFLite's calibrator cannot run (unrolled before an int8 or int16x8 conversion, or refused)."""

from __future__ import annotations

from ..errors import ConversionError
from ..model.stack import ORIGINS_ATTRIBUTE, keras, np, record_origins, tf, tfmot
from ..runtime.ops import user_layers
from ..runtime.tflite import rnn_in
from ..targets import Target
from .converter import CALIBRATED, attempt, converter_for
from .file import TFLiteModel


def _loop_layers(model, recurrent: dict[str, str], target: Target) -> dict[str, str]:
    """The recurrent layers that would reach TFLite's calibrator as WHILE loops, which it cannot run.

    The calibrator crashes the whole process (a segmentation fault, not an exception) when it logs the tensors of
    a WHILE op: tensorflow/tensorflow#75140, a regression since TF 2.14 (#62281 for GRU), seen here with TF 2.21 on
    a Bidirectional(GRU). The converter fuses only a Keras LSTM (into UNIDIRECTIONAL_SEQUENCE_LSTM, which the
    calibrator runs); every other recurrent layer becomes a WHILE loop. Whether an LSTM fused (not with other
    activations, recurrent dropout, its states consumed, ...) is read from a float conversion at batch 1 of the
    model with the others unrolled: if a WHILE is left, the LSTMs are unrolled too.
    """
    users = user_layers(model)
    lstms = {users.get(layer.name, layer.name) for layer in model.layers
             if isinstance(rnn_in(layer), keras.layers.LSTM)}
    loops = {name: kind for name, kind in recurrent.items() if name not in lstms}
    if len(loops) < len(recurrent):
        probe = _unrolled(model, loops) if loops else model
        if probe is not None and _has_while_loops(probe, target):
            return dict(recurrent)
    return loops


def _has_while_loops(model, target: Target) -> bool:
    """Whether the float conversion of ``model`` at batch 1 has WHILE ops (False when it fails: the real conversion
    then says why)."""
    converter = converter_for(model, fixed_batch=target.fixed_batch, batch_one=True)
    content, failure = attempt(converter)
    return failure is None and any(op.op == "WHILE" for op in TFLiteModel(content).ops)


def _loops_left(model) -> tuple[bool, list[str]]:
    """Whether ``model``'s TensorFlow graph (traced at batch 1) has a While loop that the converter will not fuse
    away, and the user's layers it sits in. Loops inside a Keras LSTM's "lstm_*" function (``api_implements``)
    are the fusable ones; :func:`_loop_layers` has already unrolled any that did not fuse. Tracing is cheap next
    to a conversion, and a WHILE op would crash TFLite's calibrator (see :func:`_loop_layers`).
    """
    specs = [tf.TensorSpec([1, *t.shape[1:]], t.dtype) for t in model.inputs]
    function = tf.function(lambda *xs: model(list(xs) if len(xs) > 1 else xs[0], training=False))
    graph = function.get_concrete_function(*specs).graph.as_graph_def()
    library = {f.signature.name: f for f in graph.library.function}

    def called(node) -> set[str]:
        names = set()
        for value in node.attr.values():
            names.add(value.func.name)
            names.update(f.name for f in value.list.func)
        return names & set(library)

    def loops_in(name: str, seen: set[str]) -> bool:
        function_def = library[name]
        implements = function_def.attr["api_implements"].s.decode() if "api_implements" in function_def.attr else ""
        if name in seen or implements.startswith("lstm_"):
            return False
        seen.add(name)
        return any(node.op in ("While", "StatelessWhile") or any(loops_in(f, seen) for f in called(node))
                   for node in function_def.node_def)

    scopes = [node.name for node in graph.node
              if node.op in ("While", "StatelessWhile") or any(loops_in(f, set()) for f in called(node))]
    users, found = user_layers(model), []
    for scope in scopes:  # node names are scoped "<model name>/<layer name>/...": the longest layer name that fits
        parts = scope.split("/")[1:] if scope.startswith(model.name + "/") else scope.split("/")
        match = next(("/".join(parts[:end]) for end in range(len(parts), 0, -1) if "/".join(parts[:end]) in users),
                     None)
        if match is not None and users[match] not in found:
            found.append(users[match])
    return bool(scopes), found


def _no_calibration(model, target: Target, requested, float_layers, mode: str, samples, what: str, fix: str,
                    layer: str | None, notices: list[str]):
    """For a model that cannot be calibrated (it keeps a WHILE loop): (model, the target's default mode, None) where
    the mode was the target's choice (not ``requested``) and that default needs no calibration, with a notice
    saying so; else ConversionError saying what to do."""
    crash = ("TFLite's calibrator crashes the Python process on WHILE loops (tensorflow/tensorflow#75140), so "
             f"quantization={mode!r} is not attempted")
    if requested is None and not float_layers and target.default_quantization not in CALIBRATED:
        notices.append(f"Model {model.name!r}: {what}; {crash}. This file uses the target's default "
                       f"quantization={target.default_quantization!r} instead.")
        return model, target.default_quantization, None
    others = [f"quantization={m!r}" for m in ("dynamic", "float16") if m in target.allowed_quantizations]
    instead = (f", or convert with {' or '.join(others)}" if others else
               f" (target {target.name!r} runs only {', '.join(target.allowed_quantizations)})")
    raise ConversionError(f"Model {model.name!r}: {what}; {crash}. {fix}{instead}.", layer=layer, field="model")


def _unrolled(model, recurrent: dict[str, str]):
    """A copy of ``model`` with its recurrent layers rebuilt with ``unroll=True`` and the same weights, or None when
    a sequence length is not fixed (Keras unrolls only a known number of time steps). ``model`` is only read."""

    def unroll(config):
        if isinstance(config, dict):
            return {key: True if key == "unroll" else unroll(value) for key, value in config.items()}
        return [unroll(value) for value in config] if isinstance(config, list) else config

    users = user_layers(model)

    def clone(layer):
        config = layer.get_config()
        return layer.__class__.from_config(unroll(config) if users.get(layer.name) in recurrent else config)

    try:
        with tfmot.quantization.keras.quantize_scope():
            copy = keras.models.clone_model(model, clone_function=clone)
    except ValueError as error:  # tf_keras: "Unrolling requires a fixed number of timesteps."
        if "unroll" in str(error).lower() and ("timesteps" in str(error) or "time dimension" in str(error)):
            return None
        raise
    _copy_weights(model, copy)
    recorded = getattr(model, ORIGINS_ATTRIBUTE, None)
    if recorded:
        record_origins(copy, recorded)
    return copy


def _copy_weights(source, copy) -> None:
    """``source``'s weights into its clone ``copy``, layer by layer and by variable name.

    A rebuilt quantization-aware-trained layer may have fewer variables than its source: the cluster-preserving
    quantizer adds its centroids and indices only when the kernel it is built on is clustered, and a clone is built
    on fresh weights. Those variables only serve training; inference reads the kernel and the quantizer's ranges.
    """
    layers = {layer.name: layer for layer in source.layers}
    for layer in copy.layers:
        original = layers[layer.name]
        if len(original.weights) == len(layer.weights):
            layer.set_weights([np.array(w, copy=True) for w in original.get_weights()])
            continue
        values = {w.name.rsplit("/", 1)[-1]: w for w in original.weights}
        for variable in layer.weights:
            variable.assign(values[variable.name.rsplit("/", 1)[-1]])


def describe(layers: dict[str, str]) -> str:
    return ", ".join(f"{kind} {name!r}" for name, kind in layers.items())


def file_notice(model, recurrent: dict[str, str], tfl: TFLiteModel, *, batch_one: bool) -> str:
    """What a user of the file must know: that it takes batch 1 though the target allows any (``batch_one``), and
    that it keeps state between invokes (the fused LSTM op's state tensors are variables). "" when neither."""
    parts = []
    if batch_one:
        why = ("the converter fuses a Keras LSTM into UNIDIRECTIONAL_SEQUENCE_LSTM, and lowers other recurrent "
               "layers to WHILE loops, only then" if any(kind != "Layer" for kind in recurrent.values()) else
               "the converter lowers a loop to a WHILE op only when its tensors' shapes, batch included, are fixed")
        parts.append(f"{describe(recurrent) if recurrent else 'A loop'} converts to TFLite only with a fixed batch "
                     f"({why}), so this file takes batch 1: one sample per invoke.")
    if any(raw.isVariable for raw in tfl._graph.tensors or []):
        lstms = describe({name: kind for name, kind in recurrent.items() if "LSTM" in kind}) or "The fused LSTM"
        parts.append(f"{lstms} keeps its state in variable tensors of the file that persist between invokes: call "
                     "interpreter.reset_all_variables() before each new sequence.")
    return f"Model {model.name!r}: {' '.join(parts)}" if parts else ""


def calibratable(model, target: Target, mode: str, samples, recurrent: dict[str, str], requested,
                  float_layers: list[str], notices: list[str]):
    """(model to convert, mode, samples) for a calibrated mode (int8, int16x8), with no WHILE loop left for TFLite's
    calibrator, which crashes the Python process on one (see :func:`_loop_layers`).

    Recurrent layers that would become WHILE loops are unrolled (a notice says so). A loop that cannot be unrolled
    (a variable sequence length, a tf.while_loop or tf.map_fn in a Lambda) makes the target's default mode stand
    in where the mode was the target's own choice (the cpu target with representative data: dynamic range), with a
    notice; otherwise ConversionError says what to do.
    """
    loops = _loop_layers(model, recurrent, target)
    if loops:
        unrolled = _unrolled(model, loops)
        if unrolled is None:  # Keras unrolls only a known number of time steps
            return _no_calibration(model, target, requested, float_layers, mode, samples,
                                   f"{describe(loops)} becomes a TFLite WHILE op and cannot be unrolled (its "
                                   "sequence length is not fixed)", "Give the model a fixed length (e.g. "
                                   "keras.Input(shape=(100,)) and copy the weights across)", next(iter(loops)),
                                   notices)
        notices.append(f"Model {model.name!r}: {describe(loops)} becomes a WHILE loop in TFLite, and TFLite's "
                       "calibrator crashes the Python process on WHILE loops (tensorflow/tensorflow#75140), so for "
                       f"quantization={mode!r} it was unrolled (unroll=True, same weights: ops for every time step, "
                       "so more ops and a larger file).")
        model = unrolled
    found, where = _loops_left(model)
    if found:  # a tf.while_loop / tf.map_fn in a Lambda or custom layer: nothing to unroll
        return _no_calibration(model, target, requested, float_layers, mode, samples,
                               f"{'Layer ' + ', '.join(map(repr, where)) if where else 'The model'} computes a loop "
                               "(tf.while_loop, tf.map_fn, ...), which becomes a TFLite WHILE op",
                               "Rewrite the loop with vectorized ops", where[0] if where else None, notices)
    return model, mode, samples
