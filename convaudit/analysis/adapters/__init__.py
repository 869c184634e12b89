"""Conv adapters: the registry of conv-like modules and their exact semantics.

A :class:`ConvAdapter` says, for one module type, what a module of it is as a conv: its configuration,
whether it can be a candidate (and if not, why), its effective padding at a real input, the weight its
forward really convolves with, and the plain ``torch.nn`` conv (after an optional run-time padding
module) that computes what it computes, which the rewrite factorises. The inventory, the separability
figures and the rewrite read modules through it; a subclass with its own ``forward`` does not inherit
its base's adapter (the MAC-rule registry's rule).

One registry, one way in: :func:`register_conv` (``convaudit.register_conv``); registering a type twice
raises. The torch.nn convs are registered here; timm's classes (``Conv2dSame``, ``StdConv2d``,
``StdConv2dSame``, ``ScaledStdConv2d``, ``ScaledStdConv2dSame``, ``CondConv2d``) are registered the first
time a lookup runs while their timm module is loaded, so timm is never imported for it.

``base``: :class:`ConvSpec` and :class:`ConvAdapter` · ``padding``: TF 'SAME' padding at run time
(:class:`SamePad`) · ``builtin``: the adapters shipped and the timm classes they read · here: the registry.
"""

from __future__ import annotations

import sys
from typing import TypeGuard

import torch.nn as nn
from torch.nn.modules.conv import _ConvNd

from convaudit.analysis.adapters.base import STANDARD_CONV_TYPES, ConvAdapter, ConvSpec, Shape
from convaudit.analysis.adapters.builtin import (
    TIMM_CLASSES,
    NotACandidate,
    PerSampleExperts,
    StandardizedConv,
    TFSameConv,
)
from convaudit.analysis.adapters.padding import SamePad, pad_same, same_padding
from convaudit.analysis.rules.registry import Registry
from convaudit.errors import UsageError

__all__ = [
    "ADAPTERS",
    "STANDARD_CONV_TYPES",
    "ConvAdapter",
    "ConvSpec",
    "NotACandidate",
    "PerSampleExperts",
    "SamePad",
    "StandardizedConv",
    "TFSameConv",
    "conv_adapter",
    "is_conv_module",
    "module_spec",
    "pad_same",
    "register_conv",
    "same_padding",
]

ADAPTERS: Registry[ConvAdapter] = Registry("conv adapters")

_TIMM_PACKAGES = ("timm.layers", "timm.models.layers")
_pending = [
    (f"{package}.{module}", name, adapter) for package in _TIMM_PACKAGES for module, name, adapter in TIMM_CLASSES
]


_modules_seen = 0  #: len(sys.modules) when the pending classes were last looked for


def _register_loaded() -> None:
    """Register timm's classes whose modules are loaded (never importing them); each once."""
    global _modules_seen
    # NB: every lookup comes here; nothing new is loaded unless sys.modules grew (timm's legacy
    # timm.models.layers stays pending for good, and a scan per lookup cost a tenth of an analysis)
    if not _pending or len(sys.modules) == _modules_seen or "timm" not in sys.modules:
        return
    _modules_seen = len(sys.modules)
    for entry in list(_pending):
        module_name, name, adapter = entry
        module = sys.modules.get(module_name)
        if module is None:
            continue
        _pending.remove(entry)
        cls = getattr(module, name, None)
        if isinstance(cls, type) and issubclass(cls, nn.Module) and cls not in ADAPTERS:
            ADAPTERS.register(cls)(adapter)


def register_conv(cls: type, adapter: ConvAdapter) -> ConvAdapter:
    """Register how convaudit reads modules of type ``cls`` (``convaudit.register_conv``).

    A subclass of ``cls`` that does not override ``forward`` is read the same way. Registering a type that
    already has an adapter (the torch.nn convs and timm's conv classes have one) raises UsageError.
    """
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise UsageError(f"register_conv: {cls!r} is not an nn.Module class")
    if not isinstance(adapter, ConvAdapter):
        raise UsageError(f"register_conv: the adapter for {cls.__name__} must be a convaudit.ConvAdapter")
    _register_loaded()
    if cls in ADAPTERS:
        raise UsageError(f"register_conv: {cls.__module__}.{cls.__qualname__} already has a conv adapter")
    return ADAPTERS.register(cls)(adapter)


def conv_adapter(module: object) -> ConvAdapter | None:
    """The adapter that reads ``module`` (its type's, or an ancestor's that it does not override), or None."""
    _register_loaded()
    return ADAPTERS.lookup(module) if isinstance(module, nn.Module) else None


def is_conv_module(module: object) -> TypeGuard[nn.Module]:
    """A conv module (any nn.ConvNd, subclasses with their own forward included) or a registered conv-like one."""
    return isinstance(module, _ConvNd) or conv_adapter(module) is not None


_UNADAPTED = ConvAdapter()


def module_spec(module: nn.Module, input_shape: Shape) -> ConvSpec:
    """The ConvSpec of a conv module: by its adapter, or as a custom subclass (its own forward) without one."""
    adapter = conv_adapter(module)
    if adapter is None:
        return _UNADAPTED.spec(module, input_shape, custom=True)
    return adapter.spec(module, input_shape)


for _cls in STANDARD_CONV_TYPES:
    register_conv(_cls, ConvAdapter())
