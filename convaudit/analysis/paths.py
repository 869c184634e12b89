"""Which path shows the model's calls: its fx trace, else its forward under fake tensors, else for real.

The fx path (a symbolic trace; shapes by cheap rules and fake tensors) comes first: it alone gives the
graph view and functional convs a rewrite can reach. It is not used, and the report says why
(``trace_note``), when

- tracing fails (Python control flow on a traced value, ``len()`` of a proxy, ...);
- shapes do not propagate through the trace: the trace may take another branch than the forward (monai's
  BasicUNet tests ``torch.jit.isinstance``, which a proxy fails, and drops its skip connections);
- the trace leaves conv modules uncalled and the model's own forward calls conv modules otherwise (which
  ones, how often). Only then is that forward run: first on meta tensors, counting nothing but conv
  module calls (:mod:`convaudit.analysis.census`, a fraction of a trace's cost); only when that cannot
  run, or disagrees with the trace, under fake tensors with the full recorder, whose counts decide.
  NB: a branch that calls the same convs as often with agreeing shapes goes unseen
  (``trace_path="hooks"`` forces the forward).

The hook path runs the forward under fake tensors. When it meets code that reads tensor values
(``.item()``, ``if x.mean() > 0:``, ``nonzero``, an op without a fake kernel), the real path runs it for
real (:func:`convaudit.analysis.forward.run_real`), after a memory estimate, on seeded inputs where only
shapes were given. An error names the module where execution stopped.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from torch.utils._pytree import tree_leaves, tree_map

from convaudit.analysis.adapters import is_conv_module
from convaudit.analysis.census import conv_census
from convaudit.analysis.forward import (
    ForwardFailed,
    ForwardRun,
    MemoryLimitReached,
    in_chain,
    needs_real_values,
    run_fake,
    run_real,
    tensor_bytes,
)
from convaudit.analysis.propagation import AtenOp, Call, FakeContext, map_tensors, propagate_fx
from convaudit.analysis.tracing import Traced, trace
from convaudit.errors import ConvauditError, ShapeError, TraceError
from convaudit.options import AnalysisOptions
from convaudit.sources.inputs import materialize
from convaudit.vocab import TracePath

__all__ = ["ACTIVATION_FACTOR", "Seen", "real_run_bytes", "see"]

#: NB: an estimate. A forward under no_grad holds a few activations at once; this many input-sized tensors
#: bound what no fake run measured (64 channels at full resolution over a 3-channel input is 21 of them, and
#: a U-Net keeps its skips alive). Above it, the bytes the fake forward made before it stopped (as if none
#: were freed) count instead; the real run itself stops if the tensors it holds pass the limit.
ACTIVATION_FACTOR = 64

#: FakeTensorMode logs a traceback when a meta kernel rejects its inputs (a shape error we report ourselves).
_FAKE_TENSOR_LOG = "torch._subclasses.fake_tensor"

_FAKE_NOTE = (
    "shapes came from the model's forward under fake tensors, with module hooks "
    "(functional convs are named after the module they run in); no graph view"
)
_REAL_NOTE = (
    "it ran for real{seeded}, under no_grad, on copies of the weights "
    "(estimated {estimate}, limit {limit}); no graph view"
)


@dataclass
class Seen:
    """What one path showed of the model's calls."""

    path: TracePath
    calls: list[Call]  #: fx: every call node; hooks/real: the conv calls (module and functional)
    aten: list[AtenOp] | None  #: hooks/real: every aten op of the forward (the totals); fx: None
    traced: Traced | None  #: fx only
    note: str | None  #: why this path (and not the one before), and what it cannot show
    run: ForwardRun | None = None  #: hooks/real: the forward's record (which module ran each aten op)


def see(model: nn.Module, args: tuple, kwargs: Mapping[str, Any], options: AnalysisOptions) -> Seen:
    """The model's calls at these inputs, by the first path that can be trusted (module docstring)."""
    with _quiet(_FAKE_TENSOR_LOG):
        return _see(model, args, kwargs, options)


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Silence a logger for the block: a failure is reported once, as our one line, not as its traceback too."""
    logger = logging.getLogger(name)
    disabled = logger.disabled  # NB: not setLevel, which clears every logger's cache (twice per analysis)
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = disabled


def _see(model: nn.Module, args: tuple, kwargs: Mapping[str, Any], options: AnalysisOptions) -> Seen:
    ctx = FakeContext(next((p.device for p in model.parameters()), torch.device("cpu")))
    # as the model's own tensors: meta stand-ins, made fake where an op must run on them (the fake forward's too)
    fake_args, fake_kwargs = map_tensors(ctx.stand_in, args), map_tensors(ctx.stand_in, kwargs)
    forced = options.trace_path
    reasons: list[str] = [f"trace_path={forced!s} was asked for"] if forced not in (None, TracePath.FX) else []
    fx_error: ConvauditError | None = None
    if forced in (None, TracePath.FX):
        seen, fx_error = _fx(model, fake_args, fake_kwargs, ctx, options, reasons)
        if seen is not None:
            return seen
    produced = 0
    if forced in (None, TracePath.HOOKS):
        try:
            run = run_fake(model, fake_args, fake_kwargs, ctx)
        except ForwardFailed as failed:
            cause = needs_real_values(failed.cause)
            if cause is None or forced is TracePath.HOOKS:
                raise _failure(failed, fx_error, "under fake tensors") from failed.cause
            produced = failed.produced_bytes
            reasons.append(f"the forward reads tensor values ({_reason(cause)} in {failed.where})")
        else:
            return Seen(TracePath.HOOKS, run.calls, run.aten, None, "; ".join([*reasons, _FAKE_NOTE]), run)
    run, estimate, seeded = _real(model, args, kwargs, produced, options, reasons[-1], fx_error)
    text = _REAL_NOTE.format(seeded=seeded, estimate=_size(estimate), limit=_size(options.real_run_max_bytes))
    return Seen(TracePath.REAL, run.calls, run.aten, None, "; ".join([*reasons, text]), run)


def _fx(
    model: nn.Module, args: tuple, kwargs: Mapping[str, Any], ctx: FakeContext, options: AnalysisOptions, reasons: list
) -> tuple[Seen | None, ConvauditError | None]:
    """The fx path's result if it can be trusted; else None and, in ``reasons``, why not (and its error)."""
    forced = options.trace_path is TracePath.FX
    try:
        traced = trace(model, options.leaf_types)
    except Exception as exc:  # any tracer failure (control flow, len() of a proxy, ...) takes the next path
        if forced:
            raise TraceError(f"symbolic tracing failed: {_reason(exc)}") from exc
        reasons.append(f"symbolic tracing failed ({_reason(exc)})")
        return None, None
    try:
        calls = propagate_fx(traced, args, kwargs, ctx, options.shape_rules)
    except Exception as exc:
        stopped = exc if isinstance(exc, ConvauditError) else None
        if forced or (stopped is not None and stopped.module is None):  # no module: the inputs fit no forward
            raise
        reasons.append(
            f"shapes did not propagate through the symbolic trace ({_reason(exc)}), "
            "so it may take another branch than the forward"
        )
        return None, stopped
    traced_counts = Counter(c.name for c in calls if c.node_op == "call_module" and is_conv_module(c.target))
    fx = Seen(TracePath.FX, calls, None, traced, None)
    if forced:
        return fx, None
    named = list(model.named_modules())  # as the trace left it (what it did to the model is undone later)
    if not any(is_conv_module(m) and n not in traced_counts for n, m in named):
        return fx, None
    census = conv_census(model, args, kwargs, named)  # some conv is never called in the trace: does the forward agree?
    if census == traced_counts:  # NB: Counters compare missing names as zero
        return fx, None
    try:  # it cannot tell, or says otherwise: the fake forward decides
        run = run_fake(model, args, kwargs, ctx)
    except ForwardFailed:
        return fx, None  # NB: the forward cannot tell; the trace ran through, so keep it
    differ = _differences(model, traced_counts, run.conv_counts)
    if not differ:
        return fx, None
    reasons.append(f"the symbolic trace calls conv modules otherwise than the forward ({differ})")
    return Seen(TracePath.HOOKS, run.calls, run.aten, None, "; ".join([*reasons, _FAKE_NOTE]), run), None


def _differences(model: nn.Module, traced: Counter[str], ran: Counter[str]) -> str:
    """``conv_a: traced ×0, run ×1, ...`` in module order; empty when the counts agree."""
    names = [n for n, _ in model.named_modules() if traced[n] != ran[n]]
    shown = ", ".join(f"{n}: traced ×{traced[n]}, run ×{ran[n]}" for n in names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def real_run_bytes(model: nn.Module, args: Any, kwargs: Any, produced_bytes: int) -> int:
    """What the real path allocates, conservatively: copies of the weights, the inputs, and activations.

    Activations: the larger of ``produced_bytes`` (every tensor the fake forward made before it stopped,
    as if none were freed) and :data:`ACTIVATION_FACTOR` × the inputs' bytes.
    """
    inputs = tensor_bytes((args, kwargs))
    return _held_bytes(model, args, kwargs) + max(produced_bytes, ACTIVATION_FACTOR * inputs)


def _held_bytes(model: nn.Module, args: Any, kwargs: Any) -> int:
    """Bytes the real run holds before its first op: its copies of the weights and of the inputs."""
    unique = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    return sum(t.numel() * t.element_size() for t in unique.values()) + tensor_bytes((args, kwargs))


def _real(
    model: nn.Module,
    args: tuple,
    kwargs: Mapping[str, Any],
    produced: int,
    options: AnalysisOptions,
    why: str,
    fx_error: ConvauditError | None,
) -> tuple[ForwardRun, int, str]:
    """The real path: (its run, the memory estimate, how inputs were made); refused above the limit.

    Args:
        why: why it must run for real (the last reason the other paths gave).
    """
    if any(t.is_meta for t in [*model.parameters(), *model.buffers()]):
        raise TraceError(
            f"{why}, so the model must run for real, but its weights are on the meta device (no data); "
            "load real weights"
        )
    estimate = real_run_bytes(model, args, kwargs, produced)
    limit = options.real_run_max_bytes
    if estimate > limit:
        raise TraceError(
            f"{why}, so the model must run for real, which would need about {_size(estimate)} "
            f"(limit {_size(limit)}, real_run_max_bytes); give a smaller --input-shape than "
            f"{_shape_text(args, kwargs)}"
        )
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    real_args, real_kwargs = _real_inputs(args, device), _real_inputs(dict(kwargs), device)
    seeded = " on seeded random inputs (seed 0) of the given shapes" if _has_meta((args, kwargs)) else " on its inputs"
    try:
        run = run_real(model, real_args, real_kwargs, limit - _held_bytes(model, args, kwargs))
    except ForwardFailed as failed:
        if in_chain(failed.cause, (MemoryLimitReached,)) is not None:
            raise TraceError(
                f"the real run of the forward passed the memory limit ({_size(limit)}, real_run_max_bytes) in "
                f"{failed.where}; give a smaller --input-shape than {_shape_text(args, kwargs)}"
            ) from failed.cause
        raise _failure(failed, fx_error, "on the real run") from failed.cause
    return run, estimate, seeded


def _real_inputs(value: Any, device: torch.device) -> Any:
    """Real inputs of the run's own: meta tensors become seeded random data, real ones are copied."""

    def own(t: Any) -> Any:
        return t.detach().clone() if isinstance(t, torch.Tensor) and not t.is_meta else t

    made = materialize(tree_map(own, value))
    return tree_map(lambda t: t.to(device) if isinstance(t, torch.Tensor) else t, made)


def _has_meta(value: Any) -> bool:
    return any(isinstance(t, torch.Tensor) and t.is_meta for t in tree_leaves(value))


def _shape_text(args: Any, kwargs: Any) -> str:
    tensors = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
    biggest = max(tensors, key=lambda t: t.numel(), default=None)
    return ",".join(str(d) for d in biggest.shape) if biggest is not None else "these inputs"


def _failure(failed: ForwardFailed, fx_error: ConvauditError | None, on: str) -> ConvauditError:
    """The error to raise: fx's when it stopped at the same module (its message is the precise one), else this."""
    if isinstance(fx_error, ShapeError) and fx_error.module == failed.module:
        return fx_error
    cause = failed.cause
    kind = ShapeError if isinstance(cause, (RuntimeError, ValueError, IndexError)) else TraceError
    error = kind(f"the forward failed {on} in {failed.where}: {type(cause).__name__}: {_first_line(cause)}")
    error.module = failed.module
    return error


def _size(n_bytes: int) -> str:
    """4 GiB, 167 MiB, 12 KiB: binary units, three significant digits."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.3g} {unit}"
    return f"{n_bytes} bytes"


def _reason(exc: BaseException, limit: int = 160) -> str:
    """An exception's first sentence of its first line, for a note: at most ``limit`` characters."""
    text = _first_line(exc)
    first, dot, _ = text.partition(". ")
    text = first if dot and len(first) >= 20 else text  # a short first "sentence" is an abbreviation: keep on
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
