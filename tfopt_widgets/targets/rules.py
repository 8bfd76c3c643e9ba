"""Op rules as data: each :class:`Rule` names one generic check and its arguments; :func:`violations` runs them.

A target module lists, per TFLite builtin op, the rules that op must pass to run on the target's accelerator:

>>> from tfopt_widgets.targets.rules import option_at_most, option_in
>>> CONV_2D = (option_at_most("stride_w", 3), option_in("fused_activation_function", "NONE", "RELU"))

A rule's check reads only the op and the converted file (options, tensor shapes, dtypes, constant values) and
returns a message with the actual value when the op breaks it (``"stride_w is 4; the limit is 3"``), else None.
Checks are small generic functions keyed by name, so a table never holds code and a new limit is one line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

__all__ = [
    "CHECKS",
    "EIGHT_BIT_TYPES",
    "FLOAT_TYPES",
    "Rule",
    "axes_within",
    "constant_input",
    "constant_values_at_most",
    "constant_values_equal",
    "eight_bit_only",
    "elements_at_most",
    "filter_size",
    "fixed_shapes",
    "float_tensors",
    "innermost_dims_only",
    "leading_axes_only",
    "max_inputs",
    "max_rank",
    "max_version",
    "non_one_dims_at_most",
    "option_at_most",
    "option_equals",
    "option_equals_unless",
    "option_in",
    "padded_axes_within",
    "violations",
    "zero_constant_inputs",
]

# Ops whose second input is one layer's weights.
WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "CONV_3D")
FLOAT_TYPES = frozenset({"float32", "float16", "float64", "bfloat16"})
EIGHT_BIT_TYPES = frozenset({"int8", "uint8"})


@dataclass(frozen=True)
class Rule:
    """One limit an op must meet: ``check`` names a generic function in :data:`CHECKS`, ``args`` its arguments.

    ``what`` says the limit in words for tables and reports ("stride <= 3").
    """

    check: str
    args: tuple = ()
    what: str = ""

    def violation(self, op, model) -> str | None:
        """Why ``op`` of ``model`` (a TFLiteModel) breaks this rule, with the actual value; None when it does not."""
        return CHECKS[self.check](op, model, *self.args)


# --- helpers the checks share -------------------------------------------------------------------------------------

def _tensors(op, model, role: str):
    """The op's tensors in ``role``: "input" (first input), "output" (first output), "inputs", "outputs", "all"."""
    inputs = [model.tensors[i] for i in op.inputs if i >= 0]
    outputs = [model.tensors[i] for i in op.outputs if i >= 0]
    if role == "input":
        return inputs[:1]
    if role == "output":
        return outputs[:1]
    return {"inputs": inputs, "outputs": outputs, "all": inputs + outputs,
            "activations": [t for t in inputs + outputs if not t.constant]}[role]


def _constant(op, model, position: int):
    """Values of the op's input ``position`` when it is a constant, else None."""
    if position >= len(op.inputs) or op.inputs[position] < 0:
        return None
    return model.tensor_data(op.inputs[position])


def _shape(tensor) -> str:
    return "x".join(str(d) for d in tensor.shape) or "scalar"


# --- the generic checks -------------------------------------------------------------------------------------------

def _option_at_most(op, model, name, limit):
    value = op.options.get(name)
    return None if value is None or value <= limit else f"{name} is {value}; the limit is {limit}"


def _option_equals(op, model, name, expected):
    value = op.options.get(name)
    return None if value is None or value == expected else f"{name} is {value}; only {expected} is supported"


def _option_equals_unless(op, model, name, expected, other, other_value):
    value, condition = op.options.get(name), op.options.get(other)
    if value is None or value == expected or condition == other_value:
        return None
    return f"{name} is {value} with {other} {condition}; {name} other than {expected} needs {other} {other_value}"


def _option_in(op, model, name, allowed):
    value = op.options.get(name)
    if value is None or value in allowed:
        return None
    return f"{name} is {value}; supported: {', '.join(map(str, allowed))}"


def _max_rank(op, model, role, limit):
    for tensor in _tensors(op, model, role):
        if len(tensor.shape) > limit:
            return f"tensor {tensor.index} is {len(tensor.shape)}-D ({_shape(tensor)}); at most {limit}-D is supported"
    return None


def _non_one_dims_at_most(op, model, role, limit):
    for tensor in _tensors(op, model, role):
        big = sum(d != 1 for d in tensor.shape)
        if big > limit:
            return (f"tensor {tensor.index} ({_shape(tensor)}) has {big} dimensions larger than 1; "
                    f"at most {limit} may be")
    return None


def _innermost_dims_only(op, model, role, count):
    for tensor in _tensors(op, model, role):
        outer = tensor.shape[:-count] if len(tensor.shape) > count else ()
        if any(d != 1 for d in outer):
            return (f"tensor {tensor.index} ({_shape(tensor)}) has a dimension larger than 1 outside the "
                    f"{count} innermost")
    return None


def _fixed_shapes(op, model, role):
    for tensor in _tensors(op, model, role):
        if any(d < 0 for d in tensor.shape_signature):
            return f"tensor {tensor.index} has a dynamic size ({tensor.shape_signature}); sizes must be fixed"
    return None


def _elements_at_most(op, model, role, limit):
    for tensor in _tensors(op, model, role):
        count = int(np.prod(tensor.shape)) if tensor.shape else 1
        if count > limit:
            return f"tensor {tensor.index} ({_shape(tensor)}) has {count:,} elements; the limit is {limit:,}"
    return None


def _max_version(op, model, limit):
    return None if op.version <= limit else f"op version {op.version}; the delegate takes up to version {limit}"


def _max_inputs(op, model, limit):
    count = sum(i >= 0 for i in op.inputs)
    return None if count <= limit else f"{count} inputs; at most {limit}"


def _constant_input(op, model, position):
    if _constant(op, model, position) is None:
        return f"input {position} is computed at run time; it must be a constant"
    return None


def _constant_values_at_most(op, model, position, limit):
    values = _constant(op, model, position)
    if values is None:
        return f"input {position} is computed at run time; it must be a constant"
    worst = int(np.max(values)) if values.size else 0
    return None if worst <= limit else f"input {position} has value {worst}; the limit is {limit}"


def _constant_values_equal(op, model, position, expected):
    values = _constant(op, model, position)
    if values is None:
        return None  # absent (e.g. default strides): nothing to check
    if np.all(values == expected):
        return None
    return f"input {position} is {values.tolist()}; every value must be {expected}"


def _axes_within(op, model, position, allowed):
    values = _constant(op, model, position)
    if values is None:
        return f"the axes (input {position}) are computed at run time; they must be constant"
    rank = len(model.tensors[op.inputs[0]].shape)
    axes = sorted({int(a) % rank if rank else int(a) for a in np.ravel(values)})
    if set(axes) <= set(allowed):
        return None
    return f"reduces over axes {axes}; only axes {sorted(allowed)} (height, width) are supported"


def _padded_axes_within(op, model, position, allowed):
    values = _constant(op, model, position)
    if values is None:
        return f"the paddings (input {position}) are computed at run time; they must be constant"
    padded = [axis for axis, row in enumerate(np.asarray(values).reshape(-1, 2)) if np.any(row != 0)]
    if set(padded) <= set(allowed):
        return None
    return f"pads axes {padded}; only axes {sorted(allowed)} (height, width) may be padded"


def _zero_constant_inputs(op, model):
    constants = [(p, _constant(op, model, p)) for p in range(len(op.inputs))]
    constants = [(p, v) for p, v in constants if v is not None]
    if not constants:
        return None
    if len(op.inputs) != 2:
        return f"a constant input among {len(op.inputs)} inputs; a constant is allowed only as one of 2 inputs"
    position, values = constants[0]
    if np.any(values != 0):
        return f"constant input {position} is not all zeros; only an all-zero constant (zero padding) is allowed"
    return None


def _leading_axes_only(op, model, name):
    axes = sorted(int(a) for a in op.options.get(name) or ())
    shape = model.tensors[op.inputs[0]].shape
    axes = sorted(a % len(shape) for a in axes) if shape else axes
    if axes == list(range(len(axes))):
        return None
    return f"{name} is {axes}; only leading dimensions of size 1 may be removed"


def _filter_size(op, model, axis, allowed):
    if len(op.inputs) < 2 or op.inputs[1] < 0:
        return None
    shape = model.tensors[op.inputs[1]].shape
    if len(shape) <= axis or shape[axis] in allowed:
        return None
    side = {1: "height", 2: "width"}.get(axis, f"dimension {axis}")
    return (f"filter is {'x'.join(map(str, shape[1:3]))} (height x width); {side} {shape[axis]} is not supported "
            f"(only {', '.join(map(str, allowed))})")


def float_tensors(op, model) -> list:
    """The op's float input and output tensors (weights included): what an int8-only chip cannot hold."""
    return [t for t in _tensors(op, model, "all") if t.dtype in FLOAT_TYPES]


def _eight_bit_only(op, model):
    floats = float_tensors(op, model)
    if not floats:
        wide = [t for t in _tensors(op, model, "activations") if t.dtype not in EIGHT_BIT_TYPES | {"int32", "bool"}]
        if not wide:
            return None
        tensor = wide[0]
        return f"tensor {tensor.index} is {tensor.dtype}; only 8-bit tensors run here"
    tensor = floats[0]
    return f"float tensor: tensor {tensor.index} ({_shape(tensor)}) is {tensor.dtype}; only 8-bit tensors run here"


CHECKS: Mapping[str, Callable[..., str | None]] = MappingProxyType({
    "option_at_most": _option_at_most,
    "option_equals": _option_equals,
    "option_equals_unless": _option_equals_unless,
    "option_in": _option_in,
    "max_rank": _max_rank,
    "non_one_dims_at_most": _non_one_dims_at_most,
    "innermost_dims_only": _innermost_dims_only,
    "fixed_shapes": _fixed_shapes,
    "elements_at_most": _elements_at_most,
    "max_version": _max_version,
    "max_inputs": _max_inputs,
    "constant_input": _constant_input,
    "constant_values_at_most": _constant_values_at_most,
    "constant_values_equal": _constant_values_equal,
    "axes_within": _axes_within,
    "padded_axes_within": _padded_axes_within,
    "zero_constant_inputs": _zero_constant_inputs,
    "leading_axes_only": _leading_axes_only,
    "filter_size": _filter_size,
    "eight_bit_only": _eight_bit_only,
})


# --- constructors a table reads well with -------------------------------------------------------------------------

def option_at_most(name: str, limit: int) -> Rule:
    """The builtin option ``name`` (e.g. "stride_w") is at most ``limit``."""
    return Rule("option_at_most", (name, limit), f"{name} <= {limit}")


def option_equals(name: str, expected: Any) -> Rule:
    """The builtin option ``name`` equals ``expected`` (e.g. depth_multiplier 1)."""
    return Rule("option_equals", (name, expected), f"{name} = {expected}")


def option_equals_unless(name: str, expected: Any, other: str, other_value: Any) -> Rule:
    """The option ``name`` equals ``expected`` unless option ``other`` is ``other_value`` (dilation only at stride 1)."""
    return Rule("option_equals_unless", (name, expected, other, other_value),
                f"{name} = {expected} unless {other} = {other_value}")


def option_in(name: str, *allowed: Any) -> Rule:
    """The builtin option ``name`` is one of ``allowed`` (e.g. fused_activation_function "NONE")."""
    return Rule("option_in", (name, tuple(allowed)), f"{name} in {{{', '.join(map(str, allowed))}}}")


def max_rank(role: str, limit: int) -> Rule:
    """Tensors in ``role`` ("inputs", "outputs", "all", ...) have at most ``limit`` dimensions."""
    return Rule("max_rank", (role, limit), f"{role} at most {limit}-D")


def non_one_dims_at_most(role: str, limit: int) -> Rule:
    """Tensors in ``role`` have at most ``limit`` dimensions larger than 1 (1-D in effect for limit 1)."""
    return Rule("non_one_dims_at_most", (role, limit), f"{role}: at most {limit} dimension(s) > 1")


def innermost_dims_only(role: str, count: int) -> Rule:
    """Only the ``count`` innermost dimensions of tensors in ``role`` may be larger than 1."""
    return Rule("innermost_dims_only", (role, count), f"{role}: only the {count} innermost dimensions > 1")


def fixed_shapes(role: str) -> Rule:
    """Tensors in ``role`` have no dynamic (-1) dimension."""
    return Rule("fixed_shapes", (role,), f"{role}: fixed sizes")


def elements_at_most(role: str, limit: int) -> Rule:
    """Tensors in ``role`` hold at most ``limit`` elements."""
    return Rule("elements_at_most", (role, limit), f"{role} at most {limit:,} elements")


def max_version(limit: int) -> Rule:
    """The op's version in the file is at most ``limit``."""
    return Rule("max_version", (limit,), f"version <= {limit}")


def max_inputs(limit: int) -> Rule:
    """The op has at most ``limit`` (non-optional) inputs."""
    return Rule("max_inputs", (limit,), f"at most {limit} inputs")


def constant_input(position: int) -> Rule:
    """Input ``position`` is a constant in the file."""
    return Rule("constant_input", (position,), f"input {position} constant")


def constant_values_at_most(position: int, limit: int) -> Rule:
    """Input ``position`` is a constant whose values are at most ``limit`` (e.g. a resize's output size)."""
    return Rule("constant_values_at_most", (position, limit), f"input {position} values <= {limit}")


def constant_values_equal(position: int, expected: int) -> Rule:
    """Input ``position``, where constant, holds only ``expected`` (e.g. strided-slice strides all 1)."""
    return Rule("constant_values_equal", (position, expected), f"input {position} all {expected}")


def axes_within(position: int, *allowed: int) -> Rule:
    """The constant axes in input ``position`` are among ``allowed`` (e.g. Mean over height/width only)."""
    return Rule("axes_within", (position, tuple(allowed)), f"axes within {list(allowed)}")


def padded_axes_within(position: int, *allowed: int) -> Rule:
    """The constant paddings in input ``position`` pad only axes in ``allowed``."""
    return Rule("padded_axes_within", (position, tuple(allowed)), f"padding only on axes {list(allowed)}")


def zero_constant_inputs() -> Rule:
    """A constant input is allowed only as one of two inputs and only all zeros (a zero padding)."""
    return Rule("zero_constant_inputs", (), "a constant input only if all zeros and one of 2 inputs")


def leading_axes_only(name: str) -> Rule:
    """The axes in option ``name`` (e.g. squeeze_dims) are leading dimensions only."""
    return Rule("leading_axes_only", (name,), f"{name} leading dimensions only")


def filter_size(axis: int, *allowed: int) -> Rule:
    """The filter (input 1) has a size in ``allowed`` along ``axis`` (2: width for TFLite's (1, h, w, c) layout)."""
    return Rule("filter_size", (axis, tuple(allowed)), f"filter dim {axis} in {list(allowed)}")


def eight_bit_only() -> Rule:
    """Every input and output tensor is 8-bit (int32 biases, shapes and axes aside); float means CPU."""
    return Rule("eight_bit_only", (), "8-bit tensors only")


def violations(rules, op, model) -> list[str]:
    """Every message from ``rules`` that ``op`` breaks, in table order."""
    return [message for rule in rules if (message := rule.violation(op, model)) is not None]
