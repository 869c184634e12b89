"""Cheap output-shape rules for common modules, functions and methods: pure arithmetic on sizes.

A rule takes (target, args, kwargs) with fake-tensor args and returns the output shape; it raises
:class:`ShapeMismatch` (with the reason) when the input cannot go through the op, and :class:`NoRule`
to hand an unusual call (``return_indices``, ``output_size=``) to the fake-tensor fallback.
Each rule is checked against PyTorch's own shape logic in tests/test_shape_rules.py.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any, overload

import torch
import torch.nn as nn
import torch.nn.functional as F

from convaudit.analysis.rules.formulas import ACTIVATIONS
from convaudit.analysis.rules.registry import Registry

__all__ = ["SHAPE_RULES", "NoRule", "ShapeMismatch", "ShapeRule", "as_tuple"]

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
    try:
        return tuple(torch.broadcast_shapes(*shapes))
    except RuntimeError as exc:
        raise ShapeMismatch(f"cannot broadcast shapes {' and '.join(map(str, shapes))}") from exc


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
