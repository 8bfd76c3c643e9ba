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
import dataclasses
import io
import warnings

from ai_edge_litert import schema_py_generated as schema

from ..errors import ConversionError, DataError, PlanError, TargetError
from ..quiet import captured_stderr, captured_stdout
from ..runtime import precision as litert
from ..runtime.ops import op_table, user_layers
from .converter import attempt, converter_for
from .file import TFLiteModel
from .readback import precisions

# Modes whose file LiteRT Quantizer finishes from float32 (the converter cannot leave single layers out of them).
FROM_FLOAT = litert.FROM_FLOAT
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

    @property
    def plain(self) -> dict:
        """The precisions as runtime.precision takes them: {layer: {"weights", "activations", ...}}."""
        return plain_specs(self.specs)

    def check(self, mode: str, samples) -> None:
        """Before converting: the mode can carry precisions, and representative data is there where needed."""
        self.check_mode(mode)
        needing = [layer for layer, spec in self.specs.items()
                   if spec.activations != "float" or spec.algorithm == "gptq"]
        if mode == "int8":
            needing += [layer for layer in self.kept_float(mode) if layer not in needing]
        if needing and samples is None:
            raise DataError(f"plan.precision on {', '.join(map(repr, needing))} calibrates ranges on "
                            "representative_data (integer activations, gptq, or the other layers' int8), and none was "
                            "given. Pass 100-500 training inputs, e.g. representative_data=x_train[:200].",
                            field="representative_data")

    def check_mode(self, mode: str) -> None:
        """TargetError when the conversion's mode cannot carry precisions (int16x8)."""
        if mode == "int16x8":
            raise TargetError(f"plan.precision ({', '.join(self.specs)}) applies to float32, dynamic, float16 and int8 "
                              "conversions; this one uses 'int16x8'. Give layers int16 activations in an int8 "
                              "conversion instead: plan.precision(layer, activations='int16').",
                              layer=next(iter(self.specs)), field="precision")

    def kept_float(self, mode: str) -> list[str]:
        """The precision layers the converter leaves float for LiteRT Quantizer (runtime.precision decides)."""
        return litert.converter_float_layers(self.plain, mode)

    def base_mode(self, mode: str) -> str:
        """The mode the converter converts with: float32 for the modes LiteRT Quantizer finishes."""
        return litert.converter_mode(mode)

    def apply(self, tfl: TFLiteModel, mode: str, samples, notices: list[str]) -> TFLiteModel:
        """The converted file ``tfl`` with each precision layer's ops quantized by LiteRT Quantizer (and, in the
        dynamic and float16 modes, the other layers given that mode), checked by reading the file back."""
        try:
            entries, layers_of, float_ops = litert.layer_entries(
                op_table(tfl.content, tfl.layer_origins, schema), self.plain, mode)
        except litert.PrecisionError as error:
            kind = ConversionError if error.conversion else PlanError
            raise kind(str(error), layer=error.layer, field=error.field) from None
        refused = litert.refusals(tfl.content, entries)
        if refused:
            index, op, reason = refused[0]
            layer = layers_of[index]
            reason = reason.splitlines()[0].split(" Error: Quantization config")[0]
            raise PlanError(f"LiteRT Quantizer cannot give layer {layer!r} ({op}) {self.specs[layer].describe()}: its "
                            f"policy has no such config for that op ({reason}).", layer=layer, field="precision")
        recipe = litert.file_recipe(entries, float_ops, mode)
        if mode in FROM_FLOAT:
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
                content = litert.quantize_file(tfl.content, recipe, feed, tfl.input_names)
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


def plain_specs(specs: dict) -> dict:
    """{layer: PrecisionSpec} as runtime.precision and a generated script take them: {layer: {"weights", ...}}."""
    return {layer: dataclasses.asdict(spec) for layer, spec in specs.items()}


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
