"""A rule registry keyed by module type, Python function, tensor-method name or aten op.

One registry, one way in: ``@registry.register(key, ...)``; registering the same key twice raises.
Module types are looked up along ``type(m).__mro__``, but a subclass that defines its own ``forward``
is not its base (a "same"-padding conv does not compute what ``nn.Conv2d`` computes), so it only
matches a rule registered for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

__all__ = ["Registry", "own_forward"]

R = TypeVar("R")

_MISSING = object()


def own_forward(module_type: type, base: type) -> bool:
    """True when ``module_type`` overrides the ``forward`` that ``base`` defines."""
    return getattr(module_type, "forward", None) is not getattr(base, "forward", None)


class Registry(Generic[R]):
    """Maps keys to rules; module types resolve through their MRO."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._rules: dict[Any, R] = {}
        self._by_type: dict[type, tuple[Any, Any]] = {}  #: module type -> (its forward, its lookup); see there

    def register(self, *keys: Any) -> Callable[[R], R]:
        """Decorator: register the rule under every key; a key registered twice raises ValueError."""

        def wrap(rule: R) -> R:
            for key in keys:
                if key in self._rules:
                    raise ValueError(f"{self.name}: a rule for {key!r} is already registered")
                self._rules[key] = rule
            self._by_type.clear()
            return rule

        return wrap

    def __contains__(self, key: Any) -> bool:
        return key in self._rules

    def keys(self) -> list[Any]:
        """Every registered key."""
        return list(self._rules)

    def lookup(self, key: Any, overrides: Mapping[Any, R | None] | None = None) -> R | None:
        """The rule for a function/name/op, or for an instance's type (MRO walk); None if none.

        ``overrides`` (per call) win over the registry; a value of None there means "ignore on purpose"
        and is returned as None too (callers tell the two apart with :meth:`lookup_or_missing`).
        """
        found = self.lookup_or_missing(key, overrides)
        return None if found is _MISSING else found

    def lookup_or_missing(self, key: Any, overrides: Mapping[Any, R | None] | None = None) -> Any:
        """Like :meth:`lookup`, but returns the sentinel ``MISSING`` when no rule exists at all."""
        tables: list[Mapping[Any, Any]] = [overrides, self._rules] if overrides else [self._rules]
        if isinstance(key, type) or not _is_module(key):
            for table in tables:
                try:
                    if key in table:
                        return table[key]
                except TypeError:  # unhashable key
                    return _MISSING
            return _MISSING
        own = type(key)
        if overrides:
            return self._by_mro(own, tables)
        # NB: a model asks for its few types hundreds of times per analysis. An answer holds while the type's
        # forward is the one it was given for (a patched forward asks again); bounded, as types come and go
        forward = getattr(own, "forward", None)
        hit = self._by_type.get(own)
        if hit is None or hit[0] is not forward:
            if len(self._by_type) >= _MEMO_TYPES:
                self._by_type.clear()
            hit = self._by_type[own] = (forward, self._by_mro(own, tables))
        return hit[1]

    @staticmethod
    def _by_mro(own: type, tables: list[Mapping[Any, Any]]) -> Any:
        for table in tables:
            for cls in own.__mro__:
                if cls in table:
                    if cls is own or not own_forward(own, cls):
                        return table[cls]
                    return _MISSING  # a subclass with its own forward is not its base
        return _MISSING


MISSING = _MISSING
_MEMO_TYPES = 4096  #: module types a registry remembers lookups of (then it starts over)


def _is_module(obj: Any) -> bool:
    global _MODULE_TYPE
    if _MODULE_TYPE is None:  # NB: an import statement per lookup cost 0.16 us of 0.19 (a thousand per analysis)
        import torch.nn as nn  # deferred: keeps this leaf importable without paying for torch.nn first

        _MODULE_TYPE = nn.Module
    return isinstance(obj, _MODULE_TYPE)


_MODULE_TYPE: type | None = None  #: ``torch.nn.Module``, once first needed
