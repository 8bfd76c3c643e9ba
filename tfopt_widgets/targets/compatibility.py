"""Which ops of a converted file run on the target's accelerator and which fall back to the CPU, and why.

``TFLiteModel.compatibility`` computes this for the file's own target; :func:`check` does it for any target.
Verdicts come from the target's op table (``tfopt_widgets.targets``), applied to what the file really holds (op
options, tensor shapes, dtypes, constant values), and are then placed the way the target's runtime partitions a
graph: the Edge TPU compiler stops mapping at the first unsupported op, the GPU and Hexagon delegates take every
supported op. For the GPU, TFLite's own offline check (the Analyzer) decides where it is available.

>>> tfl = tw.convert(model, "edgetpu", representative_data=x_train[:100])
>>> tfl.compatibility.summary["op_share"], tfl.compatibility.summary["mac_share"]
(1.0, 1.0)
>>> tfl.compatibility.by_layer()["conv1"].accelerated
True
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from . import Target, cpu, get_target, gpu
from .rules import violations

__all__ = ["Compatibility", "LayerPlacement", "OpPlacement", "check"]

# Bytes per element of the dtypes a .tflite file stores (int4 packs two values per byte).
_ITEM_BYTES = {"float32": 4, "float16": 2, "float64": 8, "int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "int32": 4,
               "uint32": 4, "int64": 8, "uint64": 8, "bool": 1, "int4": 0.5, "bfloat16": 2, "complex64": 8}
# Ops whose multiply-accumulates count: op -> how many MACs each output element costs, from the filter's shape.
# TFLite layouts: CONV_2D filter (out, h, w, in); DEPTHWISE_CONV_2D (1, h, w, out); FULLY_CONNECTED (units, in);
# CONV_3D (d, h, w, in, out).
_MACS_PER_OUTPUT = {
    "CONV_2D": lambda f: f[1] * f[2] * f[3],
    "DEPTHWISE_CONV_2D": lambda f: f[1] * f[2],
    "FULLY_CONNECTED": lambda f: f[-1],
    "CONV_3D": lambda f: f[0] * f[1] * f[2] * f[3],
}
_CASTS = ("QUANTIZE", "DEQUANTIZE")


@dataclass(frozen=True)
class OpPlacement:
    """Where one op of the file runs on the target.

    ``accelerated`` is True when the op runs on the target's accelerator (on CPU targets the CPU is the target, so
    every op counts); ``reason`` says why it falls back (the unsupported op, the broken limit with its actual value,
    a float tensor on an 8-bit chip, or the earlier op that ends the Edge TPU's subgraph), None when it does not.
    ``device`` is where it runs ("Edge TPU", "CPU"), ``macs`` its multiply-accumulates per inference, ``note``
    anything else worth knowing on this target (CPU: the kernel kind and XNNPACK's sparse path).
    """

    index: int
    op: str
    layer: str | None
    layers: tuple[str, ...]
    accelerated: bool
    reason: str | None
    device: str
    macs: int = 0
    note: str | None = None


@dataclass(frozen=True)
class LayerPlacement:
    """Where one of the user's Keras layers runs: the roll-up of its ops.

    ``accelerated`` is True when all its ops run on the accelerator, False when any falls back, None when the layer
    left no op in the file (Dropout, InputLayer, a folded BatchNormalization shows the op it is folded into).
    ``ops`` are the op indices, ``reason`` why it (partly) falls back, ``note`` CPU remarks.
    """

    layer: str
    accelerated: bool | None
    reason: str | None
    ops: tuple[int, ...] = ()
    macs: int = 0
    note: str | None = None


class Compatibility(Sequence):
    """Per-op placements of a file on a target (a sequence of :class:`OpPlacement`), plus a summary.

    ``summary`` (a dict): ``ops``, ``ops_accelerated``, ``op_share``; ``macs``, ``macs_accelerated``, ``mac_share``;
    ``parameter_bytes`` (all constants), ``parameter_bytes_accelerated``, ``parameter_cache_bytes`` and
    ``streams_weights`` (Edge TPU); ``partitions`` (runs of ops on the accelerator); ``warnings`` and ``notes``
    (lists of sentences); ``checker`` (what decided the verdicts).
    """

    def __init__(self, target: Target, entries: list[OpPlacement], summary: dict, layers: list[str]):
        self.target = target
        self.entries = list(entries)
        self.summary = summary
        self._layers = list(layers)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index):
        return self.entries[index]

    @property
    def fallbacks(self) -> list[OpPlacement]:
        """The ops that run on the CPU although the target has an accelerator."""
        return [entry for entry in self.entries if not entry.accelerated]

    def by_layer(self) -> dict[str, LayerPlacement]:
        """{user's Keras layer name: :class:`LayerPlacement`}, in model order; empty for a bare file (no names)."""
        result = {}
        names = list(dict.fromkeys([*self._layers, *(n for e in self.entries for n in e.layers)]))
        for name in names:
            own = [e for e in self.entries if e.layer == name]
            folded = [e for e in self.entries if name in e.layers and e.layer != name]
            result[name] = _roll_up(name, own, folded, self.target)
        return result

    def to_dataframe(self):
        """The per-op placements as a pandas DataFrame (one row per op)."""
        import pandas as pd  # only here: pandas is optional for the engine

        return pd.DataFrame([asdict(entry) for entry in self.entries])

    def __repr__(self) -> str:
        s = self.summary
        lines = [f"Compatibility(target={self.target.name!r}): {_headline(s)}"]
        lines += [f"  warning: {w}" for w in s["warnings"]]
        for entry in self.entries:
            lines.append(f"  #{entry.index:<3} {entry.op:<22} {entry.layer or '-':<24} {entry.device:<11} "
                         f"{entry.reason or entry.note or ''}".rstrip())
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        s = self.summary
        rows = "".join(
            f"<tr><td>{e.index}</td><td>{html.escape(e.op)}</td><td>{html.escape(e.layer or '')}</td>"
            f"<td>{html.escape(e.device)}</td><td>{e.macs:,}</td>"
            f"<td>{html.escape(e.reason or e.note or '')}</td></tr>" for e in self.entries)
        warnings = "".join(f"<p><b>Warning:</b> {html.escape(w)}</p>" for w in s["warnings"])
        return (f"<div><p><b>{html.escape(self.target.title)}</b>: {html.escape(_headline(s))}</p>{warnings}"
                "<table><thead><tr><th>#</th><th>op</th><th>layer</th><th>runs on</th><th>MACs</th>"
                f"<th>why / note</th></tr></thead><tbody>{rows}</tbody></table></div>")


def check(model, target: str | Target | None = None) -> Compatibility:
    """Placements of every op of ``model`` (a TFLiteModel) on ``target`` (default: the target it was converted for).

    Raises TargetError for an unknown target or a file that names none.
    """
    from ..errors import TargetError

    target = target if target is not None else model.target
    if target is None:
        raise TargetError("This TFLite file does not say which target it was converted for. Pass one: "
                          "tfopt_widgets.targets.compatibility.check(tfl, 'edgetpu').", field="target")
    target = get_target(target)
    ops = model.ops
    problems, checker = _problems(model, target)
    accelerated, reasons = _place(model, target, problems)
    notes_per_op = cpu.op_notes(model) if target.accelerator is None else {}
    device = target.accelerator or "CPU"
    owners = _cast_owners(model)
    entries = [OpPlacement(index=op.index, op=op.op, layer=owners.get(i, op.layer),
                           layers=(owners[i],) if i in owners else op.layers, accelerated=accelerated[i],
                           reason=reasons[i], device=device if accelerated[i] else "CPU", macs=_macs(op, model),
                           note=notes_per_op.get(i)) for i, op in enumerate(ops)]
    summary = _summary(model, target, entries, checker)
    layers = list(dict.fromkeys(model.layer_origins.values()))
    return Compatibility(target, entries, summary, layers)


# --- verdicts ------------------------------------------------------------------------------------------------------

def _problems(model, target: Target) -> tuple[list[list[str]], str]:
    """Per op, why the accelerator cannot run it (empty: it can); and what decided."""
    if target.accelerator is None:
        return [[] for _ in model.ops], "no accelerator: every op runs on the CPU"
    problems = []
    for op in model.ops:
        found = []
        if op.op not in target.ops:
            name = f"custom op {op.custom_code!r}" if op.op == "CUSTOM" else op.op
            found.append(f"{name} is not supported by the {target.accelerator}")
        else:
            found += violations(target.ops[op.op], op, model)
        found += violations(target.tensor_rules, op, model)
        problems.append(list(dict.fromkeys(found)))
    checker = f"op table: {target.ops_source}"
    if target.name == "gpu":
        analyzer = gpu.analyzer_warnings(model.content)
        if analyzer is None:
            checker = (f"op table: {target.ops_source}. TFLite's Analyzer (gpu_compatibility=True) in this "
                       "TensorFlow build passes every op, even an unknown custom op (its GPU check is not compiled "
                       "in), so the table decides")
        else:
            checker = "TFLite Analyzer (gpu_compatibility=True)"
            # The Analyzer is TFLite's own check: its verdict replaces the table's where it ran.
            problems = [[f"TFLite GPU check: {analyzer[i]}"] if i in analyzer else [] for i in range(len(model.ops))]
    return problems, checker


def _place(model, target: Target, problems):
    """(accelerated per op, reason per op) after the target runtime's partitioning."""
    ops = model.ops
    accelerated = [not p for p in problems]
    reasons = ["; ".join(p) or None for p in problems]
    io_casts = _io_casts(model)
    for i in io_casts:
        if not accelerated[i]:
            what = "quantizes the float input" if ops[i].op == "QUANTIZE" else "dequantizes the output to float"
            reasons[i] = f"{what} on the CPU ({reasons[i]})"
    if target.placement == "prefix":
        first = next((i for i, ok in enumerate(accelerated) if not ok and i not in io_casts), None)
        if first is not None:
            cut = ops[first]
            layer = _cast_owners(model).get(first, cut.layer)
            where = f"op #{first} {cut.op}" + (f" (layer {layer!r})" if layer else "")
            for i in range(first + 1, len(ops)):
                if i in io_casts and not accelerated[i]:
                    continue
                own = f"; also: {reasons[i]}" if reasons[i] else ""
                accelerated[i] = False
                reasons[i] = (f"after the first unsupported op, {where}: the {target.accelerator} compiler maps "
                              f"one subgraph, so later ops run on the CPU{own}")
    return accelerated, reasons


def _cast_owners(model) -> dict[int, str]:
    """{op index: user layer} for QUANTIZE/DEQUANTIZE ops inside the graph that the file names no layer for.

    Such a cast exists for the float op next to it (a layer left float in an int8 file), so it belongs to the layer
    on its float side: a DEQUANTIZE to the layer that reads its output, a QUANTIZE to the one that wrote its input.
    """
    ops = model.ops
    producers = {t: op for op in ops for t in op.outputs}
    consumers: dict[int, list] = {}
    for op in ops:
        for t in op.inputs:
            consumers.setdefault(t, []).append(op)
    edges = _io_casts(model)
    owners = {}
    for op in ops:
        if op.op not in _CASTS or op.layer is not None or op.index in edges or not op.inputs:
            continue
        if op.op == "DEQUANTIZE":
            side = consumers.get(op.outputs[0], [])
        else:
            side = [producers[op.inputs[0]]] if op.inputs[0] in producers else []
        layer = next((other.layer for other in side if other.layer is not None), None)
        if layer is not None:
            owners[op.index] = layer
    return owners


def _io_casts(model) -> set[int]:
    """QUANTIZE ops fed by a graph input and DEQUANTIZE ops feeding a graph output: format glue at the edges."""
    inputs = {t.index for t in model.inputs}
    outputs = {t.index for t in model.outputs}
    return {op.index for op in model.ops if (op.op == "QUANTIZE" and set(op.inputs) & inputs)
            or (op.op == "DEQUANTIZE" and set(op.outputs) & outputs)}


@lru_cache(maxsize=1)
# --- measures ------------------------------------------------------------------------------------------------------

def _macs(op, model) -> int:
    """Multiply-accumulates of one op per inference, from its tensor shapes (0 for ops without a filter)."""
    if op.op == "TRANSPOSE_CONV":  # each input value is scattered through the (out, h, w, in) filter
        if len(op.inputs) < 3 or op.inputs[2] < 0:
            return 0
        filt, data = model.tensors[op.inputs[1]].shape, model.tensors[op.inputs[2]].shape
        return int(np.prod(data, dtype=np.int64)) * int(filt[0] * filt[1] * filt[2]) if len(filt) == 4 else 0
    if op.op == "BATCH_MATMUL":
        left, out = model.tensors[op.inputs[0]].shape, model.tensors[op.outputs[0]].shape
        depth = left[-2] if op.options.get("adj_x") else left[-1]
        return int(np.prod(out, dtype=np.int64)) * int(depth) if left and out else 0
    formula = _MACS_PER_OUTPUT.get(op.op)
    if formula is None or len(op.inputs) < 2 or op.inputs[1] < 0:
        return 0
    filt = model.tensors[op.inputs[1]].shape
    out = model.tensors[op.outputs[0]].shape
    try:
        return int(np.prod(out, dtype=np.int64)) * int(formula(filt))
    except IndexError:  # a filter of unexpected rank: count nothing rather than guess
        return 0


def _parameters(op, model, producers) -> set[int]:
    """Constant tensors the op reads, looking through the DEQUANTIZE in front of float16 weights."""
    found = set()
    for index in op.inputs:
        if index < 0:
            continue
        if model.tensors[index].constant:
            found.add(index)
        elif index in producers and producers[index].op == "DEQUANTIZE":
            source = producers[index].inputs[0]
            if source >= 0 and model.tensors[source].constant:
                found.add(source)
    return found


def _bytes(model, indices) -> int:
    return int(sum(np.prod(model.tensors[i].shape, dtype=np.int64) * _ITEM_BYTES.get(model.tensors[i].dtype, 4)
                   for i in indices))


def _summary(model, target: Target, entries: list[OpPlacement], checker: str) -> dict:
    producers = {t: op for op in model.ops for t in op.outputs}
    on_chip, constants = set(), {t.index for t in model.tensors if t.constant}
    for entry, op in zip(entries, model.ops):
        if entry.accelerated and target.accelerator is not None:
            on_chip |= _parameters(op, model, producers)
    count, fast = len(entries), sum(e.accelerated for e in entries)
    macs, fast_macs = sum(e.macs for e in entries), sum(e.macs for e in entries if e.accelerated)
    cache = target.parameter_cache
    summary = {
        "target": target.name, "accelerator": target.accelerator, "placement": target.placement,
        "ops": count, "ops_accelerated": fast, "op_share": fast / count if count else None,
        "macs": macs, "macs_accelerated": fast_macs, "mac_share": fast_macs / macs if macs else None,
        "parameter_bytes": _bytes(model, constants),
        "parameter_bytes_accelerated": _bytes(model, on_chip) if target.accelerator else None,
        "parameter_cache_bytes": cache, "streams_weights": None, "warnings": [], "notes": [], "checker": checker,
    }
    if cache is not None:
        used = summary["parameter_bytes_accelerated"]
        summary["streams_weights"] = used > cache
        if used > cache:
            summary["warnings"].append(
                f"{used / 2**20:.2f} MiB of parameters on the {target.accelerator} exceed its ~{cache / 2**20:.0f} MiB "
                f"on-chip parameter cache: about {(used - cache) / 2**20:.2f} MiB stream from host memory on every "
                "inference, which slows it down. Prune/cluster does not shrink int8 weights here; fewer or "
                "narrower layers do.")
    fallback = [e for e in entries if not e.accelerated]
    # Runs of consecutive accelerated ops: each boundary is a hand-over between the chip and the CPU.
    summary["partitions"] = sum(e.accelerated and (i == 0 or not entries[i - 1].accelerated)
                                for i, e in enumerate(entries)) if target.accelerator else None
    if target.accelerator is not None and fallback:
        first = fallback[0]
        summary["warnings"].append(
            f"{len(fallback)} of {count} ops run on the CPU, the first is op #{first.index} {first.op}"
            + (f" (layer {first.layer!r})" if first.layer else "") + f": {first.reason}")
        if summary["partitions"] > 1:
            summary["warnings"].append(
                f"the graph is split into {summary['partitions']} {target.accelerator} partitions with CPU ops "
                "between them; every hand-over copies tensors, and a split graph is often slower than one device")
    if target.accelerator is None:
        summary["notes"] += cpu.file_notes(model)
    return summary


def _headline(s: dict) -> str:
    where = s["accelerator"] or "CPU"
    share = f"{s['mac_share']:.0%}" if s["mac_share"] is not None else "n/a"
    return (f"{s['ops_accelerated']}/{s['ops']} ops on the {where}, {share} of {s['macs']:,} MACs; parameters "
            f"{s['parameter_bytes']:,} B" + (f" ({s['parameter_bytes_accelerated']:,} B on the chip, cache "
                                             f"{s['parameter_cache_bytes']:,} B)" if s["parameter_cache_bytes"] else ""))


def _roll_up(name: str, own: list[OpPlacement], folded: list[OpPlacement], target: Target) -> LayerPlacement:
    if own:
        slow = [e for e in own if not e.accelerated]
        if not slow:
            reason = None
        elif len(slow) == len(own):
            reason = "; ".join(f"op #{e.index} {e.op}: {e.reason}" for e in slow)
        else:
            reason = f"{len(slow)} of {len(own)} ops on the CPU: " + "; ".join(
                f"op #{e.index} {e.op}: {e.reason}" for e in slow)
        notes = [e.note for e in own if e.note]
        return LayerPlacement(name, not slow, reason, tuple(e.index for e in own), sum(e.macs for e in own),
                              "; ".join(dict.fromkeys(notes)) or None)
    if folded:
        host = folded[0]
        reason = f"folded into layer {host.layer!r} (op #{host.index} {host.op})"
        if not host.accelerated:
            reason += f", which runs on the CPU: {host.reason}"
        return LayerPlacement(name, host.accelerated, reason, tuple(e.index for e in folded), 0)
    return LayerPlacement(name, None, "no op in the file (the converter removed or folded this layer)")


