"""The whole model as a tree: every module with its params, MACs, calls and output shape (schema 1.4).

Plain data, no torch. ``Analysis.modules`` lists the modules in pre-order (the root, named "", first),
each with its depth: a module's parent is the nearest module before it one level up, and its name is its
parent's name plus one dotted part. ``macs`` and ``params`` are a module's subtree totals: ``macs`` =
``direct_macs`` (the ops its own forward runs outside any submodule) + its children's ``macs``, and the
root's are the model's totals. Functional ops (``x + y``, ``F.relu``, ``torch.flatten``) are summed by
category in ``Analysis.other_ops``; they also count in the ``direct_macs`` of the module they run in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ModuleNode", "OpCategory", "modules_from_dict", "other_ops_from_dict"]

Shape = tuple[int, ...]


@dataclass(frozen=True)
class ModuleNode:
    """One module of the model (``named_modules()`` order, each module once under its first name)."""

    name: str  #: qualified name; "" for the root
    type: str  #: class name, e.g. "Conv2d", "BasicBlock"
    depth: int  #: 0 for the root, 1 for its children, ...
    params: int  #: of the subtree, each parameter counted once (a shared one at its first owner)
    macs: int  #: of the subtree, over every call: direct_macs + the children's macs
    direct_macs: int  #: of the ops this module's own forward runs outside its submodules
    calls: int  #: times the module ran in one forward (0: never called at these inputs)
    output_shape: Shape  #: of the first tensor its first call returned; () when unknown or not called
    conv: str | None = None  #: the name of its ConvLayer when the module is a conv


@dataclass(frozen=True)
class OpCategory:
    """Functional ops (not module calls) of one category, over the whole forward."""

    category: str  #: "elementwise", "linear algebra", "data movement", ... as ``OpSummary.category``
    calls: int
    macs: int
    ops: tuple[str, ...]  #: the op labels seen, most MACs first: "operator.add", "F.relu", ".view()"


def modules_from_dict(items: list[dict[str, Any]] | None) -> tuple[ModuleNode, ...]:
    """``Analysis.modules`` from its JSON form (a document before 1.4 has none)."""
    return tuple(ModuleNode(**(d | {"output_shape": tuple(d["output_shape"])})) for d in items or ())


def other_ops_from_dict(items: list[dict[str, Any]] | None) -> tuple[OpCategory, ...]:
    """``Analysis.other_ops`` from its JSON form (a document before 1.4 has none)."""
    return tuple(OpCategory(**(d | {"ops": tuple(d["ops"])})) for d in items or ())
