"""The model's own forward on meta tensors, counting only its conv module calls: the fx trace's cheap check.

A trace that leaves a conv module uncalled may have taken another branch than the forward (code that
tests ``isinstance(x, torch.Tensor)`` on a proxy), or the module is simply not used at these inputs and
in this mode (GoogLeNet's auxiliary heads in eval mode). :func:`conv_census` tells them apart at a
fraction of a trace's cost: ``nn.Module.__call__`` counts the conv module calls and returns, for the
modules with a cheap shape rule, an empty meta output of their shape without running them; the other
modules' weights become meta copies for the run (the model's own tensors are never touched), and the
ops in their code whose meta kernels are slow Python (convolutions, norms, activations, broadcasting
arithmetic) get an empty output of their shape at once (a ``TorchFunctionMode``). Anything else runs
on its meta kernel; what cannot run on meta tensors (device-bound or data-dependent code) returns
None, and the fake-tensor forward decides.
"""

from __future__ import annotations

import contextlib
import functools
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_map

from convaudit.analysis.adapters import is_conv_module
from convaudit.analysis.meta import empty_meta, meta_like
from convaudit.analysis.rules.shapes import SHAPE_RULES, NoRule, ShapeMismatch

__all__ = ["conv_census"]


def conv_census(
    model: nn.Module, args: tuple, kwargs: Mapping[str, Any], named: Sequence[tuple[str, nn.Module]] | None = None
) -> Counter[str] | None:
    """Calls per conv module of the model's own forward, run on meta tensors; None when it cannot run there.

    Only the conv module calls are counted; nothing is left on the model. Modules with a cheap shape
    rule (convs, norms, activations, pools) return an empty output of their shape without running,
    the other modules' weights are meta copies for the run, and in their code convolutions, norms,
    activations and broadcasting arithmetic, whose meta kernels are slow Python, do the same.
    ``named``: ``list(model.named_modules())`` when the caller has it.
    """
    modules = list(model.named_modules()) if named is None else named  # each module once, under its first name
    convs = {id(m): n for n, m in modules if is_conv_module(m)}
    counts: Counter[str] = Counter()
    rules: dict[type, Any] = {}  #: shape rules by module type, looked up once
    meta_args, meta_kwargs = tree_map(lambda t: meta_like(t) if isinstance(t, torch.Tensor) else t, (args, kwargs))
    try:
        with (
            torch.no_grad(),
            _meta_weights([m for _, m in modules], rules),
            _module_shortcuts([m for _, m in modules], convs, counts, rules),
            _MetaShortcuts(),
        ):
            model(*meta_args, **meta_kwargs)
    except Exception:  # NB: device-bound or data-dependent code: the fake forward tells instead
        return None
    return counts


def _rule_of(module: nn.Module, rules: dict[type, Any]) -> Any:
    """The module's cheap shape rule (its type's; a subclass with its own forward has none), or None."""
    kind = type(module)
    if kind not in rules:
        rules[kind] = SHAPE_RULES.lookup(module)
    return rules[kind]


#: What ``nn.Module.__call__`` (``_wrapped_call_impl``) calls instead of ``_call_impl`` when a module holds one.
_CALL = "_compiled_call_impl"


@contextlib.contextmanager
def _module_shortcuts(
    modules: list[nn.Module], convs: dict[int, str], counts: Counter[str], rules: dict[type, Any]
) -> Iterator[None]:
    """For the block, a call of a conv module is counted, and a module with a shape rule returns an empty output
    of that shape at a meta input, without running.

    NB: through each such module's own ``_compiled_call_impl`` (as ``Module.compile`` sets it), not by patching
    ``nn.Module.__call__`` as torch.fx's tracer does: setting a class attribute there invalidates the attribute
    cache of every module class loaded (a thousand and more), twice, and every lookup after pays to refill it.
    The other modules run their own call, without a detour.
    """

    def call(module: nn.Module, original: Any, name: str | None, rule: Any, /, *args: Any, **kwargs: Any) -> Any:
        if name is not None:
            counts[name] += 1
        if rule is not None and len(args) == 1 and not kwargs:
            x = args[0]
            if type(x) is torch.Tensor:
                with torch._C.DisableTorchFunction():  # the rule reads sizes: no detour through _MetaShortcuts
                    try:
                        if x.is_meta:
                            return empty_meta(tuple(rule(module, args, kwargs)), x.dtype)
                    except (NoRule, ShapeMismatch):
                        pass  # its own forward, on meta tensors, says what is wrong
        return original(*args, **kwargs)

    patched: list[tuple[dict[str, Any], Any]] = []
    try:
        for module in modules:
            name, rule = convs.get(id(module)), _rule_of(module, rules)
            if name is None and rule is None:
                continue
            own = vars(module)
            prior = own.get(_CALL, _MISSING)
            original = prior if prior is not _MISSING and prior is not None else module._call_impl
            own[_CALL] = functools.partial(call, module, original, name, rule)
            patched.append((own, prior))
        yield
    finally:
        for own, prior in reversed(patched):
            if prior is _MISSING:
                own.pop(_CALL, None)
            else:
                own[_CALL] = prior


_MISSING = object()


@contextlib.contextmanager
def _meta_weights(modules: list[nn.Module], rules: dict[type, Any]) -> Iterator[None]:
    """The parameters and buffers of every module without a shape rule swapped for meta copies for the block
    (tied ones stay one tensor), put back after.

    What ``torch.func.functional_call`` does, straight on the modules' tables: it walks every name
    twice and resolves each through ``get_submodule``, which costs more than the meta forward itself.
    A module with a rule never runs (:func:`_module_shortcuts`); should its rule decline, its forward
    meets real weights and fails, and the fake forward decides.
    """
    copies: dict[int, torch.Tensor] = {}
    swapped: list[tuple[dict[str, Any], str, Any]] = []
    try:
        for module in modules:
            if _rule_of(module, rules) is not None:
                continue
            tables: tuple[dict[str, Any], ...] = (module._parameters, module._buffers)
            for table in tables:
                for key, tensor in table.items():
                    if tensor is None:
                        continue
                    copy = copies.get(id(tensor))
                    if copy is None:
                        meta = meta_like(tensor)
                        copy = nn.Parameter(meta, tensor.requires_grad) if isinstance(tensor, nn.Parameter) else meta
                        copies[id(tensor)] = copy
                    swapped.append((table, key, tensor))
                    table[key] = copy
        yield
    finally:
        for table, key, tensor in reversed(swapped):
            table[key] = tensor


#: Functions whose output has their (meta) input's shape and dtype: norms, activations, dropout.
_SAME_SHAPE = frozenset(
    [
        F.batch_norm,
        F.instance_norm,
        F.layer_norm,
        F.group_norm,
        F.relu,
        F.relu6,
        F.hardswish,
        F.hardsigmoid,
        F.silu,
        F.gelu,
        F.mish,
        F.elu,
        F.leaky_relu,
        F.hardtanh,
        F.dropout,
        torch.relu,
        torch.relu_,
        torch.sigmoid,
        torch.tanh,
        torch.Tensor.relu,
        torch.Tensor.relu_,
        torch.Tensor.sigmoid,
    ]
)
#: Binary arithmetic that broadcasts (a Python number keeps a floating tensor's shape and dtype).
_BROADCAST = frozenset(
    [
        torch.add,
        torch.mul,
        torch.Tensor.add,
        torch.Tensor.mul,
        torch.Tensor.__add__,
        torch.Tensor.__radd__,
        torch.Tensor.__mul__,
        torch.Tensor.__rmul__,
        torch.Tensor.__sub__,
        torch.Tensor.__truediv__,
    ]
)
_CONVS = {F.conv1d: 1, F.conv2d: 2, F.conv3d: 3}


class _MetaShortcuts(TorchFunctionMode):
    """Outputs of their shape at once for the ops :func:`conv_census` meets most, on meta tensors."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        first = args[0] if args else None
        with torch._C.DisableTorchFunction():  # reading sizes here must not come back to this method
            try:
                if func is torch.cat:
                    out = _cat(args, kwargs)
                elif isinstance(first, torch.Tensor) and first.is_meta:
                    out = _shortcut(func, first, args, kwargs)
                else:
                    out = None
            except TypeError:  # an unhashable func: none of ours
                out = None
        if out is not None:
            return out
        return func(*args, **kwargs)


def _shortcut(func: Any, x: torch.Tensor, args: tuple, kwargs: dict) -> torch.Tensor | None:
    """The empty output of a shape-preserving, broadcasting or conv op on meta ``x``; None: run the op."""
    if func in _SAME_SHAPE:
        return meta_like(x)
    if func in _BROADCAST and len(args) == 2 and not kwargs:
        other = args[1]
        if isinstance(other, torch.Tensor) and other.is_meta:
            return empty_meta(_broadcast(tuple(x.shape), tuple(other.shape)), torch.promote_types(x.dtype, other.dtype))
        if isinstance(other, (int, float)) and not isinstance(other, bool) and x.is_floating_point():
            return meta_like(x)
        return None
    nd = _CONVS.get(func)
    if nd is None:
        return _by_rule(func, x, args, kwargs)
    if len(args) < 2:
        return None
    given = {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1}
    given.update(zip(given, args[2:], strict=False))
    given.update(kwargs)
    w, groups = args[1], given["groups"]
    stride, padding, dilation = (_ints(given[k], nd) for k in ("stride", "padding", "dilation"))
    if not (isinstance(w, torch.Tensor) and w.dim() == nd + 2 and x.dim() == nd + 2 and isinstance(groups, int)):
        return None
    if stride is None or padding is None or dilation is None or groups <= 0 or x.shape[1] != w.shape[1] * groups:
        return None
    spatial = [
        (i + 2 * p - d * (k - 1) - 1) // s + 1
        for i, k, s, p, d in zip(x.shape[2:], w.shape[2:], stride, padding, dilation, strict=True)
    ]
    if min(spatial, default=1) <= 0:
        return None
    return empty_meta((x.shape[0], w.shape[0], *spatial), x.dtype)


def _broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """``torch.broadcast_shapes`` of two sizes (which runs 20 us of Python references: more than the op's meta)."""
    if a == b:
        return a
    n = max(len(a), len(b))
    out = []
    for i, j in zip((1,) * (n - len(a)) + a, (1,) * (n - len(b)) + b, strict=True):
        if i == j or j == 1:
            out.append(i)
        elif i == 1:
            out.append(j)
        else:
            raise RuntimeError(f"the sizes {a} and {b} do not broadcast")
    return tuple(out)


def _by_rule(func: Any, x: torch.Tensor, args: tuple, kwargs: dict) -> torch.Tensor | None:
    """A function with a cheap shape rule (pools, norms, means, F.linear), on meta tensors only."""
    rule = SHAPE_RULES.lookup(func) if not isinstance(func, str) else None
    if rule is None or not all(t.is_meta for t in args if isinstance(t, torch.Tensor)):
        return None
    try:
        return empty_meta(tuple(rule(func, args, kwargs)), x.dtype)
    except (NoRule, ShapeMismatch):
        return None


def _cat(args: tuple, kwargs: dict) -> torch.Tensor | None:
    """torch.cat of same-dtype meta tensors that agree off ``dim``: their sizes summed along it."""
    tensors, dim = args[0], (args[1] if len(args) > 1 else kwargs.get("dim", 0))
    if not isinstance(tensors, (tuple, list)) or not tensors or not isinstance(dim, int) or set(kwargs) - {"dim"}:
        return None
    if not all(isinstance(t, torch.Tensor) and t.is_meta and t.dim() == tensors[0].dim() > 0 for t in tensors):
        return None
    if len({t.dtype for t in tensors}) != 1 or not -tensors[0].dim() <= dim < tensors[0].dim():
        return None
    d = dim % tensors[0].dim()
    shapes = [tuple(t.shape) for t in tensors]
    if len({s[:d] + s[d + 1 :] for s in shapes}) != 1:
        return None
    return empty_meta((*shapes[0][:d], sum(s[d] for s in shapes), *shapes[0][d + 1 :]), tensors[0].dtype)


def _ints(value: Any, nd: int) -> tuple[int, ...] | None:
    """A conv's stride/padding/dilation as nd ints; None for 'same'/'valid' or anything unusual."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,) * nd
    if isinstance(value, (tuple, list)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        if len(value) == nd:
            return tuple(value)
        return tuple(value) * nd if len(value) == 1 else None
    return None
