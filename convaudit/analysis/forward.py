"""The model's own forward, run under fake tensors (the hook path) or for real (the real path).

Both run ``forward`` as the user wrote it. Global module hooks (nothing is registered on the model) keep
the stack of modules whose forward is running, and an aten-level recorder costs every op. Each
convolution belongs to the innermost conv module on the stack; a convolution no conv module runs (an
``F.conv2d`` in some module's forward) is a functional conv of its own, named after the parameter its
weight is (``head`` for ``head.weight``, as the fx path names it) or, for a weight computed in forward,
after the innermost module: ``blocks.0.conv_dw (functional conv #1)``, the first of that module's call.
When the forward raises, the error names the innermost module at the exception.

The real path computes: on copies of the weights (the model's own tensors are never written), under
``no_grad``, keeping only the shapes of what it records; it stops when the tensors it holds pass a limit.
"""

from __future__ import annotations

import contextlib
import sys
import weakref
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch._subclasses.fake_tensor import (
    DataDependentOutputException,
    DynamicOutputShapeException,
    UnsupportedOperatorException,
)
from torch.fx.experimental.symbolic_shapes import GuardOnDataDependentSymNode
from torch.utils._pytree import tree_leaves, tree_map

from convaudit.analysis.adapters import is_conv_module
from convaudit.analysis.propagation import CONVOLUTION_OPS, AtenOp, AtenRecorder, Call, FakeContext, aten_op

__all__ = [
    "NEEDS_REAL_VALUES",
    "ForwardFailed",
    "ForwardRun",
    "MemoryLimitReached",
    "in_chain",
    "needs_real_values",
    "run_fake",
    "run_real",
    "tensor_bytes",
]

#: What fake tensors cannot do and a real run can: read a value (``.item()``, ``bool(x)``, ``_local_scalar_dense``),
#: make a tensor whose size depends on values (``nonzero``, ``unique``, masks), or run an op with no fake kernel.
NEEDS_REAL_VALUES: tuple[type[BaseException], ...] = (
    DataDependentOutputException,
    DynamicOutputShapeException,
    GuardOnDataDependentSymNode,
    UnsupportedOperatorException,
)

_CONV_FN = {(False, 1): F.conv1d, (False, 2): F.conv2d, (False, 3): F.conv3d}
_CONV_T_FN = {(True, 1): F.conv_transpose1d, (True, 2): F.conv_transpose2d, (True, 3): F.conv_transpose3d}


def in_chain(exc: BaseException, types: tuple[type[BaseException], ...]) -> BaseException | None:
    """The first exception of ``types`` in ``exc``'s chain (itself, then its cause or context), or None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, types):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def needs_real_values(exc: BaseException) -> BaseException | None:
    """The exception in ``exc``'s chain that only a real run gets past (model code may wrap it), or None."""
    return in_chain(exc, NEEDS_REAL_VALUES)


@dataclass
class ForwardRun:
    """What one forward showed: its convs (module calls and functional convs, in order) and every aten op."""

    calls: list[Call] = field(default_factory=list)
    aten: list[AtenOp] = field(default_factory=list)
    conv_counts: Counter[str] = field(default_factory=Counter)  #: calls per conv module name
    produced_bytes: int = 0  #: bytes of every new tensor the ops made, as if none were freed
    owners: list[str] = field(default_factory=list)  #: per aten op, the innermost model module running it
    module_calls: Counter[str] = field(default_factory=Counter)  #: calls per model module name (the tree)
    module_outputs: dict[str, tuple[int, ...]] = field(default_factory=dict)  #: first call's first output shape


class ForwardFailed(Exception):
    """The forward raised ``cause`` while ``module`` ("" for the root) was the innermost module running."""

    def __init__(self, cause: BaseException, module: str, module_type: str, produced_bytes: int) -> None:
        super().__init__(str(cause))
        self.cause, self.module, self.module_type, self.produced_bytes = cause, module, module_type, produced_bytes

    @property
    def where(self) -> str:
        """``'blocks.0' (Bottleneck)``, or ``the forward of Net`` at the root."""
        return f"'{self.module}' ({self.module_type})" if self.module else f"the forward of {self.module_type}"


class MemoryLimitReached(Exception):
    """The real run held more than its limit in tensors."""


@dataclass(frozen=True)
class _Shape:
    """A tensor reduced to what the records need (the real path must not keep activations alive)."""

    shape: tuple[int, ...]
    dtype: torch.dtype


def tensor_bytes(value: Any) -> int:
    """Bytes of the tensors in a (nested) value."""
    total = 0

    def add(t: Any) -> Any:
        nonlocal total
        if isinstance(t, torch.Tensor):
            total += t.numel() * t.element_size()
        return t

    tree_map(add, value)
    return total


def _shapes(value: Any) -> Any:
    return tree_map(lambda t: _Shape(tuple(t.shape), t.dtype) if isinstance(t, torch.Tensor) else t, value)


def _first_shape(value: Any) -> tuple[int, ...]:
    """The shape of the first tensor in a (nested) value; () when it holds none."""
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    return next((tuple(t.shape) for t in tree_leaves(value) if isinstance(t, torch.Tensor)), ())


def _metas(value: Any) -> Any:
    return tree_map(lambda s: torch.empty(s.shape, dtype=s.dtype, device="meta") if isinstance(s, _Shape) else s, value)


@dataclass
class _Frame:
    name: str | None  #: None for a module that is not part of the model (made in forward)
    module: nn.Module
    start: int  #: index of the first aten op run inside it
    inputs: Any = None  #: positional inputs of a conv module (as shapes)
    functional: int = 0  #: functional convs with computed weights seen in this call so far


class _Recorder(AtenRecorder):
    """The aten recorder of a whole forward: attributes convolutions through the module stack."""

    def __init__(self, model: nn.Module, weights: Mapping[int, str], limit_bytes: int | None) -> None:
        super().__init__()
        self.names: dict[int, str] = {}
        for name, m in model.named_modules():
            self.names.setdefault(id(m), name)
        self.convs = {key for key, m in ((id(m), m) for m in model.modules()) if is_conv_module(m)}
        self.weights = weights  #: id of a weight tensor the forward sees → the model's parameter name
        self.stack: list[_Frame] = []
        self.run = ForwardRun()
        self.limit_bytes = limit_bytes  #: the real run: live tensors may not pass this
        self.live_bytes = 0
        self.root_type = type(model).__name__
        self.stopped: dict[int, tuple[BaseException, str, str]] = {}  #: id → (exception, module, type) it left

    # ------------------------------------------------ module hooks

    def enter(self, module: nn.Module, inputs: tuple) -> None:
        name = self.names.get(id(module))
        frame = _Frame(name, module, len(self.run.aten))
        if name is not None and id(module) in self.convs:
            frame.inputs = _shapes(tuple(inputs))
        self.stack.append(frame)

    def leave(self, module: nn.Module, inputs: tuple, output: Any) -> None:
        # NB: registered with always_call: torch calls it from its except block when the forward raised
        # (output None), so the first module to see an exception is where it stopped
        failing = sys.exc_info()[1] if output is None else None
        if failing is not None and id(failing) not in self.stopped:
            self.stopped[id(failing)] = (failing, *self.innermost())
        for depth in range(len(self.stack) - 1, -1, -1):  # frames above it raised inside a try/except: drop them
            if self.stack[depth].module is module:
                frame = self.stack[depth]
                del self.stack[depth:]
                break
        else:
            return
        if failing is None and frame.name is not None:  # the module tree: calls, and the first call's output
            self.run.module_calls[frame.name] += 1
            if frame.name not in self.run.module_outputs:
                self.run.module_outputs[frame.name] = _first_shape(output)
        if failing is not None or frame.name is None or id(module) not in self.convs:
            return
        ops = [op for op in self.run.aten[frame.start :] if op.name in CONVOLUTION_OPS]
        args = frame.inputs if frame.inputs else ()
        call = Call(frame.name, "call_module", module, args, {}, _shapes(output), frame.name, aten=ops)
        self.run.calls.append(call)
        self.run.conv_counts[frame.name] += 1

    def innermost(self) -> tuple[str, str]:
        """(name, type) of the innermost model module running ("" and the model's type at the root)."""
        for frame in reversed(self.stack):
            if frame.name is not None:
                return frame.name, type(frame.module).__name__
        return "", self.root_type

    def innermost_name(self) -> str:
        """The name of the innermost model module running ("" at the root)."""
        for frame in reversed(self.stack):
            if frame.name is not None:
                return frame.name
        return ""

    def stopped_at(self, exc: BaseException) -> tuple[str, str]:
        """(name, type) of the innermost module ``exc`` (or what it was raised from) left."""
        seen: set[int] = set()
        current: BaseException | None = exc
        while current is not None and id(current) not in seen:
            hit = self.stopped.get(id(current))
            if hit is not None:
                return hit[1], hit[2]
            seen.add(id(current))
            current = current.__cause__ or current.__context__
        return self.innermost()

    # ------------------------------------------------ aten ops

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        op = aten_op(func, args, kwargs, out)
        if op is not None:
            self.run.aten.append(op)
            self.run.owners.append(self.innermost_name())
            if op.name in CONVOLUTION_OPS:
                self._convolution(op, args, out)
        if not getattr(func, "is_view", False):
            self._account(out, (*args, *kwargs.values()))
        return out

    def _convolution(self, op: AtenOp, args: tuple, out: Any) -> None:
        """A convolution no conv module runs becomes a functional conv of the innermost module."""
        owner: _Frame | None = None
        for frame in reversed(self.stack):
            if frame.name is None:
                continue
            if id(frame.module) in self.convs:
                if not frame.inputs:  # called with keyword inputs only: its conv's input stands for them
                    frame.inputs = (_shapes(args[0]),)
                return  # the conv module's own call carries it
            owner = owner or frame
        x, w, b, stride, padding, dilation, transposed, output_padding, groups = args[:9]
        nd = w.dim() - 2
        weight = self.weights.get(id(w))
        owner_name = owner.name if owner is not None and owner.name else ""
        if weight is None:
            count = 1
            if owner is not None:
                owner.functional += 1
                count = owner.functional
            name = f"{owner_name} (functional conv #{count})" if owner_name else f"functional conv #{count}"
        else:
            name = weight.removesuffix(".weight")
        fargs: tuple[Any, ...]
        if transposed:
            fn: Callable[..., Any] = _CONV_T_FN[(True, nd)]
            fargs = (x, w, b, list(stride), list(padding), list(output_padding), groups, list(dilation))
        else:
            fn = _CONV_FN[(False, nd)]
            fargs = (x, w, b, list(stride), list(padding), list(dilation), groups)
        call = Call(name, "call_function", fn, _shapes(fargs), {}, _shapes(out), owner_name, aten=[op])
        call.weight_target = weight
        self.run.calls.append(call)

    def _account(self, out: Any, inputs: tuple) -> None:
        """Count new tensors' bytes; on the real path, also the bytes still held, against the limit."""
        given = {id(a) for a in inputs if isinstance(a, torch.Tensor)}
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if not isinstance(t, torch.Tensor) or id(t) in given:  # an in-place (or out=) op returns its input
                continue
            size = t.numel() * t.element_size()
            self.run.produced_bytes += size
            if self.limit_bytes is None:
                continue
            self.live_bytes += size
            weakref.finalize(t, self._free, size)
            if self.live_bytes > self.limit_bytes:
                raise MemoryLimitReached(f"its tensors held {self.live_bytes} bytes, past {self.limit_bytes}")

    def _free(self, size: int) -> None:
        self.live_bytes -= size


def _forward(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    args: tuple,
    kwargs: Mapping[str, Any],
    recorder: _Recorder,
    modes: list[Any],
) -> ForwardRun:
    """Call ``model`` with ``state`` swapped in, under the hooks, the recorder and ``modes``."""
    hooks = [
        torch.nn.modules.module.register_module_forward_pre_hook(recorder.enter),
        torch.nn.modules.module.register_module_forward_hook(recorder.leave, always_call=True),
    ]
    try:
        with contextlib.ExitStack() as stack:
            for mode in [*modes, recorder]:
                stack.enter_context(mode)
            torch.func.functional_call(model, state, tuple(args), dict(kwargs), tie_weights=True, strict=False)
    except Exception as exc:  # the memory guard's stop too: it names the module as well
        name, kind = recorder.stopped_at(exc)
        raise ForwardFailed(exc, name, kind, recorder.run.produced_bytes) from exc
    finally:
        for hook in hooks:
            hook.remove()
    run = recorder.run
    for call in run.calls:
        call.args, call.out = _metas(call.args), _metas(call.out)
    return run


def _named_tensors(model: nn.Module) -> list[tuple[str, torch.Tensor, bool]]:
    """(name, tensor, is a parameter), tied names included."""
    params = [(k, v, True) for k, v in model.named_parameters(remove_duplicate=False)]
    buffers = [(k, v, False) for k, v in model.named_buffers(remove_duplicate=False) if v is not None]
    return params + buffers


def run_fake(model: nn.Module, args: tuple, kwargs: Mapping[str, Any], ctx: FakeContext) -> ForwardRun:
    """The forward under fake tensors, with fake copies of the weights (the hook path).

    Raises:
        ForwardFailed: the forward raised; it names the innermost module.
    """
    state: dict[str, torch.Tensor] = {}
    weights: dict[int, str] = {}
    for name, tensor, is_param in _named_tensors(model):
        state[name] = ctx.to_fake(tensor)  # NB: to_fake memoises, so tied weights stay one tensor
        if is_param:
            weights.setdefault(id(state[name]), name)
    recorder = _Recorder(model, weights, None)
    return _forward(model, state, tuple(ctx.realize(args)), dict(ctx.realize(kwargs)), recorder, [ctx.mode])


def run_real(model: nn.Module, args: tuple, kwargs: Mapping[str, Any], limit_bytes: int) -> ForwardRun:
    """The forward for real, under no_grad, on copies of the weights (the real path).

    Args:
        args, kwargs: real inputs on the model's device, the run's own (the forward may write to them).
        limit_bytes: what the tensors the run makes may hold at once.
    Raises:
        ForwardFailed: the forward raised, or held more than ``limit_bytes`` (a :class:`MemoryLimitReached`
            in its cause's chain); it names the innermost module.
    """
    copies: dict[int, torch.Tensor] = {}
    state: dict[str, torch.Tensor] = {}
    weights: dict[int, str] = {}
    with torch.no_grad():
        for name, tensor, is_param in _named_tensors(model):
            copy = copies.get(id(tensor))
            if copy is None:
                copy = tensor.detach().clone()
                copy = nn.Parameter(copy, requires_grad=tensor.requires_grad) if is_param else copy
                copies[id(tensor)] = copy
            state[name] = copy
            if is_param:
                weights.setdefault(id(copy), name)
    recorder = _Recorder(model, weights, limit_bytes)
    return _forward(model, state, args, kwargs, recorder, [torch.no_grad()])
