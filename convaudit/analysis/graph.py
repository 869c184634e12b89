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
    """nx.DiGraph of the fx graph without get_attr nodes; attributes: op, label, macs, conv, stack, type.

    NB: written straight into the DiGraph's own tables (``_node``, ``_succ``, ``_pred``), as ``add_node`` and
    ``add_edge`` would (same orders, one attribute dict per node, one data dict per edge shared by both
    directions), without their per-call checks: those cost more than the rest of the graph view.
    """
    g = nx.DiGraph()
    table, succ, pred = g._node, g._succ, g._pred
    names: dict[Any, str] = {}  # class → qualified name: every node repeats its containers' classes
    pairs: dict[int, tuple[Any, Any, tuple[str, str]]] = {}  # see _stack
    for node in graph.nodes:
        op = node.op
        if op == "get_attr":
            continue
        target = node.target
        label = target if isinstance(target, str) else getattr(target, "__name__", str(target))
        stack = _stack(node, names, pairs)
        own = ""
        if op == "call_module":  # the module itself is a leaf of the tree, not a container
            own = stack[-1][1] if stack else _module_type(graph, str(target))
            stack = stack[:-1]
        name = node.name
        attributes = {
            "op": op,
            "label": str(label),
            "macs": macs.get(name, 0),
            "conv": convs.get(name),
            "stack": stack,
            "type": own,
        }
        if name in table:  # already an edge's end (a graph out of order): add_node updates it
            table[name].update(attributes)
        else:
            table[name], succ[name], pred[name] = attributes, {}, {}
        for src in node.all_input_nodes:
            if src.op == "get_attr":
                continue
            source = src.name
            if source not in table:  # add_edge adds its ends
                table[source], succ[source], pred[source] = {}, {}, {}
            if name not in succ[source]:
                succ[source][name] = pred[name][source] = {}
    return g


def graph_view(g: nx.DiGraph, max_nodes: int = MAX_DRAWN_NODES) -> GraphView:
    """The view: the module tree, and at most ``max_nodes`` nodes (deeper modules collapsed, ``truncated``).

    Layered layout of the flat view: depth = longest path from an input, lane = order within that depth.
    """
    truncated = g.number_of_nodes() > max_nodes
    if truncated:
        g = _collapsed(g, max_nodes) or _contract(g, [n for n, d in g.nodes(data=True) if _kept_when_flat(d)])
    order, depth = _layers(g)
    lanes: dict[int, int] = {}
    nodes = []
    table = g._node  # NB: not g.nodes, whose every lookup is a Python call
    for node in order:
        d = table[node]
        layer = depth[node]
        lane = lanes.get(layer, 0)
        lanes[layer] = lane + 1
        stack = d.get("stack", ())
        module = stack[-1][0] if stack else ""
        nodes.append(
            GraphNode(
                id=node,
                op=d["op"],
                label=d["label"],
                macs=d["macs"],
                conv=d["conv"],
                depth=layer,
                lane=lane,
                module=module,
                type=d.get("type", ""),
            )
        )
    edges = tuple((a, b) for a, b in g.edges)
    return GraphView(nodes=tuple(nodes), edges=edges, truncated=truncated, modules=_modules(table[n] for n in order))


def _layers(g: nx.DiGraph) -> tuple[list[Any], dict[Any, int]]:
    """``nx.topological_sort``'s order, and each node's depth (the longest path from an input to it).

    NB: the sort runs by generations (Kahn's algorithm), and a node's generation is its depth: both in one pass
    over the DiGraph's tables, as the sort itself walks them.
    """
    succ, pred = g._succ, g._pred
    waiting = {v: len(pred[v]) for v in succ if pred[v]}
    generation = [v for v in succ if not pred[v]]
    order: list[Any] = []
    depth: dict[Any, int] = {}
    level = 0
    while generation:
        order += generation
        depth.update(dict.fromkeys(generation, level))
        after = []
        for node in generation:
            for child in succ[node]:
                waiting[child] -= 1
                if not waiting[child]:
                    after.append(child)
                    del waiting[child]
        generation, level = after, level + 1
    if waiting:
        raise nx.NetworkXUnfeasible("Graph contains a cycle or graph changed during iteration")
    return order, depth


def _stack(node: torch.fx.Node, names: dict[Any, str], pairs: dict[int, tuple[Any, Any, tuple[str, str]]]) -> Stack:
    """The containers a node runs in, from the tracer's ``nn_module_stack`` (empty when it recorded none).

    ``names``: the qualified name of each class seen so far; ``pairs``: each entry's (key, class name) by the
    id of its value (both filled in). NB: the tracer copies one stack into every node, so nodes share their
    entries' objects; kept alive here, checked by identity, an entry is read once.
    """
    out = []
    for key, value in (node.meta.get("nn_module_stack") or {}).items():
        known = pairs.get(id(value))
        if known is None or known[0] is not key or known[1] is not value:
            known = pairs[id(value)] = (key, value, _container(key, value, names))
        out.append(known[2])
    return tuple(out)


def _container(key: Any, value: Any, names: dict[Any, str]) -> tuple[str, str]:
    cls = value[1] if isinstance(value, tuple) and len(value) > 1 else None
    try:
        name = names[cls]
    except KeyError:
        name = names[cls] = f"{cls.__module__}.{cls.__qualname__}" if isinstance(cls, type) else str(cls or "")
    except TypeError:  # an unhashable entry
        name = str(cls or "")
    return (str(key), name)


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
        parent, macs = "", d["macs"]
        for key, cls in d.get("stack", ()):
            entry = seen.get(key)
            if entry is None:
                entry = seen[key] = [cls, parent, 0, 0]
            entry[2] += macs
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
