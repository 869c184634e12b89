"""The traced graph as a record: op nodes (with their module) and the module tree they sit in.

Torch-free, like every document. ``GraphView`` is what ``Analysis.graph`` holds; ``GraphModule`` is one
container module of the model (a ``Bottleneck``, a ``Sequential`` stage) so a renderer can draw blocks
collapsed to their module and expand them. Fields added in schema 1.4 have defaults, and
:meth:`GraphView.from_dict` reads 1.0–1.3 documents (no module tree: a renderer draws the graph flat).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["GraphModule", "GraphNode", "GraphView"]


@dataclass(frozen=True)
class GraphNode:
    """One node of the traced graph: an op, a leaf module call, or a collapsed module (``op="module"``)."""

    id: str
    op: str  #: placeholder | call_module | call_function | call_method | output | module (collapsed, 1.4)
    label: str  #: the target: a module path, a function or method name, an input's name
    macs: int
    conv: str | None  #: name of the ConvLayer this node calls, if any
    depth: int  #: longest path from an input (column of the flat layered layout)
    lane: int  #: position among nodes of the same depth
    module: str = ""  #: path of the innermost container module the op runs in; "" = the model itself (1.4)
    type: str = ""  #: the module class of a call_module or collapsed node (qualified), else "" (1.4)


@dataclass(frozen=True)
class GraphModule:
    """A container module whose ops are in the graph: the unit the report collapses and expands."""

    path: str  #: qualified module name, e.g. "layer1.0"
    type: str  #: qualified class name, e.g. "torchvision.models.resnet.Bottleneck"
    parent: str  #: path of the enclosing container; "" = the model itself
    macs: int  #: summed over the nodes inside, at any depth
    nodes: int  #: graph nodes inside, at any depth


@dataclass(frozen=True)
class GraphView:
    """The traced graph (built with networkx): nodes with layout, edges as (src, dst) ids, the module tree."""

    nodes: tuple[GraphNode, ...]
    edges: tuple[tuple[str, str], ...]
    #: true when the graph was too large to draw in full: modules below a depth are collapsed to one node
    #: each (``op="module"``); before 1.4, only convs, inputs and outputs were kept
    truncated: bool = False
    modules: tuple[GraphModule, ...] = ()  #: container modules, parents before children, in graph order (1.4)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GraphView:
        """Rebuild from ``to_dict()`` output; a 1.0–1.3 graph has no module tree."""
        return cls(
            nodes=tuple(GraphNode(**n) for n in data["nodes"]),
            edges=tuple((str(a), str(b)) for a, b in data["edges"]),
            truncated=bool(data.get("truncated", False)),
            modules=tuple(GraphModule(**m) for m in data.get("modules", ())),
        )
