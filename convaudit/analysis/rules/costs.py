"""Per-op MAC rules: the registry the engine looks executed calls up in, and what each op costs.

The engine looks rules up by module type (MRO walk), Python function, tensor-method name or aten
op, through :data:`MAC_RULES`; no ``isinstance`` ladder. The formulas the rules apply are in
:mod:`convaudit.analysis.rules.formulas`; the aten-level rules of the fallback capture in
:mod:`convaudit.analysis.rules.aten`. Ops that do no multiply-accumulates are registered with 0 MACs
under a category, so the report names them instead of listing them as uncosted.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from convaudit.analysis.rules.formulas import ACTIVATIONS, attention_macs, conv_macs, linear_macs, matmul_macs, numel
from convaudit.analysis.rules.registry import Registry

__all__ = [
    "CATEGORY",
    "CONV_FUNCTIONS",
    "MAC_RULES",
    "MacRule",
    "OpCall",
    "functional_conv_args",
    "register_mac_rule",
    "shape_of",
]

Shape = tuple[int, ...]


# ---------------------------------------------------------------- per-op MAC rules


@dataclass(frozen=True)
class OpCall:
    """One executed op as a rule sees it: the target, its tensor-or-value args, and its output."""

    target: Any  #: module instance, Python function, method name or aten op
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    out: Any


MacRule = Callable[[OpCall], int]

#: Rules that return the MACs of one call. Keys: nn.Module types, functions, method names, aten ops.
MAC_RULES: Registry[MacRule] = Registry("MAC rules")

#: Category of a rule key, for the report's op table.
CATEGORY: dict[Any, str] = {}


def shape_of(t: Any) -> Shape:
    """The shape of a tensor argument or output, as a plain tuple."""
    return tuple(t.shape)


def _zero(category: str, *keys: Any) -> None:
    """Register keys whose ops do no multiply-accumulates (counted, named, 0 MACs)."""
    MAC_RULES.register(*keys)(lambda call: 0)
    CATEGORY.update(dict.fromkeys(keys, category))


def register_mac_rule(category: str, *keys: Any) -> Callable[[MacRule], MacRule]:
    """Decorator: the MAC rule for ``keys``, shown under ``category``; a key registered twice raises."""

    def wrap(fn: MacRule) -> MacRule:
        CATEGORY.update(dict.fromkeys(keys, category))
        return MAC_RULES.register(*keys)(fn)

    return wrap


@register_mac_rule(
    "convolution", nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d
)
def _conv_module(call: OpCall) -> int:
    """nn.Conv*/ConvTranspose*: :func:`conv_macs` from the module's attributes and the call's shapes."""
    m = call.target
    return conv_macs(
        shape_of(call.out), shape_of(call.args[0]), m.in_channels, m.out_channels, m.groups, m.kernel_size, m.transposed
    )


@register_mac_rule(
    "convolution", F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d
)
def _conv_function(call: OpCall) -> int:
    """F.conv*: :func:`conv_macs` from the weight's shape and ``groups``."""
    spec = functional_conv_args(call.target, call.args, call.kwargs)
    w = shape_of(spec["weight"])
    g = int(spec["groups"])
    transposed = spec["transposed"]
    c_in, c_out = (w[0], w[1] * g) if transposed else (w[1] * g, w[0])
    return conv_macs(shape_of(call.out), shape_of(spec["input"]), c_in, c_out, g, w[2:], transposed)


_CONV_SIGNATURE = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_CONV_T_SIGNATURE = ("input", "weight", "bias", "stride", "padding", "output_padding", "groups", "dilation")
TRANSPOSED_CONV_FUNCTIONS = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)
CONV_FUNCTIONS = (F.conv1d, F.conv2d, F.conv3d, *TRANSPOSED_CONV_FUNCTIONS)


def functional_conv_args(fn: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
    """Name the arguments of an F.conv*/F.conv_transpose* call, defaults filled in."""
    transposed = fn in TRANSPOSED_CONV_FUNCTIONS
    names = _CONV_T_SIGNATURE if transposed else _CONV_SIGNATURE
    spec: dict[str, Any] = {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1, "output_padding": 0}
    spec.update(zip(names, args, strict=False))  # trailing arguments may be left to their defaults
    spec.update(kwargs)
    spec["transposed"] = transposed
    return spec


@register_mac_rule("linear algebra", nn.Linear)
def _linear_module(call: OpCall) -> int:
    """nn.Linear: ∏input·out_features."""
    return linear_macs(shape_of(call.args[0]), call.target.out_features)


@register_mac_rule("linear algebra", F.linear)
def _linear_function(call: OpCall) -> int:
    """F.linear(x, W): ∏x·W.shape[0]."""
    weight = call.args[1] if len(call.args) > 1 else call.kwargs["weight"]
    return linear_macs(shape_of(call.args[0]), shape_of(weight)[0])


@register_mac_rule("linear algebra", nn.Bilinear)
def _bilinear_module(call: OpCall) -> int:
    """nn.Bilinear: N·in1·in2·out."""
    m = call.target
    return numel(shape_of(call.args[0])[:-1]) * m.in1_features * m.in2_features * m.out_features


@register_mac_rule(
    "linear algebra", torch.matmul, operator.matmul, "matmul", "__matmul__", torch.bmm, "bmm", torch.mm, "mm"
)
def _matmul(call: OpCall) -> int:
    """matmul/mm/bmm: batch·n·k·m."""
    return matmul_macs(shape_of(call.args[0]), shape_of(call.args[1]))


@register_mac_rule("attention", F.scaled_dot_product_attention)
def _attention_function(call: OpCall) -> int:
    """F.scaled_dot_product_attention(q, k, v, ...): :func:`attention_macs`."""
    q, k, v = (shape_of(t) for t in call.args[:3])
    return attention_macs(q, k, v)


_zero(
    "normalization",
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    F.batch_norm,
    F.layer_norm,
    F.group_norm,
    F.instance_norm,
    F.normalize,
)
_zero(
    "pooling",
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
    F.max_pool1d,
    F.max_pool2d,
    F.max_pool3d,
    F.avg_pool1d,
    F.avg_pool2d,
    F.avg_pool3d,
    F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d,
    F.adaptive_avg_pool3d,
    F.adaptive_max_pool2d,
    F.interpolate,
    nn.Upsample,
)
_zero(
    "activation",
    *ACTIVATIONS,
    nn.PReLU,
    nn.Softmax,
    nn.LogSoftmax,
    nn.Softplus,
    nn.Hardtanh,
    F.tanh,
    F.elu,
    F.mish,
    F.softmax,
    F.log_softmax,
    F.hardtanh,
    torch.softmax,
    "relu",
    "relu_",
    "sigmoid",
    "sigmoid_",
    "tanh",
    "softmax",
    "log_softmax",
    "exp",
    "clamp",
    "clamp_",
)
_zero(
    "elementwise",
    operator.add,
    operator.sub,
    operator.mul,
    operator.truediv,
    operator.neg,
    operator.iadd,
    operator.imul,
    torch.add,
    torch.sub,
    torch.mul,
    torch.div,
    torch.exp,
    torch.sqrt,
    torch.rsqrt,
    torch.abs,
    torch.clamp,
    torch.mean,
    torch.sum,
    torch.amax,
    torch.where,
    "add",
    "add_",
    "sub",
    "mul",
    "mul_",
    "div",
    "div_",
    "mean",
    "sum",
    "pow",
    "sqrt",
    "abs",
    "float",
    "to",
    "type_as",
)
_zero("regularization", nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, F.dropout, nn.Identity)
_zero(
    "data movement",
    torch.flatten,
    torch.cat,
    torch.stack,
    torch.reshape,
    torch.permute,
    torch.transpose,
    torch.squeeze,
    torch.unsqueeze,
    torch.chunk,
    torch.split,
    torch.narrow,
    torch.roll,
    F.pad,
    operator.getitem,
    getattr,
    nn.Flatten,
    nn.Unflatten,
    nn.ZeroPad2d,
    nn.ConstantPad2d,
    nn.ReflectionPad2d,
    nn.ReplicationPad2d,
    nn.ChannelShuffle,
    nn.PixelShuffle,
    nn.PixelUnshuffle,
    "view",
    "reshape",
    "flatten",
    "permute",
    "transpose",
    "contiguous",
    "size",
    "dim",
    "squeeze",
    "unsqueeze",
    "chunk",
    "split",
    "expand",
    "expand_as",
    "repeat",
    "clone",
    "detach",
    "__getitem__",
)
