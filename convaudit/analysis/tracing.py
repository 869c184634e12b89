"""Tracing: a plain torch.fx symbolic trace in which every convolution stays visible.

torchvision's feature-extraction tracer keeps ``Conv2dNormActivation`` as a leaf and so hides the
conv inside; the plain ``torch.fx.Tracer`` traces through user and torchvision modules and keeps
``torch.nn`` modules as leaves. We add one leaf kind: every conv module (subclasses included, and the
conv-like modules registered in :mod:`convaudit.analysis.adapters`), so a "same"-padding subclass
appears as one call with its own name instead of a pad and an anonymous ``F.conv2d``. Tracing never
leaves anything on the user's model: constants the tracer would attach to the root are moved into
:attr:`Traced.constants`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx
import torch.nn as nn

from convaudit.analysis.adapters import is_conv_module

__all__ = ["ConvTracer", "Traced", "trace"]


class ConvTracer(torch.fx.Tracer):
    """``torch.fx.Tracer`` with conv modules (and any extra leaf types) as leaves."""

    def __init__(self, leaf_types: Sequence[type] = ()) -> None:
        super().__init__()
        self.extra_leaves = tuple(leaf_types)

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if is_conv_module(m) or (self.extra_leaves and isinstance(m, self.extra_leaves)):
            return True
        return super().is_leaf_module(m, module_qualified_name)


@dataclass
class Traced:
    """A traced graph over the user's (unmodified) model."""

    graph: torch.fx.Graph
    root: nn.Module
    constants: dict[str, Any] = field(default_factory=dict)  #: tensors the tracer wanted on the root

    def attr(self, target: str) -> Any:
        """Resolve a get_attr/call_module target against the root (or the moved constants)."""
        if target in self.constants:
            return self.constants[target]
        obj: Any = self.root
        for part in target.split("."):
            obj = getattr(obj, part)
        return obj


def trace(model: nn.Module, leaf_types: Sequence[type] = ()) -> Traced:
    """Symbolically trace ``model`` without mutating it; raises what the tracer raises."""
    before = _attribute_names(model)
    tracer = ConvTracer(leaf_types)
    try:
        graph = tracer.trace(model)
    finally:
        added = _attribute_names(model) - before
        constants = {name: _pop_attribute(model, name) for name in added}
    return Traced(graph=graph, root=model, constants=constants)


def _attribute_names(model: nn.Module) -> set[str]:
    return set(model.__dict__) | set(model._parameters) | set(model._buffers) | set(model._modules)


def _pop_attribute(model: nn.Module, name: str) -> Any:
    for table in (model._parameters, model._buffers, model._modules):
        if name in table:
            return table.pop(name)
    return model.__dict__.pop(name, None)
