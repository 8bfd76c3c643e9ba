"""Plan.to_python: a plan as a standalone tf_keras + tfmot + TensorFlow script that reproduces tw.optimize/convert.

The script cannot drift from the engine because it runs the engine's own code: the modules of
``tfopt_widgets.runtime`` (the TensorFlow, tf_keras and tfmot calls behind every stage, which import nothing of the
package) are inlined whole, and the script adds only its settings, the plan as constants (decided by plan/stages.py's pure
helpers, as for tw.optimize), reading the user's data, and the order of the calls. A plan that only keeps layers
float gives a script that fine-tunes nothing and just converts (with selective int8 where the mode is int8).

Every user-supplied string (layer names, paths) enters the script through ``repr()``: a name with quotes,
backslashes or newlines stays one string literal and cannot break or inject code.
"""

from __future__ import annotations

from pathlib import Path

from .. import __version__, runtime
from ..errors import ModelError, PlanError, TargetError
from ..runtime import precision as litert
from ..runtime.tflite import CALIBRATION_SAMPLES
from ..targets import get_target
from .stages import cluster_settings, clustered_and_quantized, frozen_layers, masked_layers, quantize_scheme, stages

__all__ = ["plan_to_python"]

_RUNTIME = Path(runtime.__file__).resolve().parent
# What load_training_data() holds until the reader fills it in (tests replace this exact line).
FILL_IN = 'raise NotImplementedError("Fill in load_training_data() with your training data, then run this script.")'


def plan_to_python(plan, *, model_path="model.keras", target="cpu", model=None, quantization=None,
                   epochs: int = 2, batch_size: int = 32, learning_rate: float | None = None,
                   output_path=None) -> str:
    """See :meth:`Plan.to_python`."""
    if len(plan) == 0:
        raise PlanError("The plan is empty: there is nothing to reproduce. Add layers with plan.quantize(...), "
                        "plan.prune(...), plan.cluster(...) or plan.keep_float(...) first.", field="plan")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise PlanError(f"epochs must be a positive integer; got {epochs!r}.", field="epochs")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise PlanError(f"batch_size must be a positive integer; got {batch_size!r}.", field="batch_size")
    target = get_target(target)
    run = stages(plan)
    # The converted file's mode, decided as tw.convert decides it (the script always calibrates on training data).
    mode = target.quantization_for(quantization, calibrated=True, quantization_aware="quantize" in run)
    int8_io = target.int8_io
    float_layers = plan.float_layers
    if float_layers and mode in ("dynamic", "int16x8"):  # as tw.convert refuses it: only int8 has a denylist
        raise TargetError(f"keep_float ({', '.join(float_layers)}) applies to int8 conversion; target "
                          f"{target.name!r} converts this plan with {mode!r}. Pass quantization='int8' where the "
                          "target allows it, or drop the marks (plan.remove(layer, 'keep_float')).",
                          layer=float_layers[0], field="keep_float")
    precisions = {}  # without any, the script has no LiteRT Quantizer step
    if plan.precisions:
        from ..tflite.precision import PrecisionStep, plain_specs  # the engine's converter half: only for precisions

        precisions = plain_specs(plan.precisions)
        PrecisionStep(dict(plan.precisions), model, target).check_mode(mode)  # int16x8, refused as tw.convert does
    # Selective int8 (tw.convert's QuantizationDebugger denylist), also for the precision layers LiteRT Quantizer
    # finishes; a float file keeps every layer float anyway.
    selective = bool(float_layers or litert.converter_float_layers(precisions, mode)) and mode == "int8"
    groups = None
    if model is not None:
        from ..model.inspection import inspect

        plan.validate(model)
        if precisions:
            PrecisionStep.for_plan(plan, model, target)  # the target's and the model's checks, as in tw.convert
        _check_calibration_loops(model, mode)
        info = inspect(model)
        groups = {layer: info.group_members(layer) for layer in plan.layers("quantize") if info.group_members(layer)}
    output_path = output_path or f"{Path(str(model_path)).stem}-{target.name}-{mode}.tflite"

    parts = [_header(plan, run, target, mode, selective, precisions), *_runtime(run, selective, precisions),
             _settings(model_path, output_path, epochs, batch_size, learning_rate, target, mode, int8_io),
             _data_section(), _plan_section(plan, run, groups, mode, selective, precisions), _stages_section(run),
             *_precision_section(precisions), _main_section(run, selective, precisions)]
    return "\n\n\n".join(part.strip("\n") for part in parts) + "\n"


def _check_calibration_loops(model, mode: str) -> None:
    """ModelError when the script's calibration would crash: recurrent layers other than a (fused) LSTM become
    TFLite WHILE loops, on which the calibrator segfaults; tw.convert unrolls them, the script does not."""
    if mode not in ("int8", "int16x8"):
        return
    from ..tflite.converter import recurrent_layers

    loops = {name: kind for name, kind in recurrent_layers(model).items() if not kind.rstrip(")").endswith("LSTM")}
    if loops:
        named = ", ".join(f"{kind} {name!r}" for name, kind in loops.items())
        raise ModelError(f"The script would convert with quantization={mode!r}, and {named} becomes a TFLite WHILE "
                         "loop, on which TFLite's calibrator crashes the process (tensorflow/tensorflow#75140). "
                         "tw.convert unrolls such layers for calibration; the script does not. Rebuild the layer "
                         "with unroll=True (a fixed sequence length) before exporting, or export for a float mode "
                         "(target='gpu', quantization='float16').", layer=next(iter(loops)), field="model")


def _header(plan, run: list[str], target, mode: str, selective: bool, precisions: dict) -> str:
    lines = [f"#   {entry.layer!r}: {entry.scheme} ({' + '.join(entry.describe())})" for entry in plan]
    steps = ["load the tf_keras model file (MODEL_PATH below),"]
    if run:
        steps.append("prune, then cluster, then quantization-aware-train the planned layers, fine-tuning after each "
                     "stage\n     (tfmot's collaborative optimization: each stage keeps what the one before did),")
    steps.append(("strip the pruning/clustering wrappers and convert" if run else "convert it") + " to TensorFlow "
                 "Lite for the target, with the converter\n     settings tfopt-widgets uses" + (
                     ", keeping the KEEP_FLOAT layers float (selective int8: their\n     ops denylisted in "
                     "TFLite's quantizer)." if selective else "."))
    if precisions:
        steps.append("give the PRECISIONS layers their precision with LiteRT Quantizer on the converted file, as "
                     "tw.convert does\n     (the layers it finishes stay float in the converter's step above).")
    needs = ("TensorFlow, tf_keras, tfmot and LiteRT Quantizer" if precisions else "TensorFlow, tf_keras and tfmot") + " only"
    requirements = ("\nRequires: tensorflow, tf_keras, tensorflow-model-optimization" +
                    (", litert-quantizer (pip install litert-quantizer).\n" if precisions else "."))
    steps = "\n".join(f"  {number}. {step}" for number, step in enumerate(steps, 1))
    return f'''"""Reproduce a tfopt-widgets optimization plan with {needs}.

Generated by tfopt-widgets {__version__} (no import of it is needed to run this). What it does, in order:
{steps}
{requirements if precisions else ""}
Fill in load_training_data() below, then run:  python <this file>
"""

from __future__ import annotations

import os
from collections import namedtuple
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# tfmot works only with Keras 2 (tf_keras); this makes `tf.keras` mean tf_keras whatever the import order.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

# The plan, per layer (scheme: tfmot's name for the combination of techniques):
{chr(10).join(lines)}
# Target: {target.title} ({target.name!r}); the .tflite file is {mode}.'''


def _runtime(run: list[str], selective: bool, precisions: dict) -> list[str]:
    """The runtime modules the script calls, each whole, as it is in the package (see tfopt_widgets.runtime)."""
    needed = {"tflite": True, "ops": bool(run) or selective or bool(precisions), "precision": bool(precisions),
              "training": bool(run)}
    parts = []
    for module in runtime.MODULES:
        if not needed[module]:
            continue
        text = (_RUNTIME / f"{module}.py").read_text(encoding="utf-8")
        title = f"# -- runtime: {module}.py of tfopt-widgets {__version__}, verbatim "
        parts.append(title + "-" * max(3, 120 - len(title)) + "\n" + text)
    return parts


def _settings(model_path, output_path, epochs, batch_size, learning_rate, target, mode, int8_io) -> str:
    return f'''# -- settings -----------------------------------------------------------------------------------------------
MODEL_PATH = {str(model_path)!r}
OUTPUT_PATH = {str(output_path)!r}
EPOCHS = {epochs!r}  # per stage
BATCH_SIZE = {batch_size!r}
LEARNING_RATE = {learning_rate!r}  # None: the optimizer settings the model was compiled with
TARGET = {target.name!r}
QUANTIZATION = {mode!r}  # the converter mode for this target
INT8_IO = {bool(int8_io)!r}  # the file takes and returns int8 tensors
FIXED_BATCH = {bool(target.fixed_batch)!r}  # the batch dimension is fixed to 1 in the file
CALIBRATION_SAMPLES = {CALIBRATION_SAMPLES!r}  # training inputs that calibrate int8 activation ranges'''


def _data_section() -> str:
    return f'''# -- 1. your data -------------------------------------------------------------------------------------------
def load_training_data():
    """Your training data: (x_train, y_train) numpy arrays, or a tf.data.Dataset of (x, y) batches.

    A model with several inputs takes x as a list (or tuple) of arrays in its input order, or a dict keyed by input
    name; with several outputs, y likewise. It fine-tunes every stage, and its first inputs calibrate int8 ranges.
    >>> FILL IN <<<
    """
    {FILL_IN}


def in_order(value, names):
    """Data for a model with several inputs (or outputs) ``names``: a list or a dict keyed by name as a tuple in
    that order (tfmot renames the output layers, so names would no longer match them); one input: as it is."""
    if len(names) < 2:
        return value
    return tuple(value[name] for name in names) if isinstance(value, dict) else tuple(value)


def training_batches(data, model):
    """(batched dataset, steps per epoch): arrays are shuffled with seed 0 and batched by BATCH_SIZE. Several
    inputs (outputs): x (y) as a list in the model's order or a dict keyed by name."""
    inputs, outputs = list(model.input_names), list(model.output_names)
    if isinstance(data, tf.data.Dataset):
        spec = data.element_spec
        keyed = isinstance(spec, tuple) and len(spec) >= 2 and (isinstance(spec[0], dict) and len(inputs) > 1
                                                                 or isinstance(spec[1], dict) and len(outputs) > 1)
        if keyed:
            data = data.map(lambda x, y, *rest: (in_order(x, inputs), in_order(y, outputs), *rest))
        steps = int(data.cardinality())
        return data, steps if steps > 0 else sum(1 for _ in data)
    x, y = in_order(data[0], inputs), in_order(data[1], outputs)
    count = len(x[0]) if len(inputs) > 1 else len(x)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(count, seed=0).batch(BATCH_SIZE)
    return dataset, -(-count // BATCH_SIZE)


def calibration_inputs(data, model):
    """Training inputs that calibrate int8 ranges (a dataset: its first CALIBRATION_SAMPLES), as calibration_samples()
    picks them for tw.convert."""
    names = list(model.input_names)
    x = data[0] if not isinstance(data, tf.data.Dataset) else None
    if x is None:
        parts = []
        for batch, _ in data:
            parts.append([np.asarray(part) for part in in_order(batch, names)] if len(names) > 1 else [np.asarray(batch)])
            if sum(len(part[0]) for part in parts) >= CALIBRATION_SAMPLES:
                break
        x = [np.concatenate(part)[:CALIBRATION_SAMPLES] for part in zip(*parts)]
        x = x if len(names) > 1 else x[0]
    return calibration_samples(model, list(in_order(x, names)) if len(names) > 1 else x, CALIBRATION_SAMPLES)'''


def _plan_section(plan, run: list[str], groups: dict | None, mode: str, selective: bool, precisions: dict) -> str:
    out = ["# -- 2. the plan --------------------------------------------------------------------------------------------"]
    if "prune" in run:
        out.append('PruneSpec = namedtuple("PruneSpec", "sparsity schedule begin end begin_step end_step block_size")')
        out.append("# Sparsity (fraction of zeros) per layer; begin/end are fractions of the fine-tuning steps.")
        out.append("PRUNE = {")
        for entry in plan:
            if entry.prune:
                p = entry.prune
                out.append(f"    {entry.layer!r}: PruneSpec(sparsity={p.sparsity!r}, schedule={p.schedule!r}, "
                           f"begin={p.begin!r}, end={p.end!r},\n        begin_step={p.begin_step!r}, "
                           f"end_step={p.end_step!r}, block_size={tuple(p.block_size)!r}),")
        out.append("}")
    else:
        out.append("PRUNE = {}  # no layer is pruned")
    if "cluster" in run:
        out.append("# Weight clustering per layer (init: a member of tfmot's CentroidInitialization; a pruned layer "
                   "keeps its zeros).")
        out.append("CLUSTER = {")
        out.extend(f"    {layer!r}: {settings!r}," for layer, settings in cluster_settings(plan).items())
        out.append("}")
        out.append("# Pruned layers that are not clustered: held still while clustering fine-tunes, so they keep "
                   "their zeros.")
        out.append(f"FROZEN_WHILE_CLUSTERING = {sorted(frozen_layers(plan, 'cluster'))!r}")
    else:
        out.append("CLUSTER = {}  # no layer is clustered")
    if "quantize" in run:
        path, kwargs = quantize_scheme(plan)
        clustered = sorted(clustered_and_quantized(plan))
        scheme = f"quantize_scheme({path!r}, {kwargs!r}, {clustered!r})"
        out.append("# Quantization-aware training (int8) on these layers.")
        out.append(f"QUANTIZE = {plan.layers('quantize')!r}")
        out.append("# A BatchNormalization (and the activation after it) is quantized folded into its convolution.")
        out.append(f"QUANTIZED_WITH = {groups!r}" if groups is not None else
                   "QUANTIZED_WITH = None  # None: found in the model by quantized_with() when the script runs")
        out.append("# tfmot applies one QAT scheme to the whole model: the one that preserves what earlier stages did.")
        out.append(f"QUANTIZE_SCHEME = {scheme}")
        out.append("# Pruned or clustered layers that QAT does not wrap: held still so they keep zeros and shared "
                   "values.")
        out.append(f"FROZEN_WHILE_QUANTIZING = {sorted(frozen_layers(plan, 'quantize'))!r}")
        out.append("# Pruned-only layers whose zeros the cluster-preserving scheme would let grow back: re-masked "
                   "after every step.")
        out.append(f"KEEP_ZEROS = {sorted(masked_layers(plan))!r}")
    else:
        out.append("QUANTIZE = []  # no layer is quantization-aware trained")
    if selective:
        out.append("# Layers that stay float in the int8 file: selective post-training int8 leaves their ops float.")
        out.append(f"KEEP_FLOAT = {plan.float_layers!r}")
    elif plan.float_layers:
        out.append(f"KEEP_FLOAT = []  # the {mode} file keeps every layer float, those marked keep_float too: "
                   f"{', '.join(map(repr, plan.float_layers))}")
    else:
        out.append("KEEP_FLOAT = []  # no layer is kept float")
    if precisions:
        out.append("# Post-training precision per layer (plan.precision), given by LiteRT Quantizer after converting: "
                   "weights None\n# means int8 with integer activations, else float. As JSON: json.dumps(PRECISIONS).")
        out.append("PRECISIONS = {")
        out.extend(f"    {layer!r}: {spec!r}," for layer, spec in precisions.items())
        out.append("}")
    return "\n".join(out)


def _stages_section(run: list[str]) -> str:
    out = ["# -- 3. the stages: annotate -> fine-tune -> strip ------------------------------------------------------"]
    if not run:
        out.append("# none: the plan only keeps layers float, which the conversion below does")
    if "prune" in run:
        out.append('''

def prune(model, settings, dataset, steps_per_epoch):
    """Magnitude pruning of the PRUNE layers, on a schedule over the fine-tuning steps."""
    annotated = prune_annotated(model, PRUNE, steps_per_epoch * EPOCHS)
    fine_tune(annotated, settings, dataset, EPOCHS, [tfmot.sparsity.keras.UpdatePruningStep()], verbose=2)
    return tfmot.sparsity.keras.strip_pruning(annotated)''')
    if "cluster" in run:
        out.append('''

def cluster(model, settings, dataset):
    """Weight clustering of the CLUSTER layers (sparsity-preserving where the layer was pruned)."""
    annotated = cluster_annotated(model, CLUSTER)
    fine_tune(annotated, settings, dataset, EPOCHS, freeze=FROZEN_WHILE_CLUSTERING, verbose=2)
    return tfmot.clustering.keras.strip_clustering(annotated)''')
    if "quantize" in run:
        out.append('''

def quantize(model, settings, dataset):
    """Quantization-aware training of the QUANTIZE layers (with the layers folded into them)."""
    groups = QUANTIZED_WITH if QUANTIZED_WITH is not None else quantized_with(model)
    names = set(QUANTIZE) | {member for layer in QUANTIZE for member in groups.get(layer, [])}
    quantized = quantize_applied(model, names, QUANTIZE_SCHEME)
    callbacks = [KeepZeros(quantized, KEEP_ZEROS)] if KEEP_ZEROS else []
    fine_tune(quantized, settings, dataset, EPOCHS, callbacks, FROZEN_WHILE_QUANTIZING, verbose=2)
    return quantized  # QAT wrappers stay: the converter reads their ranges''')
    return "\n".join(out)


def _precision_section(precisions: dict) -> list[str]:
    """The LiteRT Quantizer step (runtime.precision, as tw.convert's tflite/precision.py calls it); none without
    precisions."""
    if not precisions:
        return []
    return ['''# -- 3b. per-layer precision with LiteRT Quantizer ---------------------------------------------------------
def with_precisions(content, model, samples):
    """The converted file with the PRECISIONS layers' ops quantized by LiteRT Quantizer (in the dynamic and float16
    modes, from the float32 file, the other layers given that mode), as tw.convert does."""
    ops = op_table(content, user_layers(model))
    entries, layers_of, float_ops = layer_entries(ops, PRECISIONS, QUANTIZATION)
    refused = refusals(content, entries)
    if refused:
        index, op, reason = refused[0]
        raise SystemExit(f"LiteRT Quantizer cannot give layer {layers_of[index]!r} ({op}) its precision: {reason}")
    recipe = file_recipe(entries, float_ops, QUANTIZATION)
    if not recipe:
        return content
    return quantize_file(content, recipe, samples, list(model.input_names))''']


def _main_section(run: list[str], selective: bool, precisions: dict) -> str:
    calls = {
        "prune": "    model = prune(model, settings, dataset, steps_per_epoch)",
        "cluster": "    model = cluster(model, settings, dataset)",
        "quantize": "    model = quantize(model, settings, dataset)",
    }
    if run:
        body = "\n".join([
            "    settings = compile_settings(source, learning_rate=LEARNING_RATE)",
            '    if settings["loss"] is None:',
            '        raise SystemExit(f"{MODEL_PATH} holds an uncompiled model: the loss for fine-tuning is unknown.")',
            "    dataset, steps_per_epoch = training_batches(data, source)", "    model = source",
            *(calls[stage] for stage in run), "", '''    print(f"{'layer':<24} {'sparsity':>9} {'unique values':>14}")
    for name, (sparsity, unique) in layer_summary(model, {*PRUNE, *CLUSTER, *QUANTIZE}, layer_origins(model)).items():
        print(f"{name!r:<24} {sparsity:>9.4f} {unique:>14}")'''])
    else:
        body = "    model = source  # nothing to fine-tune: the plan only keeps layers float"
    kept = ("list(dict.fromkeys([*KEEP_FLOAT, *converter_float_layers(PRECISIONS, QUANTIZATION)]))" if precisions
            else "KEEP_FLOAT")
    convert = (f"selective_int8(converter, model, {kept}, INT8_IO)" if selective
               else "converter.convert()")
    calibrated = '("int8", "int16x8")' + (" or PRECISIONS" if precisions else "")
    mode = "converter_mode(QUANTIZATION)" if precisions else "QUANTIZATION"
    finish = ("\n    content = with_precisions(content, model, samples)  # LiteRT Quantizer: see section 3b"
              if precisions else "")
    return f'''# -- 4. run ---------------------------------------------------------------------------------------------------
def main():
    source = keras.models.load_model(MODEL_PATH)  # compiled: its loss and optimizer settings are reused
    planned = {{*PRUNE, *CLUSTER, *QUANTIZE, *KEEP_FLOAT{", *PRECISIONS" if precisions else ""}}}
    missing = sorted(planned - {{layer.name for layer in source.layers}})
    if missing:
        raise SystemExit(f"{{MODEL_PATH}} has no layer named {{', '.join(map(repr, missing))}}; is it the right model?")
    data = load_training_data()
{body}

    batch_one = any(rnn_in(layer) is not None for layer in model.layers)  # recurrent layers convert at batch 1
    converter = make_converter(model, FIXED_BATCH, batch_one)
    samples = calibration_inputs(data, model) if QUANTIZATION in {calibrated} else None
    configure_converter(converter, {mode}, samples, INT8_IO)
    content = {convert}
    content = consistent_biases(content)  # each int8 bias at the scale LiteRT's kernels assume (see there){finish}
    Path(OUTPUT_PATH).write_bytes(content)
    print(f"Wrote {{OUTPUT_PATH}}: {{len(content):,}} bytes ({{TARGET}}, {{QUANTIZATION}})")


if __name__ == "__main__":
    main()'''
