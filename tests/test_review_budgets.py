"""Each budget's figure against an independent count, limits read from flags over the file, strictly."""

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from convaudit.errors import UsageError
from convaudit.review.budgets import BUDGETS, resolve_budgets
from convaudit.review.check import analyse_for_check


class TwoConvs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.body = nn.Conv2d(16, 64, 3, padding=1)
        self.point = nn.Conv2d(64, 64, 1)  # pointwise: a conv, never a candidate
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.point(self.body(self.stem(x))).mean((2, 3)))


def oracle_macs(model: nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() // 2  # FLOPs = 2·MACs


def conv_macs(conv: nn.Conv2d, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter:
        conv(x)
    return counter.get_total_flops() // 2


@pytest.fixture(scope="module")
def measured():
    torch.manual_seed(0)
    model, x = TwoConvs(), torch.randn(1, 3, 32, 32)
    analysis = analyse_for_check(model, (x,))
    return model, x, analysis


def test_figures_match_an_independent_count(measured) -> None:
    model, x, analysis = measured
    figure = {name: spec.measure(analysis) for name, spec in BUDGETS.items()}
    assert figure["max-macs"] == oracle_macs(model, x)
    assert figure["max-params"] == sum(p.numel() for p in model.parameters())
    stem_x = x
    body_x = model.stem(x)
    point_x = model.body(body_x)
    stem, body, point = conv_macs(model.stem, stem_x), conv_macs(model.body, body_x), conv_macs(model.point, point_x)
    assert figure["max-conv-macs"] == stem + body + point
    assert figure["max-layer-macs"] == max(stem, body, point)
    assert figure["max-candidate-share"] == pytest.approx((stem + body) / oracle_macs(model, x))
    predicted = sum(layer.latency.predicted_seconds["original"] for layer in analysis.candidates)
    assert figure["max-latency"] == pytest.approx(predicted) and predicted > 0


def test_flags_override_the_file_and_name_where_each_came_from() -> None:
    budgets = resolve_budgets(
        {"max-macs": "2G", "max-params": None},
        {"max-macs": "4.2G", "max-params": "26M", "max-latency": "30ms"},
        "pyproject.toml [tool.convaudit]",
    )
    assert [(b.name, b.limit, b.origin) for b in budgets] == [
        ("max-macs", 2e9, "--max-macs"),
        ("max-params", 26e6, "pyproject.toml [tool.convaudit]"),
        ("max-latency", 0.03, "pyproject.toml [tool.convaudit]"),
    ]


def test_no_budget_at_all_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"no budget to check: give one \(e.g. --max-macs 4.2G"):
        resolve_budgets(dict.fromkeys(BUDGETS), {})


def test_a_bad_value_names_the_flag_or_the_key() -> None:
    with pytest.raises(UsageError, match=r"^--max-params: '26 million' is not a count"):
        resolve_budgets({"max-params": "26 million"})
    with pytest.raises(UsageError, match=r"^max_latency=: '30' is not a duration"):
        resolve_budgets({"max-latency": "30"}, flag_style=lambda n: f"{n.replace('-', '_')}=")
    with pytest.raises(UsageError, match=r"\[tool.convaudit\] max-candidate-share: '2' is not a share"):
        resolve_budgets({}, {"max-candidate-share": "2"})


def test_every_budget_has_a_flag_example_that_parses() -> None:
    for spec in BUDGETS.values():
        limit = spec.parse(spec.example, f"--{spec.name}")
        assert spec.parse(spec.format(limit), "again") == limit
