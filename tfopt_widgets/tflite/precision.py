"""Per-layer precision in tw.convert (``plan.precision``): the checks before converting (layers, conflicts, the
target, representative data), which layers the converter must leave float, and the LiteRT Quantizer step on the
converted file (``runtime.precision``), read back from the file afterwards.

The converter makes the file in the conversion's own mode, with the precision layers kept float (selective int8, as
``keep_float``); LiteRT Quantizer then gives those layers' ops their precision. The converter has no per-layer
control in its dynamic-range and float16 modes, so there it converts float32 and LiteRT Quantizer also gives the
other layers that mode (``runtime.precision.mode_recipe``: bench/precision_routes.py measured LiteRT's
dynamic_legacy_wi8_afp32 and float16 casting at the converter's size and fidelity on the demo and MobileNetV2-0.35).
int16x8 is refused: the converter cannot leave layers out of it either, and LiteRT's own int16 recipe gives the file
int16 inputs and outputs; plan.precision(layer, activations="int16") in an int8 conversion gives chosen layers int16
activations instead.
"""

from __future__ import annotations

import contextlib
import io
import warnings

from ..errors import ConversionError, DataError, PlanError, TargetError
from ..quiet import captured_stderr, captured_stdout
from ..runtime import precision as litert
from ..runtime.ops import CASTS, user_layers
from .converter import attempt, converter_for
from .file import TFLiteModel
from .readback import kernel_tensor, precisions

# Modes whose file LiteRT Quantizer finishes from float32 (the converter cannot leave single layers out of them).
FROM_FLOAT = ("dynamic", "float16")
# LiteRT's own warnings during the step, which ask nothing of the user: its calibrator keeps every tensor (a debug
# setting, it warns), and it re-quantizes a file the converter made partly int8 (what the step is for).
QUIET_WARNINGS = (".*experimental_preserve_all_tensors", "Input model is already partially quantized")
# Keras weights that become a layer's main kernel in the file (as plan validation counts them).
KERNEL_WEIGHTS = ("kernel", "depthwise_kernel", "pointwise_kernel", "embeddings")


class PrecisionStep:
    """The precisions of a plan for one conversion of ``model`` (the prepared tf_keras model) for ``target``."""

    def __init__(self, specs: dict, model, target):
        self.specs = specs
        self.model = model
        self.target = target

    @classmethod
    def for_plan(cls, plan, model, target) -> PrecisionStep | None:
        """The step for ``plan``'s precisions, checked against the model and the target; None without any.

        Raises PlanError naming the layer: not in the model, also quantize / keep_float, weights for a layer without
        any, or a precision the target cannot run (with the target's reason).
        """
        specs = dict(plan.precisions) if plan is not None else {}
        if not specs:
            return None
        users = user_layers(model)
        for layer, spec in specs.items():
            conflict = plan[layer].precision_conflict()
            if conflict is not None:
                raise conflict
            if layer not in users.values():
                raise PlanError(f"The plan gives a precision to layer {layer!r}, which model {model.name!r} does not "
                                "have. See tw.inspect(model).layers for the names.", layer=layer, field="layer")
            has_kernel = _has_kernel(model, users, layer)
            if not has_kernel and spec.weights not in (None, "float"):
                raise PlanError(f"Layer {layer!r} has no weights to give weights={spec.weights!r}; leave weights "
                                "out (or 'float') and set only its activations.", layer=layer, field="weights")
            target.check_precision(layer, spec.weights_for(has_kernel), spec.activations)
        return cls(specs, model, target)

    def check(self, mode: str, samples) -> None:
        """Before converting: the mode can carry precisions, and representative data is there where needed."""
        if mode == "int16x8":
            raise TargetError(f"plan.precision ({', '.join(self.specs)}) applies to float32, dynamic, float16 and int8 "
                              "conversions; this one uses 'int16x8'. Give layers int16 activations in an int8 "
                              "conversion instead: plan.precision(layer, activations='int16').",
                              layer=next(iter(self.specs)), field="precision")
        needing = [layer for layer, spec in self.specs.items()
                   if spec.activations != "float" or spec.algorithm == "gptq"]
        if mode == "int8":
            needing += [layer for layer in self.kept_float(mode) if layer not in needing]
        if needing and samples is None:
            raise DataError(f"plan.precision on {', '.join(map(repr, needing))} calibrates ranges on "
                            "representative_data (integer activations, gptq, or the other layers' int8), and none was "
                            "given. Pass 100-500 training inputs, e.g. representative_data=x_train[:200].",
                            field="representative_data")

    def kept_float(self, mode: str) -> list[str]:
        """The precision layers the converter leaves float for LiteRT Quantizer: every one in an int8 conversion but
        those that get exactly the converter's own int8 (int8 weights per channel and int8 activations, min-max)."""
        if mode != "int8":
            return []
        own = ("int8", "int8", "channel", "minmax")
        return [layer for layer, spec in self.specs.items()
                if (spec.weights_for(True), spec.activations, spec.granularity, spec.algorithm) != own]

    def base_mode(self, mode: str) -> str:
        """The mode the converter converts with: float32 for the modes LiteRT Quantizer finishes."""
        return "none" if mode in FROM_FLOAT else mode

    def apply(self, tfl: TFLiteModel, mode: str, samples, notices: list[str]) -> TFLiteModel:
        """The converted file ``tfl`` with each precision layer's ops quantized by LiteRT Quantizer (and, in the
        dynamic and float16 modes, the other layers given that mode), checked by reading the file back."""
        entries, layers_of, float_ops = self._entries(tfl, mode)
        refused = litert.refusals(tfl.content, entries)
        if refused:
            index, op, reason = refused[0]
            layer = layers_of[index]
            reason = reason.splitlines()[0].split(" Error: Quantization config")[0]
            raise PlanError(f"LiteRT Quantizer cannot give layer {layer!r} ({op}) {self.specs[layer].describe()}: its "
                            f"policy has no such config for that op ({reason}).", layer=layer, field="precision")
        recipe = entries
        if mode in FROM_FLOAT:
            recipe = [*litert.mode_recipe(mode), *(litert.keep_float_entry(names) for names in float_ops), *entries]
            notices.append(f"Model {self.model.name!r}: the converter has no per-layer control in {mode!r} mode, so "
                           f"this file was converted float32 and LiteRT Quantizer gave the layers without a "
                           f"plan.precision its {mode} quantization (bench/precision_routes.py: the same size and "
                           "accuracy as the converter's).")
        if not recipe:
            return tfl
        if self.target.accelerator is not None and mode == "int8" and entries:
            notices.append(f"Model {self.model.name!r}: the ops LiteRT Quantizer gave a precision ("
                           f"{', '.join(dict.fromkeys(layers_of))}) are joined to the converter's int8 ops by "
                           f"QUANTIZE / DEQUANTIZE ops; tfl.compatibility shows where the {self.target.accelerator} "
                           "runs them.")
        feed = None if samples is None else _calibration_feed(tfl, samples)
        try:
            with captured_stdout(), captured_stderr(), contextlib.redirect_stderr(io.StringIO()), \
                    warnings.catch_warnings():
                for message in QUIET_WARNINGS:
                    warnings.filterwarnings("ignore", message=message)
                content = litert.quantize(tfl.content, recipe, feed, tfl.input_names)
        except Exception as error:  # LiteRT Quantizer raises ValueError, RuntimeError, KeyError, ...
            raise ConversionError(f"LiteRT Quantizer could not give {', '.join(map(repr, self.specs))} their precision "
                                  f"in model {self.model.name!r}: {str(error).strip() or type(error).__name__}",
                                  layer=next(iter(self.specs)), field="precision") from error
        result = TFLiteModel(content, target=tfl.target, quantization=tfl.quantization,
                             layer_origins=tfl.layer_origins, input_names=tfl.input_names,
                             output_names=tfl.output_names,
                             float_reference=tfl.content if self.base_mode(mode) == "none" else None)
        self._verify(result, mode)
        return result

    def _entries(self, tfl: TFLiteModel, mode: str) -> tuple[list[dict], list[str], list[list[str]]]:
        """(recipe entries, the layer of each entry, output names of the float layers' ops) for the file ``tfl``."""
        kept = set(self.kept_float(mode)) if mode == "int8" else set(self.specs)
        owners: dict[int, str] = {}
        entries, layers_of, float_ops = [], [], []
        for layer, spec in self.specs.items():
            ops = [op for op in tfl.ops if op.layer == layer and op.op not in CASTS]
            if not ops:
                folded = next((op for op in tfl.ops if layer in op.layers and op.layer is not None), None)
                where = (f"it is computed inside layer {folded.layer!r}'s {folded.op}; give {folded.layer!r} the "
                         "precision instead") if folded else "it leaves no op in the converted file"
                raise PlanError(f"plan.precision on layer {layer!r} cannot be carried out: {where}.",
                                layer=layer, field="precision")
            for op in ops:
                other = owners.setdefault(op.index, layer)
                if other != layer:
                    raise PlanError(f"Layers {other!r} and {layer!r} share the op {op.op}; give the precision to one.",
                                    layer=layer, field="precision")
            if layer not in kept:
                continue  # the converter's own int8 is this precision
            quantized = [op for op in ops if any(tfl.tensors[i].quantized for i in op.outputs if i >= 0)]
            if quantized:
                raise ConversionError(
                    f"TFLite's quantizer made layer {layer!r} ({quantized[0].op}) int8 although it was asked to leave "
                    "it float (it keeps ops that only pass their input's scale on, such as pooling, in int8), and "
                    f"LiteRT Quantizer does not change ops that are already quantized, so the layer cannot get "
                    f"{spec.describe()} in an int8 file. Give that precision to a layer with weights, or convert with "
                    "quantization='none' or 'dynamic'.", layer=layer, field="precision")
            weighted = [op for op in ops if kernel_tensor(tfl, op) is not None]
            others = [op for op in ops if op not in weighted]
            weights = spec.weights_for(bool(weighted))
            if spec.is_float:
                float_ops.append(_names(tfl, ops))
                continue
            if weighted and weights == "float":
                raise PlanError(f"Layer {layer!r} ({weighted[0].op}) computes with weights, and integer activations "
                                f"({spec.activations}) need integer weights; use weights='int8' or 'int4'.",
                                layer=layer, field="weights")
            if not weighted and weights != "float":
                raise PlanError(f"Layer {layer!r} has no weights in the converted file ({ops[0].op}); leave weights "
                                "out and set only its activations.", layer=layer, field="weights")
            if weighted:
                entries.append(litert.recipe_entry(_names(tfl, weighted), weights, spec.activations,
                                                   spec.granularity, spec.algorithm))
                layers_of.append(layer)
            if others and spec.activations != "float":  # activation ranges are min-max, whatever the algorithm
                entries.append(litert.recipe_entry(_names(tfl, others), None, spec.activations))
                layers_of.append(layer)
            if mode in FROM_FLOAT and others and spec.activations == "float":
                float_ops.append(_names(tfl, others))
        return entries, layers_of, float_ops

    def _verify(self, tfl: TFLiteModel, mode: str) -> None:
        """ConversionError when a precision layer did not get what the plan asks (read from the file)."""
        found = precisions(tfl)
        for layer, spec in self.specs.items():
            if mode == "int8" and layer not in self.kept_float(mode):
                continue
            got = found.get(layer)
            if got is None:
                continue
            weights, activations = got.plan_words
            wanted = (spec.weights_for(got.weights is not None), spec.activations)
            if (weights, activations) != wanted:
                raise ConversionError(f"Layer {layer!r} ({got.op}) has {got.weights or 'no'} weights and "
                                      f"{got.activations} activations in the file, but the plan asks for "
                                      f"{wanted[0]} weights and {wanted[1]} activations: LiteRT Quantizer left "
                                      "it otherwise.", layer=layer, field="precision")


def float_reference(model):
    """A callable that converts ``model`` to float32 (what layer_errors compares with), run when first needed."""
    def convert() -> bytes:
        content, failure = attempt(converter_for(model, fixed_batch=False))
        if failure is not None:
            raise ConversionError(f"The float32 reference of model {model.name!r} did not convert: {failure[0]}",
                                  field="model") from failure[1]
        return content

    return convert


def _names(tfl: TFLiteModel, ops) -> list[str]:
    """Each op's output tensor names joined by ';' (LiteRT Quantizer's scope of the op, less its final ';')."""
    return [";".join(tfl.tensors[i].name for i in op.outputs if i >= 0) for op in ops]


def _calibration_feed(tfl: TFLiteModel, samples) -> dict:
    """{input name: samples} in the file's input types: an int8 input (Edge TPU, Hexagon) takes its float samples
    quantized with the input's own scale and zero point."""
    from .readback import in_input_type

    named = samples if isinstance(samples, dict) else {tfl.input_names[0]: samples}
    feed = {}
    for name, values in named.items():
        tensor = tfl.named_inputs.get(name)
        quantized = tensor is not None and tensor.quantized and len(tensor.scale) == 1
        feed[name] = in_input_type(values, tensor.dtype, tensor.scale[0], tensor.zero_point[0]) if quantized else values
    return feed


def _has_kernel(model, users: dict, layer: str) -> bool:
    return any(w.name.rsplit("/", 1)[-1].split(":")[0] in KERNEL_WEIGHTS
               for keras_layer in model.layers if users.get(keras_layer.name) == layer
               for w in keras_layer.weights)
