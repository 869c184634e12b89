"""The HTML report's graph: the module tree with its ops, ranked for a nested top-to-bottom drawing.

Why hand-written SVG and not a bundled library: the graph a reviewer needs is a *tree of blocks*, each
block a small DAG (a Bottleneck is ~11 ops, a stage a chain of blocks), expanded and collapsed on click.
The graph work (which block holds an op, each block's children ranked by longest path and ordered by
barycentre) is done here in Python, once, and tested here; the page's script (``templates/graph.js``,
~15 kB) only sizes and nests boxes and handles zoom, pan and clicks. The offline libraries that lay out
compound graphs weigh more than a whole report (resnet50's is ~170 kB): cytoscape.js 3.35 is 443 kB
minified and lays compound nodes out well only with force-directed extensions (fcose, cola), not in
layers; dagre 0.8.5 (284 kB minified, graphlib and lodash inside, unreleased since 2019) is layered but
weak on nested clusters; elkjs 0.12 does layered compound layout properly but is 1.6 MB. Every report
(and every page of a batch) would grow 3–10× for a layout no better on these block-structured DAGs.

Everything from the model (module names, types, op names) reaches the page only as JSON in a
``<script type="application/json">`` block (``templating.script_json`` escapes ``<``, ``>``, ``&``) and
is put into the SVG with ``textContent``.
"""

from __future__ import annotations

from typing import Any

from convaudit.documents.records import Analysis

__all__ = ["MAX_OPEN", "SHARE_BINS", "graph_data", "graph_meta", "initial_depth", "ranked", "tree_data"]

#: The first view opens modules level by level while at most this many boxes are visible.
MAX_OPEN = 60
#: Colour bins of a box's share of the model's MACs (upper bounds; the last bin is everything above).
SHARE_BINS = (0.005, 0.01, 0.02, 0.04, 0.08, 0.16)

#: What a box says an op is when it is not a module call.
_OPS = {"call_function": "function", "call_method": "method", "placeholder": "input", "output": "output"}
#: Item kinds: a container (expandable), a module collapsed in the analysis (too deep), an op, an input/output.
CONTAINER, COLLAPSED, OP, IO = "c", "m", "n", "i"


def graph_meta(a: Analysis) -> dict[str, Any] | None:
    """What the template says about the graph: sizes, truncation, the colour legend; None without a graph."""
    g = a.graph
    if g is None:
        return None
    bounds = [0.0, *SHARE_BINS]
    legend = [{"cls": "s0", "label": "no MACs"}]
    legend += [{"cls": f"s{k + 1}", "label": f"< {_pct(hi)}"} for k, hi in enumerate(SHARE_BINS)]
    legend.append({"cls": f"s{len(SHARE_BINS) + 1}", "label": f"≥ {_pct(bounds[-1])}"})
    return {
        "nodes": len(g.nodes),
        "edges": len(g.edges),
        "modules": len(g.modules),
        "truncated": g.truncated,
        "collapsed": sum(1 for n in g.nodes if n.op == "module"),
        "legend": legend,
    }


def _pct(x: float) -> str:
    return f"{x:.1%}".replace(".0%", "%")


def graph_data(a: Analysis) -> dict[str, Any]:
    """The JSON for the page's script: conv rows by table index, and the graph (:func:`tree_data`)."""
    layers = [
        [
            layer.name,
            layer.kind,
            int(layer.candidate),
            layer.macs,
            layer.separable.dw_pw.macs if layer.separable else layer.macs,
        ]
        for layer in a.layers
    ]
    return {"layers": layers, "graph": tree_data(a)}


def tree_data(a: Analysis) -> dict[str, Any] | None:
    """The graph as compact arrays for ``graph.js``, or None without a graph.

    ``items[i] = [name, label, kind, type, macs, parent, rank, order, layer, count]``: item 0 is the model;
    ``edges`` join op items; ``open`` lists the containers the first view shows expanded.
    """
    g = a.graph
    if g is None:
        return None
    index = {layer.name: i for i, layer in enumerate(a.layers)}
    items: list[list[Any]] = [["", a.model_class.rsplit(".", 1)[-1], CONTAINER, a.model_class, 0, -1, 0, 0, -1, 0]]
    where = {"": 0}
    for m in g.modules:
        where[m.path] = len(items)
        items.append([m.path, m.path, CONTAINER, m.type, m.macs, where.get(m.parent, 0), 0, 0, -1, m.nodes])
    node_item = {}
    for n in g.nodes:
        parent = where.get(n.module, 0)
        kind = IO if n.op in ("placeholder", "output") else COLLAPSED if n.op == "module" else OP
        node_item[n.id] = len(items)
        kind_of = n.type or _OPS.get(n.op, n.op)
        items.append(
            [n.label, _label(n.label, n.module, kind), kind, kind_of, n.macs, parent, 0, 0, _layer(n, index), 1]
        )
    items[0][4] = sum(n.macs for n in g.nodes)
    items[0][9] = len(g.nodes)
    edges = [[node_item[s], node_item[d]] for s, d in g.edges if s in node_item and d in node_item]
    for item, (rank, order) in ranked([it[5] for it in items], edges).items():
        items[item][6], items[item][7] = rank, order
    total = a.totals.macs or items[0][4] or 1
    level = initial_depth(items)
    return {
        "items": items,
        "edges": edges,
        "open": [i for i, it in enumerate(items) if it[2] == CONTAINER and _depth(items, i) <= level],
        "total": total,
        "bins": list(SHARE_BINS),
        "truncated": g.truncated,
    }


def _label(name: str, module: str, kind: str) -> str:
    """What a box shows: an op's name inside its module, a module's full path."""
    if kind == OP and module and name.startswith(module + "."):
        return name[len(module) + 1 :]
    return name


def _layer(node: Any, index: dict[str, int]) -> int:
    return index.get(node.conv, -1) if node.conv else -1


def _depth(items: list[list[Any]], i: int) -> int:
    """0 for the model, 1 for a top-level module, ..."""
    d = 0
    while items[i][5] >= 0:
        i, d = items[i][5], d + 1
    return d


def initial_depth(items: list[list[Any]], budget: int = MAX_OPEN) -> int:
    """The deepest container level the first view opens: all containers up to it, at most ``budget`` boxes."""
    depths = [_depth(items, i) for i in range(len(items))]
    deepest = max((d for d, it in zip(depths, items, strict=True) if it[2] == CONTAINER), default=0)
    best = 0
    for level in range(deepest + 1):
        visible = sum(1 for i, it in enumerate(items) if i and depths[it[5]] <= level)
        if visible > budget and level > 0:
            break
        best = level
    return best


def ranked(parents: list[int], edges: list[list[int]]) -> dict[int, tuple[int, int]]:
    """Per item, its (rank, order) among its siblings: the layered layout of each container's children.

    An edge between two ops joins, inside their lowest common container, the two children holding them;
    rank = longest path from the container's sources (in item order, so a back edge is ignored), order =
    position in the rank, sorted by the mean order of the predecessors (barycentre), then item order.
    """
    n = len(parents)
    chains = {}
    for i in range(n):
        chain, j = [], i
        while j >= 0:
            chain.append(j)
            j = parents[j]
        chains[i] = chain[::-1]  # model first
    first = _first_seen(parents, chains)
    preds: dict[int, list[int]] = {i: [] for i in range(n)}
    for s, d in edges:
        a, b = chains[s], chains[d]
        k = 0
        while a[k] == b[k]:  # two distinct ops: neither chain is a prefix of the other
            k += 1
        if first[a[k]] < first[b[k]]:  # children of the common container, forward edges only
            preds[b[k]].append(a[k])
    order = sorted(range(1, n), key=lambda i: first[i])
    rank: dict[int, int] = {}
    for i in order:
        rank[i] = max((rank[p] + 1 for p in preds[i] if p in rank), default=0)
    rows: dict[tuple[int, int], list[int]] = {}
    for i in order:
        rows.setdefault((parents[i], rank[i]), []).append(i)
    out: dict[int, tuple[int, int]] = {}
    for (_, r), members in sorted(rows.items(), key=lambda kv: kv[0][1]):

        def key(i: int) -> tuple[float, int]:
            ps = [out[p][1] for p in preds[i] if p in out]
            return (sum(ps) / len(ps) if ps else -1.0, first[i])

        for pos, i in enumerate(sorted(members, key=key)):
            out[i] = (r, pos)
    return out


def _first_seen(parents: list[int], chains: dict[int, list[int]]) -> dict[int, int]:
    """Item -> the graph position of its first op (ops are listed after containers, in graph order)."""
    containers = set(parents)
    ops = [i for i in range(len(parents)) if i not in containers]
    first: dict[int, int] = {}
    for pos, i in enumerate(ops):
        for c in chains[i]:
            first.setdefault(c, pos)
    for i in range(len(parents)):
        first.setdefault(i, len(ops))  # an empty container
    return first
