"""Tracing: a plain torch.fx symbolic trace in which every convolution stays visible.

torchvision's feature-extraction tracer keeps ``Conv2dNormActivation`` as a leaf and so hides the
conv inside; the plain ``torch.fx.Tracer`` traces through user and torchvision modules and keeps
``torch.nn`` modules as leaves. We add one leaf kind: every conv module (subclasses included, and the
conv-like modules registered in :mod:`convaudit.analysis.adapters`), so a "same"-padding subclass
appears as one call with its own name instead of a pad and an anonymous ``F.conv2d``. Tracing never
leaves anything on the user's model: constants the tracer would attach to the root are moved into
:attr:`Traced.constants`.

``torch.fx.Tracer`` finds the name of each parameter, buffer or submodule a forward touches by walking
all of the root's (``named_parameters()`` per access): quadratic, seconds on a timm mobile net whose
norm layers are traced through. :class:`ConvTracer` looks them up in a table built once per trace,
giving the same names (the first in that walk's order) and the same nodes.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx
import torch.nn as nn
from torch.fx.proxy import ParameterProxy

from convaudit.analysis.adapters import is_conv_module

__all__ = ["ConvTracer", "Traced", "trace"]


class ConvTracer(torch.fx.Tracer):
    """``torch.fx.Tracer`` with conv modules (and any extra leaf types) as leaves."""

    def __init__(self, leaf_types: Sequence[type] = ()) -> None:
        super().__init__()
        self.extra_leaves = tuple(leaf_types)
        self.leaves: dict[type, bool] = {}  #: conv-ness by module type (registrations cannot change mid-trace)
        self._root: nn.Module | None = None
        self._index: _Index | None = None  #: built on first use: most traces of torchvision nets never need it

    def trace(self, root: Any, concrete_args: dict[str, Any] | None = None) -> torch.fx.Graph:
        self._root = root if isinstance(root, nn.Module) else None
        self._index, self.leaves = None, {}
        try:
            return super().trace(root, concrete_args)
        finally:
            self._root = self._index = None

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        conv = self.leaves.get(type(m))
        if conv is None:
            conv = self.leaves[type(m)] = is_conv_module(m)
        if conv or (self.extra_leaves and isinstance(m, self.extra_leaves)):
            return True
        return super().is_leaf_module(m, module_qualified_name)

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict[str, Any]) -> Any:
        """``Tracer.getattr``: a parameter or buffer read in forward becomes (one cached) get_attr proxy."""
        name = None
        root = self._root
        if isinstance(attr_val, torch.Tensor) and root is not None:  # not a submodule or a plain value
            index = self._table(root)
            if isinstance(attr_val, nn.Parameter):
                name = index.name(index.parameters, attr_val)
            elif self.proxy_buffer_attributes:
                name = index.name(index.buffers, attr_val)
            if name is not None and name.rpartition(".")[2] != attr:
                name = None  # read under another name: an alias made since (self.mean = self.spare)
        if name is None:  # not (or no longer) where the table says: the tracer's own walk decides
            return super().getattr(attr, attr_val, parameter_proxy_cache)
        if name not in parameter_proxy_cache:  # as Tracer.getattr makes it
            kwargs: dict[str, Any] = {}
            if "proxy_factory_fn" in inspect.signature(self.create_proxy).parameters:
                kwargs["proxy_factory_fn"] = (
                    None if not self.param_shapes_constant else lambda node: ParameterProxy(self, node, name, attr_val)
                )
            parameter_proxy_cache[name] = self.create_proxy("get_attr", name, (), {}, **kwargs)
        return parameter_proxy_cache[name]

    def create_arg(self, a: Any) -> Any:
        """``Tracer.create_arg``: a parameter, buffer or submodule of the root becomes a get_attr node."""
        # NB: proxies, numbers and containers (nearly every argument) go straight on: isinstance(a, Parameter)
        # runs a Python metaclass check, so it is asked of tensors only; and the exact types below become
        # what torch.fx makes of them without its chain of checks (a third of the trace)
        kind = type(a)
        if kind is torch.fx.Proxy:
            return a.node
        if kind in _AS_IS:
            return a
        if kind is tuple:
            return tuple([self.create_arg(v) for v in a])
        if kind is list:
            return [self.create_arg(v) for v in a]
        root = self._root
        if isinstance(a, (torch.Tensor, nn.Module)) and root is not None:
            index = self._table(root)
            if isinstance(a, nn.Module):
                name = index.name(index.modules, a)
            else:
                name = index.name(index.parameters if isinstance(a, nn.Parameter) else index.buffers, a)
            if name is not None:
                return self.create_node("get_attr", name, (), {})
        return super().create_arg(a)

    def _table(self, root: nn.Module) -> _Index:
        if self._index is None:
            self._index = _Index(root)
        return self._index


#: Arguments that torch.fx puts into a graph as they are (its ``base_types`` but tensors, which may be the
#: model's own, and the symbolic numbers, which are traced values).
_AS_IS = frozenset(
    [
        str,
        int,
        float,
        bool,
        complex,
        type(None),
        type(...),
        torch.dtype,
        torch.device,
        torch.memory_format,
        torch.layout,
    ]
)


class _Index:
    """The first qualified name of each parameter, buffer and submodule of a root, as fx's walks find them.

    A hit is checked against the model as it is now (a forward may reassign an attribute); a miss, or a
    name that no longer holds the object, leaves the decision to ``torch.fx.Tracer``'s own walk. NB: an
    alias a forward makes of one of the model's own tensors (``self.mean = self.spare``), then used, may
    keep its first name here where fx's walk would find the alias first: the same tensor either way.
    """

    def __init__(self, root: nn.Module) -> None:
        self.root = root
        self.parameters: dict[int, tuple[str, Any]] = {}
        self.buffers: dict[int, tuple[str, Any]] = {}
        self.modules: dict[int, tuple[str, Any]] = {}
        # one walk in named_parameters()/named_buffers()/named_modules() order (each module once)
        for prefix, module in root.named_modules():
            self.modules.setdefault(id(module), (prefix, module))
            dot = prefix + "." if prefix else ""
            for table, found in ((module._parameters, self.parameters), (module._buffers, self.buffers)):
                for key, tensor in table.items():
                    if tensor is not None:
                        found.setdefault(id(tensor), (dot + key, tensor))

    def name(self, table: dict[int, tuple[str, Any]], value: Any) -> str | None:
        hit = table.get(id(value))
        if hit is None or hit[1] is not value or _resolve(self.root, hit[0]) is not value:
            return None
        return hit[0]


def _resolve(root: nn.Module, name: str) -> Any:
    """``root.<name>`` through the module tables (never ``Module.__getattr__``, which fx patches while tracing)."""
    obj: Any = root
    for part in name.split(".") if name else ():
        if not isinstance(obj, nn.Module):
            return None
        tables = vars(obj)
        for table in ("_modules", "_parameters", "_buffers"):
            found = tables.get(table, {}).get(part, _ABSENT)
            if found is not _ABSENT:
                obj = found
                break
        else:
            return None
    return obj


_ABSENT = object()


@dataclass
class Traced:
    """A traced graph over the user's (unmodified) model."""

    graph: torch.fx.Graph
    root: nn.Module
    constants: dict[str, Any] = field(default_factory=dict)  #: tensors the tracer wanted on the root
    resolved: dict[str, Any] = field(default_factory=dict, repr=False)  #: targets already looked up

    def attr(self, target: str) -> Any:
        """Resolve a get_attr/call_module target against the root (or the moved constants), each once."""
        if target in self.constants:
            return self.constants[target]
        found = self.resolved.get(target, _ABSENT)
        if found is _ABSENT:
            found = self.root
            for part in target.split("."):
                found = getattr(found, part)
            self.resolved[target] = found
        return found


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
