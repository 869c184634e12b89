"""Shape propagation over traced graphs: errors name the node where shapes stop matching."""

import pytest
import torch
import torch.nn as nn

from convaudit.analysis.propagation import FakeContext, propagate_fx
from convaudit.analysis.tracing import trace
from convaudit.errors import ShapeError


def test_wrong_input_names_the_layer() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 30 * 30, 10))
    ctx = FakeContext()
    with pytest.raises(ShapeError, match=r"'3'.*Linear.*expects last dimension 7200"):
        propagate_fx(trace(model), (ctx.empty((1, 3, 16, 16), torch.float32),), {}, ctx)
    with pytest.raises(ShapeError, match=r"'0'.*Conv2d.*expects 3 input channels, got 1"):
        propagate_fx(trace(model), (ctx.empty((1, 1, 32, 32), torch.float32),), {}, ctx)


def test_fallback_error_names_the_node() -> None:
    class Bad(nn.Module):
        def forward(self, x):
            return x.view(7, -1)

    ctx = FakeContext()
    with pytest.raises(ShapeError, match="shapes stop matching at 'view'"):
        propagate_fx(trace(Bad()), (ctx.empty((2, 3), torch.float32),), {}, ctx)


def _adapted_convs() -> nn.Module:
    from timm.layers import Conv2dSame, ScaledStdConv2dSame, StdConv2d

    return nn.Sequential(
        Conv2dSame(3, 8, 3, stride=2),  # TF 'SAME': asymmetric padding at 9×8
        StdConv2d(8, 8, 3, padding=1),
        ScaledStdConv2dSame(8, 4, 5, stride=2),
    ).eval()


@pytest.mark.parametrize("shape", [(1, 3, 9, 8), (2, 3, 16, 11)])
def test_one_conv_adapters_give_what_their_forward_records(shape: tuple[int, ...]) -> None:
    """Conv2dSame and StdConv2d are taken from their adapter's padding: outputs and recorded convolutions
    equal those of running their forward under fake tensors (a shape_rules override of None forces it)."""
    pytest.importorskip("timm")
    model = _adapted_convs()
    x = torch.randn(shape)
    run = {type(m): None for m in model}
    for fast, slow in zip(
        propagate_fx(trace(model), (x,), {}, FakeContext()),
        propagate_fx(trace(model), (x,), {}, FakeContext(), shape_rules=run),
        strict=True,
    ):
        assert tuple(fast.out.shape) == tuple(slow.out.shape) == tuple(model[: int(fast.name) + 1](x).shape)
        assert fast.aten == [op for op in slow.aten or [] if op.macs]  # the convolution; the rest is MAC-free
        assert not [op for op in slow.aten or [] if not op.costed]
