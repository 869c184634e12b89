"""Output-aware layer choice: the measured output error decides which layers and m, under a MAC budget."""

import math
import re

import pytest
import torch
import torch.nn as nn

import convaudit
from convaudit.conversion.fidelity import measure_fidelity
from convaudit.conversion.layers import SeparableConv
from convaudit.conversion.planning import Plan, plan_conversion
from convaudit.conversion.rewrite import rewrite
from convaudit.conversion.sensitivity import (
    cheapest_plan,
    measure_sensitivity,
    plan_ladder,
    sensitivity_plan,
)
from convaudit.errors import EXIT_FAILURE, UnmeetableError, UsageError
from convaudit.options import ConversionOptions
from convaudit.vocab import Select
from tests.fixtures.models import ReportNet

SHAPE = (8, 8, 12, 12)


class LoudQuiet(nn.Module):
    """Two 3×3 convs of equal cost side by side. ``loud`` reaches the output at full scale and is nearly
    separable (it keeps most of its weight energy at m = 1, so energy-based choice converts it first);
    ``quiet`` is random (far from separable) but reaches the output scaled by 1e-3."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.loud = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.quiet = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.head = nn.Conv2d(8, 4, 1)
        with torch.no_grad():
            separable = torch.einsum(
                "oi,ikl->oikl", torch.randn(8, 8, generator=gen), torch.randn(8, 3, 3, generator=gen)
            )
            self.loud.weight.copy_(separable + 0.25 * torch.randn(8, 8, 3, 3, generator=gen))
            self.quiet.weight.copy_(torch.randn(8, 8, 3, 3, generator=gen))
            self.head.weight.copy_(torch.randn(4, 8, 1, 1, generator=gen))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.loud(x) + 1e-3 * self.quiet(x))


def batches(n: int, seed: int, shape: tuple[int, ...] = SHAPE) -> list[tuple[tuple, dict]]:
    gen = torch.Generator().manual_seed(seed)
    return [((torch.randn(shape, generator=gen),), {}) for _ in range(n)]


def apply(model: nn.Module, plan: Plan) -> nn.Module:
    def factory(choice, conv, inputs):
        return SeparableConv.from_conv(conv, rank=choice.rank, order=choice.order)

    return rewrite(model, plan.choices, factory)[0]


def held_out_error(model: nn.Module, plan: Plan, shape: tuple[int, ...] = SHAPE) -> float:
    return measure_fidelity(model, apply(model, plan), batches(2, 99, shape), inputs="held-out").relative_error


def snapshot(model: nn.Module) -> tuple:
    state = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [(n, m.training, dict(m._forward_hooks), dict(m._forward_pre_hooks)) for n, m in model.named_modules()]
    return state, flags


def same(model: nn.Module, before: tuple) -> bool:
    state, flags = snapshot(model)
    return (
        state.keys() == before[0].keys()
        and all(torch.equal(state[k], before[0][k]) for k in state)
        and flags == before[1]
    )


@pytest.fixture(scope="module")
def loud_quiet():
    model = LoudQuiet()
    return model, convaudit.analyze(model, input_shape=SHAPE, separability=True)


def test_sensitivity_converts_the_layer_the_output_does_not_feel(loud_quiet) -> None:
    model, analysis = loud_quiet
    energies = {layer.name: layer.separability.dw_pw[0] for layer in analysis.candidates}
    assert energies["loud"] > 0.7 > 0.4 > energies["quiet"]  # the weights alone point at 'loud'
    # one conv at m = 1 fits 0.65 of today's MACs, two do not: which one is the whole question
    options = ConversionOptions(select="sensitivity", rank=1, target_macs=0.65)
    plan = sensitivity_plan(model, analysis, options, batches(1, 1))
    assert [(c.name, c.rank) for c in plan.choices] == [("quiet", 1)]
    assert ("loud", "kept as is: within --target-macs 0.65, converting it costs more output error") in plan.skipped
    assert "when converted alone (--select sensitivity)" in (plan.choices[0].note or "")
    table = measure_sensitivity(model, analysis, options, batches(1, 1))
    alone = {name: opts[0][1] for name, opts in table.options.items()}
    assert alone["quiet"] < 1e-2 < 0.1 < alone["loud"]
    # m chosen too: at the same budget, lower held-out error than the energy-based choice (which converts 'loud')
    free = ConversionOptions(select="sensitivity", target_macs=0.65)
    chosen = sensitivity_plan(model, analysis, free, batches(1, 1))
    energy = plan_conversion(analysis, target_macs=0.65)
    assert "loud" in {c.name for c in energy.choices}
    assert held_out_error(model, chosen) < 0.5 * held_out_error(model, energy)


@pytest.mark.parametrize("target,order", [(0.3, "auto"), (0.7, "dw_pw")])
def test_the_plan_meets_the_budget_measured_on_the_converted_model(target: float, order: str) -> None:
    torch.manual_seed(0)
    model = ReportNet()  # module, grouped, 5×5 and functional convs (the last via the traced rewrite), BatchNorm
    shape = (2, 3, 16, 16)
    model.eval()
    analysis = convaudit.analyze(model, input_shape=shape, separability=True)
    before = snapshot(model)
    options = ConversionOptions(select="sensitivity", target_macs=target, order=order, recalibrate_bn=True)
    plan = sensitivity_plan(model, analysis, options, batches(1, 1, shape))
    assert plan.choices
    measured = convaudit.analyze(apply(model, plan), input_shape=shape).totals
    assert measured.macs == plan.macs_after <= target * analysis.totals.macs
    assert measured.params == plan.params_after
    assert same(model, before)


def test_the_users_model_is_left_bit_identical(loud_quiet) -> None:
    model, analysis = loud_quiet
    model.train()  # a mode the measurements (eval) must give back
    before = snapshot(model)
    options = ConversionOptions(select="sensitivity", target_macs=0.5, init="calibrated", recalibrate_bn=True)
    sensitivity_plan(model, analysis, options, batches(1, 1))
    assert same(model, before) and model.training
    model.eval()


def fake_evaluate(calls: list[Plan]):
    def evaluate(plan: Plan) -> float:  # error falls as MACs grow, as a conversion's does
        calls.append(plan)
        return 1.0 - plan.macs_after / plan.macs_before

    return evaluate


@pytest.mark.parametrize("select", [Select.SENSITIVITY, Select.ENERGY])
def test_cheapest_plan_returns_the_cheapest_that_meets_the_bound(loud_quiet, select: Select) -> None:
    model, analysis = loud_quiet
    options = ConversionOptions(select=select, max_output_error=0.5)
    ladder = plan_ladder(model, analysis, options, batches(1, 1))
    shares = [p.macs_after / p.macs_before for p in ladder]
    assert len(ladder) >= 4 and shares == sorted(shares)
    bound = 1.0 - shares[len(shares) // 2]  # met by the middle plan and those above it
    calls: list[Plan] = []
    plan = cheapest_plan(model, analysis, options, batches(1, 1), fake_evaluate(calls), bound)
    assert plan.choices == ladder[len(shares) // 2].choices
    assert len(calls) <= math.ceil(math.log2(len(ladder))) + 1 < len(ladder)  # a bisection, not a scan
    assert "--max-output-error" in plan.notes[-1]


def test_cheapest_plan_fails_with_exit_1_when_nothing_meets_the_bound(loud_quiet) -> None:
    model, analysis = loud_quiet
    options = ConversionOptions(select="sensitivity", max_output_error=0.01)
    calls: list[Plan] = []

    def evaluate(plan: Plan) -> float:
        calls.append(plan)
        return 0.2

    with pytest.raises(UnmeetableError) as info:
        cheapest_plan(model, analysis, options, batches(1, 1), evaluate, 0.01)
    assert info.value.exit_code == EXIT_FAILURE == 1
    message = str(info.value)
    assert "no conversion meets it; the best reached 0.2" in message and "the most sensitive: loud" in message
    assert "\n" not in message and len(calls) == 1  # the most expensive plan failed: nothing cheaper is tried


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"max_output_error": 0}, "--max-output-error 0: give a positive relative error of the output"),
        ({"max_output_error": float("nan")}, "--max-output-error nan: give a positive"),
        ({"max_output_error": 0.1, "target_macs": 0.5}, "--max-output-error chooses the MAC budget itself"),
        ({"select": "loudest"}, "--select 'loudest': choose energy, sensitivity or recommended"),
        ({"rank": 1, "target_macs": 0.5}, "--rank cannot be combined with --energy or --target-macs"),
        ({"select": "sensitivity", "energy": 0.9}, "cannot be combined with --energy"),
        ({"select": "sensitivity", "init": "random"}, "--init random keeps none"),
        ({"select": "energy", "rank": 2, "max_output_error": 0.1}, "drop --select energy"),
    ],
)
def test_options_validate(kwargs: dict, message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        ConversionOptions(**kwargs)


def test_options_that_combine() -> None:
    options = ConversionOptions(select="sensitivity", rank=2, target_macs=0.5)  # which layers, at m = 2
    assert options.select is Select.SENSITIVITY and options.settings()["select"] == "sensitivity"
    assert ConversionOptions(max_output_error=0.05).settings()["rank"] is None  # m chosen per layer


def test_sensitivity_needs_batches_and_a_budget(loud_quiet) -> None:
    model, analysis = loud_quiet
    with pytest.raises(UsageError, match=r"need calibration batches \(calibration_inputs\(\) in model.py\)"):
        sensitivity_plan(model, analysis, ConversionOptions(select="sensitivity", target_macs=0.5), None)
    with pytest.raises(UsageError, match="give --target-macs"):
        sensitivity_plan(model, analysis, ConversionOptions(select="sensitivity"), batches(1, 1))
    with pytest.raises(UsageError, match=re.escape("--target-macs 0.05: cannot be met")):
        sensitivity_plan(model, analysis, ConversionOptions(select="sensitivity", target_macs=0.05), batches(1, 1))
