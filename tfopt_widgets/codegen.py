"""Plan.to_python: a plan as a standalone tf_keras + tfmot + TensorFlow script that reproduces tw.optimize/convert.

The script must not drift from the engine, so it is assembled from the engine's own pieces rather than a second
implementation: the stage decisions come from plan.py's pure helpers (``stages``, ``frozen_layers``,
``quantize_scheme``, ``masked_layers``, ``preserves_sparsity``), and the functions that do the numeric or
converter work (``pruning_steps``, the ``_KeepZeros`` callback, the QAT annotation ``_annotate_for_qat``, the
converter set-up, the Conv1D quantize config) are copied into it verbatim from the engine's source files (read
with ``ast``, so no TensorFlow is imported here).
Layers marked ``keep_float`` are reproduced the same way: the script runs a copy of tw.convert's selective int8
(``conversion._selective_int8``: calibrate once, quantize with the layers' ops denylisted) and of the op-to-layer map
it reads the calibrated file with (``tflite_model.op_layers``), on TensorFlow's copy of the TFLite schema. A plan
that only keeps layers float gives a script that fine-tunes nothing and just converts.

Every user-supplied string (layer names, paths) enters the script through ``repr()``: a name with quotes,
backslashes or newlines stays one string literal and cannot break or inject code.
"""

from __future__ import annotations

import ast
import re
import textwrap
from functools import cache
from pathlib import Path

from . import __version__
from .errors import ModelError, PlanError, TargetError
from .plan import (
    CENTROID_INITS,
    Plan,
    clustered_and_quantized,
    frozen_layers,
    masked_layers,
    preserves_sparsity,
    quantize_scheme,
    stages,
)
from .targets import get_target

__all__ = ["plan_to_python"]

_PACKAGE = Path(__file__).resolve().parent
# What load_training_data() holds until the reader fills it in (tests replace this exact line).
FILL_IN = 'raise NotImplementedError("Fill in load_training_data() with your training data, then run this script.")'


@cache
def _tree(module: str) -> tuple[str, ast.Module]:
    text = (_PACKAGE / f"{module}.py").read_text(encoding="utf-8")
    return text, ast.parse(text)


def _statement(module: str, name: str) -> ast.stmt:
    """The top-level function, class or assignment that defines ``name`` in the engine's ``module``."""
    _, tree = _tree(module)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name:
            return node
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return node
    raise LookupError(f"{name} not found in tfopt_widgets/{module}.py")


def _definition(module: str, name: str, rename: str | None = None) -> str:
    """The source of top-level function/class ``name`` in the engine's ``module``, optionally renamed."""
    node = _statement(module, name)
    source = textwrap.dedent(ast.get_source_segment(_tree(module)[0], node))
    if rename:
        keyword = "class" if isinstance(node, ast.ClassDef) else "def"
        source = source.replace(f"{keyword} {name}(", f"{keyword} {rename}(", 1)
    return source


def _constant(module: str, name: str):
    """The literal value assigned to top-level ``name`` in the engine's ``module``."""
    return _statement(module, name).value


def _copies(*names: tuple[str, str]) -> str:
    """The engine's top-level definitions ``(module, name)``, in this order, as one block of script source.

    Functions and classes are copied with their comments; a leading underscore is dropped from each copied name
    wherever the block uses it (``_indices`` -> ``indices``), so the copies call each other under script names.
    """
    blocks = []
    for module, name in names:
        node = _statement(module, name)
        source = textwrap.dedent(ast.get_source_segment(_tree(module)[0], node))
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) or not blocks or blocks[-1][0]:
            blocks.append((isinstance(node, (ast.FunctionDef, ast.ClassDef)), source))
        else:  # consecutive assignments stay together
            blocks[-1] = (False, blocks[-1][1] + "\n" + source)
    text = "\n\n\n".join(source for _, source in blocks)
    private = [name for _, name in names if name.startswith("_")]
    if private:
        pattern = re.compile(r"(?<![\w.])(" + "|".join(map(re.escape, private)) + r")\b")
        text = pattern.sub(lambda match: _public(match.group(1)), text)
    return text


def _literal(module: str, name: str):
    return ast.literal_eval(_constant(module, name))


def _quantize_configs() -> dict[str, str]:
    """inspection.QUANTIZE_CONFIGS as {layer class: name of the function that makes its QuantizeConfig}."""
    node = _constant("inspection", "QUANTIZE_CONFIGS")
    return {ast.literal_eval(k): v.id for k, v in zip(node.keys, node.values)}


def _public(name: str) -> str:
    return name.lstrip("_")


def plan_to_python(plan: Plan, *, model_path="model.keras", target="cpu", model=None, quantization=None,
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
    # Selective int8 (tw.convert's QuantizationDebugger denylist); a float file keeps every layer float anyway.
    selective = bool(float_layers) and mode == "int8"
    groups = None
    if model is not None:
        from .inspection import inspect

        plan.validate(model)
        _check_calibration_loops(model, mode)
        info = inspect(model)
        groups = {layer: info.group_members(layer) for layer in plan.layers("quantize") if info.group_members(layer)}
    output_path = output_path or f"{Path(str(model_path)).stem}-{target.name}-{mode}.tflite"

    parts = [_header(plan, run, target, mode, selective),
             _settings(model_path, output_path, epochs, batch_size, learning_rate, target, mode, int8_io),
             _data_section(), _plan_section(plan, run, groups, mode, selective)]
    parts.append(_helpers(run, groups is None))
    parts.append(_stages_section(run))
    parts.append(_conversion_section(run, selective))
    parts.append(_main_section(run, selective))
    return "\n\n\n".join(part.strip("\n") for part in parts) + "\n"


def _check_calibration_loops(model, mode: str) -> None:
    """ModelError when the script's calibration would crash: recurrent layers other than a (fused) LSTM become
    TFLite WHILE loops, on which the calibrator segfaults; tw.convert unrolls them, the script does not."""
    if mode not in ("int8", "int16x8"):
        return
    from .conversion import _recurrent_layers

    loops = {name: kind for name, kind in _recurrent_layers(model).items() if not kind.rstrip(")").endswith("LSTM")}
    if loops:
        named = ", ".join(f"{kind} {name!r}" for name, kind in loops.items())
        raise ModelError(f"The script would convert with quantization={mode!r}, and {named} becomes a TFLite WHILE "
                         "loop, on which TFLite's calibrator crashes the process (tensorflow/tensorflow#75140). "
                         "tw.convert unrolls such layers for calibration; the script does not. Rebuild the layer "
                         "with unroll=True (a fixed sequence length) before exporting, or export for a float mode "
                         "(target='gpu', quantization='float16').", layer=next(iter(loops)), field="model")


def _header(plan: Plan, run: list[str], target, mode: str, selective: bool) -> str:
    lines = [f"#   {entry.layer!r}: {entry.scheme} ({' + '.join(Plan._describe(entry))})" for entry in plan]
    steps = ["load the tf_keras model file (MODEL_PATH below),"]
    if run:
        steps.append("prune, then cluster, then quantization-aware-train the planned layers, fine-tuning after each "
                     "stage\n     (tfmot's collaborative optimization: each stage keeps what the one before did),")
    steps.append(("strip the pruning/clustering wrappers and convert" if run else "convert it") + " to TensorFlow "
                 "Lite for the target, with the converter\n     settings tfopt-widgets uses" + (
                     ", keeping the KEEP_FLOAT layers float (selective int8: their\n     ops denylisted in "
                     "TFLite's quantizer)." if selective else "."))
    steps = "\n".join(f"  {number}. {step}" for number, step in enumerate(steps, 1))
    return f'''"""Reproduce a tfopt-widgets optimization plan with TensorFlow, tf_keras and tfmot only.

Generated by tfopt-widgets {__version__} (no import of it is needed to run this). What it does, in order:
{steps}

Fill in load_training_data() below, then run:  python <this file>
"""

from __future__ import annotations

import copy  # noqa: F401 -- used by quantize_scheme() when the plan quantizes layers
import math
import os
from collections import namedtuple
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# tfmot works only with Keras 2 (tf_keras); this makes `tf.keras` mean tf_keras whatever the import order.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402

# The plan, per layer (scheme: tfmot's name for the combination of techniques):
{chr(10).join(lines)}
# Target: {target.title} ({target.name!r}); the .tflite file is {mode}.'''


def _settings(model_path, output_path, epochs, batch_size, learning_rate, target, mode, int8_io) -> str:
    calibration = _literal("conversion", "CALIBRATION_SAMPLES")
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
CALIBRATION_SAMPLES = {calibration!r}  # training inputs that calibrate int8 activation ranges'''


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
    """At most CALIBRATION_SAMPLES training inputs, evenly spread over the data (sorted data still calibrates), in
    the model's input dtypes (token ids stay integers). Several inputs: {{input name: array}}, which
    configure_converter() feeds by name (the converted file's input order need not be the model's)."""
    names = list(model.input_names)
    if isinstance(data, tf.data.Dataset):  # the first samples of a dataset
        parts = []
        for x, _ in data:
            parts.append([np.asarray(part) for part in in_order(x, names)] if len(names) > 1 else [np.asarray(x)])
            if sum(len(part[0]) for part in parts) >= CALIBRATION_SAMPLES:
                break
        inputs = [np.concatenate(part)[:CALIBRATION_SAMPLES] for part in zip(*parts)]
    else:
        x = data[0]
        inputs = [np.asarray(part) for part in in_order(x, names)] if len(names) > 1 else [np.asarray(x)]
        if len(inputs[0]) > CALIBRATION_SAMPLES:
            pick = np.linspace(0, len(inputs[0]) - 1, CALIBRATION_SAMPLES).round().astype(int)
            inputs = [x[pick] for x in inputs]
    inputs = [x.astype(tensor.dtype.as_numpy_dtype) for x, tensor in zip(inputs, model.inputs)]
    return inputs[0] if len(inputs) == 1 else dict(zip(names, inputs))'''


def _plan_section(plan: Plan, run: list[str], groups: dict | None, mode: str, selective: bool) -> str:
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
        out.append("CentroidInitialization = tfmot.clustering.keras.CentroidInitialization")
        out.append("# tfmot.clustering.keras.cluster_weights arguments per layer (a pruned layer keeps its zeros).")
        out.append("CLUSTER = {")
        for entry in plan:
            if entry.cluster:
                c = entry.cluster
                out.append(f"    {entry.layer!r}: dict(number_of_clusters={c.clusters!r},"
                           f"\n        cluster_centroids_init=CentroidInitialization.{CENTROID_INITS[c.init]}, "
                           f"preserve_sparsity={preserves_sparsity(plan, entry.layer)!r}),")
        out.append("}")
        out.append("# Pruned layers that are not clustered: held still while clustering fine-tunes, so they keep "
                   "their zeros.")
        out.append(f"FROZEN_WHILE_CLUSTERING = {sorted(frozen_layers(plan, 'cluster'))!r}")
    else:
        out.append("CLUSTER = {}  # no layer is clustered")
    if "quantize" in run:
        path, kwargs = quantize_scheme(plan)
        # As in optimization._quantize_scheme: tfopt-widgets' registry over tfmot's scheme.
        clustered = sorted(clustered_and_quantized(plan))
        scheme = f"quantize_scheme({path!r}, {kwargs!r}, {clustered!r})"
        out.append("# Quantization-aware training (int8) on these layers.")
        out.append(f"QUANTIZE = {plan.layers('quantize')!r}")
        out.append("# A BatchNormalization (and the activation after it) is quantized folded into its convolution.")
        out.append(f"QUANTIZED_WITH = {groups!r}" if groups is not None else
                   "QUANTIZED_WITH = None  # None: found in the model by quantized_with() when the script runs")
        out.append(f"\n\n# Activations tfmot's 8-bit QAT quantizes in an Activation layer; others pass through float.\n"
                   f"QAT_ACTIVATIONS = {_literal('inspection', 'QAT_ACTIVATIONS')!r}")
        out.append("\n\n" + _definition("optimization", "_scheme", "quantize_scheme") + "\n\n")
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
    return "\n".join(out)


def _helpers(run: list[str], find_groups: bool) -> str:
    out = ["# -- 3. helpers (copied from tfopt-widgets, so the numbers come out the same) -----------------------------"]
    if not run:
        return out[0] + "\n# none needed: nothing is fine-tuned"
    out.append(f"KERNEL_ATTRIBUTES = {_literal('optimization', 'KERNEL_ATTRIBUTES')!r}")
    out.append('''

def fine_tune(model, source, dataset, callbacks=(), freeze=()):
    """Compile ``model`` as ``source`` was compiled (loss, metrics, a fresh optimizer) and train it for EPOCHS.

    Layers named in ``freeze`` are held still (trainable=False) for this stage.
    """
    frozen = [layer for layer in model.layers if layer.name in freeze and layer.trainable]
    for layer in frozen:
        layer.trainable = False
    config = source.get_compile_config()
    if LEARNING_RATE is not None:
        config["optimizer"]["config"]["learning_rate"] = LEARNING_RATE
    # tfmot renames the output layers (label -> quant_label): settings keyed by output name go by position instead.
    for key, missing in PER_OUTPUT:
        if key in config:
            config[key] = by_output(config[key], list(source.output_names), missing)
    model.compile_from_config(config)
    model.fit(dataset, epochs=EPOCHS, callbacks=list(callbacks), verbose=2)
    for layer in frozen:
        layer.trainable = True''')
    out.append("\n\n" + _copies(("optimization", "_PER_OUTPUT"), ("optimization", "_by_output")))
    if "prune" in run:
        out.append("\n\n" + _definition("plan", "pruning_steps"))
    if "quantize" in run:
        out.append("\n\n" + _definition("optimization", "_KeepZeros", "KeepZeros"))
        configs = _quantize_configs()
        for function in dict.fromkeys(configs.values()):
            out.append("\n\n" + _definition("inspection", function, _public(function)))
        mapping = ", ".join(f"{layer!r}: {_public(function)}" for layer, function in configs.items())
        out.append("\n\n# Layers outside tfmot's QAT registry, quantized with a QuantizeConfig made here.\n"
                   f"QUANTIZE_CONFIGS = {{{mapping}}}")
        out.append("\n\n" + _definition("optimization", "_annotate_for_qat", "annotate_for_qat"))
        if find_groups:
            out.append(f"\n\nFOLDING_HEADS = {_literal('inspection', '_FOLDING_HEADS')!r}")
            out.append(f"FOLDED_ACTIVATIONS = {_literal('inspection', '_FOLDED_ACTIVATIONS')!r}")
            out.append("\n\n" + _definition("inspection", "_inbound_names", "inbound_names"))
            out.append('''

def quantized_with(model):
    """{convolution: [the BatchNormalization, and the activation after it]}: quantization folds them into it."""
    inbound = inbound_names(model)
    kinds = {layer.name: type(layer).__name__ for layer in model.layers}
    consumers = {}
    for name, sources in inbound.items():
        for source in sources:
            consumers.setdefault(source, []).append(name)
    groups = {}
    for name, sources in inbound.items():
        if kinds.get(name) != "BatchNormalization" or len(sources) != 1:
            continue
        head = sources[0]
        if kinds.get(head) not in FOLDING_HEADS or len(consumers.get(head, [])) != 1:
            continue
        groups.setdefault(head, []).append(name)
        after = consumers.get(name, [])
        if len(after) == 1 and kinds.get(after[0]) in FOLDED_ACTIVATIONS:
            groups[head].append(after[0])
    return groups''')
    return "\n".join(out)


def _stages_section(run: list[str]) -> str:
    out = ["# -- 4. the stages: annotate -> fine-tune -> strip ------------------------------------------------------"]
    if not run:
        out.append("# none: the plan only keeps layers float, which the conversion below does")
    if "prune" in run:
        out.append('''

def prune(model, source, dataset, steps_per_epoch):
    """Magnitude pruning of the PRUNE layers, on a schedule over the fine-tuning steps."""
    sparsity = tfmot.sparsity.keras
    total_steps = steps_per_epoch * EPOCHS

    def annotate(layer):
        spec = PRUNE.get(layer.name)
        if spec is None:
            return layer
        begin, end, frequency = pruning_steps(spec, total_steps)
        if spec.schedule == "constant":
            schedule = sparsity.ConstantSparsity(spec.sparsity, begin_step=begin, end_step=end, frequency=frequency)
        else:
            schedule = sparsity.PolynomialDecay(initial_sparsity=0.0, final_sparsity=spec.sparsity,
                                                begin_step=begin, end_step=end, frequency=frequency)
        return sparsity.prune_low_magnitude(layer, pruning_schedule=schedule, block_size=spec.block_size)

    annotated = keras.models.clone_model(model, clone_function=annotate)
    fine_tune(annotated, source, dataset, [sparsity.UpdatePruningStep()])
    return sparsity.strip_pruning(annotated)''')
    if "cluster" in run:
        out.append('''

def cluster(model, source, dataset):
    """Weight clustering of the CLUSTER layers (sparsity-preserving where the layer was pruned)."""
    clustering = tfmot.clustering.keras

    def annotate(layer):
        settings = CLUSTER.get(layer.name)
        return layer if settings is None else clustering.cluster_weights(layer, **settings)

    annotated = keras.models.clone_model(model, clone_function=annotate)
    fine_tune(annotated, source, dataset, freeze=FROZEN_WHILE_CLUSTERING)
    return clustering.strip_clustering(annotated)''')
    if "quantize" in run:
        out.append('''

def quantize(model, source, dataset):
    """Quantization-aware training of the QUANTIZE layers (with the layers folded into them)."""
    quantization = tfmot.quantization.keras
    groups = QUANTIZED_WITH if QUANTIZED_WITH is not None else quantized_with(model)
    names = set(QUANTIZE) | {member for layer in QUANTIZE for member in groups.get(layer, [])}
    annotated = keras.models.clone_model(model, clone_function=lambda layer: annotate_for_qat(layer, names))
    with quantization.quantize_scope():
        quantized = quantization.quantize_apply(annotated, scheme=QUANTIZE_SCHEME)
    callbacks = []
    if KEEP_ZEROS:
        callbacks.append(KeepZeros([layer for layer in quantized.layers
                                    if getattr(layer, "layer", layer).name in KEEP_ZEROS]))
    fine_tune(quantized, source, dataset, callbacks, freeze=FROZEN_WHILE_QUANTIZING)
    return quantized  # QAT wrappers stay: the converter reads their ranges''')
    return "\n".join(out)


def _conversion_section(run: list[str], selective: bool) -> str:
    converter = _definition("conversion", "_converter", "make_converter").replace(
        "raise ModelError(", "raise ValueError(").replace(', field="model")', ")")
    out = ["# -- 5. conversion (tfopt-widgets' converter settings) ------------------------------------------------",
           converter, _definition("conversion", "_configure", "configure_converter")]
    if selective:
        out.append(_selective_section())
    if run:
        out.append(_definition("optimization", "zero_inputs"))
        out.append(_LAYER_SUMMARY)
    return "\n\n\n".join(out)


def _selective_section() -> str:
    """tw.convert's selective int8 and the op-to-layer map it reads the calibrated file with, copied."""
    return '''# Selective int8 (keep_float): the converter calibrates once, then TFLite's quantizer runs with the ops of the
# KEEP_FLOAT layers denylisted, as the QuantizationDebugger does. Which op computes which layer is read from the tensor names in the calibrated file,
# with TensorFlow's copy of the TFLite flatbuffer schema.
from collections.abc import Mapping  # noqa: E402 -- in the copied functions' annotations

from tensorflow.lite.python import schema_py_generated as schema  # noqa: E402


class PlanError(ValueError):
    """A check of the copied tfopt-widgets code failed; the message says what to change (``layer``, ``field``)."""

    def __init__(self, message, *, layer=None, field=None):
        super().__init__(message)
        self.layer, self.field = layer, field


DataError = PlanError


''' + _copies(("tflite_model", "_enum_names"), ("tflite_model", "_OP_NAMES"), ("tflite_model", "_CASTS"),
                 ("_keras", "ORIGINS_ATTRIBUTE"), ("conversion", "_NOT_USER_LAYERS"),
                 ("tflite_model", "op_layers"), ("tflite_model", "layer_outputs"), ("tflite_model", "_op_name"),
                 ("tflite_model", "_tensor_name"), ("tflite_model", "_holds_data"),
                 ("tflite_model", "_signature_outputs"), ("tflite_model", "_indices"), ("_keras", "layer_origins"),
                 ("conversion", "_user_layers"), ("conversion", "_quantize_calibrated"),
                 ("conversion", "_selective_int8"))


_LAYER_SUMMARY = '''def layer_summary(model):
    """{layer: (kernel sparsity, unique kernel values)} for the planned layers, as the model computes with them."""
    planned = {*PRUNE, *CLUSTER, *QUANTIZE}
    # An eager forward pass makes each QAT wrapper set its inner kernel to the fake-quantized values.
    model(zero_inputs(model), training=False)
    summary = {}
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        for attribute in KERNEL_ATTRIBUTES:
            value = getattr(inner, attribute, None)
            if inner.name in planned and value is not None and hasattr(value, "numpy"):
                kernel = np.asarray(value.numpy(), dtype="float32")
                summary[inner.name] = (float(np.mean(kernel == 0)), int(np.unique(kernel).size))
    return summary'''


def _main_section(run: list[str], selective: bool) -> str:
    calls = {
        "prune": "    model = prune(model, source, dataset, steps_per_epoch)",
        "cluster": "    model = cluster(model, source, dataset)",
        "quantize": "    model = quantize(model, source, dataset)",
    }
    if run:
        body = "\n".join(["    dataset, steps_per_epoch = training_batches(data, source)", "    model = source",
                          *(calls[stage] for stage in run), "", '''    print(f"{'layer':<24} {'sparsity':>9} {'unique values':>14}")
    for name, (sparsity, unique) in layer_summary(model).items():
        print(f"{name!r:<24} {sparsity:>9.4f} {unique:>14}")'''])
    else:
        body = "    model = source  # nothing to fine-tune: the plan only keeps layers float"
    convert = ("selective_int8(converter, model, KEEP_FLOAT, samples, INT8_IO)" if selective
               else "converter.convert()")
    return f'''# -- 6. run ---------------------------------------------------------------------------------------------------
def main():
    source = keras.models.load_model(MODEL_PATH)  # compiled: its loss and optimizer settings are reused
    planned = {{*PRUNE, *CLUSTER, *QUANTIZE, *KEEP_FLOAT}}
    missing = sorted(planned - {{layer.name for layer in source.layers}})
    if missing:
        raise SystemExit(f"{{MODEL_PATH}} has no layer named {{', '.join(map(repr, missing))}}; is it the right model?")
    data = load_training_data()
{body}

    converter = make_converter(model, fixed_batch=FIXED_BATCH)
    samples = calibration_inputs(data, model) if QUANTIZATION in ("int8", "int16x8") else None
    configure_converter(converter, QUANTIZATION, samples, INT8_IO)
    content = {convert}
    Path(OUTPUT_PATH).write_bytes(content)
    print(f"Wrote {{OUTPUT_PATH}}: {{len(content):,}} bytes ({{TARGET}}, {{QUANTIZATION}})")


if __name__ == "__main__":
    main()'''
