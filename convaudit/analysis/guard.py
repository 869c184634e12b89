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
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeGuard

import torch
import torch.nn as nn

__all__ = ["eval_mode", "in_mode", "untouched"]


@dataclass
class _ModuleState:
    module: nn.Module
    attributes: dict[str, Any]  #: the module's __dict__ (shallow)
    tables: dict[str, Any]  #: copies of its dict/set attributes (_parameters, _buffers, hooks, ...), None if empty


def _tables(module: nn.Module) -> dict[str, Any]:
    """Copies of the module's dict/set attributes; None for an empty one (most hook tables): it must stay empty."""
    # NB: the exact-type test first: two thirds of a module's attributes are torch's own dict tables
    return {
        k: (v.copy() if v else None)
        for k, v in vars(module).items()
        if type(v) in _TABLE_TYPES or isinstance(v, (dict, set))
    }


_TABLE_TYPES = frozenset([dict, set, OrderedDict])


def _restore(state: _ModuleState) -> None:
    now = vars(state.module)
    if not _same(now, state.attributes):  # most modules come back as they were: one check in C
        for key in [k for k in now if k not in state.attributes]:
            del now[key]
        for key, value in state.attributes.items():
            if now.get(key, _MISSING) is not value:
                now[key] = value
    for key, saved in state.tables.items():
        table = now[key]
        if saved is None:
            if table:
                table.clear()
        elif not _same(table, saved):  # put the contents back into the same object: others may hold a reference
            table.clear()
            table.update(saved)


def _same(a: Any, b: Any) -> bool:
    """Same keys in the same order holding the same objects (identity: tensors have no plain ``==``)."""
    if isinstance(a, dict):
        if not a:  # most tables (hooks) are empty
            return not b
        return len(a) == len(b) and list(a) == list(b) and all(map(operator.is_, a.values(), b.values()))
    return a == b


_MISSING = object()


@contextlib.contextmanager
def untouched(model: nn.Module) -> Iterator[None]:
    """Run a block that executes ``model``'s code; afterwards its modules and buffer values are as before."""
    modules = list(model.modules())
    states = [_ModuleState(m, dict(vars(m)), _tables(m)) for m in modules]
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
def in_mode(model: nn.Module, training: bool = False) -> Iterator[None]:
    """``model.train(training)`` for the block (eval mode by default); every module's own training flag restored after.

    The mode is set through ``train()``, so a model that overrides it (to keep frozen BatchNorms in eval
    mode, say) runs as it would for its user; the flags are put back one by one, not through ``train()``.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.train(training)
    try:
        yield
    finally:
        for m, mode in modes:
            if m.training is not mode:  # NB: Module.__setattr__ costs a microsecond; most flags are unchanged
                m.training = mode


def eval_mode(model: nn.Module) -> contextlib.AbstractContextManager[None]:
    """Eval mode for the block (no dropout, BatchNorm statistics left alone); every training flag restored after."""
    return in_mode(model, training=False)


def _readable(t: Any) -> TypeGuard[torch.Tensor]:
    return isinstance(t, torch.Tensor) and not t.is_meta and type(t) is torch.Tensor
