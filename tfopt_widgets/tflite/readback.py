"""What a converted file gives each Keras layer, read from the file itself: the precision of its weights and
activations (``TFLiteModel.precisions``), and its quantization error against the float model
(``TFLiteModel.layer_errors``). No TensorFlow: LiteRT's schema and interpreter only.

>>> tfl = tw.convert(model, "cpu", plan=plan, representative_data=x_train[:200])
>>> tfl.precisions()["conv2"]
LayerPrecision(weights='int4', activations='float32', op='CONV_2D')
>>> tfl.layer_errors(x_test)          # a DataFrame: rms_error, scale, error_over_scale, ... per layer
>>> tfl.stored_levels()["conv2"]      # the integers the file stores for conv2's kernel
StoredLevels(dtype='int4', shape=(32, 3, 3, 16), channel_axis=0)
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import DataError, Error
from ..runtime.ops import CASTS, KERNEL_INPUTS

__all__ = ["FLAGGED", "IDEAL", "LayerPrecision", "StoredLevels", "layer_errors", "precisions", "stored_levels"]

# TFLite's QuantizationDebugger reads rms error / scale: uniform rounding alone gives 1/sqrt(12) ~ 0.29, and it flags
# layers above 0.7 (tensorflow/lite/g3doc/performance/quantization_debugger.ipynb).
IDEAL = 1 / math.sqrt(12)
FLAGGED = 0.7

# Ops whose weights are one layer's main kernel: op -> (input position, transpose from TFLite to Keras layout), the
# positions from runtime.ops.KERNEL_INPUTS. TFLite stores conv filters as (out, h, w, in) and dense kernels as
# (out, in); Keras as (h, w, in, out) and (in, out).
_LAYOUTS = {
    "CONV_2D": (1, 2, 3, 0),
    "TRANSPOSE_CONV": (1, 2, 0, 3),  # Keras Conv2DTranspose: (h, w, out, in)
    "FULLY_CONNECTED": (1, 0),
    "DEPTHWISE_CONV_2D": None,  # (1, h, w, in * multiplier): reshaped in _keras_layout
    "CONV_3D": None,  # same layout as Keras
    "EMBEDDING_LOOKUP": None,
    "GATHER": None,  # a Keras Embedding: the table is the first input (a constant; an activation is no kernel)
}
KERNELS = {op: (position, _LAYOUTS[op]) for op, position in KERNEL_INPUTS.items()}


def in_input_type(values, dtype, scale: float, zero_point: int) -> np.ndarray:
    """Float data as an input of type ``dtype`` takes it: quantized with ``scale`` and ``zero_point`` (clipped to the
    type's range) when the type is an integer and the input is quantized, else only cast."""
    dtype = np.dtype(dtype)
    values = np.asarray(values)
    if np.issubdtype(dtype, np.integer) and scale:
        info = np.iinfo(dtype)
        values = np.clip(np.round(values / scale + zero_point), info.min, info.max)
    return values.astype(dtype)


@dataclass(frozen=True)
class LayerPrecision:
    """One layer's precision as stored: ``weights`` is the dtype of its main op's weights ("int4", "int8",
    "float16", "float32"; None for a layer without weights), ``activations`` the dtype of that op's output
    ("float32": float, also for dynamic-range int8 weights; "int8"; "int16"), ``op`` the main op ("CONV_2D")."""

    weights: str | None
    activations: str
    op: str

    @property
    def plan_words(self) -> tuple[str, str]:
        """(weights, activations) in plan.precision's words: "int4" / "int8" / "float", "float" / "int8" / "int16"."""
        def word(dtype):
            return "float" if dtype is None or dtype.startswith(("float", "bfloat")) else dtype

        return word(self.weights), word(self.activations)


def kernel_tensor(tfl, op, producers: dict | None = None) -> int | None:
    """Index of ``op``'s weights in ``tfl`` (through a DEQUANTIZE of a constant: float16 or weight-only kernels), or
    None when the op has no constant weights. ``producers`` ({tensor index: the op writing it}) saves a search of
    the ops per call when asked for many ops."""
    if op.op not in KERNELS or len(op.inputs) <= KERNELS[op.op][0]:
        return None
    index = op.inputs[KERNELS[op.op][0]]
    if index < 0:
        return None
    producer = producers.get(index) if producers is not None else next((p for p in tfl.ops if index in p.outputs),
                                                                         None)
    if producer is not None and producer.op == "DEQUANTIZE":
        index = producer.inputs[0]
    return index if tfl.tensors[index].constant else None


def main_ops(tfl) -> dict:
    """{user layer: its main op}: the first op that computes it with weights, else its last op (QUANTIZE /
    DEQUANTIZE glue aside); a layer folded into another's op (a BatchNormalization) gets that op."""
    own, folded = {}, {}
    for op in tfl.ops:
        if op.op in CASTS:
            continue
        if op.layer is not None:
            own.setdefault(op.layer, []).append(op)
        for layer in op.layers:
            if layer != op.layer:
                folded.setdefault(layer, []).append(op)
    found = {}
    for layer in dict.fromkeys([*own, *folded]):
        ops = own.get(layer) or folded[layer]
        found[layer] = next((op for op in ops if kernel_tensor(tfl, op) is not None), ops[-1])
    return found


def precisions(tfl) -> dict[str, LayerPrecision]:
    """See :meth:`TFLiteModel.precisions`."""
    found = {}
    for layer, op in main_ops(tfl).items():
        kernel = kernel_tensor(tfl, op)
        outputs = [i for i in op.outputs if i >= 0]
        found[layer] = LayerPrecision(weights=None if kernel is None else tfl.tensors[kernel].dtype,
                                      activations=tfl.tensors[outputs[0]].dtype if outputs else "float32", op=op.op)
    return found


@dataclass(frozen=True, eq=False)
class StoredLevels:
    """One layer's main kernel as the integers its file stores: ``dtype`` "int4" or "int8", ``values`` those
    integers (an int8 array in the file's layout; int4 unpacked, -8..7), ``channel_axis`` the axis with a scale per
    output channel (None: one scale for the whole kernel). TFLite's integer weights are symmetric (zero point 0):
    level 0 is the value 0, pruned weights included."""

    dtype: str
    values: np.ndarray
    channel_axis: int | None

    def __repr__(self) -> str:
        return (f"StoredLevels(dtype={self.dtype!r}, shape={tuple(self.values.shape)}, "
                f"channel_axis={self.channel_axis})")


def stored_levels(tfl) -> dict[str, StoredLevels]:
    """See :meth:`TFLiteModel.stored_levels`."""
    found = {}
    for layer, op in main_ops(tfl).items():
        index = kernel_tensor(tfl, op) if op.layer == layer else None  # a folded layer's op holds another's kernel
        tensor = tfl.tensors[index] if index is not None else None
        if tensor is None or tensor.dtype not in ("int4", "int8"):
            continue
        values = tfl.tensor_data(index)
        if values is not None:
            found[layer] = StoredLevels(tensor.dtype, values, tensor.quantized_dimension if len(tensor.scale) > 1
                                        else None)
    return found


def output_ops(tfl) -> dict:
    """{user layer: the op whose first output is the layer's output}: its last op, QUANTIZE / DEQUANTIZE aside."""
    found = {}
    for op in tfl.ops:
        if op.layer is not None and op.op not in CASTS and any(i >= 0 for i in op.outputs):
            found[op.layer] = op
    return found


def layer_errors(tfl, data, reference=None, samples: int = 32):
    """See :meth:`TFLiteModel.layer_errors`.

    Columns: ``layer``, ``op``, ``weights`` and ``activations`` (as :func:`precisions` reads them), ``rms_error``
    (the layer alone: the float model's ops of this layer run on the inputs this file gives the layer, against the
    layer's output in this file; TFLite's debugger measures the same), ``scale`` (the output's quantization scale;
    NaN for a float output), ``error_over_scale`` (``rms_error / scale``: about :data:`IDEAL` is rounding alone,
    above :data:`FLAGGED` is flagged), ``accumulated_rms_error`` (the whole float model from the same input, so
    the error of every layer before counts too) and ``flagged`` (an 8-bit output above :data:`FLAGGED`; an int16
    step is 256x finer, so the ratio of an int16 layer measures its weights' error, not rounding).
    """
    import pandas as pd

    reference = _reference(tfl, reference)
    if not tfl.layer_origins:
        raise Error("layer_errors needs the file's Keras layer names: use the TFLiteModel tw.convert returns, or "
                    "TFLiteModel.load(path, layer_origins=...).", field="layer_origins")
    if isinstance(reference, type(tfl)):
        reference = reference.content
    ref = type(tfl)(reference, layer_origins=tfl.layer_origins, input_names=tfl.input_names)
    feeds = _inputs(tfl, data, samples)
    quantized_out, float_out = output_ops(tfl), output_ops(ref)
    layers = [layer for layer in quantized_out if layer in float_out]
    isolated, sources = _isolated_file(ref, float_out, quantized_out)
    read = {quantized_out[layer].outputs[0] for layer in layers} | {
        quantized_out[k].outputs[0] for kind, k in sources.values() if kind == "layer"}
    quantized_values = _run(tfl.content, tfl, feeds, read)
    float_values = _run(ref.content, ref, feeds, {float_out[layer].outputs[0] for layer in layers} | {
        t for kind, t in sources.values() if kind == "tensor"})
    isolated_feeds = []
    for sample, (q_values, f_values) in enumerate(zip(quantized_values, float_values)):
        feed = {}
        for new_index, (kind, key) in sources.items():
            if kind == "input":
                feed[new_index] = feeds[sample][key]
            elif kind == "layer":
                feed[new_index] = q_values[quantized_out[key].outputs[0]]
            else:
                feed[new_index] = f_values[key]
        isolated_feeds.append(feed)
    isolated_values = _run(isolated, type(tfl)(isolated), isolated_feeds,
                           {float_out[layer].outputs[0] for layer in layers}, by_index=True)
    shown = precisions(tfl)
    rows = []
    for layer in layers:
        out_q, out_f = quantized_out[layer].outputs[0], float_out[layer].outputs[0]
        tensor = tfl.tensors[out_q]
        got = np.concatenate([v[out_q].reshape(-1) for v in quantized_values])
        alone = np.concatenate([v[out_f].reshape(-1) for v in isolated_values])
        whole = np.concatenate([v[out_f].reshape(-1) for v in float_values])
        rms = _rms(got, alone)
        scale = tensor.scale[0] if tensor.quantized and len(tensor.scale) == 1 else math.nan
        precision = shown.get(layer)
        rows.append({"layer": layer, "op": quantized_out[layer].op,
                     "weights": precision.weights if precision else None,
                     "activations": precision.activations if precision else tensor.dtype,
                     "rms_error": rms, "scale": scale, "error_over_scale": rms / scale if scale else math.nan,
                     "accumulated_rms_error": _rms(got, whole)})
    frame = pd.DataFrame(rows, columns=["layer", "op", "weights", "activations", "rms_error", "scale",
                                        "error_over_scale", "accumulated_rms_error"])
    # The thresholds are for 8-bit outputs: an int16 step is 256x finer, so weight error alone exceeds them there.
    frame["flagged"] = (frame["error_over_scale"] > FLAGGED) & frame["activations"].isin(["int8", "uint8"])
    frame.attrs.update(ideal=IDEAL, flagged_above=FLAGGED, samples=len(feeds))
    return frame


def _rms(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return math.nan
    return float(np.sqrt(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def _reference(tfl, reference):
    reference = reference if reference is not None else tfl.float_reference
    if callable(reference):
        reference = tfl.float_reference = reference()  # made once, then kept
    if reference is None:
        raise Error("layer_errors compares with the float model, and this file has none: pass reference= (the "
                    "float32 file, e.g. tw.convert(model, 'float32')), or use the TFLiteModel tw.convert returns.",
                    field="reference")
    return reference


def _inputs(tfl, data, samples: int) -> list[dict[str, np.ndarray]]:
    """[{signature input name: float array of batch 1}] for the first ``samples`` samples of ``data``."""
    names = tfl.input_names
    if isinstance(data, tuple) and len(data) == 2 and (len(names) == 1 or isinstance(data[0], (list, tuple, dict))):
        data = data[0]  # (x, y)
    if isinstance(data, dict):
        arrays = {name: np.asarray(data[name]) for name in names if name in data}
    elif isinstance(data, (list, tuple)) and len(names) > 1:
        arrays = dict(zip(names, (np.asarray(part) for part in data)))
    else:
        arrays = {names[0]: np.asarray(data)}
    if set(arrays) != set(names):
        raise DataError(f"layer_errors: data must give every input of the file ({', '.join(names)}); got "
                        f"{', '.join(arrays) or 'none'}.", field="data")
    count = min(samples, *(len(a) for a in arrays.values()))
    if count < 1:
        raise DataError("layer_errors: data has no samples.", field="data")
    return [{name: a[i:i + 1].astype(np.float32) for name, a in arrays.items()} for i in range(count)]


def _run(content: bytes, tfl, feeds: list[dict], read: set[int], *, by_index: bool = False) -> list[dict]:
    """{tensor index: float values} of ``read`` for each feed (by signature input name, or by tensor index when
    ``by_index``), from LiteRT's builtin kernels with every tensor kept."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    with warnings.catch_warnings():  # keeping every tensor is a debug setting, LiteRT warns: it is what this needs
        warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors")
        interpreter = Interpreter(model_content=content, experimental_preserve_all_tensors=True,
                                  experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    details = {d["index"]: d for d in interpreter.get_input_details()}
    if by_index:
        positions = {index: index for index in details}
    else:
        positions = {name: tensor.index for name, tensor in tfl.named_inputs.items()}
    for index, detail in details.items():
        if any(d < 0 for d in detail["shape_signature"]):  # a dynamic batch: one sample at a time
            interpreter.resize_tensor_input(index, [1 if d < 0 else d for d in detail["shape_signature"]])
    interpreter.allocate_tensors()
    details = {d["index"]: d for d in interpreter.get_input_details()}
    results = []
    for feed in feeds:
        for key, values in feed.items():
            index = positions[key]
            interpreter.set_tensor(index, in_input_type(values, details[index]["dtype"], *details[index]["quantization"]))
        interpreter.invoke()
        results.append({index: _dequantize(interpreter.get_tensor(index), tfl.tensors[index]) for index in read})
    return results


def _dequantize(values: np.ndarray, tensor) -> np.ndarray:
    if tensor.quantized and np.issubdtype(values.dtype, np.integer) and len(tensor.scale) == 1:
        return ((values.astype(np.float32) - tensor.zero_point[0]) * np.float32(tensor.scale[0])).copy()
    return np.array(values, dtype=np.float32)


def _isolated_file(ref, float_out: dict, quantized_out: dict) -> tuple[bytes, dict]:
    """The float file ``ref`` with each layer's ops cut loose from the layers before: every input an op takes from
    another layer (or from the graph's input) becomes a graph input of its own. Returns the file and, per new input
    tensor, where its value comes from: ("layer", K) the output of layer K in the quantized file, ("input", name)
    the data, ("tensor", index) the float file's own tensor (a value no layer output of the quantized file stands
    for)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    from ..runtime.ops import signature_names

    model = schema.ModelT.InitFromPackedBuf(ref.content, 0)
    graph = model.subgraphs[0]
    producers = {t: op for op in ref.ops for t in op.outputs}
    input_names = signature_names(model, "inputs")
    layer_of_output = {op.outputs[0]: layer for layer, op in float_out.items()}
    empty = len(model.buffers)
    model.buffers.append(schema.BufferT())
    sources, made = {}, {}
    for op, raw in zip(ref.ops, graph.operators):
        raw.inputs = [int(i) for i in raw.inputs]  # the parsed array is a read-only view of the file
        for position, tensor in enumerate(op.inputs):
            if tensor < 0 or ref.tensors[tensor].constant:
                continue
            producer = producers.get(tensor)
            if producer is not None and producer.layer == op.layer and producer.layer is not None:
                continue  # inside the layer
            key = (op.layer, tensor)
            if key not in made:
                fresh = copy.copy(graph.tensors[tensor])
                fresh.buffer = empty
                fresh.name = (fresh.name or b"") + b"/isolated"
                made[key] = len(graph.tensors)
                graph.tensors.append(fresh)
                if producer is None and tensor in input_names:
                    sources[made[key]] = ("input", input_names[tensor])
                elif layer_of_output.get(tensor) in quantized_out:
                    sources[made[key]] = ("layer", layer_of_output[tensor])
                else:
                    sources[made[key]] = ("tensor", tensor)
            raw.inputs[position] = made[key]
    graph.inputs = list(sources)
    graph.outputs = [op.outputs[0] for op in float_out.values()]
    model.signatureDefs = []
    builder = flatbuffers.Builder(len(ref.content) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), sources
