"""The layers named for an exceeded budget, and what converting them saves: checked by converting them."""

from pathlib import Path

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

import convaudit
from convaudit.documents.check import Culprit
from convaudit.review.budgets import Budget
from convaudit.review.check import analyse_for_check
from convaudit.review.explain import MAX_CULPRITS, explain, next_command


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.body = nn.Conv2d(16, 64, 3, padding=1)
        self.point = nn.Conv2d(64, 64, 1)
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.point(self.body(self.stem(x))).mean((2, 3)))


def macs_of(model: nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() // 2


@pytest.fixture(scope="module")
def case():
    torch.manual_seed(0)
    model, x = Net().eval(), torch.randn(1, 3, 32, 32)
    return model, x, analyse_for_check(model, (x,))


def test_the_costliest_layer_alone_when_it_is_enough_and_its_saving_is_real(case) -> None:
    model, x, analysis = case
    total = analysis.totals.macs
    culprits, after = explain(analysis, Budget("max-macs", total - 1, "--max-macs"), total)
    assert [c.name for c in culprits] == ["body"]  # the costliest candidate, and only it: it is enough
    (body,) = culprits
    order, _, m = body.form.partition(" m=")
    converted = convaudit.convert(model, x, include=("body",), rank=int(m), order=order).model
    assert macs_of(converted, x) == after == total - body.macs_saved  # the promise, measured
    path, _, line = (body.source or "").rpartition(":")
    assert Path(path).resolve() == Path(__file__).resolve()
    assert int(line) == Net.__init__.__code__.co_firstlineno + 3  # self.body = nn.Conv2d(...)


def test_costliest_first_and_the_figure_after_all_of_them(case) -> None:
    _, _, analysis = case
    total = analysis.totals.macs
    culprits, after = explain(analysis, Budget("max-macs", 1, "--max-macs"), total)
    savers = [Culprit.of_layer(x, total) for x in analysis.candidates]
    expected = sorted((c for c in savers if c.macs_saved > 0), key=lambda c: -c.macs)
    assert [c.name for c in culprits] == [c.name for c in expected]  # costliest first, only layers that save
    assert culprits and len(culprits) < len(savers)  # the 3-channel stem's form would cost more: not named
    assert after == total - sum(c.macs_saved for c in culprits) > 1
    params, after_p = explain(analysis, Budget("max-params", 1, "--max-params"), analysis.totals.params)
    assert [c.params for c in params] == sorted((c.params for c in params), reverse=True)
    assert after_p == analysis.totals.params - sum(c.params_saved for c in params)


def test_a_layer_budget_names_every_conv_over_it_candidate_or_not(case) -> None:
    _, _, analysis = case
    by_name = {layer.name: layer for layer in analysis.layers}
    limit = by_name["point"].macs - 1  # body and point are over, stem is not
    culprits, after = explain(analysis, Budget("max-layer-macs", limit, "--max-layer-macs"), by_name["body"].macs)
    assert [c.name for c in culprits] == ["body", "point"]
    point = culprits[1]
    assert point.form is None and point.action == "keep" and "pointwise" in point.reason
    assert after == by_name["point"].macs  # the pointwise conv stays over the limit: it cannot be converted


def test_a_share_budget_counts_converted_layers_out(case) -> None:
    _, _, analysis = case
    t = analysis.totals
    culprits, after = explain(analysis, Budget("max-candidate-share", 0.5, "--max-candidate-share"), 0.7)
    saved = sum(c.macs_saved for c in culprits)
    assert after == pytest.approx((t.candidate_macs - sum(c.macs for c in culprits)) / (t.macs - saved))


def test_latency_savings_are_only_of_layers_recommended_for_conversion(case) -> None:
    _, _, analysis = case
    culprits, _ = explain(analysis, Budget("max-latency", 1e-9, "--max-latency"), 1.0)
    assert culprits and len(culprits) <= MAX_CULPRITS
    for c in culprits:
        assert (c.seconds_saved != 0) == (c.action == "convert")


def culprit(name: str, action: str) -> Culprit:
    return Culprit(name, None, 10, 1, 0.5, None, action, "dw_pw m=1", 5, 0, 0.0, "why")


def test_the_next_command() -> None:
    both = [culprit("layer1.0.conv1", "convert"), culprit("stem", "keep"), culprit("layer 2", "convert")]
    assert next_command("my model.py", both) == (
        "convaudit convert 'my model.py' --include layer1.0.conv1 --include 'layer 2' -o converted/"
    )
    assert next_command("torchvision:resnet18", [culprit("stem", "keep")]) == (
        "convaudit report torchvision:resnet18 -o report.html"
    )
    assert next_command(None, both) is None
