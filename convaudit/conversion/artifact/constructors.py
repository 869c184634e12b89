"""Constructor calls for the leaf modules of model.py, written from plain literal data only.

A value goes into generated code only when it is plain data (None, bool, int, float, str, and tuples
and lists of these, checked recursively by exact type) and then only through repr(). A module's call
is taken from its repr (parsed with ast.literal_eval, never eval'd) or from its constructor's signature
and its attributes, and kept only when calling the class with those values on the meta device builds a
module of the same type, extra_repr, state shapes and plain attributes.
"""

from __future__ import annotations

import ast
import inspect
import math
from typing import Any

import torch
import torch.nn as nn
from torch.nn.modules.conv import _ConvNd

from convaudit.analysis.adapters import SamePad
from convaudit.conversion.layers import SeparableConv
from convaudit.conversion.safe_fx import is_plain
from convaudit.vocab import LAYER_ORDERS, Style

# Used by codegen (model.py from a traced graph) only.
__all__ = ["NotGenerable", "constructor", "data_literal", "dtype_literal", "exact_text", "literal"]


class NotGenerable(Exception):
    """A module of the converted model cannot be written as a constructor call."""


def exact_text(value: object) -> str:
    """An exact ``str`` (a str subclass could bring its own __repr__)."""
    return "".join(str(value))


def data_literal(value: object) -> str:
    """``value`` as literal data, or as its text when it is no plain data."""
    try:
        return literal(value)
    except NotGenerable:
        return literal(exact_text(value))


def literal(value: object, depth: int = 0) -> str:
    """repr() of plain data (None, bool, int, float, str and tuples/lists of these), checked recursively."""
    kind = type(value)
    if depth > 16:
        raise NotGenerable("a value nests too deeply to be written as data")
    if type(value) is float and not math.isfinite(value):
        return f"float({str(value)!r})"
    if kind is str:  # ascii(): the file shows every character as it is (no look-alikes, no bidi controls)
        return ascii(value)
    if kind in (type(None), bool, int, float):
        return repr(value)
    if type(value) is tuple or type(value) is list:  # exact types: no namedtuple or list subclass
        items = [literal(v, depth + 1) for v in value]
        if kind is list:
            return "[" + ", ".join(items) + "]"
        return "(" + items[0] + ",)" if len(items) == 1 else "(" + ", ".join(items) + ")"
    raise NotGenerable(f"a value of type {kind.__name__} cannot be written as plain data")


def _is_literal(value: object) -> bool:
    try:
        literal(value)
    except NotGenerable:
        return False
    return True


def dtype_literal(dtype: torch.dtype) -> str:
    name = str(dtype).removeprefix("torch.")
    if not is_plain(name) or getattr(torch, name, None) is not dtype:
        raise NotGenerable(f"dtype {name!r} cannot be written as torch.NAME")
    return f"torch.{name}"


_CONVS: dict[type, str] = {
    c: c.__name__ for c in (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
}


def constructor(m: nn.Module) -> str:
    """A constructor expression for a leaf module of the converted graph."""
    if isinstance(m, SeparableConv):
        return _separable_ctor(m)
    if type(m) in _CONVS:
        return _conv_ctor(m)
    return _generic_ctor(m)


def _separable_ctor(m: SeparableConv) -> str:
    mobilenet = getattr(m, "style", None) == Style.MOBILENET
    pad = m._modules.get("pad")  # run-time TF 'SAME' padding (of a Conv2dSame-like conv), written as its data
    parts = {"conv_dw", "conv_pw"} | ({"bn_dw", "act_dw"} if mobilenet else set()) | ({"pad"} if pad else set())
    order = getattr(m, "order", None)
    if set(m._modules) != parts or order not in LAYER_ORDERS or (mobilenet and type(m.act_dw) is not nn.ReLU):
        raise NotGenerable(f"{type(m).__name__} does not have the parts of a convaudit separable layer")
    if pad is not None and (type(pad) is not SamePad or pad._modules):
        raise NotGenerable(f"{type(pad).__name__} is not convaudit's 'SAME' padding")
    args = [_conv_ctor(m.conv_dw), _conv_ctor(m.conv_pw), literal(exact_text(order))]
    if mobilenet:
        args.append(_generic_ctor(m.bn_dw))
    if pad is not None:
        args.append(f"same_pad={literal((pad.kernel_size, pad.stride, pad.dilation))}")
    return f"SeparableConv({', '.join(args)})"


def _conv_ctor(c: nn.Module) -> str:
    """``torch.nn.ConvNd(...)`` from the conv's plain attributes, checked against the conv itself."""
    if type(c) not in _CONVS or not isinstance(c, _ConvNd):
        raise NotGenerable(f"{type(c).__name__} is not a torch.nn conv")
    try:  # a checkpoint's pickle may have set any attribute to anything
        padding = c.padding if isinstance(c.padding, str) else tuple(c.padding)
        kwargs: dict[str, Any] = {
            "kernel_size": tuple(c.kernel_size),
            "stride": tuple(c.stride),
            "padding": padding,
            "dilation": tuple(c.dilation),
            "groups": c.groups,
            "bias": c.bias is not None,
            "padding_mode": c.padding_mode,
        }
        if c.transposed:
            kwargs["output_padding"] = tuple(c.output_padding)
        args, dtype = (c.in_channels, c.out_channels), c.weight.dtype
    except (TypeError, AttributeError) as exc:
        raise NotGenerable(f"conv {type(c).__name__} has attributes no constructor call gives") from exc
    ints = all(type(a) is int for a in (*args, c.groups))
    if not ints or not _same_module(type(c), args, {**kwargs, "dtype": dtype}, c):
        raise NotGenerable(f"conv {type(c).__name__} cannot be written as a constructor call")
    return _call(f"torch.nn.{_CONVS[type(c)]}", args, kwargs, f", dtype={dtype_literal(dtype)}")


def _call(func: str, args: tuple, kwargs: dict[str, Any], extra: str = "") -> str:
    parts = [literal(a) for a in args] + [f"{k}={literal(v)}" for k, v in kwargs.items()]
    return f"{func}({', '.join(parts)}{extra})"


def _generic_ctor(m: nn.Module) -> str:
    """torch.nn modules: a call from their repr or their signature, checked by building it and comparing."""
    cls = type(m)
    exported = is_plain(cls.__name__) and getattr(nn, cls.__name__, None) is cls  # torch.nn.NAME is the class
    if not cls.__module__.startswith("torch.nn") or not exported:
        raise NotGenerable(f"{cls.__qualname__} is not a torch.nn module")
    for call in (_repr_call(m), _signature_call(m)):
        if call is not None and _same_module(cls, *call, m):
            return _call(f"torch.nn.{cls.__name__}", *call)
    raise NotGenerable(f"cannot write {cls.__name__} as a constructor call")


def _repr_call(m: nn.Module) -> tuple[tuple, dict[str, Any]] | None:
    """The arguments of ``Name(args, k=v)`` when repr(m) is that, parsed as data (ast.literal_eval, no eval)."""
    try:
        tree = ast.parse(repr(m), mode="eval").body
        if not (isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name) and tree.func.id == type(m).__name__):
            return None
        args = tuple(ast.literal_eval(a) for a in tree.args)
        kwargs = {k.arg: ast.literal_eval(k.value) for k in tree.keywords if k.arg is not None}
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):  # no call of plain data
        return None
    if len(kwargs) != len(tree.keywords) or not all(is_plain(k) for k in kwargs):
        return None
    return (args, kwargs) if _is_literal(args) and _is_literal(list(kwargs.values())) else None


def _signature_call(m: nn.Module) -> tuple[tuple, dict[str, Any]] | None:
    """Keyword arguments named after the constructor's parameters, from the module's plain attributes."""
    try:
        params = list(inspect.signature(type(m).__init__).parameters.values())[1:]
    except (TypeError, ValueError):
        return None
    kwargs = {}
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name in ("device", "dtype"):
            continue
        value = getattr(m, p.name, p.empty)
        if value is not p.empty and not isinstance(value, (nn.Module, torch.Tensor)):
            if not _is_literal(value):
                return None
            kwargs[p.name] = value
        elif p.default is p.empty:
            return None
    return (), kwargs


def _same_module(cls: type, args: tuple, kwargs: dict[str, Any], m: nn.Module) -> bool:
    """``cls(*args, **kwargs)`` on the meta device matches ``m``: type, extra_repr, state shapes, plain attributes."""
    try:
        with torch.device("meta"):
            built = cls(*args, **kwargs)
        if type(built) is not type(m) or built.extra_repr() != m.extra_repr():
            return False
        a, b = built.state_dict(), m.state_dict()
    except Exception:
        return False
    if a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a):
        return False
    mine = {k: v for k, v in vars(m).items() if not k.startswith("_") and k != "training" and _is_literal(v)}
    return all(k in vars(built) and data_literal(vars(built)[k]) == literal(v) for k, v in mine.items())
