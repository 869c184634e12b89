"""Running the user's code without keeping its traces: every module left as it was found.

Tracing and propagation execute the model's ``forward``. A forward may assign to ``self`` (fx then
leaves a Proxy on the model), count its calls, register a submodule, or update a buffer in place
(BatchNorm's ``num_batches_tracked`` in training mode). :func:`untouched` snapshots what such code
can change (each module's attribute table, its parameter/buffer/submodule/hook tables, and buffer
values) and puts it all back afterwards, also when the code raised. :func:`in_mode` (and
:func:`eval_mode`) run a block with the model in eval or train mode and give every module its own
training flag back after: the one definition analysis and conversion share.
"""

from __future__ import annotations

import contextlib
import operator
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

import torch
import torch.nn as nn

__all__ = ["eval_mode", "in_mode", "untouched"]


@dataclass
class _ModuleState:
    module: nn.Module
    attributes: dict[str, Any]  #: the module's __dict__ (shallow)
    tables: list[tuple[Any, Any]]  #: (dict/set attribute, its copy) of each non-empty one (_parameters, ...)
    empty: list[Any]  #: the empty dict/set attributes (most hook tables): they must stay empty


def _state(module: nn.Module) -> _ModuleState:
    now = vars(module)
    tables, empty = [], []
    # NB: the exact-type test first: two thirds of a module's attributes are torch's own dict tables
    for v in now.values():
        if type(v) in _TABLE_TYPES or isinstance(v, (dict, set)):
            if v:
                tables.append((v, v.copy()))
            else:
                empty.append(v)
    return _ModuleState(module, dict(now), tables, empty)


_TABLE_TYPES = frozenset([dict, set, OrderedDict])


def _restore(state: _ModuleState) -> None:
    now = vars(state.module)
    if not _same(now, state.attributes):  # most modules come back as they were: one check in C
        for key in [k for k in now if k not in state.attributes]:
            del now[key]
        for key, value in state.attributes.items():
            if now.get(key, _MISSING) is not value:
                now[key] = value
    # the tables are the objects the attributes hold again: their contents go back into the same object,
    # others may hold a reference
    for table in filter(None, state.empty):
        table.clear()
    for table, saved in state.tables:
        if not _same(table, saved):
            table.clear()
            table.update(saved)


def _same(a: Any, b: Any) -> bool:
    """Same keys in the same order holding the same objects (identity: tensors have no plain ``==``)."""
    if isinstance(a, dict):
        return len(a) == len(b) and list(a) == list(b) and all(map(operator.is_, a.values(), b.values()))
    return a == b


_MISSING = object()


@contextlib.contextmanager
def untouched(model: nn.Module, modules: Sequence[nn.Module] | None = None) -> Iterator[None]:
    """Run a block that executes ``model``'s code; afterwards its modules and buffer values are as before.

    Args:
        modules: ``list(model.modules())`` when the caller has it (taken before any of the model's code ran).
    """
    modules = list(model.modules()) if modules is None else modules
    states = [_state(m) for m in modules]
    with torch.no_grad():  # clone() under no_grad is detach().clone() at one dispatch
        buffers = [(b, b.clone()) for m in modules for b in m._buffers.values() if _readable(b)]
    try:
        yield
    finally:
        for state in states:
            _restore(state)
        with torch.no_grad():
            for buffer, saved in buffers:
                if buffer.shape == saved.shape and not torch.equal(buffer, saved):
                    buffer.copy_(saved)


@contextlib.contextmanager
def in_mode(model: nn.Module, training: bool = False, modules: Sequence[nn.Module] | None = None) -> Iterator[None]:
    """``model.train(training)`` for the block (eval mode by default); every module's own training flag restored after.

    The mode is set through ``train()``, so a model that overrides it (to keep frozen BatchNorms in eval
    mode, say) runs as it would for its user; the flags are put back one by one, not through ``train()``.
    NB: where every module already is in that mode and none overrides ``train``, ``__setattr__`` or
    ``training``, ``train()`` would only set each flag to itself, and is not called.

    Args:
        modules: ``list(model.modules())`` when the caller has it (taken before any of the model's code ran).
    """
    modes = [(m, m.training) for m in (model.modules() if modules is None else modules)]
    plain: dict[type, bool] = {}  # by class, for this call (a class may be patched between calls)
    if not all(mode is training and _plain_mode(type(m), plain) for m, mode in modes):  # stops at the first False
        model.train(training)
    try:
        yield
    finally:
        for m, mode in modes:
            if m.training is not mode:  # NB: Module.__setattr__ costs a microsecond; most flags are unchanged
                m.training = mode


def _plain_mode(cls: type, known: dict[type, bool]) -> bool:
    """True when ``train()`` on a module of ``cls`` only sets ``training`` (no override below ``nn.Module``)."""
    plain = known.get(cls)
    if plain is None:
        names = ("train", "__setattr__", "training")
        below = [c for c in cls.__mro__ if c is not nn.Module and c is not object]
        plain = known[cls] = not any(name in vars(c) for c in below for name in names)
    return plain


def eval_mode(model: nn.Module) -> contextlib.AbstractContextManager[None]:
    """Eval mode for the block (no dropout, BatchNorm statistics left alone); every training flag restored after."""
    return in_mode(model, training=False)


def _readable(t: Any) -> TypeGuard[torch.Tensor]:
    return isinstance(t, torch.Tensor) and not t.is_meta and type(t) is torch.Tensor
