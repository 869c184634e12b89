"""The module tree: per-module MACs against FlopCounterMode (FLOPs = 2·MACs), sums, params, three paths, folding.

Oracles: ``FlopCounterMode(display=False).get_flop_counts()`` is keyed by module path (``ResNet.layer1.0``)
and counts every op a module's subtree ran, as the tree's ``macs`` do; the root is the model's total.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torch.utils.flop_counter import FlopCounterMode

import convaudit
from convaudit.documents.records import Analysis
from convaudit.formats.tree import tree_rows
from convaudit.sources.inputs import materialize
from tests.fixtures import forwards


def flop_counter_macs(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """FlopCounterMode's MACs per module name ("" for the root), on an eval-mode real forward."""
    model = copy.deepcopy(model).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    root = type(model).__name__
    return {
        ("" if key == root else key.removeprefix(f"{root}.")): sum(counts.values()) // 2
        for key, counts in counter.get_flop_counts().items()
        if key != "Global"
    }


class Functional(nn.Module):
    """Functional ops at the root and in a block: matmuls outside any leaf module, a shared Linear, a parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.proj = nn.Parameter(torch.randn(8, 8) / 8)
        self.head = nn.Linear(8, 4)
        self.again = self.head  # shared: its parameters count once

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.stem(x))
        y = self.block(y) + y
        z = y.mean((2, 3)) @ self.proj  # a functional matmul at the root
        return self.head(z) + torch.matmul(z, self.head.weight.t())


def assert_tree_adds_up(a: Analysis) -> None:
    """Root = totals; each module = its direct ops + its children; params likewise."""
    nodes = a.modules
    assert nodes[0].name == "" and nodes[0].depth == 0
    assert nodes[0].macs == a.totals.macs and nodes[0].params == a.totals.params
    for node in nodes:
        kids = [n for n in nodes if n.depth == node.depth + 1 and n.name.rpartition(".")[0] == node.name]
        assert node.macs == node.direct_macs + sum(k.macs for k in kids), node.name
        assert node.params >= sum(k.params for k in kids), node.name


@pytest.mark.parametrize("path", ["fx", "hooks"])
def test_resnet18_modules_match_flop_counter(path: str) -> None:
    model = torchvision.models.resnet18()
    a = convaudit.analyze(model, input_shape=(1, 3, 64, 64), trace_path=path)
    assert a.trace_path == path
    oracle = flop_counter_macs(model, torch.randn(1, 3, 64, 64))
    ours = {n.name: n.macs for n in a.modules}
    assert {k: ours[k] for k in oracle} == oracle
    assert all(ours[k] == 0 for k in ours.keys() - oracle.keys())  # modules FlopCounterMode saw no FLOPs in
    assert_tree_adds_up(a)
    by = {n.name: n for n in a.modules}
    assert by["fc"].params == 513_000 and by["fc"].output_shape == (1, 1000) and by["fc"].type == "Linear"
    assert by["layer1.0.relu"].calls == 2 and by["layer1.0"].calls == 1 and by[""].calls == 1
    assert by["layer2.0.conv1"].conv == "layer2.0.conv1" and by["layer2.0"].conv is None
    assert by["layer3"].output_shape == (1, 256, 4, 4)


def test_functional_ops_on_fx_match_flop_counter_and_are_listed_by_category() -> None:
    model = Functional()
    a = convaudit.analyze(model, input_shape=(2, 3, 8, 8))
    assert a.trace_path == "fx"
    oracle = flop_counter_macs(model, torch.randn(2, 3, 8, 8))
    ours = {n.name: n.macs for n in a.modules}
    assert {k: ours[k] for k in oracle} == oracle
    assert_tree_adds_up(a)
    root = a.modules[0]
    assert root.direct_macs == 2 * 8 * 8 + 2 * 8 * 4  # the two matmuls at the root, outside any module
    assert root.params == sum(p.numel() for p in model.parameters()) == a.totals.params  # head once
    assert "again" not in {n.name for n in a.modules}  # a shared module is listed once, under its first name
    cats = {c.category: c for c in a.other_ops}
    assert cats["linear algebra"].macs == root.direct_macs and "operator.matmul" in cats["linear algebra"].ops
    assert "elementwise" in cats and cats["elementwise"].calls >= 2  # the two additions (+ F.relu's category)


@pytest.mark.parametrize(
    "model, path",
    [(forwards.ShapeBranch(), "hooks"), (forwards.Gate(), "real")],
    ids=["hooks: python branch on a shape", "real: branch on a value"],
)
def test_the_fallback_paths_attribute_every_op(model: nn.Module, path: str) -> None:
    a = convaudit.analyze(model, input_shape=(1, 3, 16, 16))
    assert a.trace_path == path
    x = materialize(torch.empty(1, 3, 16, 16, device="meta"))  # what the real path ran on (seeded)
    oracle = flop_counter_macs(model, x)
    ours = {n.name: n.macs for n in a.modules}
    assert {k: ours[k] for k in oracle} == oracle
    assert_tree_adds_up(a)
    called = {n.name for n in a.modules if n.calls}
    assert called >= {"", "stem"} and all(n.output_shape for n in a.modules if n.calls)
    if path == "real":  # the branch not taken was never called
        assert ({"body", "skip"} - called) and a.modules[0].direct_macs == 2 * 16 * 16 * 8 * 8 * 9


def test_forcing_hooks_gives_the_fx_tree() -> None:
    model = torchvision.models.resnet18()
    fx = convaudit.analyze(model, input_shape=(1, 3, 32, 32))
    hooks = convaudit.analyze(model, input_shape=(1, 3, 32, 32), trace_path="hooks")
    keep = ("name", "type", "depth", "params", "macs", "calls", "output_shape", "conv")
    assert [[getattr(n, k) for k in keep] for n in fx.modules] == [[getattr(n, k) for k in keep] for n in hooks.modules]


@pytest.mark.parametrize("depth", [0, 1, 2, 3, 4])
def test_depth_folds_deeper_modules_into_their_row(depth: int) -> None:
    a = convaudit.analyze(torchvision.models.resnet18(), input_shape=(1, 3, 32, 32), depth=depth)
    assert a.tree_depth == depth
    rows = tree_rows(a)
    body, total = rows[:-1], rows[-1]
    assert total.total and total.macs == a.totals.macs and total.params == a.totals.params
    assert all(r.depth <= max(depth, 1) for r in body)
    top = [r for r in body if r.depth == 1]  # each level adds up to the level above
    assert sum(r.macs for r in top) == a.totals.macs and sum(r.params for r in top) == a.totals.params
    if depth >= 2:
        layer1 = next(i for i, r in enumerate(body) if r.name == "layer1")
        kids = [r for r in body[layer1 + 1 :] if r.depth == 2 and r.name.startswith("layer1.")]
        assert sum(r.macs for r in kids) == body[layer1].macs
    assert total.after_macs == a.totals.macs_after


def test_depth_is_validated() -> None:
    with pytest.raises(convaudit.errors.UsageError, match="--depth"):
        convaudit.AnalysisOptions(depth=-1)


def test_the_tree_round_trips_and_old_documents_read_without_one() -> None:
    a = convaudit.analyze(Functional(), input_shape=(2, 3, 8, 8), depth=2, graph=False)
    doc = a.to_dict()
    assert doc["modules"][0] == {
        "name": "",
        "type": "Functional",
        "depth": 0,
        "params": a.totals.params,
        "macs": a.totals.macs,
        "direct_macs": a.modules[0].direct_macs,
        "calls": 1,
        "output_shape": [2, 4],
        "conv": None,
    }
    assert Analysis.from_dict(doc) == a
    for old in ("1.0", "1.1", "1.2", "1.3"):
        legacy = {k: v for k, v in doc.items() if k not in ("modules", "other_ops", "tree_depth")}
        legacy["schema_version"] = old
        read = Analysis.from_dict(legacy)
        assert read.modules == () and read.other_ops == () and read.tree_depth == 3 and tree_rows(read) == []
