"""The networkx graph and its layered layout."""

import networkx as nx
import torch.nn as nn

import convaudit
from convaudit.analysis.graph import MAX_DRAWN_NODES, build_graph, graph_view
from convaudit.analysis.tracing import trace
from tests.fixtures import nets


def test_graph_mirrors_the_traced_graph() -> None:
    g = build_graph(trace(nets.SharedConv()).graph, {"conv": 5}, {"conv": "conv"})
    assert isinstance(g, nx.DiGraph) and nx.is_directed_acyclic_graph(g)
    assert next(iter(nx.topological_sort(g))) == "x" and g.nodes["conv"]["macs"] == 5
    assert g.number_of_edges() == 4  # x → conv → conv_1 → conv_2 → output


def test_layout_depths_follow_edges() -> None:
    a = convaudit.analyze(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3)), input_shape=(1, 3, 9, 9))
    depth = {n.id: n.depth for n in a.graph.nodes}
    assert all(depth[s] < depth[d] for s, d in a.graph.edges) and not a.graph.truncated


def test_large_graphs_keep_convs_and_their_connections() -> None:
    blocks = [
        m for _ in range(MAX_DRAWN_NODES // 3 + 10) for m in (nn.Conv2d(2, 2, 3, padding=1), nn.ReLU(), nn.Identity())
    ]
    a = convaudit.analyze(nn.Sequential(*blocks), input_shape=(1, 2, 4, 4))
    view = a.graph
    assert view.truncated
    convs = [n for n in view.nodes if n.conv]
    assert len(convs) == len(a.layers) and len(view.nodes) == len(convs) + 2
    assert len(view.edges) == len(convs) + 1  # a chain: input → conv → … → output
    g = graph_view(nx.DiGraph())  # empty graphs are fine too
    assert g.nodes == ()
