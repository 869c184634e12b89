"""The graph view: the module tree its ops sit in, the bound on its size, and names that try to escape."""

from __future__ import annotations

import json
import re

import networkx as nx
import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

import convaudit
from convaudit.analysis.graph import MAX_DRAWN_NODES, build_graph, graph_view
from convaudit.analysis.tracing import trace
from convaudit.documents.graph import GraphView
from convaudit.formats.html import render_html
from convaudit.formats.html_graph import CONTAINER, MAX_OPEN, graph_data, initial_depth, ranked, tree_data
from tests.fixtures import nets
from tests.fixtures.graphs import EVIL, Blocks, Deep, EvilBlocks

SHAPE = (1, 3, 16, 16)


def test_graph_mirrors_the_traced_graph() -> None:
    g = build_graph(trace(nets.SharedConv()).graph, {"conv": 5}, {"conv": "conv"})
    assert isinstance(g, nx.DiGraph) and nx.is_directed_acyclic_graph(g)
    assert next(iter(nx.topological_sort(g))) == "x" and g.nodes["conv"]["macs"] == 5
    assert g.number_of_edges() == 4  # x → conv → conv_1 → conv_2 → output


def test_layout_depths_follow_edges() -> None:
    a = convaudit.analyze(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3)), input_shape=(1, 3, 9, 9))
    depth = {n.id: n.depth for n in a.graph.nodes}
    assert all(depth[s] < depth[d] for s, d in a.graph.edges) and not a.graph.truncated


def test_large_flat_graphs_keep_convs_and_their_connections() -> None:
    """No module to collapse (every op at the top level): only convs, joined where paths ran."""
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


def qualified(m: nn.Module) -> str:
    return f"{type(m).__module__}.{type(m).__qualname__}"


@pytest.fixture(scope="module")
def blocks() -> tuple[nn.Module, convaudit.Analysis]:
    model = Blocks()
    return model, convaudit.analyze(model, input_shape=SHAPE, cross_check=False)


def test_the_module_tree_is_the_models(blocks) -> None:
    """Oracle: ``named_modules()``: every container with ops inside, its class and its parent; leaves are ops."""
    model, a = blocks
    g = a.graph
    named = dict(model.named_modules())
    containers = {p for p, m in named.items() if p and any(True for _ in m.children())}
    assert [m.path for m in g.modules] == [p for p in named if p in containers]  # parents first, model order
    for m in g.modules:
        assert m.type == qualified(named[m.path])
        assert m.parent == (m.path.rsplit(".", 1)[0] if "." in m.path else "")
    for n in g.nodes:
        if n.op == "call_module":
            assert n.module == (n.label.rsplit(".", 1)[0] if "." in n.label else "")
            assert n.type == qualified(named[n.label]) and n.label not in containers
    add = [n for n in g.nodes if n.op == "call_function" and n.label == "add"]
    assert [n.module for n in add] == ["stage1.0", "stage1.1", "stage2.0", "stage2.1"]  # functional ops: their block


def test_module_macs_are_flop_counters(blocks) -> None:
    """A container's MACs are FlopCounterMode's FLOPs of that module, halved."""
    model, a = blocks
    with FlopCounterMode(display=False) as counter:
        model(torch.randn(SHAPE))
    flops = {k: sum(v.values()) for k, v in counter.get_flop_counts().items()}
    for m in a.graph.modules:
        assert 2 * m.macs == flops[f"Blocks.{m.path}"], m.path
        assert m.nodes == sum(1 for n in a.graph.nodes if (n.module + ".").startswith(m.path + "."))
    assert 2 * sum(n.macs for n in a.graph.nodes) == flops["Global"] == 2 * a.totals.macs


def test_the_graph_round_trips(blocks) -> None:
    _, a = blocks
    assert GraphView.from_dict(json.loads(json.dumps(a.to_dict()["graph"]))) == a.graph


def test_old_graphs_have_no_tree(blocks) -> None:
    """A 1.3 graph (no modules, nodes without module/type) reads, and the page draws it flat."""
    _, a = blocks
    doc = a.to_dict()["graph"]
    doc.pop("modules")
    for n in doc["nodes"]:
        del n["module"], n["type"]
    old = GraphView.from_dict(doc)
    assert old.modules == () and {n.module for n in old.nodes} == {""}
    data = tree_data(type(a)(**{**a.__dict__, "graph": old}))
    assert data is not None and {it[5] for it in data["items"][1:]} == {0}


def test_first_view_collapses_blocks(blocks) -> None:
    """Stages open, blocks closed while few boxes are visible; a block's projection sits beside its first conv."""
    _, a = blocks
    data = tree_data(a)
    assert data is not None
    items = data["items"]
    assert [items[i][0] for i in data["open"]][:2] == ["", "stem"] and initial_depth(items) == 3  # all fits
    # level 1 shows x, stem (3 ops), stage1 (2 blocks), stage2 (2 blocks), pool, flatten, head, output: 15 boxes
    assert (initial_depth(items, budget=15), initial_depth(items, budget=14)) == (1, 0)
    index = {it[0]: i for i, it in enumerate(items)}
    conv1, down = items[index["stage2.0.conv1"]], items[index["stage2.0.down"]]
    assert (conv1[6], down[6]) == (0, 0) and {conv1[7], down[7]} == {0, 1}  # one rank, side by side
    assert items[index["stage2.0.conv2"]][6] > conv1[6]
    assert items[index["stage2.0"]][4] == next(m.macs for m in a.graph.modules if m.path == "stage2.0")


def test_ranks_follow_the_edges() -> None:
    """In a diamond a→(b, c)→d inside one container, b and c share a rank; a back edge is ignored."""
    parents = [-1, 0, 0, 0, 0]
    ranks = ranked(parents, [[1, 2], [1, 3], [2, 4], [3, 4], [4, 1]])
    assert [ranks[i][0] for i in (1, 2, 3, 4)] == [0, 1, 1, 2]
    assert sorted(ranks[i][1] for i in (2, 3)) == [0, 1]


def test_the_view_is_bounded() -> None:
    """Too many nodes: the deepest modules that fit are collapsed (MACs kept), never more than the bound."""
    model = Deep(width=6, depth=8)
    a = convaudit.analyze(model, input_shape=(1, 4, 8, 8), cross_check=False)
    traced = torch.fx.symbolic_trace(model)
    full = build_graph(traced.graph, {n.id: n.macs for n in a.graph.nodes}, {})
    assert full.number_of_nodes() == len(a.graph.nodes) == 146
    # stages (1) → 6 stages (2) → 8 blocks each (3) → 3 ops each; + input and output
    for bound, drawn, level in ((100, 50, 3), (49, 8, 2), (8, 8, 2), (7, 3, 1), (3, 3, 1)):
        view = graph_view(full, max_nodes=bound)
        assert view.truncated and len(view.nodes) == drawn <= bound
        collapsed = [n for n in view.nodes if n.op == "module"]
        assert len(collapsed) == drawn - 2 and all(n.label.count(".") == level - 1 for n in collapsed)
        assert sum(n.macs for n in view.nodes) == a.totals.macs  # MACs kept by the module that holds them
        assert not {m.path for m in view.modules} & {n.label for n in collapsed}  # collapsed: not expandable
        assert all(n.type == "torch.nn.modules.container.Sequential" for n in collapsed)
    flat = graph_view(full, max_nodes=2)  # not even the top module fits: convs only, as before 1.4
    assert flat.truncated and all(n.conv or n.op in ("placeholder", "output") for n in flat.nodes)
    assert not graph_view(full).truncated


def test_first_view_opens_at_most_max_open_boxes() -> None:
    a = convaudit.analyze(Deep(width=6, depth=8), input_shape=(1, 4, 8, 8), cross_check=False)
    data = tree_data(a)
    assert data is not None
    shown = [it for it in data["items"][1:] if it[5] in data["open"]]
    assert 0 < len(shown) <= MAX_OPEN
    assert all(data["items"][i][2] == CONTAINER for i in data["open"])


def test_names_cannot_escape_the_page() -> None:
    """A module named to close the script block stays data: escaped in the JSON, whole when parsed."""
    a = convaudit.analyze(EvilBlocks(), input_shape=(1, 3, 8, 8), cross_check=False)
    assert [m.path for m in a.graph.modules] == [EVIL]
    page = render_html(a)
    block = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    assert block is not None and "<" not in block.group(1) and "&" not in block.group(1)
    names = {it[0] for it in json.loads(block.group(1))["graph"]["items"]}
    assert {EVIL, f"{EVIL}.{EVIL}", f"{EVIL}.<b>&amp;"} <= names
    assert page.count("<script>alert(1)") == 0
    assert graph_data(a)["graph"] == json.loads(block.group(1))["graph"]


# ---------------------------------------------------------------- the fast paths, against networkx and the constructors


def test_build_graph_fills_the_tables_as_networkx_would() -> None:
    """Oracle: the same nodes and edges added by networkx's own add_node/add_edge, in graph order."""
    traced = trace(Blocks())
    fast = build_graph(traced.graph, {}, {})
    slow = nx.DiGraph()
    for node in traced.graph.nodes:
        if node.op != "get_attr":
            slow.add_node(node.name, **fast.nodes[node.name])
            for src in node.all_input_nodes:
                if src.op != "get_attr":
                    slow.add_edge(src.name, node.name)
    assert list(fast.nodes(data=True)) == list(slow.nodes(data=True))
    assert list(fast.edges) == list(slow.edges)
    assert [list(p) for p in fast.pred.values()] == [list(p) for p in slow.pred.values()]
    assert all(fast.succ[a][b] is fast.pred[b][a] for a, b in fast.edges)  # one data dict per edge, as add_edge


@pytest.mark.parametrize("seed", range(5))
def test_the_layout_is_networkx_topological_sort_and_longest_paths(seed: int) -> None:
    import random

    rng = random.Random(seed)
    g = nx.DiGraph()
    names = [f"n{i}" for i in range(40)]
    rng.shuffle(names)  # node order unlike any topological order
    for n in names:
        g.add_node(n, op="call_function", label=n, macs=1, conv=None, stack=())
    for i in range(40):
        for j in range(i + 1, 40):
            if rng.random() < 0.1:
                g.add_edge(f"n{i}", f"n{j}")
    view = graph_view(g)
    order = list(nx.topological_sort(g))
    assert [n.id for n in view.nodes] == order
    longest = {
        n: max((len(p) - 1 for s in g if not g.in_degree(s) for p in nx.all_simple_paths(g, s, n)), default=0)
        for n in g
    }
    assert {n.id: n.depth for n in view.nodes} == {n: 0 if not g.in_degree(n) else longest[n] for n in g}
    assert view.edges == tuple(g.edges)
    g.add_edge(order[-1], order[0])
    with pytest.raises(nx.NetworkXUnfeasible):
        graph_view(g)
