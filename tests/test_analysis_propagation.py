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
