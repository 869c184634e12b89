"""Cheap shape rules against PyTorch's own shape logic (the op run on fake tensors)."""

import pytest
import torch
import torch.nn as nn
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch._subclasses.fake_tensor import FakeTensorMode

from convaudit.analysis.rules.shapes import SHAPE_RULES, NoRule, ShapeMismatch


def oracle_shape(module: nn.Module, shape: tuple[int, ...]) -> tuple[int, ...] | None:
    with FakeTensorMode(allow_non_fake_inputs=True):
        try:
            return tuple(module(torch.empty(shape)).shape)
        except RuntimeError:
            return None


@settings(max_examples=80, deadline=None)
@given(
    dims=st.sampled_from([1, 2, 3]),
    k=st.integers(1, 5),
    stride=st.integers(1, 3),
    dilation=st.integers(1, 3),
    padding=st.one_of(st.integers(0, 3), st.sampled_from(["same", "valid"])),
    size=st.integers(1, 12),
    batched=st.booleans(),
    transposed=st.booleans(),
)
def test_conv_shape_rule(dims, k, stride, dilation, padding, size, batched, transposed) -> None:
    if transposed:
        assume(isinstance(padding, int))
        module = getattr(nn, f"ConvTranspose{dims}d")(2, 3, k, stride=stride, padding=padding, dilation=dilation)
    else:
        assume(padding != "same" or stride == 1)
        module = getattr(nn, f"Conv{dims}d")(2, 3, k, stride=stride, padding=padding, dilation=dilation)
    shape = ((2,) if batched else ()) + (2,) + (size,) * dims
    expected = oracle_shape(module, shape)
    rule = SHAPE_RULES.lookup(module)
    with FakeTensorMode():
        x = torch.empty(shape)
    if expected is None:  # PyTorch refuses the input: so must the rule, with a reason
        with pytest.raises(ShapeMismatch):
            rule(module, (x,), {})
        return
    assert rule(module, (x,), {}) == expected


@settings(max_examples=80, deadline=None)
@given(
    kind=st.sampled_from(["Max", "Avg"]),
    dims=st.sampled_from([1, 2, 3]),
    k=st.integers(1, 4),
    stride=st.one_of(st.none(), st.integers(1, 3)),
    padding=st.integers(0, 2),
    ceil=st.booleans(),
    size=st.integers(4, 13),
)
def test_pool_shape_rule(kind, dims, k, stride, padding, ceil, size) -> None:
    assume(padding <= k // 2)
    module = getattr(nn, f"{kind}Pool{dims}d")(k, stride=stride, padding=padding, ceil_mode=ceil)
    shape = (1, 3) + (size,) * dims
    expected = oracle_shape(module, shape)
    assume(expected is not None)
    with FakeTensorMode():
        x = torch.empty(shape)
    assert SHAPE_RULES.lookup(module)(module, (x,), {}) == expected


@pytest.mark.parametrize("module", [nn.MaxPool2d((3,)), nn.AvgPool2d(3, stride=(2,)), nn.AdaptiveAvgPool2d((4,))])
def test_pool_sizes_shorter_than_its_dims_are_left_to_pytorch(module: nn.Module) -> None:
    """A pool stores its sizes as given: what (3,) means on a 2-d pool is PyTorch's call, not a zip's."""
    with FakeTensorMode():
        x = torch.empty(1, 3, 9, 9)
    with pytest.raises(NoRule):
        SHAPE_RULES.lookup(module)(module, (x,), {})


@pytest.mark.parametrize(
    "module",
    [
        nn.AdaptiveAvgPool2d((3, None)),
        nn.AdaptiveAvgPool1d(5),
        nn.Flatten(),
        nn.Flatten(2),
        nn.Linear(9, 4),
        nn.BatchNorm2d(3),
    ],
)
def test_other_rules(module: nn.Module) -> None:
    shape = (2, 3, 9, 9) if not isinstance(module, nn.AdaptiveAvgPool1d) else (2, 3, 9)
    with FakeTensorMode():
        x = torch.empty(shape)
    assert SHAPE_RULES.lookup(module)(module, (x,), {}) == oracle_shape(module, shape)
