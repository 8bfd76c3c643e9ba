"""TFLiteModel: a converted .tflite file and what it holds, read back from the flatbuffer itself.

Ops, tensors, their true dtypes and quantization parameters are read from the file (with LiteRT's generated
flatbuffer schema), never assumed from the plan or the converter settings: an annotated layer can stay float.
This module needs no TensorFlow, so a saved file can be inspected in a light process.

>>> tfl = tw.convert(model, "edgetpu", representative_data=x_train)   # knows the Keras layer names
>>> [(op.op, op.layer) for op in tfl.ops][:2]
[('CONV_2D', 'conv1'), ('CONV_2D', 'conv2')]
>>> TFLiteModel.load(tfl.save("digits.tflite")).ops[0].layer is None   # a bare file does not
True
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from ..runtime.ops import CASTS, enum_names, holds_data, indices, op_layers, op_names, signature_names, tensor_name
from .readback import KERNELS, kernel_tensor, layer_errors, precisions, stored_levels

__all__ = ["KERNELS", "Op", "TFLiteModel", "Tensor"]

_TYPE_NAMES = enum_names(schema.TensorType)
# Op option fields that hold an enum: shown by name ("SAME", "RELU") rather than number.
_OPTION_ENUMS = {
    "padding": enum_names(schema.Padding),
    "fused_activation_function": enum_names(schema.ActivationFunctionType),
    "weights_format": enum_names(schema.FullyConnectedOptionsWeightsFormat),
    "mode": enum_names(schema.MirrorPadMode),
    "quantized_bias_type": {code: name.lower() for code, name in _TYPE_NAMES.items()},
}
# TFLite types without a numpy dtype of the same name keep TFLite's name, lower-cased (e.g. "int4", "bfloat16").
_NUMPY_TYPES = {"FLOAT32", "FLOAT16", "FLOAT64", "INT8", "UINT8", "INT16", "UINT16", "INT32", "UINT32", "INT64",
                "UINT64", "BOOL", "COMPLEX64", "COMPLEX128"}



@dataclass(frozen=True)
class Tensor:
    """One tensor of the file's main graph, as stored.

    ``shape`` is the stored shape; ``shape_signature`` marks dynamic dimensions with -1 (the batch of a file
    converted without a fixed batch). ``dtype`` is a numpy dtype name ("float32", "int8", "float16"). ``scale`` and
    ``zero_point`` are empty for float tensors, one value for per-tensor and one per channel (along
    ``quantized_dimension``) for per-channel quantization. ``constant`` tensors hold data in the file (weights).
    """

    index: int
    name: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]
    dtype: str
    scale: tuple[float, ...] = ()
    zero_point: tuple[int, ...] = ()
    quantized_dimension: int = 0
    constant: bool = False

    @property
    def quantized(self) -> bool:
        """True when the tensor carries quantization parameters (int8, int16, ... with a scale)."""
        return bool(self.scale)


@dataclass(frozen=True)
class Op:
    """One operator of the file's main graph, in execution order.

    ``op`` is the TFLite builtin name ("CONV_2D"); ``inputs``/``outputs`` are tensor indices (-1: an optional input
    left out). ``layer`` is the user's Keras layer the op computes, where the tensor names tell it; ``layers`` lists
    every user layer folded into the op (Conv2D + BatchNormalization + ReLU give one CONV_2D). ``options`` are the
    op's builtin options with snake_case keys (``stride_w``, ``padding``: "SAME",
    ``fused_activation_function``: "RELU").
    """

    index: int
    op: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    layer: str | None = None
    layers: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict, compare=False)
    version: int = 1
    custom_code: str | None = None


class TFLiteModel:
    """A converted TensorFlow Lite file: its bytes plus what was read back from them.

    ``tw.convert`` returns one; :meth:`load` reads a saved file. ``target`` and ``quantization`` say how it was
    converted (None when unknown). ``layer_origins`` maps layer names of the converted Keras model, in model order,
    to the user's layer names; without it ``Op.layer`` is None. ``input_names`` and ``output_names`` are the Keras
    model's input and output names in its order (``tw.convert`` gives them): the file lists its inputs and outputs
    in an order of the converter's own (two_in_two_out's image, features become features, image), so a model with
    several needs them to take data in the Keras order. ``float_reference`` is the float file this one stands for
    (bytes, or a callable that makes them, called once when first needed): :meth:`layer_errors` compares with it.
    """

    def __init__(self, content: bytes, *, target: str | None = None, quantization: str | None = None,
                 layer_origins: Mapping[str, str] | None = None, input_names: Sequence[str] | None = None,
                 output_names: Sequence[str] | None = None, float_reference: bytes | Callable | None = None):
        self.content = bytes(content)
        self.target = target
        self.quantization = quantization
        # {layer name of the converted Keras model: the user's layer name}, in model order (empty: a bare file).
        self.layer_origins = dict(layer_origins or {})
        self._keras_names = {"inputs": list(input_names or ()), "outputs": list(output_names or ())}
        self.float_reference = float_reference

    @classmethod
    def load(cls, path, **kwargs) -> TFLiteModel:
        """Read a .tflite file; ``kwargs`` as for the constructor (target, quantization, layer_origins)."""
        return cls(Path(path).read_bytes(), **kwargs)

    @property
    def size(self) -> int:
        """Bytes of the file."""
        return len(self.content)

    @cached_property
    def gzip_size(self) -> int:
        """Bytes after gzip level 9: where pruning and clustering show (the raw size does not change)."""
        return len(gzip.compress(self.content, compresslevel=9, mtime=0))

    def save(self, path) -> Path:
        """Write the file to ``path`` (parent folders are created) and return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.content)
        return path

    @cached_property
    def _flatbuffer(self):
        return schema.ModelT.InitFromPackedBuf(self.content, 0)

    @property
    def _graph(self):
        return self._flatbuffer.subgraphs[0]

    @cached_property
    def tensors(self) -> list[Tensor]:
        """Every tensor of the main graph (subgraph 0), indexed as the ops refer to them."""
        return [self._tensor(index, raw) for index, raw in enumerate(self._graph.tensors or [])]

    @property
    def inputs(self) -> list[Tensor]:
        """The graph's input tensors (their dtype says whether the caller feeds int8 or float)."""
        return [self.tensors[i] for i in self._graph.inputs]

    @property
    def outputs(self) -> list[Tensor]:
        """The graph's output tensors."""
        return [self.tensors[i] for i in self._graph.outputs]

    @property
    def input_names(self) -> list[str]:
        """The file's inputs by their signature names (the Keras input names), in the Keras model's input order when
        known (``tw.convert``'s files), else in the file's order (``inputs``)."""
        return self._names("inputs")

    @property
    def output_names(self) -> list[str]:
        """The file's outputs by their signature names (the Keras output layers' names), in the Keras model's
        output order when known (``tw.convert``'s files), else in the file's order (``outputs``)."""
        return self._names("outputs")

    @property
    def named_inputs(self) -> dict[str, Tensor]:
        """{signature input name: the input tensor}, in :attr:`input_names` order: where data by name goes."""
        signature = {name: index for index, name in signature_names(self._flatbuffer, "inputs").items()}
        tensors = {tensor.index: tensor for tensor in self.inputs}
        named = {name: tensors[signature[name]] for name in self.input_names if signature.get(name) in tensors}
        return named if len(named) == len(tensors) else dict(zip(self.input_names, self.inputs))

    def _names(self, kind: str) -> list[str]:
        signature = signature_names(self._flatbuffer, kind)
        tensors = self._graph.inputs if kind == "inputs" else self._graph.outputs
        in_file = [signature.get(int(i), tensor_name(self._graph.tensors[int(i)])) for i in indices(tensors)]
        known = self._keras_names[kind]
        return list(known) if sorted(known) == sorted(in_file) else in_file

    @cached_property
    def ops(self) -> list[Op]:
        """Every op of the main graph in execution order, with the user's Keras layer each came from."""
        model = self._flatbuffer
        ops = []
        raw_ops = self._graph.operators or []
        for index, (raw, name, (layer, layers)) in enumerate(zip(raw_ops, op_names(model, schema),
                                                                  op_layers(model, self.layer_origins, schema))):
            code = model.operatorCodes[raw.opcodeIndex]
            ops.append(Op(index=index, op=name, inputs=indices(raw.inputs), outputs=indices(raw.outputs),
                          layer=layer, layers=layers, options=_options(raw.builtinOptions), version=code.version,
                          custom_code=code.customCode.decode() if code.customCode else None))
        return ops

    @cached_property
    def compatibility(self):
        """Where each op runs on the file's ``target``: accelerator or CPU fallback, and why (computed once).

        A :class:`tfopt_widgets.targets.compatibility.Compatibility`: a sequence of per-op placements with ``.summary``
        (ops and MACs on the accelerator, parameter bytes vs the Edge TPU's cache) and ``.by_layer()`` (per Keras
        layer). For another target use ``tfopt_widgets.targets.compatibility.check(tfl, target)``.
        """
        from ..targets.compatibility import check

        return check(self)

    def tensor_data(self, index: int, dequantize: bool = False) -> np.ndarray | None:
        """The stored values of constant tensor ``index`` (None for activations).

        With ``dequantize=True`` quantized values become float32 ``(q - zero_point) * scale`` (per channel where
        stored so) and float16 becomes float32. Int4 tensors come unpacked, one int8 value per element.
        """
        tensor = self.tensors[index]
        raw = self._flatbuffer.buffers[self._graph.tensors[index].buffer]
        if raw.offset > 1:  # files over 2 GB keep buffers after the flatbuffer
            data = self.content[raw.offset:raw.offset + raw.size]
        else:
            data = None if raw.data is None else raw.data.tobytes()
        if not data or tensor.dtype.upper() not in {*_NUMPY_TYPES, "INT4"}:
            return None
        if tensor.dtype == "int4":  # two values a byte, the first in the low nibble (LiteRT's packing)
            packed = np.frombuffer(data, dtype=np.uint8)
            nibbles = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(-1).astype(np.int8)
            values = np.where(nibbles > 7, nibbles - 16, nibbles).astype(np.int8)[:int(np.prod(tensor.shape))]
            values = values.reshape(tensor.shape)
        else:
            values = np.frombuffer(data, dtype=tensor.dtype).reshape(tensor.shape).copy()
        if not dequantize:
            return values
        if tensor.quantized:
            axis_shape = [1] * values.ndim
            if len(tensor.scale) > 1:
                axis_shape[tensor.quantized_dimension] = -1
            scale = np.asarray(tensor.scale, np.float32).reshape(axis_shape if len(tensor.scale) > 1 else ())
            zero = np.asarray(tensor.zero_point or (0,), np.float32).reshape(
                axis_shape if len(tensor.zero_point) > 1 else ())
            return ((values.astype(np.float32) - zero) * scale).astype(np.float32)
        return values.astype(np.float32) if values.dtype == np.float16 else values

    def weights(self) -> dict[str, np.ndarray]:
        """{user's Keras layer name: that layer's main kernel, dequantized to float32, as stored in the file}.

        Values are what the file holds (quantization error included; BatchNormalization folded in where the
        converter folded it), laid out like the Keras kernel ((h, w, in, out) for Conv2D, (in, out) for Dense).
        A layer converted to several weighted ops (SeparableConv2D) gives its largest kernel.
        """
        producers = {t: op for op in self.ops for t in op.outputs}
        kernels: dict[str, np.ndarray] = {}
        for op in self.ops:
            index = kernel_tensor(self, op, producers) if op.layer is not None else None
            values = self.tensor_data(index, dequantize=True) if index is not None else None
            if values is None:
                continue
            values = self._keras_layout(op, values)
            if op.layer not in kernels or values.size > kernels[op.layer].size:
                kernels[op.layer] = values
        return kernels

    def folded_layers(self) -> dict[str, tuple[str, ...]]:
        """{user's Keras layer: the layers the converter folded into its weighted op} (a BatchNormalization and an
        activation after a convolution), for the layers that have any: their kernel in :meth:`weights` is not the
        Keras kernel, a BatchNormalization scales it per output channel."""
        return {op.layer: tuple(name for name in op.layers if name != op.layer) for op in self.ops
                if op.layer is not None and op.op in KERNELS and len(op.layers) > 1}

    def float_layers(self) -> list[str]:
        """The user's Keras layers whose ops compute in float in this file (read from the tensors' dtypes).

        In an int8 file these are the layers kept float (``tw.convert(..., keep_float=...)``) or left float by the
        converter; QUANTIZE/DEQUANTIZE glue does not count. Empty for a bare file (no layer names).
        """
        floats = ("float32", "float16")
        found = [op.layer for op in self.ops if op.layer is not None and op.op not in CASTS
                 and any(self.tensors[i].dtype in floats for i in op.outputs if i >= 0)]
        return list(dict.fromkeys(found))

    def precisions(self) -> dict:
        """{user's Keras layer: :class:`tfopt_widgets.tflite.readback.LayerPrecision`}: what each layer got in this
        file, read from the file itself: the dtype of its main op's weights ("int4", "int8", "float16", "float32";
        None without weights) and of that op's output ("float32", "int8", "int16", ...). Empty for a bare file."""
        return precisions(self)

    def stored_levels(self) -> dict:
        """{user's Keras layer: :class:`tfopt_widgets.tflite.readback.StoredLevels`} for each layer whose main kernel
        the file stores as integers (int4 or int8): the integers themselves, before any scale, so a histogram shows
        the 16 levels of int4 that per-channel scales blur in :meth:`weights`. Empty for a float or bare file."""
        return stored_levels(self)

    def layer_errors(self, data, reference=None, samples: int = 32):
        """A pandas DataFrame, a row per user layer with an op: the RMS error of the layer's output against the float
        model and that error over the output's quantization scale (TFLite's debugger: about 0.29 is ideal rounding,
        above 0.7 is flagged), both for the layer alone and accumulated from the input.

        ``data``: inputs (an array, ``(x, y)``, or {input name: array}); the first ``samples`` are run. ``reference``:
        the float file (bytes or a TFLiteModel); default ``float_reference``, which tw.convert attaches. See
        :func:`tfopt_widgets.tflite.readback.layer_errors`.
        """
        return layer_errors(self, data, reference=reference, samples=samples)

    def _keras_layout(self, op: Op, values: np.ndarray) -> np.ndarray:
        order = KERNELS[op.op][1]
        if order is not None and values.ndim == len(order):
            return np.ascontiguousarray(values.transpose(order))
        if op.op == "DEPTHWISE_CONV_2D" and values.ndim == 4:
            channels_in = self.tensors[op.inputs[0]].shape[-1]
            _, height, width, total = values.shape
            if channels_in and total % channels_in == 0:  # channel c * multiplier + m -> Keras (h, w, in, mult)
                return values.reshape(height, width, channels_in, total // channels_in)
        return values

    def _tensor(self, index: int, raw) -> Tensor:
        type_name = _TYPE_NAMES.get(raw.type, str(raw.type))
        quant = raw.quantization
        scale = () if quant is None or quant.scale is None else tuple(float(s) for s in quant.scale)
        zero = () if quant is None or quant.zeroPoint is None else tuple(int(z) for z in quant.zeroPoint)
        shape = indices(raw.shape)
        return Tensor(index=index, name=tensor_name(raw), shape=shape,
                      shape_signature=indices(raw.shapeSignature) if raw.shapeSignature is not None else shape,
                      dtype=type_name.lower(), scale=scale if any(scale) else (), zero_point=zero if any(scale) else (),
                      quantized_dimension=int(quant.quantizedDimension) if quant is not None else 0,
                      constant=holds_data(self._flatbuffer, raw))

    def __repr__(self) -> str:
        def describe(tensors):
            return ", ".join(f"{t.dtype}[{','.join('?' if d < 0 else str(d) for d in t.shape_signature)}]"
                             for t in tensors)
        return (f"TFLiteModel(target={self.target!r}, quantization={self.quantization!r}, size={self.size:,} B, "
                f"gzip={self.gzip_size:,} B, ops={len(self.ops)}, in {describe(self.inputs)}, "
                f"out {describe(self.outputs)})")


# -- which user layer each op computes: pure functions of the parsed file, also copied into Plan.to_python's script
# (which reads the file with TensorFlow's copy of the same schema), so keep them free of anything else in here.

def _snake(name: str) -> str:
    return "".join("_" + ch.lower() if ch.isupper() else ch for ch in name).lstrip("_")


def _options(options) -> dict[str, Any]:
    """An op's builtin options object as a plain dict with snake_case keys and enum names."""
    if options is None:
        return {}
    result = {}
    for key, value in vars(options).items():
        key = _snake(key)
        if isinstance(value, np.ndarray):
            value = value.tolist()
        elif key in _OPTION_ENUMS and isinstance(value, int):
            value = _OPTION_ENUMS[key].get(value, value)
        result[key] = value
    return result
