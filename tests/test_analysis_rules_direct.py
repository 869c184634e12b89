"""Calls that run as they are, without a shape rule or fake tensors: what qualifies, and that nothing changes."""

from __future__ import annotations

import operator

import pytest
import torch
import torch.nn as nn

import convaudit
from convaudit.analysis.rules.direct import runs_directly
from convaudit.errors import ShapeError, TraceError


def meta(*shape: int) -> torch.Tensor:
    return torch.empty(shape, device="meta")


@pytest.mark.parametrize(
    ("node_op", "target", "args", "kwargs", "direct"),
    [
        ("call_function", operator.eq, (4, 4), {}, True),  # sizes compared
        ("call_function", torch._assert, (True, "4-D input"), {}, True),
        ("call_function", getattr, (meta(1, 2), "ndim"), {}, True),
        ("call_function", getattr, (meta(1, 2), "device"), {}, False),  # meta's device is not the model's
        ("call_function", operator.getitem, ((meta(1), meta(2)), 1), {}, True),  # an output out of a tuple
        ("call_function", operator.getitem, (meta(4, 4), (slice(None), 1)), {}, True),  # a view
        ("call_function", operator.getitem, (meta(4, 4), meta(4)), {}, False),  # a tensor index: data
        ("call_function", torch.split, (meta(1, 6, 2), [2, 4], 1), {}, True),
        ("call_function", operator.add, (meta(2), meta(2)), {}, False),  # arithmetic: a shape rule's
        ("call_function", torch.zeros, (3,), {}, False),  # makes a tensor: under fake tensors
        ("call_method", "permute", (meta(1, 2, 3), 0, 2, 1), {}, True),
        ("call_method", "view", (meta(1, 2, 3), -1), {}, True),
        ("call_method", "size", (meta(1, 2, 3), 1), {}, True),
        ("call_method", "mul_", (meta(1, 2), 2.0), {}, False),
        ("call_module", nn.Identity(), (meta(1),), {}, False),
    ],
)
def test_what_runs_directly(node_op: str, target: object, args: tuple, kwargs: dict, direct: bool) -> None:
    assert runs_directly(node_op, target, args, kwargs) is direct


class Checked(nn.Module):
    """timm's norm-layer pattern: an assert on the rank, sizes read, a permute and a view."""

    def __init__(self, view: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.norm = nn.LayerNorm(8)
        self.view = view

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch._assert(x.ndim == 4, "expected 4-D input")
        y = self.conv(x).permute(0, 2, 3, 1)
        n, h = y.shape[0], y.size(1)
        y = y.view(n, h, -1) if self.view else y.reshape(n, h, -1)  # a view of the permuted tensor fails
        return self.norm(y.reshape(n, h, -1, 8))


def test_direct_calls_give_what_a_real_forward_gives() -> None:
    model = Checked(view=False).eval()
    x = torch.randn(2, 3, 9, 7)
    a = convaudit.analyze(model, (x,))
    assert a.trace_path == "fx" and [layer.macs for layer in a.layers] == [2 * 8 * 7 * 5 * 3 * 9]
    assert not a.uncosted_ops or all("permute" not in op for op in a.uncosted_ops)


def test_a_view_of_a_permuted_tensor_fails_as_it_would_for_real() -> None:
    """Views run on meta tensors keep their strides: ``.view`` after ``permute`` fails, as in a real run."""
    model = Checked(view=True).eval()
    x = torch.randn(2, 3, 9, 7)
    with pytest.raises(RuntimeError):
        model(x)
    with pytest.raises(ShapeError, match="view"):
        convaudit.analyze(model, (x,))


def test_a_failing_assert_is_the_error_it_was() -> None:
    with pytest.raises(TraceError, match=r"'_assert' failed under fake tensors: AssertionError: expected 4-D input"):
        convaudit.analyze(Checked(view=False), input_shape=(3, 9, 7), trace_path="fx")
