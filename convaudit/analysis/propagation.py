"""Shapes without compute: propagate fake tensors through the traced graph.

Common modules and functions get a cheap shape rule (pure Python arithmetic on sizes); everything
else runs under ``FakeTensorMode``, where an aten-level recorder also counts what the op does
inside (the convs of a custom conv subclass, the matmuls of an attention module). No real
convolution is computed, and memory does not grow with the input size.

When the trace cannot be used, :mod:`convaudit.analysis.forward` runs the model's own forward instead
(under fake tensors, or for real), with the same aten-level recorder.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx
import torch.nn as nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

from convaudit.analysis.adapters import conv_adapter
from convaudit.analysis.meta import empty_meta, meta_like
from convaudit.analysis.rules.aten import aten_is_zero_mac
from convaudit.analysis.rules.costs import MAC_RULES, OpCall
from convaudit.analysis.rules.direct import runs_directly
from convaudit.analysis.rules.formulas import conv_macs
from convaudit.analysis.rules.registry import MISSING
from convaudit.analysis.rules.shapes import SHAPE_RULES, NoRule, ShapeMismatch, result_dtype, rule_inputs
from convaudit.analysis.tracing import Traced
from convaudit.errors import ConvauditError, ShapeError, TraceError

__all__ = [
    "CONVOLUTION_OPS",
    "SHAPE_RULES",
    "AtenOp",
    "AtenRecorder",
    "Call",
    "FakeContext",
    "ShapeMismatch",
    "aten_op",
    "map_tensors",
    "propagate_fx",
]

Shape = tuple[int, ...]

#: The aten ops a convolution reaches the recorder as (F.conv*, nn.ConvNd and conv subclasses alike).
CONVOLUTION_OPS = frozenset(["aten.convolution", "aten._convolution"])


@dataclass(frozen=True)
class AtenOp:
    """One aten op seen under the fallback recorder."""

    name: str  #: e.g. "aten.convolution"
    macs: int
    costed: bool  #: False when no rule exists and the op is not known to be MAC-free


@dataclass
class Call:
    """One executed graph node (or hooked module call), with fake inputs and outputs."""

    name: str  #: module qualified name for modules, node name otherwise
    node_op: str  #: call_module | call_function | call_method
    target: Any  #: module instance, function or method name
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    out: Any
    owner: str  #: qualified name of the module the call happens in ("" for the root)
    aten: list[AtenOp] | None = None  #: set when the call went through the fake-mode fallback
    weight_target: str | None = None  #: for functional convs: the get_attr target of the weight
    node_name: str = ""  #: the fx node's name (empty on the hook path)


class FakeContext:
    """Values of one analysis: meta tensors where a cheap rule made them, fake tensors where ops ran.

    Meta tensors cost ~1 µs to make and fake ones ~50 µs, so cheap rules produce meta tensors; an op
    that must really run (under ``FakeTensorMode``) gets its meta arguments realised as fake tensors
    on the model's device first. The model's own tensors (get_attr nodes) enter as meta stand-ins
    too, realised from the tensor itself (``from_tensor``) only when an op must run on them.
    """

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self._realized: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._sources: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  #: id(stand-in) → (stand-in, tensor)
        self._stand_ins: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  #: id(tensor) → (tensor, stand-in)

    @functools.cached_property
    def mode(self) -> FakeTensorMode:
        """The fake-tensor mode, made when first needed (a trace that cheap rules cover never needs one)."""
        return FakeTensorMode(allow_non_fake_inputs=True)

    def to_fake(self, value: Any) -> Any:
        """Real tensors (nested) to fake tensors; meta tensors stay meta (nothing is allocated)."""

        def convert(t: Any) -> Any:
            if not isinstance(t, torch.Tensor) or t.is_meta:
                return t
            return self.mode.from_tensor(t)

        return map_tensors(convert, value)

    def stand_in(self, value: Any) -> Any:
        """A model tensor (a get_attr value) as a meta tensor of its size, strides and dtype, made fake
        (as :meth:`to_fake` makes it) only when an op runs on it; other values as :meth:`to_fake` gives them."""
        if type(value) not in (torch.Tensor, nn.Parameter) or value.is_meta:
            return self.to_fake(value)
        hit = self._stand_ins.get(id(value))
        if hit is None or hit[0] is not value:
            meta = meta_like(value)
            hit = (value, meta)
            self._stand_ins[id(value)] = hit
            self._sources[id(meta)] = (meta, value)
        return hit[1]

    def meta(self, shape: Shape, dtype: torch.dtype) -> torch.Tensor:
        """A (contiguous) meta tensor of the given shape: a cheap rule's output."""
        return empty_meta(shape, dtype)

    def realize(self, value: Any) -> Any:
        """Meta tensors (nested) to fake tensors on the model's device, each once."""

        def convert(t: Any) -> Any:
            if not isinstance(t, torch.Tensor) or not t.is_meta:
                return t
            hit = self._realized.get(id(t))
            if hit is None or hit[0] is not t:
                source = self._sources.get(id(t))
                if source is not None and source[0] is t:
                    hit = (t, self.mode.from_tensor(source[1]))
                else:  # its strides too: a view of a permuted tensor must fail as it would for real
                    with self.mode:
                        hit = (t, torch.empty_strided(t.size(), t.stride(), dtype=t.dtype, device=self.device))
                self._realized[id(t)] = hit
            return hit[1]

        return map_tensors(convert, value)

    def empty(self, shape: Shape, dtype: torch.dtype) -> torch.Tensor:
        """A fake tensor of the given shape on the model's device (no storage)."""
        with self.mode:
            return torch.empty(shape, dtype=dtype, device=self.device)


def map_tensors(fn: Any, value: Any) -> Any:
    """``tree_map(fn, value)`` for the tensors in it: plain tuples, lists and dicts walked directly (fast)."""
    kind = type(value)
    if kind is tuple or kind is list:
        return kind(map_tensors(fn, v) for v in value)
    if kind is dict:
        return {k: map_tensors(fn, v) for k, v in value.items()}
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, (tuple, list, dict)):  # namedtuples, OrderedDicts, ...: pytree's own rules
        return tree_map(lambda t: fn(t) if isinstance(t, torch.Tensor) else t, value)
    return value


def aten_op(func: Any, args: tuple, kwargs: dict, out: Any) -> AtenOp | None:
    """One executed aten op with its MACs (by :data:`MAC_RULES`); None for an op known to do none."""
    packet = func.overloadpacket
    rule = MAC_RULES.lookup_or_missing(packet)
    name = f"aten.{packet.__name__}"
    if rule is not MISSING and rule is not None:
        return AtenOp(name, int(rule(OpCall(packet, args, kwargs, out))), True)
    return None if aten_is_zero_mac(func) else AtenOp(name, 0, False)


class AtenRecorder(TorchDispatchMode):
    """Records every aten op with its MACs (by :data:`MAC_RULES`), for fallback calls."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[AtenOp] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        op = aten_op(func, args, kwargs, out)
        if op is not None:
            self.ops.append(op)
        return out


# ---------------------------------------------------------------- fx propagation


def propagate_fx(
    traced: Traced,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    ctx: FakeContext,
    shape_rules: Mapping[Any, Any] | None = None,
) -> list[Call]:
    """Run the graph on fake inputs; return every call node with its inputs and output."""
    env: dict[torch.fx.Node, Any] = {}
    rules = _Rules(shape_rules)
    bound = _bind_placeholders(traced, args, kwargs)
    calls: list[Call] = []
    for node in traced.graph.nodes:
        if node.op == "placeholder":
            env[node] = bound[node.target] if node.target in bound else _placeholder_default(node)
            continue
        if node.op == "get_attr":
            env[node] = ctx.stand_in(traced.attr(node.target))
            continue
        if node.op == "output":
            break
        a, kw = _load(node.args, env), _load(node.kwargs, env)
        target = traced.attr(node.target) if node.op == "call_module" else node.target
        owner = _owner(node)
        name = node.target if node.op == "call_module" else node.name
        call = Call(name, node.op, target, a, kw, None, owner, node_name=node.name)
        try:
            call.out = _run(call, node, ctx, rules)
        except ConvauditError as exc:
            exc.module = name if node.op == "call_module" else owner  # where execution stopped
            raise
        if node.op == "call_function" and node.args and len(node.args) > 1:
            weight = node.args[1]
            # a get_attr target is always a dotted attribute path (str)
            if isinstance(weight, torch.fx.Node) and weight.op == "get_attr" and isinstance(weight.target, str):
                call.weight_target = weight.target
        env[node] = call.out
        calls.append(call)
    return calls


def _load(value: Any, env: dict[torch.fx.Node, Any]) -> Any:
    """A node's arguments with every node replaced by its value (``torch.fx.node.map_arg``), as plain tuples,
    lists and dicts: fx's immutable containers would stop wrapped functions that edit their list args."""
    kind = type(value)
    if kind is torch.fx.Node:
        return env[value]
    if isinstance(value, tuple):  # namedtuples and torch.Size too, as map_arg then tuple() gave them
        return tuple(_load(v, env) for v in value)
    if isinstance(value, list):
        return [_load(v, env) for v in value]
    if isinstance(value, dict):
        return {k: _load(v, env) for k, v in value.items()}
    if kind is slice:
        return slice(_load(value.start, env), _load(value.stop, env), _load(value.step, env))
    return value


class _Rules:
    """:data:`SHAPE_RULES` lookups of one propagation, by module type or target, each once."""

    def __init__(self, overrides: Mapping[Any, Any] | None) -> None:
        self.overrides = overrides
        self.found: dict[Any, Any] = {}

    def lookup_or_missing(self, target: Any) -> Any:
        key = type(target) if isinstance(target, nn.Module) else target
        try:
            return self.found[key]
        except KeyError:
            found = self.found[key] = SHAPE_RULES.lookup_or_missing(target, self.overrides)
            return found
        except TypeError:  # an unhashable target
            return SHAPE_RULES.lookup_or_missing(target, self.overrides)


def _run(call: Call, node: torch.fx.Node, ctx: FakeContext, rules: _Rules) -> Any:
    """Output of one call: a cheap rule when one applies, else the op itself under fake tensors.

    Calls that compute on no tensor (``x.shape``, ``operator.eq`` on sizes, ``torch._assert``, picking an
    output out of a tuple) run as they are: under fake tensors they record no aten op either.
    """
    found = rules.lookup_or_missing(call.target)
    rule = None if found is MISSING else found  # an override of None: no cheap rule, on purpose
    if found is MISSING and call.node_op == "call_module":
        out = _one_conv(call, ctx)
        if out is not None:
            return out
    if rule is not None:
        tensors = rule_inputs(call.node_op, call.target, call.args)
        if tensors:
            try:
                shape = rule(call.target, call.args, call.kwargs)
                return ctx.meta(shape, result_dtype(tensors))
            except NoRule:
                pass
            except ShapeMismatch as exc:
                raise ShapeError(_where(call, node) + str(exc)) from exc
    direct = runs_directly(call.node_op, call.target, call.args, call.kwargs)
    recorder = AtenRecorder()
    try:
        if direct:
            out = _execute(call, call.args, call.kwargs, ctx)
        else:
            args, kwargs = ctx.realize(call.args), ctx.realize(call.kwargs)
            with ctx.mode, recorder:
                out = _execute(call, args, kwargs, ctx)
    except ShapeError:
        raise
    except (RuntimeError, ValueError, IndexError) as exc:  # PyTorch's own shape checks raise these
        raise ShapeError(_where(call, node) + _first_line(exc)) from exc
    except Exception as exc:  # anything else is not about shapes: say what failed, not that shapes mismatch
        raise TraceError(
            f"'{call.name}' failed under fake tensors: {type(exc).__name__}: {_first_line(exc)}; "
            f"if it reads tensor values, keep the tracer out of its module: {_leaf_hint(call, node)}"
        ) from exc
    call.aten = recorder.ops
    return out


def _one_conv(call: Call, ctx: FakeContext) -> torch.Tensor | None:
    """A conv-like module whose adapter says its forward is one conv (timm's Conv2dSame, StdConv2d): its
    output and the convolution its forward records, from the adapter's effective padding; None to run it."""
    m, x = call.target, call.args[0] if len(call.args) == 1 and not call.kwargs else None
    adapter = conv_adapter(m)
    weight = getattr(m, "weight", None)
    if adapter is None or not adapter.forward_is_one_conv or not isinstance(x, torch.Tensor):
        return None
    if not isinstance(weight, torch.Tensor) or x.dtype != weight.dtype:
        return None
    shapes = adapter.conv_shapes(m, tuple(x.shape))
    if shapes is None:
        return None
    padded, out = shapes
    macs = conv_macs(out, padded, m.in_channels, m.out_channels, m.groups, m.kernel_size, False)
    call.aten = [AtenOp("aten.convolution", macs, True)]
    return ctx.meta(out, x.dtype)


def _execute(call: Call, args: tuple, kwargs: dict, ctx: FakeContext) -> Any:
    if call.node_op == "call_module":
        return _call_module_fake(call.target, args, kwargs, ctx)
    if call.node_op == "call_method":
        self_obj, *rest = args
        return getattr(self_obj, call.target)(*rest, **kwargs)
    return call.target(*args, **kwargs)


def _leaf_hint(call: Call, node: torch.fx.Node) -> str:
    """``--leaf pkg.Block (leaf_types=... in Python)`` for the innermost module running ``call``."""
    stack = list((node.meta.get("nn_module_stack") or {}).values())  # (path, class), outermost first
    owner: Any = type(call.target) if call.node_op == "call_module" else (stack[-1][1] if stack else None)
    name = f"{owner.__module__}.{owner.__qualname__}" if isinstance(owner, type) else owner or "MODULE.CLASS"
    return f"--leaf {name} (leaf_types=... in Python)"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _call_module_fake(module: nn.Module, args: tuple, kwargs: dict, ctx: FakeContext) -> Any:
    """Call a module with its parameters and buffers swapped for fake copies (the real ones stay untouched)."""
    state = {k: ctx.to_fake(v) for k, v in _named_tensors(module)}
    return torch.func.functional_call(module, state, args, kwargs, tie_weights=True, strict=False)


def _named_tensors(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    named = list(module.named_parameters(remove_duplicate=False)) + list(module.named_buffers(remove_duplicate=False))
    return [(k, v) for k, v in named if v is not None]


def _where(call: Call, node: torch.fx.Node | None) -> str:
    kind = (
        type(call.target).__name__
        if isinstance(call.target, nn.Module)
        else getattr(call.target, "__name__", str(call.target))
    )
    shapes = ", ".join(str(tuple(a.shape)) for a in call.args if isinstance(a, torch.Tensor))
    inside = f" inside '{call.owner}'" if call.owner and call.owner != call.name else ""
    return f"shapes stop matching at '{call.name}' ({kind}{inside}; input {shapes or 'non-tensor'}): "


def _owner(node: torch.fx.Node) -> str:
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return ""
    last = next(reversed(stack.values()))
    return last[0] if isinstance(last, tuple) else str(last)


def _bind_placeholders(traced: Traced, args: tuple, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    names = [n.target for n in traced.graph.nodes if n.op == "placeholder"]
    bound: dict[str, Any] = {}
    positional = [n for n in names if not n.startswith("*")]
    if len(args) > len(positional):
        raise ShapeError(
            f"the model's forward takes {len(positional)} inputs, {len(args)} were given; "
            "check --input-shape / example_inputs()"
        )
    bound.update(zip(positional, args, strict=False))  # fewer inputs than placeholders: defaults fill the rest
    for key, value in kwargs.items():
        if key not in names:
            raise ShapeError(
                f"the model's forward has no input named '{key}' (it takes {', '.join(positional)}); "
                "check example_inputs()"
            )
        bound[key] = value
    return bound


def _placeholder_default(node: torch.fx.Node) -> Any:
    if node.args:
        return node.args[0]
    raise ShapeError(
        f"no example value for the model input '{node.target}'; pass it in example_inputs() or with --input-shape"
    )
