"""The variant files a scan scores: each layer's kernel located in the float file, selective int8 from one
calibration (TFLite's QuantizationDebugger for the per-layer errors), and one layer's weights int4 (LiteRT
Quantizer, as tw.convert carries out plan.precision(layer, weights="int4"))."""

from __future__ import annotations

import math
import warnings

import numpy as np

from .jobs import Kernel

# Samples the QuantizationDebugger runs its instrumented model on for the per-layer error statistics.
DEBUG_SAMPLES = 32


def layer_kernels(keras_model, tfl, info) -> dict[str, Kernel]:
    """The main kernel of every layer that supports pruning or clustering, found in the float file."""
    from ..tflite.readback import KERNELS

    by_layer = {}
    for op in tfl.ops:
        if op.layer is not None and op.op in KERNELS and len(op.inputs) > KERNELS[op.op][0]:
            by_layer.setdefault(op.layer, []).append((op, op.inputs[KERNELS[op.op][0]]))
    offsets = _buffer_offsets(tfl.content)
    result = {}
    for layer in keras_model.layers:
        entry = info.get(layer.name)
        if entry is None or not (entry.supports("prune").ok or entry.supports("cluster").ok):
            continue
        # tfmot prunes and clusters a SeparableConv2D's pointwise kernel; Conv and Dense layers have one kernel,
        # an Embedding its table.
        variable = next((v for v in (getattr(layer, name, None) for name in ("pointwise_kernel", "kernel",
                                                                              "embeddings")) if v is not None), None)
        if variable is None:
            continue
        keras_kernel = np.array(variable.numpy(), dtype=np.float32)
        for op, index in by_layer.get(layer.name, []):
            values = tfl.tensor_data(index)
            if values is None or values.dtype != np.float32 or values.size != keras_kernel.size \
                    or index not in offsets:
                continue
            order = KERNELS[op.op][1]
            layout = tuple(int(a) for a in np.argsort(order)) if order and keras_kernel.ndim == len(order) else None
            scale = None
            if layout is not None and keras_kernel.transpose(layout).shape == values.shape:
                source = keras_kernel.transpose(layout)
                axes = tuple(range(1, values.ndim))  # the output channel is axis 0 in CONV_2D and FULLY_CONNECTED
                denominator = np.sum(source * source, axis=axes, keepdims=True)
                scale = np.where(denominator > 0, np.sum(source * values, axis=axes, keepdims=True)
                                 / np.maximum(denominator, 1e-30), 1.0).astype(np.float32)
            else:
                layout = None
            result[layer.name] = Kernel(keras_kernel, values, offsets[index], layout, scale)
            break
    return result


def int4_files(tfl, layers) -> dict[str, bytes]:
    """{layer: the float file ``tfl`` with only that layer's weights int4 (per channel, float activations)}, for
    each of ``layers`` LiteRT Quantizer can give int4 weights: with the calls tw.convert makes for
    ``plan.precision(layer, weights="int4")`` (runtime.precision over the op-to-layer map). A layer without a
    weighted op of its own (pooling, a folded BatchNormalization) or one LiteRT's policy refuses int4 (a depthwise
    convolution) is left out."""
    import contextlib
    import io

    from ai_edge_litert import schema_py_generated as schema

    from ..quiet import captured_stderr, captured_stdout
    from ..runtime import precision as litert
    from ..runtime.ops import op_table

    ops = op_table(tfl.content, tfl.layer_origins, schema)
    weighted = {op["layer"] for op in ops if op["weighted"] and not op["cast"] and op["layer"] is not None}
    files = {}
    for layer in layers:
        if layer not in weighted:
            continue
        spec = {"weights": "int4", "activations": "float", "granularity": "channel", "algorithm": "minmax"}
        try:
            entries, _, float_ops = litert.layer_entries(ops, {layer: spec}, "none")
        except litert.PrecisionError:
            continue
        if not entries or litert.refusals(tfl.content, entries):
            continue
        with captured_stdout(), captured_stderr(), contextlib.redirect_stderr(io.StringIO()), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            files[layer] = litert.quantize_file(tfl.content, litert.file_recipe(entries, float_ops, "none"))
    return files


def _buffer_offsets(content: bytes) -> dict[int, int]:
    """{tensor index: byte offset of its data in the file} for constant tensors of the main graph."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(content, 0)
    graph = model.Subgraphs(0)
    offsets = {}
    for index in range(graph.TensorsLength()):
        buffer = model.Buffers(graph.Tensors(index).Buffer())
        if buffer is None or buffer.DataLength() == 0:
            continue
        # The flatbuffer vector of field 4 (data) starts here; files over 2 GB keep data elsewhere (not patched).
        offsets[index] = buffer._tab.Vector(buffer._tab.Offset(4))
    return offsets


class Quantizer:
    """Selective int8 post-training quantization of one model, with TFLite's QuantizationDebugger for the errors.

    The debugger calibrates once and builds its instrumented model once, for the error statistics; each variant
    then quantizes the calibrated file with ``denylisted_nodes`` (the output tensor names of the ops to keep float)
    as ``tw.convert`` does for keep_float layers, a fraction of a full conversion. Inputs and outputs stay float
    (``fully_quantize=False``): with int8 ones, every "only this layer" variant would also round the model's output
    to int8 (a softmax to steps of 1/256), charging each layer for the output's error.
    """

    def __init__(self, keras_model, calibration, origins):
        from ..model.porting import ModelNotice
        from ..model.stack import tf
        from ..quiet import captured_stderr
        from ..runtime.tflite import CALIBRATION_SAMPLES, configure_converter
        from ..targets import get_target
        from ..tflite.converter import converter_for, recurrent_layers, representative_samples
        from ..tflite.file import TFLiteModel
        from ..tflite.recurrent import calibratable

        notices: list[str] = []
        samples = representative_samples(keras_model, calibration, CALIBRATION_SAMPLES)
        # As tw.convert does: recurrent layers that would become WHILE loops are unrolled first, since TFLite's
        # calibrator crashes the process on a WHILE op; a loop that cannot be unrolled raises ConversionError.
        keras_model, _, samples = calibratable(
            keras_model, get_target("cpu"), "int8", samples, recurrent_layers(keras_model), "int8", [],
            notices)
        for notice in notices:
            warnings.warn(notice, ModelNotice, stacklevel=3)
        self._converter = converter = converter_for(keras_model, fixed_batch=False)
        configure_converter(converter, "int8", samples, False)
        if isinstance(samples, dict):  # several inputs: the debugger feeds a list in the file's input order
            count = len(next(iter(samples.values())))
            pick = np.linspace(0, count - 1, min(DEBUG_SAMPLES, count)).astype(int)
            order: list[str] = []  # read from the calibrated file below, before the debugger first runs
            debug_dataset = lambda: ([samples[name][i:i + 1] for name in order] for i in pick)
        else:
            debug_samples = samples[np.linspace(0, len(samples) - 1, min(DEBUG_SAMPLES, len(samples))).astype(int)]
            debug_dataset = lambda: ([debug_samples[i:i + 1]] for i in range(len(debug_samples)))
        with captured_stderr("Statistics for quantized inputs", r"\s*Warning: tf.lite.Interpreter is deprecated"):
            self.debugger = tf.lite.experimental.QuantizationDebugger(
                converter=converter, debug_dataset=debug_dataset,
                debug_options=tf.lite.experimental.QuantizationDebugOptions(fully_quantize=False))
        calibrated = TFLiteModel(self.debugger.calibrated_model, layer_origins=origins)
        if isinstance(samples, dict):
            order.extend(calibrated.input_names)  # the file's own order (no Keras order given), as the debugger's
        self.nodes: dict[str, list[str]] = {}
        self.unnamed: list[str] = []
        for op in calibrated.ops:
            names = [calibrated.tensors[i].name for i in op.outputs]
            if op.layer is None:
                self.unnamed.extend(names)
            else:
                self.nodes.setdefault(op.layer, []).extend(names)
        self.layers = list(self.nodes)
        self._owner = {name: layer for layer, names in self.nodes.items() for name in names}

    def quantize(self, exclude, unnamed: bool = False) -> bytes:
        """The int8 file with the layers in ``exclude`` (and with ``unnamed``, ops of no layer) kept float."""
        from ..quiet import captured_stderr
        from ..runtime.ops import quantize_calibrated

        denylist = [name for layer in exclude for name in self.nodes[layer]] + (self.unnamed if unnamed else [])
        with captured_stderr():
            return quantize_calibrated(self._converter, self.debugger.calibrated_model, denylist)

    def layer_errors(self) -> dict[str, float]:
        """{layer: RMS difference between its int8 output and the float one}, from the debugger's statistics."""
        from ..quiet import captured_stderr

        with captured_stderr():
            self.debugger.run()
        errors = {}
        prefix = "NumericVerify/"
        for key, stats in (self.debugger.layer_statistics or {}).items():
            name = key[len(prefix):].rsplit(":", 1)[0] if key.startswith(prefix) else key
            layer = self._owner.get(name) or self._owner.get(name[:-1])  # the verified copy's name gains a digit
            if layer is not None and layer not in errors:
                errors[layer] = float(math.sqrt(max(0.0, float(stats["mean_squared_error"]))))
        return errors
