"""Cheap output-shape rules for common modules, functions and methods: pure arithmetic on sizes.

A rule takes (target, args, kwargs) with fake-tensor args and returns the output shape; it raises
:class:`ShapeMismatch` (with the reason) when the input cannot go through the op, and :class:`NoRule`
to hand an unusual call (``return_indices``, ``output_size=``) to the fake-tensor fallback.
Each rule is checked against PyTorch's own shape logic in tests/test_shape_rules.py.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Callable
from typing import Any, overload

import torch
import torch.nn as nn
import torch.nn.functional as F

from convaudit.analysis.rules.direct import member
from convaudit.analysis.rules.formulas import ACTIVATIONS
from convaudit.analysis.rules.registry import Registry

__all__ = ["SHAPE_RULES", "NoRule", "ShapeMismatch", "ShapeRule", "as_tuple", "result_dtype", "rule_inputs"]

Shape = tuple[int, ...]


class ShapeMismatch(Exception):
    """Raised by a shape rule when the input cannot go through the op (the message says why)."""


class NoRule(Exception):
    """A shape rule declines this call (unusual arguments); the fake-mode fallback takes it."""


ShapeRule = Callable[[Any, tuple, dict], Shape]

#: Output-shape rules for common modules, functions and methods: (target, args, kwargs) -> shape.
SHAPE_RULES: Registry[ShapeRule] = Registry("shape rules")


@overload
def as_tuple(v: int | tuple[int, ...] | list[int], n: int) -> tuple[int, ...]: ...
@overload
def as_tuple(v: tuple[int | None, ...] | list[int | None] | None, n: int) -> tuple[int | None, ...]: ...
def as_tuple(v: Any, n: int) -> tuple[int | None, ...]:
    """An int or a sequence of ints as an n-tuple (PyTorch's _single/_pair/_triple); None entries stay None."""
    if isinstance(v, (tuple, list)):
        return tuple(None if x is None else int(x) for x in v)
    return (None,) * n if v is None else (int(v),) * n


def _window(size: int, k: int, s: int, p: int, d: int, ceil: bool) -> int:
    """Output length of a sliding window (conv/pool), PyTorch's formula incl. ceil_mode."""
    span = size + 2 * p - d * (k - 1) - 1
    out = (math.ceil(span / s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= size + p:
        out -= 1
    if out <= 0:
        raise ShapeMismatch(f"input size {size} is too small for kernel {k} (stride {s}, padding {p}, dilation {d})")
    return out


def _spatial_input(m: nn.Module, x: torch.Tensor, nd: int, channels: int | None) -> tuple[Shape, Shape]:
    """Split x into (leading dims, spatial) after checking its rank and channel count."""
    shape = tuple(x.shape)
    if len(shape) not in (nd + 1, nd + 2):
        raise ShapeMismatch(f"expects a {nd + 2}-D (batched) or {nd + 1}-D input, got shape {shape}")
    if channels is not None and shape[-nd - 1] != channels:
        raise ShapeMismatch(f"expects {channels} input channels, got {shape[-nd - 1]} (input shape {shape})")
    return shape[:-nd], shape[-nd:]


@SHAPE_RULES.register(nn.Conv1d, nn.Conv2d, nn.Conv3d)
def _conv_shape(m: Any, args: tuple, kwargs: dict) -> Shape:
    nd = len(m.kernel_size)
    lead, spatial = _spatial_input(m, args[0], nd, m.in_channels)
    if m.padding == "same":
        out = spatial
    else:
        pad = (0,) * nd if m.padding == "valid" else m.padding
        # nn.ConvNd expands every size to nd entries (_ntuple) when it is built
        out = tuple(
            _window(i, k, s, p, d, False)
            for i, k, s, p, d in zip(spatial, m.kernel_size, m.stride, pad, m.dilation, strict=True)
        )
    return (*lead[:-1], m.out_channels, *out)


@SHAPE_RULES.register(nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
def _conv_transpose_shape(m: Any, args: tuple, kwargs: dict) -> Shape:
    if len(args) > 1 or kwargs:
        raise NoRule  # output_size given: let the fake run decide
    nd = len(m.kernel_size)
    lead, spatial = _spatial_input(m, args[0], nd, m.in_channels)
    out = tuple(
        (i - 1) * s - 2 * p + d * (k - 1) + op + 1
        for i, k, s, p, d, op in zip(
            spatial, m.kernel_size, m.stride, m.padding, m.dilation, m.output_padding, strict=True
        )
    )
    if any(o <= 0 for o in out):
        raise ShapeMismatch(f"input size {spatial} gives a non-positive output size {out}")
    return (*lead[:-1], m.out_channels, *out)


@SHAPE_RULES.register(nn.Linear)
def _linear_shape(m: Any, args: tuple, kwargs: dict) -> Shape:
    shape = tuple(args[0].shape)
    if not shape or shape[-1] != m.in_features:
        raise ShapeMismatch(f"expects last dimension {m.in_features}, got input shape {shape}")
    return (*shape[:-1], m.out_features)


@SHAPE_RULES.register(
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d
)
def _batchnorm_shape(m: Any, args: tuple, kwargs: dict) -> Shape:
    shape = tuple(args[0].shape)
    channels = shape[1] if len(shape) > 1 else None
    if isinstance(m, nn.modules.batchnorm._BatchNorm) and channels != m.num_features:
        raise ShapeMismatch(f"expects {m.num_features} channels, got input shape {shape}")
    return shape


def _same_shape(target: Any, args: tuple, kwargs: dict) -> Shape:
    return tuple(args[0].shape)


SHAPE_RULES.register(
    *ACTIVATIONS,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.Identity,
    nn.GroupNorm,
    nn.LayerNorm,
    F.dropout,
    "relu",
    "relu_",
    "sigmoid",
    "tanh",
    "contiguous",
    "clone",
    "detach",
)(_same_shape)


@SHAPE_RULES.register(nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
def _pool_shape(m: Any, args: tuple, kwargs: dict) -> Shape:
    if getattr(m, "return_indices", False):
        raise NoRule
    nd = int(type(m).__name__[-2])
    lead, spatial = _spatial_input(m, args[0], nd, None)
    k = as_tuple(m.kernel_size, nd)
    s = as_tuple(m.stride if m.stride is not None else m.kernel_size, nd)
    p = as_tuple(m.padding, nd)
    d = as_tuple(getattr(m, "dilation", 1), nd)
    if any(len(t) != nd for t in (k, s, p, d)):  # sizes are stored as given (e.g. (3,) on a 2-d pool): PyTorch decides
        raise NoRule
    windows = zip(spatial, k, s, p, d, strict=True)
    return lead + tuple(_window(i, kk, ss, pp, dd, m.ceil_mode) for i, kk, ss, pp, dd in windows)


@SHAPE_RULES.register(nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
def _adaptive_pool_shape(m: Any, args: tuple, kwargs: dict) -> Shape:
    nd = int(type(m).__name__[-2])
    lead, spatial = _spatial_input(m, args[0], nd, None)
    size = as_tuple(m.output_size, nd)
    if len(size) != nd:  # stored as given: PyTorch decides what a short output_size means
        raise NoRule
    return lead + tuple(i if o is None else o for i, o in zip(spatial, size, strict=True))


def _flatten(shape: Shape, start: int, end: int) -> Shape:
    if not shape:
        return (1,)
    start, end = start % len(shape), end % len(shape)
    return (*shape[:start], math.prod(shape[start : end + 1]), *shape[end + 1 :])


@SHAPE_RULES.register(nn.Flatten)
def _flatten_module_shape(m: Any, args: tuple, kwargs: dict) -> Shape:
    return _flatten(tuple(args[0].shape), m.start_dim, m.end_dim)


@SHAPE_RULES.register(torch.flatten, "flatten")
def _flatten_function_shape(f: Any, args: tuple, kwargs: dict) -> Shape:
    start = args[1] if len(args) > 1 else kwargs.get("start_dim", 0)
    end = args[2] if len(args) > 2 else kwargs.get("end_dim", -1)
    return _flatten(tuple(args[0].shape), start, end)


@SHAPE_RULES.register(operator.add, operator.sub, operator.mul, operator.truediv, torch.add, torch.mul, "add", "mul")
def _broadcast_shape(f: Any, args: tuple, kwargs: dict) -> Shape:
    shapes = [tuple(a.shape) for a in args[:2] if isinstance(a, torch.Tensor)]
    out = []  # torch.broadcast_shapes, in plain Python (it runs a Python reference, at ~60 µs a call)
    for sizes in itertools.zip_longest(*(reversed(s) for s in shapes), fillvalue=1):
        other = {d for d in sizes if d != 1}
        if len(other) > 1:
            raise ShapeMismatch(f"cannot broadcast shapes {' and '.join(map(str, shapes))}")
        out.append(other.pop() if other else 1)
    return tuple(reversed(out))


@SHAPE_RULES.register(torch.cat)
def _cat_shape(f: Any, args: tuple, kwargs: dict) -> Shape:
    tensors = args[0]
    dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
    shapes = [tuple(t.shape) for t in tensors]
    dim = dim % len(shapes[0])
    rest = {s[:dim] + s[dim + 1 :] for s in shapes}
    if len(rest) != 1:
        raise ShapeMismatch(f"cannot concatenate shapes {shapes} along dim {dim}")
    return (*shapes[0][:dim], sum(s[dim] for s in shapes), *shapes[0][dim + 1 :])


#: Functions whose first argument is a sequence of tensors (the rule reads the tensors from it).
SEQUENCE_INPUT = frozenset([torch.cat])
#: Binary elementwise functions (and methods) whose first operand may be a Python number.
BINARY = frozenset([operator.add, operator.sub, operator.mul, operator.truediv, torch.add, torch.mul, "add", "mul"])


def rule_inputs(node_op: str, target: Any, args: tuple) -> list[torch.Tensor]:
    """The tensors whose dtypes a cheap rule's output takes; empty when no rule applies to the call."""
    first = args[0] if args else None
    binary = member(node_op, target, BINARY)
    if isinstance(first, torch.Tensor) or binary:  # ``x + 1``, and ``1 + x``
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        numbers = binary and len(tensors) < len(args[:2])  # a Python number takes part
        floating = all(t.is_floating_point() for t in tensors) and not any(isinstance(a, complex) for a in args)
        return [] if numbers and not floating else tensors  # int tensor * 0.5: PyTorch decides the dtype
    if member(node_op, target, SEQUENCE_INPUT) and isinstance(first, (tuple, list)) and first:
        tensors = [t for t in first if isinstance(t, torch.Tensor)]
        return tensors if len(tensors) == len(first) else []
    return []


def result_dtype(tensors: list[torch.Tensor]) -> torch.dtype:
    """The promoted dtype of a rule's input tensors: its output's."""
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def _arguments(args: tuple, kwargs: dict, names: tuple[str, ...], defaults: dict[str, Any]) -> dict[str, Any]:
    """Name a function call's arguments (after the input), defaults filled in; an unknown keyword declines."""
    if len(args) - 1 > len(names) or any(k not in names for k in kwargs):
        raise NoRule
    return {**defaults, **dict(zip(names, args[1:], strict=False)), **kwargs}


def _channels_match(x: torch.Tensor, *params: Any) -> bool:
    """Per-channel parameters (None, or one value per channel of dimension 1) fit ``x``."""
    channels = x.shape[1] if x.dim() > 1 else None
    return all(p is None or (isinstance(p, torch.Tensor) and p.dim() == 1 and p.numel() == channels) for p in params)


@SHAPE_RULES.register(F.batch_norm)
def _batch_norm_function_shape(f: Any, args: tuple, kwargs: dict) -> Shape:
    """F.batch_norm with running statistics (timm's BatchNormAct2d): the input's shape.

    Training mode (batch statistics) and anything PyTorch would refuse go to the fake-tensor run, whose
    error is PyTorch's own.
    """
    names = ("running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")
    a = _arguments(args, kwargs, names, {"weight": None, "bias": None, "training": False})
    x = args[0]
    if a["training"] is not False or x.dim() < 2 or not x.is_floating_point():
        raise NoRule
    if not _channels_match(x, a["running_mean"], a["running_var"], a["weight"], a["bias"]):
        raise NoRule
    if a["running_mean"] is None or a["running_var"] is None:
        raise NoRule
    return tuple(x.shape)


@SHAPE_RULES.register(F.layer_norm)
def _layer_norm_function_shape(f: Any, args: tuple, kwargs: dict) -> Shape:
    """F.layer_norm(x, normalized_shape, weight, bias, eps): the input's shape (when its last dims fit)."""
    a = _arguments(args, kwargs, ("normalized_shape", "weight", "bias", "eps"), {"weight": None, "bias": None})
    x, normalized = args[0], a["normalized_shape"]
    normalized = (normalized,) if isinstance(normalized, int) else tuple(normalized)
    n = len(normalized)
    if not x.is_floating_point() or not n or x.dim() < n or tuple(x.shape[-n:]) != normalized:
        raise NoRule
    for p in (a["weight"], a["bias"]):
        if p is not None and (not isinstance(p, torch.Tensor) or tuple(p.shape) != normalized):
            raise NoRule
    return tuple(x.shape)


@SHAPE_RULES.register(F.group_norm)
def _group_norm_function_shape(f: Any, args: tuple, kwargs: dict) -> Shape:
    """F.group_norm(x, num_groups, weight, bias, eps): the input's shape (when the channels divide)."""
    a = _arguments(args, kwargs, ("num_groups", "weight", "bias", "eps"), {"weight": None, "bias": None})
    x, groups = args[0], a["num_groups"]
    if not x.is_floating_point() or x.dim() < 2 or not isinstance(groups, int) or groups <= 0 or x.shape[1] % groups:
        raise NoRule
    if not _channels_match(x, a["weight"], a["bias"]):
        raise NoRule
    return tuple(x.shape)


@SHAPE_RULES.register(torch.mean, "mean")
def _mean_shape(f: Any, args: tuple, kwargs: dict) -> Shape:
    """x.mean(dim, keepdim): the reduced shape (floating inputs; ``dtype=`` is left to PyTorch)."""
    a = _arguments(args, kwargs, ("dim", "keepdim"), {"dim": None, "keepdim": False})
    x = args[0]
    if not x.is_floating_point() or not isinstance(a["keepdim"], bool):
        raise NoRule
    shape, dims = tuple(x.shape), a["dim"]
    if dims is None:
        return (1,) * len(shape) if a["keepdim"] else ()
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    if not shape or not all(isinstance(d, int) and -len(shape) <= d < len(shape) for d in dims):
        raise NoRule
    reduced = {d % len(shape) for d in dims}
    if len(reduced) != len(dims):
        raise NoRule
    if a["keepdim"]:
        return tuple(1 if i in reduced else s for i, s in enumerate(shape))
    return tuple(s for i, s in enumerate(shape) if i not in reduced)


@SHAPE_RULES.register(F.linear)
def _linear_function_shape(f: Any, args: tuple, kwargs: dict) -> Shape:
    """F.linear(x, W, b): x's shape with its last dimension W.shape[0]."""
    a = _arguments(args, kwargs, ("weight", "bias"), {"bias": None})
    x, w, b = args[0], a["weight"], a["bias"]
    if not x.is_floating_point() or not isinstance(w, torch.Tensor) or w.dim() != 2 or x.dim() < 1:
        raise NoRule
    if x.shape[-1] != w.shape[1]:
        raise NoRule
    if b is not None and (not isinstance(b, torch.Tensor) or tuple(b.shape) not in ((w.shape[0],), ())):
        raise NoRule
    return (*x.shape[:-1], w.shape[0])


def _sizes(value: Any, nd: int) -> tuple[int, ...]:
    """A pool function's size argument as nd ints (an int, or a tuple of 1 or nd ints); else NoRule."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,) * nd
    if isinstance(value, (tuple, list)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        if len(value) == nd:
            return tuple(value)
        if len(value) == 1:
            return tuple(value) * nd
    raise NoRule


def _pool_function_shape(nd: int, x: torch.Tensor, k: Any, s: Any, p: Any, d: Any, ceil: Any) -> Shape:
    """Output shape of an F.*_pool{nd}d call; NoRule wherever PyTorch's own checks should decide."""
    if x.dim() not in (nd + 1, nd + 2) or not x.is_floating_point() or not isinstance(ceil, bool):
        raise NoRule
    kk = _sizes(k, nd)
    ss = kk if s is None or (isinstance(s, (tuple, list)) and not s) else _sizes(s, nd)
    pp, dd = _sizes(p, nd), _sizes(d, nd)
    if min(*kk, *ss, *dd) <= 0 or any(q < 0 or q * 2 > r for q, r in zip(pp, kk, strict=True)):
        raise NoRule  # a non-positive size, or padding over half the kernel: PyTorch's error
    lead, spatial = tuple(x.shape[:-nd]), tuple(x.shape[-nd:])
    windows = zip(spatial, kk, ss, pp, dd, strict=True)
    try:
        return lead + tuple(_window(i, k_, s_, p_, d_, ceil) for i, k_, s_, p_, d_ in windows)
    except ShapeMismatch:
        raise NoRule from None


@SHAPE_RULES.register(F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)
def _avg_pool_function_shape(f: Any, args: tuple, kwargs: dict) -> Shape:
    """F.avg_pool{1,2,3}d(x, kernel_size, stride, padding, ceil_mode, ...): the pooled shape."""
    names = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")
    a = _arguments(args, kwargs, names, {"stride": None, "padding": 0, "ceil_mode": False})
    nd = {F.avg_pool1d: 1, F.avg_pool2d: 2, F.avg_pool3d: 3}[f]
    return _pool_function_shape(nd, args[0], a["kernel_size"], a["stride"], a["padding"], 1, a["ceil_mode"])


@SHAPE_RULES.register(F.max_pool1d, F.max_pool2d, F.max_pool3d)
def _max_pool_function_shape(f: Any, args: tuple, kwargs: dict) -> Shape:
    """F.max_pool{1,2,3}d(x, kernel_size, stride, padding, dilation, ceil_mode): the pooled shape."""
    names = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
    defaults = {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False, "return_indices": False}
    a = _arguments(args, kwargs, names, defaults)
    if a["return_indices"] is not False:
        raise NoRule
    nd = {F.max_pool1d: 1, F.max_pool2d: 2, F.max_pool3d: 3}[f]
    return _pool_function_shape(nd, args[0], a["kernel_size"], a["stride"], a["padding"], a["dilation"], a["ceil_mode"])


@SHAPE_RULES.register(F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d)
def _adaptive_avg_pool_function_shape(f: Any, args: tuple, kwargs: dict) -> Shape:
    """F.adaptive_avg_pool{1,2,3}d(x, output_size): the leading dims and the output size (None keeps a size)."""
    a = _arguments(args, kwargs, ("output_size",), {})
    nd = {F.adaptive_avg_pool1d: 1, F.adaptive_avg_pool2d: 2, F.adaptive_avg_pool3d: 3}[f]
    x, size = args[0], a["output_size"]
    if not x.is_floating_point() or x.dim() not in (nd + 1, nd + 2) or any(s == 0 for s in x.shape[-nd:]):
        raise NoRule
    if isinstance(size, int):
        size = (size,) * nd
    if not isinstance(size, (tuple, list)) or len(size) != nd:
        raise NoRule
    if any(not (o is None or (isinstance(o, int) and o >= 0)) for o in size):
        raise NoRule
    return tuple(x.shape[:-nd]) + tuple(i if o is None else o for i, o in zip(x.shape[-nd:], size, strict=True))
