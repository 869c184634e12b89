"""The traced graph as a networkx DiGraph (node = op, edge = tensor), laid out for the report."""

from __future__ import annotations

import networkx as nx
import torch.fx

from convaudit.documents.records import GraphNode, GraphView

__all__ = ["MAX_DRAWN_NODES", "build_graph", "graph_view"]

#: Above this many nodes the report draws only conv nodes and the ops between them are elided.
MAX_DRAWN_NODES = 2500


def build_graph(graph: torch.fx.Graph, macs: dict[str, int], convs: dict[str, str]) -> nx.DiGraph:
    """nx.DiGraph of the fx graph without get_attr nodes; attributes: op, label, macs, conv."""
    g = nx.DiGraph()
    for node in graph.nodes:
        if node.op == "get_attr":
            continue
        label = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
        g.add_node(node.name, op=node.op, label=str(label), macs=macs.get(node.name, 0), conv=convs.get(node.name))
        for src in node.all_input_nodes:
            if src.op != "get_attr":
                g.add_edge(src.name, node.name)
    return g


def graph_view(g: nx.DiGraph) -> GraphView:
    """Layered layout: depth = longest path from an input, lane = order within that depth."""
    truncated = g.number_of_nodes() > MAX_DRAWN_NODES
    if truncated:
        keep = [n for n, d in g.nodes(data=True) if d["conv"] or d["op"] in ("placeholder", "output")]
        g = _contract(g, keep)
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
        nodes.append(
            GraphNode(
                id=node, op=d["op"], label=d["label"], macs=d["macs"], conv=d["conv"], depth=depth[node], lane=lane
            )
        )
    return GraphView(nodes=tuple(nodes), edges=tuple((a, b) for a, b in g.edges), truncated=truncated)


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
