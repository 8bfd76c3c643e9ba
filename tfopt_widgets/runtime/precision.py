"""The script runtime's LiteRT Quantizer half: per-layer precision recipes built from plain data, LiteRT's own verdict
on them, and quantizing a converted file with them.

A recipe entry selects ops by a regular expression over their scope (LiteRT Quantizer's name for an op's output
tensor names joined by ';', plus a trailing ';'); :func:`scope_regex` matches exactly the ops given, so an entry for
``conv2`` never catches ``conv2_bn``. Imports numpy and, inside the functions, litert_quantizer only.
"""

import re

import numpy as np

# Modes whose file LiteRT Quantizer finishes from float32 (the converter cannot leave single layers out of them).
FROM_FLOAT = ("dynamic", "float16")
# What the converter's own int8 gives a layer: (weights, activations, granularity, algorithm).
CONVERTER_INT8 = ("int8", "int8", "channel", "minmax")

# Plan words -> LiteRT Quantizer's settings.
WEIGHT_BITS = {"int4": 4, "int8": 8}
ACTIVATION_BITS = {"int8": 8, "int16": 16}
GRANULARITIES = {"channel": "CHANNELWISE", "block32": "BLOCKWISE_32", "block64": "BLOCKWISE_64"}
# algorithm_key of each algorithm (litert_quantizer.algorithm_manager.AlgorithmName values, 0.11.0).
ALGORITHMS = {"minmax": "min_max_uniform_quantize", "mse": "MSE", "octav": "OCTAV", "gptq": "GPTQ",
              "hadamard": "HADAMARD_ROTATION"}


def op_config(weights, activations, granularity="channel"):
    """LiteRT Quantizer's ``op_config`` (plain JSON data) for one layer's ops.

    ``weights``: "int4", "int8" or None (ops without weights); ``activations``: "float" (dynamic range: integer
    weights, float activations quantized on the fly by the kernel), "int8" (asymmetric, the TFLite int8 spec) or
    "int16" (symmetric, the 16x8 spec). LiteRT Quantizer's format always holds a weight config; ops without weights
    ignore it, as in its own static recipes.
    """
    config = {"compute_precision": "INTEGER", "explicit_dequantize": False, "skip_checks": False,
              "min_weight_elements": 0,
              "weight_tensor_config": {"num_bits": WEIGHT_BITS[weights or "int8"], "symmetric": True,
                                       "granularity": GRANULARITIES[granularity], "dtype": "INT"}}
    if activations != "float":
        bits = ACTIVATION_BITS[activations]
        config["activation_tensor_config"] = {"num_bits": bits, "symmetric": bits == 16,
                                              "granularity": "TENSORWISE", "dtype": "INT"}
    return config


def scope_regex(output_names):
    """A regex matching exactly the ops whose output tensors are named ``output_names`` (one name per op; the
    converter's fused names hold ';' themselves), in LiteRT Quantizer's scope form ("<outputs>;")."""
    return "^(?:" + "|".join(re.escape(name + ";") for name in dict.fromkeys(output_names)) + ")$"


def recipe_entry(output_names, weights, activations, granularity="channel", algorithm="minmax"):
    """One recipe entry: every supported op among those named by ``output_names`` gets :func:`op_config`."""
    return {"regex": scope_regex(output_names), "operation": "*", "algorithm_key": ALGORITHMS[algorithm],
            "op_config": op_config(weights, activations, granularity)}


def keep_float_entry(output_names):
    """A recipe entry that leaves the ops named by ``output_names`` as they are (over an earlier catch-all entry)."""
    return {"regex": scope_regex(output_names), "operation": "*", "algorithm_key": "no_quantize"}


def mode_recipe(mode):
    """LiteRT Quantizer's recipe for a whole-file mode: "dynamic" is its dynamic_legacy_wi8_afp32 (int8 weights of
    tensors with at least 1,024 values, float activations: what the TFLite converter's dynamic range makes), "float16"
    casts weights to float16 with a DEQUANTIZE before the op (what the converter's float16 makes)."""
    from litert_quantizer import recipe

    if mode == "dynamic":
        return recipe.dynamic_legacy_wi8_afp32()
    if mode == "float16":
        return [{"regex": ".*", "operation": "*", "algorithm_key": "float_casting",
                 "op_config": {"weight_tensor_config": {"num_bits": 16, "symmetric": False, "granularity": "TENSORWISE",
                                                        "dtype": "FLOAT"},
                               "compute_precision": "FLOAT", "explicit_dequantize": True, "skip_checks": False,
                               "min_weight_elements": 0}}]
    raise ValueError(f"no whole-file recipe for mode {mode!r}")


def needs_calibration(recipe):
    """Whether quantizing with ``recipe`` calibrates activation ranges (integer activations, or GPTQ)."""
    return any("activation_tensor_config" in entry["op_config"] or entry["algorithm_key"] == ALGORITHMS["gptq"]
               for entry in recipe)


def refusals(content, recipe):
    """[(entry index, op name, LiteRT Quantizer's reason)] for each op an entry of ``recipe`` selects in the file
    ``content`` but that LiteRT Quantizer cannot give that entry's settings.

    LiteRT Quantizer itself skips such an op without a word (the op keeps what it had), so this asks its own checks
    first: the algorithm must be registered for the op, and the op's policy must allow the settings.
    """
    from litert_quantizer import algorithm_manager, qtyping
    from litert_quantizer.utils import tfl_flatbuffer_utils as fb

    model = fb.read_model(content)
    graph = model.subgraphs[0]
    found = []
    for raw in graph.operators:
        code = model.operatorCodes[raw.opcodeIndex].builtinCode
        op = fb.TFL_OP_CODE_TO_NAME.get(code)
        scope = fb.get_op_scope(raw, graph.tensors)
        for index, entry in enumerate(recipe):
            if not re.search(entry["regex"], scope):
                continue
            if op is None:
                found.append((index, f"builtin op {code}", "LiteRT Quantizer does not quantize this op"))
                continue
            config = qtyping.OpQuantizationConfig.from_dict(entry["op_config"])
            try:
                algorithm_manager.check_op_quantization_config(entry["algorithm_key"], op, config)
            except ValueError as error:
                found.append((index, op.value, str(error).strip()))
    return found


def calibration_data(samples, input_names, signature="serving_default"):
    """LiteRT Quantizer's calibration data: one {input name: sample of batch 1} per sample.

    ``samples``: one array (a file with one input, named ``input_names[0]``) or {input name: array}.
    """
    if not isinstance(samples, dict):
        samples = {input_names[0]: samples}
    count = len(next(iter(samples.values())))
    return {signature: [{name: np.asarray(values[i:i + 1]) for name, values in samples.items()}
                        for i in range(count)]}


def quantize_file(content, recipe, samples=None, input_names=()):
    """``content`` (a converted .tflite file) quantized by LiteRT Quantizer with ``recipe``: the file's bytes.

    Ops no entry selects keep what they have (float, or int8 from the converter). ``samples``: calibration inputs
    as for :func:`calibration_data`, needed when :func:`needs_calibration`; ranges are the extremes over every
    sample (:func:`extremes`). LiteRT Quantizer writes its progress to stdout and stderr; callers that want silence
    capture them.
    """
    from litert_quantizer import calibrator, quantizer, recipe_manager

    q = quantizer.Quantizer(bytearray(content))
    q.load_quantization_recipe(recipe)
    calibration = None
    if q.need_calibration:
        manager = recipe_manager.RecipeManager()
        manager.load_quantization_recipe(recipe)
        calibration_run = calibrator.Calibrator(bytes(content), qsv_update_func=extremes)
        calibration_run.calibrate(calibration_data(samples, list(input_names)), manager)
        calibration = calibration_run.get_model_qsvs()
    result = q.quantize(calibration, enable_progress_bar=False, enable_progress_report=False)
    return bytes(result.quantized_model)


def extremes(qsv, new):
    """Calibration statistics merged as the TFLite converter does: the smallest min and largest max over every
    sample. LiteRT Quantizer's own default is a moving average (smoothing 0.95), which clipped the digits demo's
    int16 Dense outputs at 1.20 when they reach 1.82 and gave that layer 12x the converter's int16x8 error.
    GPTQ's Hessian statistics are merged as LiteRT Quantizer merges them."""
    if not qsv:
        return new
    if "hessian" in qsv:
        from litert_quantizer.utils import qsv_utils

        merged = qsv_utils.gptq_and_moving_average_update(qsv, new)
    else:
        merged = dict(qsv)
        if "num_samples" in qsv and "num_samples" in new:
            merged["num_samples"] = qsv["num_samples"] + new["num_samples"]
    merged["min"] = np.minimum(qsv["min"], new["min"])
    merged["max"] = np.maximum(qsv["max"], new["max"])
    return merged


# -- a plan's precisions, as plain data: {layer: {"weights", "activations", "granularity", "algorithm"}} ------------
class PrecisionError(ValueError):
    """A precision that cannot be carried out in a file; ``layer`` and ``field`` name it, ``conversion`` is True when
    the converter's file is at fault rather than the plan."""

    def __init__(self, message, layer, field="precision", conversion=False):
        super().__init__(message)
        self.layer, self.field, self.conversion = layer, field, conversion


def weights_for(spec, has_weights):
    """The weight precision ("int4", "int8" or "float") a layer with (or without) weights gets from ``spec``: left
    out (None), int8 when its activations are integer, else float."""
    if spec["weights"] is not None or not has_weights:
        return spec["weights"] or "float"
    return "float" if spec["activations"] == "float" else "int8"


def is_float(spec):
    """Whether ``spec`` leaves the layer float (float weights, float activations)."""
    return spec["weights"] in (None, "float") and spec["activations"] == "float"


def converter_mode(mode):
    """The mode the converter converts with: float32 ("none") for the modes LiteRT Quantizer finishes."""
    return "none" if mode in FROM_FLOAT else mode


def converter_float_layers(specs, mode):
    """The precision layers the converter leaves float for LiteRT Quantizer: every one in an int8 conversion but
    those that get exactly the converter's own int8 (int8 weights per channel and int8 activations, min-max)."""
    if mode != "int8":
        return []
    return [layer for layer, spec in specs.items()
            if (weights_for(spec, True), spec["activations"], spec["granularity"], spec["algorithm"]) != CONVERTER_INT8]


def layer_entries(ops, specs, mode):
    """(recipe entries, the layer of each entry, output names of the float layers' ops) for the precisions
    ``specs`` in the file whose ops are ``ops`` (runtime.ops.op_table's rows), converted with ``mode``.

    Raises PrecisionError: a layer without ops (or folded into another's), two layers sharing an op, an op the
    converter made int8 although it was to stay float, weights where the file has none or float weights with integer
    activations.
    """
    kept = set(converter_float_layers(specs, mode)) if mode == "int8" else set(specs)
    owners = {}
    entries, layers_of, float_ops = [], [], []
    for layer, spec in specs.items():
        own = [(index, op) for index, op in enumerate(ops) if op["layer"] == layer and not op["cast"]]
        if not own:
            folded = next((op for op in ops if layer in op["layers"] and op["layer"] is not None), None)
            where = (f"it is computed inside layer {folded['layer']!r}'s {folded['op']}; give {folded['layer']!r} "
                     "the precision instead") if folded else "it leaves no op in the converted file"
            raise PrecisionError(f"plan.precision on layer {layer!r} cannot be carried out: {where}.", layer)
        for index, _ in own:
            other = owners.setdefault(index, layer)
            if other != layer:
                raise PrecisionError(f"Layers {other!r} and {layer!r} share the op {ops[index]['op']}; give the "
                                     "precision to one.", layer)
        if layer not in kept:
            continue  # the converter's own int8 is this precision
        own = [op for _, op in own]
        quantized = [op for op in own if op["quantized"]]
        if quantized:
            raise PrecisionError(
                f"TFLite's quantizer made layer {layer!r} ({quantized[0]['op']}) int8 although it was asked to leave "
                "it float (it keeps ops that only pass their input's scale on, such as pooling, in int8), and "
                "LiteRT Quantizer does not change ops that are already quantized, so the layer cannot get its "
                "precision in an int8 file. Give that precision to a layer with weights, or convert with "
                "quantization='none' or 'dynamic'.", layer, conversion=True)
        weighted = [op for op in own if op["weighted"]]
        others = [op for op in own if not op["weighted"]]
        weights = weights_for(spec, bool(weighted))
        if is_float(spec):
            float_ops.append(outputs_of(own))
            continue
        if weighted and weights == "float":
            raise PrecisionError(f"Layer {layer!r} ({weighted[0]['op']}) computes with weights, and integer "
                                 f"activations ({spec['activations']}) need integer weights; use weights='int8' or "
                                 "'int4'.", layer, field="weights")
        if not weighted and weights != "float":
            raise PrecisionError(f"Layer {layer!r} has no weights in the converted file ({own[0]['op']}); leave "
                                 "weights out and set only its activations.", layer, field="weights")
        if weighted:
            entries.append(recipe_entry(outputs_of(weighted), weights, spec["activations"], spec["granularity"],
                                        spec["algorithm"]))
            layers_of.append(layer)
        if others and spec["activations"] != "float":  # activation ranges are min-max, whatever the algorithm
            entries.append(recipe_entry(outputs_of(others), None, spec["activations"]))
            layers_of.append(layer)
        if mode in FROM_FLOAT and others and spec["activations"] == "float":
            float_ops.append(outputs_of(others))
    return entries, layers_of, float_ops


def file_recipe(entries, float_ops, mode):
    """The whole recipe for the file: in the modes LiteRT Quantizer finishes (:data:`FROM_FLOAT`), that mode for
    every op, the float layers' ops left out, then ``entries``; else ``entries`` alone."""
    if mode not in FROM_FLOAT:
        return list(entries)
    return [*mode_recipe(mode), *(keep_float_entry(names) for names in float_ops), *entries]


def outputs_of(ops):
    """Each op's output tensor names joined by ';' (LiteRT Quantizer's scope of the op, less its final ';')."""
    return [";".join(op["outputs"]) for op in ops]
