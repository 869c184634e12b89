"""Cheap shape rules against PyTorch's own shape logic (the op run on fake tensors)."""

import operator

import pytest
import torch
import torch.nn as nn
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch._subclasses.fake_tensor import FakeTensorMode

from convaudit.analysis.rules.shapes import SHAPE_RULES, NoRule, ShapeMismatch, result_dtype, rule_inputs


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


# ---------------------------------------------------------------- functional rules (timm's norm layers, SE blocks)

_F = torch.nn.functional


def oracle_call(fn: object, args: tuple, kwargs: dict) -> tuple[int, ...] | None:
    """PyTorch's output shape of ``fn(*args, **kwargs)`` on fake tensors; None where PyTorch refuses."""

    def fake(v: object) -> object:
        if isinstance(v, torch.Tensor):
            return torch.empty(v.shape, dtype=v.dtype)
        return [fake(t) for t in v] if isinstance(v, list) else v

    with FakeTensorMode(allow_non_fake_inputs=True):
        try:
            out = fn(*(fake(a) for a in args), **{k: fake(v) for k, v in kwargs.items()})  # type: ignore[operator]
        except (RuntimeError, ValueError, IndexError):
            return None
        return tuple(out.shape)


def meta(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, device="meta")


TAKES, DECLINES = True, False  #: the rule gives PyTorch's shape / leaves the call to the fake run (or refuses)


@pytest.mark.parametrize(
    ("fn", "args", "kwargs", "takes"),
    [
        (_F.batch_norm, (meta(2, 3, 5, 5), meta(3), meta(3), meta(3), meta(3), False, 0.1, 1e-5), {}, TAKES),
        (_F.batch_norm, (meta(2, 3, 5, 5), meta(3), meta(3)), {"weight": meta(3), "training": False}, TAKES),
        (_F.batch_norm, (meta(2, 3, 5, 5), meta(4), meta(4)), {}, DECLINES),  # wrong channels
        (_F.batch_norm, (meta(2, 3, 5, 5), meta(3), meta(3)), {"training": True}, DECLINES),  # batch statistics
        (_F.layer_norm, (meta(2, 5, 5, 8), (8,), meta(8), meta(8)), {}, TAKES),
        (_F.layer_norm, (meta(2, 5, 5, 8), [5, 8]), {}, TAKES),
        (_F.layer_norm, (meta(2, 5, 5, 8), (7,)), {}, DECLINES),
        (_F.group_norm, (meta(2, 8, 5, 5), 4, meta(8), meta(8)), {}, TAKES),
        (_F.group_norm, (meta(2, 8, 5, 5), 3), {}, DECLINES),
        (torch.mean, (meta(2, 8, 5, 7), (2, 3)), {"keepdim": True}, TAKES),
        (torch.mean, (meta(2, 8, 5, 7), -1), {}, TAKES),
        (torch.mean, (meta(2, 8, 5, 7),), {}, TAKES),
        (torch.mean, (meta(2, 8, 5, 7), (2, 2)), {}, DECLINES),  # a dimension twice
        (torch.mean, (meta(2, 8, dtype=torch.int64), 1), {}, DECLINES),  # integers
        (_F.linear, (meta(2, 7, 8), meta(4, 8), meta(4)), {}, TAKES),
        (_F.linear, (meta(2, 7, 8), meta(4, 9)), {}, DECLINES),
        (_F.avg_pool2d, (meta(1, 3, 9, 8), 3, 2, 1, True), {}, TAKES),
        (_F.avg_pool2d, (meta(1, 3, 9, 8), (3, 2)), {"stride": (1, 2)}, TAKES),
        (_F.avg_pool2d, (meta(1, 3, 9, 8), 3, 2, 2), {}, DECLINES),  # padding over half the kernel
        (_F.max_pool2d, (meta(1, 3, 9, 8), 3, 2), {"padding": 1, "ceil_mode": True}, TAKES),
        (_F.max_pool2d, (meta(1, 3, 9, 8), 3, 2, 1, 2), {}, TAKES),
        (_F.max_pool2d, (meta(1, 3, 9, 8), 3), {"return_indices": True}, DECLINES),
        (_F.max_pool1d, (meta(1, 3, 9), 2), {}, TAKES),
        (_F.adaptive_avg_pool2d, (meta(2, 3, 9, 8), 1), {}, TAKES),
        (_F.adaptive_avg_pool2d, (meta(2, 3, 9, 8), (4, None)), {}, TAKES),
        (_F.adaptive_avg_pool1d, (meta(2, 3, 9), 5), {}, TAKES),
        (torch.cat, ([meta(2, 3, 5), meta(2, 4, 5)], 1), {}, TAKES),
        (torch.cat, ([meta(2, 3, 5), meta(2, 4, 6)], 1), {}, DECLINES),
    ],
)
def test_function_rules_agree_with_pytorch(fn: object, args: tuple, kwargs: dict, takes: bool) -> None:
    """A rule gives PyTorch's shape, or declines (NoRule) or refuses (ShapeMismatch) where PyTorch refuses or
    the call is unusual: the fake run then says what is wrong, in PyTorch's words."""
    rule = SHAPE_RULES.lookup(fn)
    if takes:
        expected = oracle_call(fn, args, kwargs)
        assert expected is not None and rule(fn, args, kwargs) == expected
        return
    with pytest.raises((NoRule, ShapeMismatch)):
        rule(fn, args, kwargs)


@settings(max_examples=60, deadline=None)
@given(
    a=st.lists(st.sampled_from([0, 1, 2, 3]), min_size=0, max_size=4),
    b=st.lists(st.sampled_from([0, 1, 2, 3]), min_size=0, max_size=4),
)
def test_broadcast_rule_agrees_with_pytorch(a: list[int], b: list[int]) -> None:
    x, y = meta(*a), meta(*b)
    try:
        expected: tuple[int, ...] | None = tuple(torch.broadcast_shapes(tuple(a), tuple(b)))
    except RuntimeError:
        expected = None
    rule = SHAPE_RULES.lookup(operator.add)
    if expected is None:
        with pytest.raises(ShapeMismatch, match="cannot broadcast"):
            rule(operator.add, (x, y), {})
    else:
        assert rule(operator.add, (x, y), {}) == expected


@pytest.mark.parametrize(
    ("target", "args", "takes"),
    [
        (operator.mul, (meta(2, 3), 0.5), True),  # a float tensor keeps its dtype
        (operator.mul, (0.5, meta(2, 3)), True),  # ``0.5 * x``: the tensor is the second operand
        (operator.mul, (meta(2, 3, dtype=torch.int64), 0.5), False),  # promoted to float: PyTorch decides
        (operator.add, (meta(2, 3, dtype=torch.int64), meta(2, 3)), True),  # two tensors: promote_types
        (torch.cat, ([meta(2, 3), meta(2, 3)], 0), True),
        (torch.cat, ([meta(2, 3), 1.0], 0), False),
        (operator.getitem, ((meta(2),), 0), False),  # not a rule's call
    ],
)
def test_rule_inputs(target: object, args: tuple, takes: bool) -> None:
    assert bool(rule_inputs("call_function", target, args)) is takes


def test_rule_output_dtype_is_the_promoted_one() -> None:
    assert result_dtype([meta(2, dtype=torch.float16), meta(2, dtype=torch.float32)]) == torch.float32
