"""The whole model as a tree: each module's params, MACs, calls and output shape, from the analysis's one pass.

Nothing runs again. On the fx path every call node's MACs go to the innermost module on its
``nn_module_stack`` (a leaf module's own call node names itself); calls are the distinct entries of that
stack (fx keys a module's second call ``name@1``), and a module's output is that of the last node its
first call ran. On the hook and real paths the forward's recorder wrote down which module ran each aten op
(:attr:`~convaudit.analysis.forward.ForwardRun.owners`) and each module's calls and first output.

Subtrees are summed bottom-up, so the root's MACs are the analysis's total exactly and its params the
model's (each parameter once, at the first module holding it). Functional ops, those not inside a leaf
module (``x + y``, ``F.relu``, ``.view()``), are also summed by category (:class:`OpCategory`).
NB: a leaf module's MACs stay its own, not its children's (a ``--leaf`` block, ``nn.MultiheadAttention``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn as nn

from convaudit.analysis.adapters import is_conv_module
from convaudit.analysis.paths import Seen
from convaudit.analysis.propagation import Call
from convaudit.analysis.rules.costs import CATEGORY
from convaudit.analysis.totals import op_label
from convaudit.documents.records import ConvLayer
from convaudit.documents.tree import ModuleNode, OpCategory
from convaudit.vocab import TracePath

__all__ = ["module_tree"]

Shape = tuple[int, ...]


class _Figures:
    """Per module name: the MACs of its direct ops, its calls, its first output shape."""

    def __init__(self) -> None:
        self.macs: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.outputs: dict[str, Shape] = {}
        self.ops: dict[str, list[Any]] = {}  #: category → [calls, MACs, Counter of label → MACs]

    def op(self, category: str, label: str, macs: int) -> None:
        row = self.ops.setdefault(category, [0, 0, Counter()])
        row[0] += 1
        row[1] += macs
        row[2][label] += macs


def module_tree(
    model: nn.Module,
    seen: Seen,
    costs: Sequence[tuple[int, str, bool]],
    layers: Iterable[ConvLayer],
    named: Sequence[tuple[str, nn.Module]] | None = None,
) -> tuple[tuple[ModuleNode, ...], tuple[OpCategory, ...]]:
    """Every module of ``model`` in pre-order with its subtree's figures, and the functional ops by category.

    Args:
        seen: what the path showed (fx: its call nodes and trace; hooks/real: the forward's record).
        costs: fx only: :func:`~convaudit.analysis.totals.call_cost` of each call, as the totals summed them.
        named: ``list(model.named_modules())`` when the caller has it.
    """
    named = list(model.named_modules()) if named is None else list(named)  # pre-order, each module once
    index = dict(named)
    if seen.path is TracePath.FX and seen.traced is not None:
        figures = _fx_figures(seen.calls, costs, seen.traced.graph, index)
    elif seen.run is not None:
        figures = _forward_figures(seen.run, index)
    else:  # NB: no record of where ops ran; the tree keeps params and shapes only
        figures = _Figures()
    convs = {layer.name for layer in layers if layer.op == "module"}
    params = _direct_params(named)
    macs = {name: figures.macs[name] for name, _ in named}
    total_params = dict(params)
    for name, _ in reversed(named):  # children come after their parent: sum bottom-up
        if name:
            parent = _parent(name, index)
            macs[parent] += macs[name]
            total_params[parent] += total_params[name]
    nodes = tuple(
        ModuleNode(
            name=name,
            type=type(module).__name__,
            depth=name.count(".") + 1 if name else 0,
            params=total_params[name],
            macs=macs[name],
            direct_macs=figures.macs[name],
            calls=figures.calls[name],
            output_shape=figures.outputs.get(name, ()),
            conv=name if name in convs and name else None,
        )
        for name, module in named
    )
    return nodes, _categories(figures)


def _direct_params(named: list[tuple[str, nn.Module]]) -> dict[str, int]:
    """Each module's own parameters, a shared one counted at its first owner only."""
    seen: set[int] = set()
    out: dict[str, int] = {}
    for name, module in named:
        own = 0
        for p in module._parameters.values():
            if p is not None and id(p) not in seen:
                seen.add(id(p))
                own += p.numel()
        out[name] = own
    return out


def _parent(name: str, index: dict[str, nn.Module]) -> str:
    """The nearest listed ancestor of a module name ("" for the root)."""
    while name:
        name = name.rpartition(".")[0]
        if name in index:
            return name
    return ""


def _listed(name: str, index: dict[str, nn.Module]) -> str:
    """``name`` when it is a listed module, else its nearest listed ancestor."""
    return name if name in index else _parent(name, index)


def _fx_figures(
    calls: Sequence[Call], costs: Sequence[tuple[int, str, bool]], graph: torch.fx.Graph, index: dict[str, nn.Module]
) -> _Figures:
    figures = _Figures()
    by_node: dict[str, Call] = {}
    for call, (macs, category, _) in zip(calls, costs, strict=True):
        by_node[call.node_name] = call
        module = call.name if call.node_op == "call_module" else call.owner
        figures.macs[_listed(module, index)] += macs
        if call.node_op != "call_module":
            figures.op(category, op_label(call), macs)
    firsts: dict[str, str] = {}  # the stack key of each module's first call → the module
    last: dict[str, str] = {}  # module → the last node its first call ran
    later: set[str] = set()  # the keys of later calls
    out_node = None
    for node in graph.nodes:
        if node.op == "output":
            out_node = node
            continue
        stack = node.meta.get("nn_module_stack")
        if not stack or node.name not in by_node:
            continue
        for key, entry in stack.items():
            path = firsts.get(key)
            if path is not None:
                last[path] = node.name
            elif key not in later:  # a call seen for the first time
                path = entry[0] if isinstance(entry, tuple) else str(entry)
                figures.calls[path] += 1
                if path in last:
                    later.add(key)
                else:
                    firsts[key] = path
                    last[path] = node.name
    for path, node_name in last.items():
        figures.outputs[path] = _shape_of(by_node[node_name].out)
    if calls:
        figures.calls[""] = 1
        result = out_node.args[0] if out_node is not None and out_node.args else None
        picked = by_node.get(result.name) if isinstance(result, torch.fx.Node) else None
        figures.outputs[""] = _shape_of(picked.out if picked is not None else calls[-1].out)
    return figures


def _forward_figures(run: Any, index: dict[str, nn.Module]) -> _Figures:
    figures = _Figures()
    leaves: dict[str, bool] = {}
    categories: dict[str, str] = {}
    for op, owner in zip(run.aten, run.owners, strict=True):
        name = _listed(owner, index)
        figures.macs[name] += op.macs
        leaf = leaves.get(name)
        if leaf is None:
            leaf = leaves[name] = _is_leaf(index[name])
        if not leaf:
            category = categories.get(op.name)
            if category is None:
                category = categories[op.name] = _aten_category(op.name)
            figures.op(category, op.name, op.macs)
    figures.calls.update(run.module_calls)
    figures.outputs.update(run.module_outputs)
    return figures


def _is_leaf(module: nn.Module) -> bool:
    """As the tracer decides: torch.nn's own modules (not Sequential) and convs run as one call."""
    if is_conv_module(module):
        return True
    owner = type(module).__module__
    return owner.startswith(("torch.nn", "torch.ao.nn")) and not isinstance(module, nn.Sequential)


def _aten_category(name: str) -> str:
    packet = getattr(torch.ops.aten, name.removeprefix("aten."), None)
    try:
        return CATEGORY.get(packet, "other")
    except TypeError:
        return "other"


def _shape_of(value: Any) -> Shape:
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    if isinstance(value, (tuple, list)):
        return next((tuple(v.shape) for v in value if isinstance(v, torch.Tensor)), ())
    return ()


def _categories(figures: _Figures) -> tuple[OpCategory, ...]:
    rows = [
        OpCategory(category, calls, macs, tuple(label for label, _ in labels.most_common()))
        for category, (calls, macs, labels) in figures.ops.items()
    ]
    rows.sort(key=lambda r: (-r.macs, -r.calls, r.category))
    return tuple(rows)
