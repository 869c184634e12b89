"""Conv kinds and skip reasons: one definition of each kind."""

import pytest
import torch.nn as nn

import convaudit
from convaudit.analysis.inventory import conv_kind, conv_spec
from convaudit.analysis.propagation import Call


class SameConv(nn.Conv2d):
    def forward(self, x):  # pragma: no cover - never run here
        return super().forward(x)


class PlainSubclass(nn.Conv2d):
    pass


@pytest.mark.parametrize(
    "module,kind",
    [
        (nn.Conv2d(8, 16, 3), "standard"),
        (nn.Conv2d(1, 16, 3), "standard"),  # one input channel: not "depthwise"
        (nn.Conv2d(8, 16, 3, groups=4), "grouped"),
        (nn.Conv2d(8, 8, 3, groups=8), "depthwise"),
        (nn.Conv2d(8, 16, 3, groups=8), "depthwise"),  # channel multiplier 2
        (nn.Conv2d(8, 16, 1), "pointwise"),
        (nn.Conv2d(8, 16, 1, groups=2), "pointwise"),
        (nn.Conv1d(8, 16, (1,)), "pointwise"),
        (nn.Conv3d(8, 16, (1, 3, 3)), "standard"),
        (nn.ConvTranspose2d(8, 16, 3), "transposed"),
        (SameConv(8, 16, 3), "custom"),
        (PlainSubclass(8, 16, 3), "standard"),
    ],
)
def test_kinds(module: nn.Module, kind: str) -> None:
    assert conv_kind(conv_spec(Call("x", "call_module", module, (), {}, None, ""))) == kind


@pytest.mark.parametrize(
    "module,shape,reason",
    [
        (nn.Conv2d(8, 8, 3, groups=8), (1, 8, 8, 8), "already depthwise"),
        (nn.Conv2d(8, 16, 1), (1, 8, 8, 8), "pointwise 1×1"),
        (nn.ConvTranspose2d(8, 16, 3), (1, 8, 8, 8), "transposed convolution"),
        (SameConv(8, 16, 3), (1, 8, 8, 8), "custom subclass with its own forward (SameConv)"),
        (nn.Conv2d(8, 1, 3), (1, 8, 8, 8), "no savings"),  # one output channel: DW→PW costs more
    ],
)
def test_every_non_candidate_says_why(module: nn.Module, shape: tuple, reason: str) -> None:
    (layer,) = convaudit.analyze(nn.Sequential(module), input_shape=shape).layers
    assert not layer.candidate and layer.skip_reason.startswith(reason) and layer.separable is None


def test_candidates_carry_all_three_alternatives() -> None:
    (layer,) = convaudit.analyze(nn.Sequential(nn.Conv2d(8, 16, 3, stride=2)), input_shape=(1, 8, 9, 9)).layers
    sep = layer.separable
    assert layer.candidate and layer.skip_reason is None
    assert (sep.dw_pw.multiplier, sep.pw_dw.multiplier, sep.dw_pw_exact.multiplier) == (1, 1, 9)
    assert sep.dw_pw_exact.macs > layer.macs > sep.pw_dw.macs > sep.dw_pw.macs  # pw_dw runs its 1×1 at 4× the pixels
