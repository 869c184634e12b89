"""The traced graph as a networkx DiGraph (node = op, edge = tensor), with the module tree it runs in.

Every fx node carries the modules it runs inside (``node.meta["nn_module_stack"]``, recorded by the
tracer; a ``call_module`` node's own module is the last entry): the report draws blocks collapsed to
these containers and expands them on click. The hooks and real paths have no fx graph, so no graph view.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import networkx as nx
import torch.fx

from convaudit.documents.graph import GraphModule, GraphNode, GraphView

__all__ = ["MAX_DRAWN_NODES", "build_graph", "graph_view"]

#: Above this many nodes the view collapses modules below the deepest depth that fits (``truncated``).
MAX_DRAWN_NODES = 2500

#: (key, qualified class) per container, outermost first; key = module path, "@k" on a module's k+1-th call.
Stack = tuple[tuple[str, str], ...]


def build_graph(graph: torch.fx.Graph, macs: dict[str, int], convs: dict[str, str]) -> nx.DiGraph:
    """nx.DiGraph of the fx graph without get_attr nodes; attributes: op, label, macs, conv, stack, type."""
    g = nx.DiGraph()
    names: dict[Any, str] = {}  # class → qualified name: every node repeats its containers' classes
    for node in graph.nodes:
        if node.op == "get_attr":
            continue
        label = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
        stack = _stack(node, names)
        own = ""
        if node.op == "call_module":  # the module itself is a leaf of the tree, not a container
            own = stack[-1][1] if stack else _module_type(graph, str(node.target))
            stack = stack[:-1]
        g.add_node(
            node.name,
            op=node.op,
            label=str(label),
            macs=macs.get(node.name, 0),
            conv=convs.get(node.name),
            stack=stack,
            type=own,
        )
        for src in node.all_input_nodes:
            if src.op != "get_attr":
                g.add_edge(src.name, node.name)
    return g


def graph_view(g: nx.DiGraph, max_nodes: int = MAX_DRAWN_NODES) -> GraphView:
    """The view: the module tree, and at most ``max_nodes`` nodes (deeper modules collapsed, ``truncated``).

    Layered layout of the flat view: depth = longest path from an input, lane = order within that depth.
    """
    truncated = g.number_of_nodes() > max_nodes
    if truncated:
        g = _collapsed(g, max_nodes) or _contract(g, [n for n, d in g.nodes(data=True) if _kept_when_flat(d)])
    order = list(nx.topological_sort(g))
    depth: dict[str, int] = {}
    for node in order:
        depth[node] = max((depth[p] + 1 for p in g.predecessors(node)), default=0)
    lanes: dict[int, int] = {}
    nodes = []
    for node in order:
        d = g.nodes[node]
        lane = lanes.get(depth[node], 0)
        lanes[depth[node]] = lane + 1
        stack = d.get("stack", ())
        nodes.append(
            GraphNode(
                id=node,
                op=d["op"],
                label=d["label"],
                macs=d["macs"],
                conv=d["conv"],
                depth=depth[node],
                lane=lane,
                module=stack[-1][0] if stack else "",
                type=d.get("type", ""),
            )
        )
    edges = tuple((a, b) for a, b in g.edges)
    return GraphView(nodes=tuple(nodes), edges=edges, truncated=truncated, modules=_modules(g.nodes[n] for n in order))


def _stack(node: torch.fx.Node, names: dict[Any, str]) -> Stack:
    """The containers a node runs in, from the tracer's ``nn_module_stack`` (empty when it recorded none).

    ``names``: the qualified name of each class seen so far (filled in here).
    """
    out = []
    for key, value in (node.meta.get("nn_module_stack") or {}).items():
        cls = value[1] if isinstance(value, tuple) and len(value) > 1 else None
        try:
            name = names[cls]
        except KeyError:
            name = names[cls] = f"{cls.__module__}.{cls.__qualname__}" if isinstance(cls, type) else str(cls or "")
        except TypeError:  # an unhashable entry
            name = str(cls or "")
        out.append((str(key), name))
    return tuple(out)


def _module_type(graph: torch.fx.Graph, target: str) -> str:
    """The class of a called module, looked up on the traced module when the stack is missing."""
    try:
        cls = type(graph.owning_module.get_submodule(target))  # type: ignore[union-attr]
    except (AttributeError, TypeError):
        return ""
    return f"{cls.__module__}.{cls.__qualname__}"


def _modules(nodes: Iterable[dict[str, Any]]) -> tuple[GraphModule, ...]:
    """Every container the nodes run in, parents first, with the MACs and node count inside it."""
    seen: dict[str, list[Any]] = {}  # key -> [type, parent, macs, nodes]
    for d in nodes:
        parent = ""
        for key, cls in d.get("stack", ()):
            entry = seen.setdefault(key, [cls, parent, 0, 0])
            entry[2] += d["macs"]
            entry[3] += 1
            parent = key
    return tuple(GraphModule(path=k, type=t, parent=p, macs=m, nodes=n) for k, (t, p, m, n) in seen.items())


def _collapsed(g: nx.DiGraph, max_nodes: int) -> nx.DiGraph | None:
    """The graph with every module at the deepest depth that fits collapsed to one node (op "module").

    None when even collapsing the top-level modules leaves too many nodes, or collapsing breaks acyclicity
    (a module entered, left and entered again in one call).
    """
    deepest = max((len(d.get("stack", ())) for _, d in g.nodes(data=True)), default=0)
    for level in range(deepest, 0, -1):
        groups = {n: d["stack"][level - 1][0] for n, d in g.nodes(data=True) if len(d.get("stack", ())) >= level}
        if g.number_of_nodes() - len(groups) + len(set(groups.values())) > max_nodes:
            continue
        out = nx.DiGraph()
        for n, d in g.nodes(data=True):
            if n not in groups:
                out.add_node(n, **d)
                continue
            key, stack = groups[n], d["stack"]
            rep = f"module:{key}"
            if rep not in out:
                out.add_node(
                    rep, op="module", label=key, macs=0, conv=None, stack=stack[: level - 1], type=stack[level - 1][1]
                )
            out.nodes[rep]["macs"] += d["macs"]
        for a, b in g.edges:
            a2, b2 = (f"module:{groups[x]}" if x in groups else x for x in (a, b))
            if a2 != b2:
                out.add_edge(a2, b2)
        return out if nx.is_directed_acyclic_graph(out) else None
    return None


def _kept_when_flat(d: dict[str, Any]) -> bool:
    return bool(d["conv"]) or d["op"] in ("placeholder", "output")


def _contract(g: nx.DiGraph, keep: list[str]) -> nx.DiGraph:
    """A graph on ``keep`` with an edge wherever a path of dropped nodes joined two kept ones.

    Nodes and edges come in the order of ``keep`` (graph order), so the same model gives the same view.
    """
    kept = set(keep)
    out = nx.DiGraph()
    out.add_nodes_from((n, g.nodes[n]) for n in keep)
    for n in keep:
        stack, seen = list(g.successors(n)), set()
        while stack:
            s = stack.pop()
            if s in seen:
                continue
            seen.add(s)
            if s in kept:
                out.add_edge(n, s)
            else:
                stack.extend(g.successors(s))
    return out
