"""Calls that need neither a shape rule nor fake tensors: they compute on no tensor, or only view one.

An fx trace of a timm model is half such calls: ``x.ndim``, ``operator.eq`` on sizes and ``torch._assert``
(timm checks every norm layer's input rank), picking an output out of a tuple, ``x.permute(...)``.
Under ``FakeTensorMode`` each costs a mode switch and a dispatch, and records no aten op with
multiply-accumulates; run as they are (views on the meta tensors the cheap rules make, whose C++ meta
kernels keep strides: a later ``.view()`` fails where it would for real), they cost microseconds.
Elementwise ops are not among them: their meta kernels are Python references, slower than fake
tensors' cached dispatch; the cheap rules of :mod:`convaudit.analysis.rules.shapes` take those.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import torch
from torch._subclasses.fake_tensor import FakeTensor

__all__ = ["member", "runs_directly"]


def member(node_op: str, target: Any, group: frozenset) -> bool:
    """``target in group`` for functions and methods (a module, or an unhashable callable, is in none)."""
    if node_op == "call_module":
        return False
    try:
        return target in group
    except TypeError:
        return False


#: Functions that, given no tensor, compute no tensor either: Python arithmetic and checks on sizes.
_PLAIN_FUNCTIONS = frozenset(
    [getattr(operator, name) for name in dir(operator) if not name.startswith("_")]
    + [torch._assert, getattr, len, isinstance, math.ceil, math.floor, math.sqrt, int, float]
)
#: Views and reshapes: run on meta tensors directly (C++ meta kernels, strides kept), they cost microseconds;
#: under fake tensors they record no MAC-bearing aten op either.
_VIEW_METHODS = frozenset(
    [
        "view",
        "reshape",
        "permute",
        "transpose",
        "flatten",
        "unflatten",
        "squeeze",
        "unsqueeze",
        "expand",
        "expand_as",
        "view_as",
        "reshape_as",
        "contiguous",
        "chunk",
        "split",
        "narrow",
        "unbind",
        "t",
    ]
)
_VIEW_FUNCTIONS = frozenset(
    [
        torch.reshape,
        torch.permute,
        torch.transpose,
        torch.flatten,
        torch.squeeze,
        torch.unsqueeze,
        torch.chunk,
        torch.split,
        torch.narrow,
        torch.unbind,
    ]
)
#: Tensor attributes that are metadata only, the same on a meta tensor as on a fake one.
_METADATA = frozenset(["shape", "ndim", "dtype"])
_METADATA_METHODS = frozenset(["size", "dim", "numel"])
_PLAIN_TYPES = (bool, int, float, str, type(None), torch.dtype, torch.Size, slice, type(Ellipsis), torch.memory_format)


def runs_directly(node_op: str, target: Any, args: tuple, kwargs: dict) -> bool:
    """True when an fx call can run as it is: on no tensor at all, on metadata, or as a view of a meta tensor.

    Args:
        node_op: the fx node's op (``call_function``, ``call_method``, ``call_module``).
    """
    if node_op == "call_method":
        if not args or not _plain_or_meta(args[1:]) or not _plain_or_meta(kwargs):
            return False
        if target in _METADATA_METHODS:
            return _ours(args[0]) and _plain(args[1:]) and not kwargs
        return target in _VIEW_METHODS and _meta(args[0])
    if node_op != "call_function":
        return False
    if member(node_op, target, _VIEW_FUNCTIONS) or (target is operator.getitem and args and _meta(args[0])):
        # NB: a tensor index (x[mask]) is no view: it runs under fake tensors (a mask's output size is data)
        return bool(args) and _meta(args[0]) and _plain(args[1:]) and _plain(kwargs)
    if not member(node_op, target, _PLAIN_FUNCTIONS):
        return False
    if kwargs and not _plain(kwargs):
        return False
    if target is getattr and len(args) == 2 and isinstance(args[0], torch.Tensor):
        return _ours(args[0]) and args[1] in _METADATA
    if target is operator.getitem and len(args) == 2 and type(args[0]) in (tuple, list, torch.Size):
        return isinstance(args[1], (int, slice)) and _plain(args[1])  # an output picked out of a tuple
    return _plain(args)


def _ours(value: Any) -> bool:
    """A tensor this pass made: meta (a cheap rule's, a stand-in) or fake (an op's), never a user's subclass."""
    return type(value) is torch.Tensor or type(value) is FakeTensor


def _meta(value: Any) -> bool:
    """A plain meta tensor (a cheap rule's output or a stand-in): ops on it run on its meta kernel."""
    return type(value) is torch.Tensor and value.is_meta


def _plain_or_meta(value: Any) -> bool:
    if type(value) in (tuple, list):
        return all(_plain_or_meta(v) for v in value)
    if type(value) is dict:
        return all(_plain_or_meta(v) for v in value.values())
    return _meta(value) or _plain(value)


def _plain(value: Any) -> bool:
    """Plain Python values only (numbers, sizes, strings, slices, dtypes), nested in tuples, lists and dicts."""
    if isinstance(value, _PLAIN_TYPES):
        return not isinstance(value, slice) or all(_plain(v) for v in (value.start, value.stop, value.step))
    if type(value) in (tuple, list):
        return all(_plain(v) for v in value)
    if type(value) is dict:
        return all(_plain(v) for v in value.values())
    return False
