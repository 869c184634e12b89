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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, compress, filterfalse, repeat
from typing import Any

import torch
import torch.nn as nn

__all__ = ["eval_mode", "in_mode", "untouched"]


class _Contents:
    """The keys and values of some dicts, concatenated (``sizes`` say where each dict's entries end).

    NB: two flat lists, not a copy per dict: the check after the block reads them in sequence, where
    copies would be as many more scattered objects to fetch (the block evicts them: it traces the model).
    """

    def __init__(self, dicts: list[dict[Any, Any]]) -> None:
        self.dicts = dicts
        self.sizes = list(map(len, dicts))
        self.keys = list(chain.from_iterable(dicts))
        self.values = list(chain.from_iterable(map(_VALUES, dicts)))  # their own iteration: an OrderedDict's order

    def same(self) -> bool:
        """Every dict holds its keys in their order with the same values (identity: tensors have no plain ``==``).

        NB: keys by identity too (no lists built): the lists hold the dicts' own key objects, and an equal key
        that is another object only sends the caller to :meth:`saved` and its check by equality.
        """
        return (
            list(map(len, self.dicts)) == self.sizes
            and all(map(operator.is_, chain.from_iterable(map(_VALUES, self.dicts)), self.values))
            and all(map(operator.is_, chain.from_iterable(self.dicts), self.keys))
        )

    def saved(self) -> Iterator[tuple[dict[Any, Any], dict[Any, Any]]]:
        """Each dict with what it held."""
        start = 0
        for now, size in zip(self.dicts, self.sizes, strict=True):
            end = start + size
            yield now, dict(zip(self.keys[start:end], self.values[start:end], strict=True))
            start = end


@dataclass
class _Snapshot:
    """What :func:`untouched` puts back, gathered over all modules at once.

    NB: the common case is that nothing changed; each check is one pass of C-level iterators over every
    module (a Python loop per module or per attribute costs more than the analysis phases it guards).
    """

    modules: Sequence[nn.Module]
    attributes: _Contents  #: each module's __dict__ (shallow)
    tables: _Contents  #: the non-empty dict attributes (_parameters, _modules, ...)
    sets: list[set[Any]]  #: the non-empty set attributes (_non_persistent_buffers_set) ...
    set_copies: list[set[Any]]  #: ... and their copies
    empty: list[Any]  #: the empty dict/set attributes (most hook tables): they must stay empty
    buffers: list[torch.Tensor]  #: every readable buffer ...
    clones: Sequence[torch.Tensor]  #: ... and a clone of each


def _snapshot(modules: Sequence[nn.Module]) -> _Snapshot:
    attributes = _Contents(list(map(vars, modules)))
    held = attributes.values
    tables = list(compress(held, map(isinstance, held, repeat((dict, set)))))
    full = list(filter(None, tables))
    sets = [t for t in full if not isinstance(t, dict)]
    every = list(chain.from_iterable(map(_VALUES, map(_BUFFERS, modules))))
    plain = list(compress(every, map(operator.is_, map(type, every), repeat(torch.Tensor))))  # no subclass, no None
    buffers = list(compress(plain, map(operator.not_, map(_IS_META, plain))))
    with torch.no_grad():  # clone() under no_grad is detach().clone(); one call for all (an empty list is refused)
        clones = torch._foreach_clone(buffers) if buffers else []
    return _Snapshot(
        modules,
        attributes,
        _Contents([t for t in full if isinstance(t, dict)]),
        sets,
        list(map(_COPY, sets)),
        list(filterfalse(None, tables)),
        buffers,
        clones,
    )


_COPY = operator.methodcaller("copy")
_VALUES = operator.methodcaller("values")
_BUFFERS = operator.attrgetter("_buffers")
_IS_META = operator.attrgetter("is_meta")


def _restore(snap: _Snapshot) -> None:
    attributes = snap.attributes
    attributes.dicts = list(map(vars, snap.modules))  # NB: the block may have given a module another __dict__
    if not attributes.same():  # most modules come back as they were: one check in C
        for now, saved in attributes.saved():
            if not _same(now, saved):
                for key in [k for k in now if k not in saved]:
                    del now[key]
                for key, value in saved.items():
                    if now.get(key, _MISSING) is not value:
                        now[key] = value
    # the tables are the objects the attributes hold again: their contents go back into the same object,
    # others may hold a reference
    for table in filter(None, snap.empty):
        table.clear()
    if not snap.tables.same():
        for table, saved in snap.tables.saved():
            if not _same(table, saved):
                table.clear()
                table.update(saved)
    for members, kept in zip(snap.sets, snap.set_copies, strict=True):
        if not members == kept:  # noqa: SIM201 (as a set subclass's __eq__ says)
            members.clear()
            members.update(kept)
    with torch.no_grad():
        if not all(map(torch.equal, snap.buffers, snap.clones)):  # unequal sizes are unequal too
            for buffer, clone in zip(snap.buffers, snap.clones, strict=True):
                if buffer.shape == clone.shape and not torch.equal(buffer, clone):
                    buffer.copy_(clone)


def _same(a: dict, b: dict) -> bool:
    """Same keys in the same order holding the same objects: what decides whether a dict is rewritten."""
    return len(a) == len(b) and list(a) == list(b) and all(map(operator.is_, a.values(), b.values()))


_MISSING = object()


@contextlib.contextmanager
def untouched(model: nn.Module, modules: Sequence[nn.Module] | None = None) -> Iterator[None]:
    """Run a block that executes ``model``'s code; afterwards its modules and buffer values are as before.

    Args:
        modules: ``list(model.modules())`` when the caller has it (taken before any of the model's code ran).
    """
    snap = _snapshot(list(model.modules()) if modules is None else modules)
    try:
        yield
    finally:
        _restore(snap)


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
