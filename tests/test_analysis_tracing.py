"""Tracing: every conv stays visible as one call, and nothing is left on the user's model."""

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from convaudit.analysis.tracing import ConvTracer, trace
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


class _ConvLeaves(torch.fx.Tracer):
    """torch.fx.Tracer's own name lookups (a walk over the root per access), with convaudit's leaves."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, nn.Conv2d) or super().is_leaf_module(m, module_qualified_name)


class _Scaled(nn.Module):
    """Reads parameters and buffers in forward (timm's BatchNormAct2d, layer scale), shares one, swaps one."""

    def __init__(self, shared: nn.Parameter) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.gamma = nn.Parameter(torch.ones(4, 1, 1))
        self.shared = shared
        self.register_buffer("mean", torch.zeros(4, 1, 1))
        self.register_buffer("spare", torch.ones(4, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        old = self.mean
        y = (self.conv(x) - old) * self.gamma * self.shared + self.spare
        self.mean = torch.ones(4, 1, 1)  # reassigned in forward: the table's old entry must not be used
        return F.conv2d(y, self.conv.weight, padding=1) + self.mean + old


def test_the_tracer_finds_the_names_torch_fx_finds() -> None:
    shared = nn.Parameter(torch.ones(1))
    model = nn.Sequential(_Scaled(shared), _Scaled(shared), nn.ReLU())

    def graph(tracer: torch.fx.Tracer) -> list[tuple]:
        nodes = tracer.trace(copy.deepcopy(model)).nodes
        return [(n.op, str(n.target), str(n.args), str(n.kwargs), str(n.meta.get("nn_module_stack"))) for n in nodes]

    ours = graph(ConvTracer())
    assert ours == graph(_ConvLeaves())
    assert ("get_attr", "0.shared", "()", "{}") in [node[:4] for node in ours]  # tied: its first name
    targets = [node[1] for node in ours if node[0] == "get_attr"]
    assert targets.count("0.mean") == 2 and "_tensor_constant0" in targets  # the new buffer; the old one, a constant


class _WithArguments(nn.Module):
    """Arguments of every kind the tracer takes as they are, in tuples and lists, and a dict and a slice."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([x, x * 0.5], dim=1).to(torch.float32).flatten(1, -1)[:, 1:None:2]
        z = y.view((1, -1)).new_zeros((2, 3), dtype=torch.float64, device=torch.device("cpu"))
        w = x.contiguous(memory_format=torch.contiguous_format).sum(dim=(2, 3), keepdim=True)
        return torch.nn.functional.interpolate(w, scale_factor=2.0, mode="nearest") + z.sum() + {"a": y}["a"].sum()


@pytest.mark.parametrize("name", ["googlenet", "mobilenet_v3_small", "shufflenet_v2_x0_5", "arguments"])
def test_real_graphs_are_torch_fx_own(name: str) -> None:
    """Oracle: the same model traced by torch.fx's own Tracer (conv leaves alike), node for node."""
    import torchvision

    model = (
        _WithArguments()
        if name == "arguments"
        else getattr(torchvision.models, name)(
            weights=None, **({"init_weights": False} if name == "googlenet" else {})
        ).eval()
    )

    def graph(tracer: torch.fx.Tracer) -> list[tuple]:
        nodes = tracer.trace(model).nodes
        return [(n.op, str(n.target), repr(n.args), repr(n.kwargs), str(n.meta.get("nn_module_stack"))) for n in nodes]

    assert graph(ConvTracer()) == graph(_ConvLeaves())
