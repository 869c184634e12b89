"""Choosing layers, multipliers and orders: globs, savings, energy, MAC budgets, auto order."""

import pytest
import torch
import torch.nn as nn

import convaudit
from convaudit.conversion.planning import plan_conversion, predicted_cost
from convaudit.errors import UsageError


class Three(nn.Module):
    """Three 3×3 convs with controlled separability, and a pointwise one."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Conv2d(8, 16, 3, padding=1, bias=False)  # random: far from separable
        self.b = nn.Conv2d(16, 16, 3, padding=1, bias=False)  # rank 1 per input channel: dw_pw exact at m=1
        self.c = nn.Conv2d(16, 16, 3, padding=1, bias=False)  # rank 1 per output channel: pw_dw exact at m=1
        self.p = nn.Conv2d(16, 4, 1)
        with torch.no_grad():
            self.b.weight.copy_(torch.einsum("oi,ikl->oikl", torch.randn(16, 16), torch.randn(16, 3, 3)))
            self.c.weight.copy_(torch.einsum("oi,okl->oikl", torch.randn(16, 16), torch.randn(16, 3, 3)))

    def forward(self, x):
        return self.p(self.c(self.b(self.a(x))))


@pytest.fixture(scope="module")
def analysis():
    return convaudit.analyze(Three(), input_shape=(1, 8, 12, 12), separability=True)


def test_rank_one_everywhere(analysis) -> None:
    plan = plan_conversion(analysis, rank=1)
    assert [c.name for c in plan.choices] == ["a", "b", "c"]
    assert plan.skipped == (("p", "pointwise 1×1: no spatial kernel to separate"),)
    assert plan.macs_after == analysis.totals.macs - sum(c.macs_before - c.macs_after for c in plan.choices)


def test_predicted_cost_matches_the_analysis_formula(analysis) -> None:
    for layer in analysis.candidates:
        assert predicted_cost(layer, "dw_pw", 1) == (layer.separable.dw_pw.params, layer.separable.dw_pw.macs)
        assert predicted_cost(layer, "pw_dw", 1) == (layer.separable.pw_dw.params, layer.separable.pw_dw.macs)


def test_globs(analysis) -> None:
    plan = plan_conversion(analysis, include=["a", "b*"], exclude=["b"])
    assert [c.name for c in plan.choices] == ["a"]
    assert ("b", "matched by --exclude") in plan.skipped and ("c", "not matched by --include") in plan.skipped
    with pytest.raises(UsageError, match=r"--include 'layer9\.\*' matches no conv; convs are named like a, b, c"):
        plan_conversion(analysis, include=["layer9.*"])


def test_energy_picks_the_smallest_sufficient_m(analysis) -> None:
    plan = plan_conversion(analysis, rank=None, energy=0.99)
    by = {c.name: c for c in plan.choices}
    assert by["b"].rank == 1 and by["b"].energy == pytest.approx(1.0)
    # 'a' is random: 99% of its energy needs m close to its full rank, which saves nothing
    skipped = dict(plan.skipped)
    assert "a" not in by and "needs m=9, which saves nothing" in skipped["a"]
    assert "c" not in by and "saves nothing" in skipped["c"]  # c is separable the other way round
    auto = {c.name: c for c in plan_conversion(analysis, rank=None, energy=0.99, order="auto").choices}
    assert (auto["c"].order, auto["c"].rank) == ("pw_dw", 1) and (auto["b"].order, auto["b"].rank) == ("dw_pw", 1)


def test_auto_order_prefers_the_form_that_fits(analysis) -> None:
    plan = plan_conversion(analysis, rank=1, order="auto")
    by = {c.name: c for c in plan.choices}
    assert by["b"].order == "dw_pw" and by["c"].order == "pw_dw"
    assert by["c"].energy == pytest.approx(1.0)


def test_min_savings(analysis) -> None:
    plan = plan_conversion(analysis, rank=4, min_savings=0.8)
    assert not plan.choices
    assert all("below --min-savings 80%" in why for n, why in plan.skipped if n != "p")


def test_full_rank_is_converted_with_a_note_when_it_saves_nothing(analysis) -> None:
    plan = plan_conversion(analysis, rank="full")
    assert len(plan.choices) == 3
    assert all(c.rank == 9 and c.note and "--rank full" in c.note for c in plan.choices)


@pytest.mark.parametrize("target", [0.3, 0.5, 0.9])
def test_target_macs_is_met_with_the_least_lost_energy(analysis, target: float) -> None:
    plan = plan_conversion(analysis, rank=None, target_macs=target)
    assert plan.macs_after <= target * analysis.totals.macs
    lost = {c.name: 1 - c.energy for c in plan.choices}
    # the layers that are exactly separable lose nothing
    assert lost.get("b", 0.0) == pytest.approx(0.0, abs=1e-9) and lost.get("c", 0.0) < 1.0


def test_unreachable_target(analysis) -> None:
    with pytest.raises(UsageError, match="cannot be met"):
        plan_conversion(analysis, rank=None, target_macs=0.01)


@pytest.mark.parametrize("kwargs", [{"order": "sideways"}, {"energy": 1.5}, {"target_macs": 0}, {"rank": 0}])
def test_bad_settings(analysis, kwargs: dict) -> None:
    with pytest.raises(UsageError):
        plan_conversion(analysis, **kwargs)
