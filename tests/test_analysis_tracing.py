"""Tracing: every conv stays visible as one call, and nothing is left on the user's model."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from convaudit.analysis.tracing import trace
from tests.fixtures import nets


class SameConv(nn.Conv2d):
    def forward(self, x):
        return F.conv2d(F.pad(x, [1, 1, 1, 1]), self.weight, self.bias)


class Block(nn.Sequential):  # like torchvision's Conv2dNormActivation: traced through
    def __init__(self) -> None:
        super().__init__(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU())


def test_convs_are_leaves_and_containers_are_traced_through() -> None:
    model = nn.Sequential(Block(), SameConv(8, 8, 3))
    graph = trace(model).graph
    called = [n.target for n in graph.nodes if n.op == "call_module"]
    assert called == ["0.0", "0.1", "0.2", "1"]


def test_constants_are_not_left_on_the_model() -> None:
    model = nets.WithConstant()
    before = set(model.__dict__) | set(model._buffers) | set(model._parameters)
    traced = trace(model)
    assert set(model.__dict__) | set(model._buffers) | set(model._parameters) == before
    assert any(isinstance(v, torch.Tensor) for v in traced.constants.values())
    const = next(n for n in traced.graph.nodes if n.op == "get_attr")
    assert torch.equal(traced.attr(const.target), torch.tensor(2.0))


def test_untraceable_model_raises() -> None:
    class Branchy(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(torch.fx.proxy.TraceError):  # trace() raises what the tracer raises
        trace(Branchy())
