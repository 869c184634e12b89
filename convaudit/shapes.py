"""Shapes without compute: propagate fake tensors through the traced graph.

Common modules and functions get a cheap shape rule (pure Python arithmetic on sizes); everything
else runs under ``FakeTensorMode``, where an aten-level recorder also counts what the op does
inside (the convs of a custom conv subclass, the matmuls of an attention module). No real
convolution is computed, and memory does not grow with the input size.

When symbolic tracing fails, :func:`propagate_hooks` runs the whole forward under fake tensors with
global module hooks (nothing is registered on the user's model) and records every conv module call.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.nn.modules.conv import _ConvNd
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

from .cost_rules import MAC_RULES, OpCall, aten_is_zero_mac
from .errors import ShapeError, TraceError
from .registry import MISSING, Registry
from .trace import Traced

__all__ = ["Call", "AtenOp", "FakeContext", "SHAPE_RULES", "ShapeMismatch", "propagate_fx", "propagate_hooks"]

Shape = tuple[int, ...]


class ShapeMismatch(Exception):
    """Raised by a shape rule when the input cannot go through the op (the message says why)."""


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
    """One FakeTensorMode per analysis; turns example inputs and parameters into fake tensors."""

    def __init__(self) -> None:
        self.mode = FakeTensorMode(allow_non_fake_inputs=True)

    def to_fake(self, value: Any) -> Any:
        """Real or meta tensors (nested) to fake CPU tensors; meta inputs never allocate."""

        def convert(t: Any) -> Any:
            if not isinstance(t, torch.Tensor):
                return t
            if t.is_meta:
                return self.empty(tuple(t.shape), t.dtype)
            return self.mode.from_tensor(t)

        return tree_map(convert, value)

    def empty(self, shape: Shape, dtype: torch.dtype, device: torch.device | str = "cpu") -> torch.Tensor:
        """A fake tensor of the given shape (no storage)."""
        with self.mode:
            return torch.empty(shape, dtype=dtype, device=device)


class AtenRecorder(TorchDispatchMode):
    """Records every aten op with its MACs (by :data:`MAC_RULES`), for fallback calls."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[AtenOp] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func.overloadpacket
        rule = MAC_RULES.lookup_or_missing(packet)
        name = f"aten.{packet.__name__}"
        if rule is not MISSING and rule is not None:
            self.ops.append(AtenOp(name, int(rule(OpCall(packet, args, kwargs, out))), True))
        elif not aten_is_zero_mac(func):
            self.ops.append(AtenOp(name, 0, False))
        return out


# ---------------------------------------------------------------- cheap shape rules

ShapeRule = Callable[[Any, tuple, dict], Shape]

#: Output-shape rules for common modules, functions and methods: (target, args, kwargs) -> shape.
SHAPE_RULES: Registry[ShapeRule] = Registry("shape rules")


def _tuple(v: Any, n: int) -> tuple[int, ...]:
    return tuple(v) if isinstance(v, (tuple, list)) else (int(v),) * n


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
        out = tuple(
            _window(i, k, s, p, d, False) for i, k, s, p, d in zip(spatial, m.kernel_size, m.stride, pad, m.dilation)
        )
    return lead[:-1] + (m.out_channels,) + out


@SHAPE_RULES.register(nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
def _conv_transpose_shape(m: Any, args: tuple, kwargs: dict) -> Shape:
    if len(args) > 1 or kwargs:
        raise _NoRule  # output_size given: let the fake run decide
    nd = len(m.kernel_size)
    lead, spatial = _spatial_input(m, args[0], nd, m.in_channels)
    out = tuple(
        (i - 1) * s - 2 * p + d * (k - 1) + op + 1
        for i, k, s, p, d, op in zip(spatial, m.kernel_size, m.stride, m.padding, m.dilation, m.output_padding)
    )
    if any(o <= 0 for o in out):
        raise ShapeMismatch(f"input size {spatial} gives a non-positive output size {out}")
    return lead[:-1] + (m.out_channels,) + out


@SHAPE_RULES.register(nn.Linear)
def _linear_shape(m: Any, args: tuple, kwargs: dict) -> Shape:
    shape = tuple(args[0].shape)
    if not shape or shape[-1] != m.in_features:
        raise ShapeMismatch(f"expects last dimension {m.in_features}, got input shape {shape}")
    return shape[:-1] + (m.out_features,)


@SHAPE_RULES.register(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
def _batchnorm_shape(m: Any, args: tuple, kwargs: dict) -> Shape:
    shape = tuple(args[0].shape)
    channels = shape[1] if len(shape) > 1 else None
    if isinstance(m, nn.modules.batchnorm._BatchNorm) and channels != m.num_features:
        raise ShapeMismatch(f"expects {m.num_features} channels, got input shape {shape}")
    return shape


def _same_shape(target: Any, args: tuple, kwargs: dict) -> Shape:
    return tuple(args[0].shape)


SHAPE_RULES.register(
    nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.LeakyReLU, nn.ELU,
    nn.Mish, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.Identity, nn.GroupNorm, nn.LayerNorm,
    F.relu, F.relu6, F.silu, F.gelu, F.hardswish, F.hardsigmoid, F.sigmoid, F.leaky_relu, F.dropout,
    torch.relu, torch.sigmoid, torch.tanh, "relu", "relu_", "sigmoid", "tanh", "contiguous", "clone", "detach",
)(_same_shape)  # fmt: skip


@SHAPE_RULES.register(nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
def _pool_shape(m: Any, args: tuple, kwargs: dict) -> Shape:
    if getattr(m, "return_indices", False):
        raise _NoRule
    nd = int(type(m).__name__[-2])
    lead, spatial = _spatial_input(m, args[0], nd, None)
    k = _tuple(m.kernel_size, nd)
    s = _tuple(m.stride if m.stride is not None else m.kernel_size, nd)
    p = _tuple(m.padding, nd)
    d = _tuple(getattr(m, "dilation", 1), nd)
    return lead + tuple(_window(i, *a, m.ceil_mode) for i, *a in zip(spatial, k, s, p, d))


@SHAPE_RULES.register(nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
def _adaptive_pool_shape(m: Any, args: tuple, kwargs: dict) -> Shape:
    nd = int(type(m).__name__[-2])
    lead, spatial = _spatial_input(m, args[0], nd, None)
    size = _tuple(m.output_size, nd)
    return lead + tuple(i if o is None else o for i, o in zip(spatial, size))


def _flatten(shape: Shape, start: int, end: int) -> Shape:
    if not shape:
        return (1,)
    start, end = start % len(shape), end % len(shape)
    return shape[:start] + (math.prod(shape[start : end + 1]),) + shape[end + 1 :]


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
    return shapes[0][:dim] + (sum(s[dim] for s in shapes),) + shapes[0][dim + 1 :]


class _NoRule(Exception):
    """A shape rule declines this call (unusual arguments); the fake-mode fallback takes it."""


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
    bound = _bind_placeholders(traced, args, kwargs)
    calls: list[Call] = []
    for node in traced.graph.nodes:
        if node.op == "placeholder":
            env[node] = bound[node.target] if node.target in bound else _placeholder_default(node)
            continue
        if node.op == "get_attr":
            env[node] = ctx.to_fake(traced.attr(node.target))
            continue
        if node.op == "output":
            break
        # NB: map_arg returns fx's immutable containers; wrapped functions may edit their list args in place
        a = _mutable(torch.fx.node.map_arg(node.args, env.__getitem__))
        kw = _mutable(torch.fx.node.map_arg(node.kwargs, env.__getitem__))
        target = traced.attr(node.target) if node.op == "call_module" else node.target
        owner = _owner(node)
        name = node.target if node.op == "call_module" else node.name
        call = Call(name, node.op, target, tuple(a), dict(kw), None, owner, node_name=node.name)
        call.out = _run(call, node, traced, ctx, shape_rules)
        if node.op == "call_function" and node.args and len(node.args) > 1:
            weight = node.args[1]
            if isinstance(weight, torch.fx.Node) and weight.op == "get_attr":
                call.weight_target = weight.target
        env[node] = call.out
        calls.append(call)
    return calls


def _mutable(value: Any) -> Any:
    """fx immutable_list/immutable_dict → plain list/dict, recursively (tuples stay tuples)."""
    if isinstance(value, tuple):
        return tuple(_mutable(v) for v in value)
    if isinstance(value, list):
        return [_mutable(v) for v in value]
    if isinstance(value, dict):
        return {k: _mutable(v) for k, v in value.items()}
    return value


def _run(call: Call, node: torch.fx.Node, traced: Traced, ctx: FakeContext, overrides: Mapping[Any, Any] | None) -> Any:
    """Output of one call: a cheap rule when one applies, else the op itself under fake tensors."""
    rule = SHAPE_RULES.lookup(call.target, overrides)
    first = call.args[0] if call.args else None
    if rule is not None and isinstance(first, torch.Tensor):
        try:
            shape = rule(call.target, call.args, call.kwargs)
            dtype = _result_dtype(call.args)
            return ctx.empty(shape, dtype, first.device)
        except _NoRule:
            pass
        except ShapeMismatch as exc:
            raise ShapeError(_where(call, node) + str(exc)) from exc
    recorder = AtenRecorder()
    try:
        with ctx.mode, recorder:
            if call.node_op == "call_module":
                out = _call_module_fake(call.target, call.args, call.kwargs, ctx)
            elif call.node_op == "call_method":
                self_obj, *rest = call.args
                out = getattr(self_obj, call.target)(*rest, **call.kwargs)
            else:
                out = call.target(*call.args, **call.kwargs)
    except ShapeError:
        raise
    except (RuntimeError, ValueError, IndexError) as exc:  # PyTorch's own shape checks raise these
        raise ShapeError(_where(call, node) + _first_line(exc)) from exc
    except Exception as exc:  # anything else is not about shapes: say what failed, not that shapes mismatch
        raise TraceError(
            f"'{call.name}' failed under fake tensors: {type(exc).__name__}: {_first_line(exc)}; "
            "if it reads tensor values, mark its module as a leaf (leaf_types=...)"
        ) from exc
    call.aten = recorder.ops
    return out


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


def _result_dtype(args: tuple) -> torch.dtype:
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def _where(call: Call, node: torch.fx.Node | None) -> str:
    kind = type(call.target).__name__ if isinstance(call.target, nn.Module) else getattr(call.target, "__name__", str(call.target))
    shapes = ", ".join(str(tuple(a.shape)) for a in call.args if isinstance(a, torch.Tensor))
    inside = f" inside '{call.owner}'" if call.owner and call.owner != call.name else ""
    return f"shapes stop matching at '{call.name}' ({kind}{inside}; input {shapes or 'non-tensor'}): "


def _owner(node: torch.fx.Node) -> str:
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return ""
    last = list(stack.values())[-1]
    return last[0] if isinstance(last, tuple) else str(last)


def _bind_placeholders(traced: Traced, args: tuple, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    names = [n.target for n in traced.graph.nodes if n.op == "placeholder"]
    bound: dict[str, Any] = {}
    positional = [n for n in names if not n.startswith("*")]
    if len(args) > len(positional):
        raise ShapeError(f"the model's forward takes {len(positional)} inputs, {len(args)} were given; check --input-shape / example_inputs()")
    bound.update(zip(positional, args))
    for key, value in kwargs.items():
        if key not in names:
            raise ShapeError(f"the model's forward has no input named '{key}' (it takes {', '.join(positional)}); check example_inputs()")
        bound[key] = value
    return bound


def _placeholder_default(node: torch.fx.Node) -> Any:
    if node.args:
        return node.args[0]
    raise ShapeError(f"no example value for the model input '{node.target}'; pass it in example_inputs() or with --input-shape")


# ---------------------------------------------------------------- hook fallback


@dataclass
class HookRun:
    """What the hook path saw: conv module calls in order, and every aten op of the forward."""

    conv_calls: list[Call] = field(default_factory=list)
    aten: list[AtenOp] = field(default_factory=list)
    modules_called: set[str] = field(default_factory=set)


def propagate_hooks(model: nn.Module, args: tuple, kwargs: Mapping[str, Any], ctx: FakeContext) -> HookRun:
    """Run the forward under fake tensors; global forward hooks record conv modules by name."""
    names = {id(m): n for n, m in model.named_modules(remove_duplicate=False)}
    run = HookRun()

    def hook(module: nn.Module, inputs: tuple, output: Any) -> None:
        name = names.get(id(module))
        if name is None:
            return
        run.modules_called.add(name)
        if isinstance(module, _ConvNd):
            run.conv_calls.append(Call(name, "call_module", module, tuple(inputs), {}, output, name))

    recorder = AtenRecorder()
    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        with ctx.mode, recorder:
            _call_module_fake(model, tuple(args), dict(kwargs), ctx)
    except Exception as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        last = sorted(run.modules_called)[-1:] or ["the model input"]
        raise ShapeError(f"the forward failed under fake tensors after '{last[0]}': {first_line}") from exc
    finally:
        handle.remove()
    run.aten = recorder.ops
    return run
