"""Cost formulas: pure functions of shapes, and the registry of per-op MAC rules.

Conventions (the same as PyTorch's FlopCounterMode, halved):
- A MAC is one multiply-accumulate of a tensor contraction: convolutions, linear layers, matmuls,
  attention. Bias additions, normalisation, pooling and activations are *not* MACs; they are
  memory-bound and are reported by category with 0 MACs (fvcore estimates some of them; the
  cross-check shows its count of the same contraction ops and its total apart).
- FLOPs = 2·MACs, and only where labelled.
- Params count each tensor once; MACs count every call.

The engine looks rules up by module type (MRO walk), Python function, tensor-method name or aten
op, through :data:`MAC_RULES`; no ``isinstance`` ladder.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from convaudit.analysis.rules.registry import Registry

__all__ = [
    "CATEGORY",
    "CONV_FUNCTIONS",
    "MAC_RULES",
    "MacRule",
    "OpCall",
    "SeparableFigures",
    "aten_is_zero_mac",
    "conv_bytes",
    "conv_macs",
    "conv_params",
    "dw_pw_cost",
    "exact_multiplier",
    "functional_conv_args",
    "linear_macs",
    "matmul_macs",
    "pw_dw_cost",
]

Shape = tuple[int, ...]


def _prod(xs: Sequence[int]) -> int:
    return math.prod(int(x) for x in xs)


# ---------------------------------------------------------------- convolution formulas


def conv_params(c_in: int, c_out: int, groups: int, kernel: Shape, bias: bool) -> int:
    """params = Cout·(Cin/g)·∏k (+ Cout bias). Same for transposed convs (Cin·(Cout/g)·∏k)."""
    return c_out * (c_in // groups) * _prod(kernel) + (c_out if bias else 0)


def conv_macs(
    out_shape: Shape, in_shape: Shape, c_in: int, c_out: int, groups: int, kernel: Shape, transposed: bool
) -> int:
    """standard: N·∏out_spatial·Cout·(Cin/g)·∏k; transposed: N·∏in_spatial·Cin·(Cout/g)·∏k.

    ``out_shape``/``in_shape`` are (N, C, *spatial); an unbatched input (C, *spatial) counts as N = 1.
    """
    if transposed:
        n, spatial = _batch_and_spatial(in_shape, len(kernel))
        return n * _prod(spatial) * c_in * (c_out // groups) * _prod(kernel)
    n, spatial = _batch_and_spatial(out_shape, len(kernel))
    return n * _prod(spatial) * c_out * (c_in // groups) * _prod(kernel)


def conv_bytes(in_shape: Shape, out_shape: Shape, params: int, itemsize: int) -> int:
    """bytes = (∏in + params + ∏out)·itemsize: each tensor read or written once (ideal caching)."""
    return (_prod(in_shape) + params + _prod(out_shape)) * itemsize


def exact_multiplier(c_in: int, c_out: int, groups: int, kernel: Shape, order: str = "dw_pw") -> int:
    """m at which a separable form reproduces the conv exactly: the rank bound of the matrices it factors.

    dw_pw factors W[:, i] (Cout/g × ∏k) per input channel: min(Cout/g, ∏k); pw_dw factors W[o]
    (Cin/g × ∏k) per output channel: min(Cin/g, ∏k).
    """
    return min((c_out if order == "dw_pw" else c_in) // groups, _prod(kernel))


@dataclass(frozen=True)
class SeparableFigures:
    """Params, MACs and bytes of a two-part replacement (plain numbers; records wraps them)."""

    dw_params: int
    pw_params: int
    dw_macs: int
    pw_macs: int
    bytes: int

    @property
    def params(self) -> int:
        return self.dw_params + self.pw_params

    @property
    def macs(self) -> int:
        return self.dw_macs + self.pw_macs


def dw_pw_cost(
    in_shape: Shape,
    out_shape: Shape,
    c_in: int,
    c_out: int,
    groups: int,
    kernel: Shape,
    m: int,
    bias: bool,
    itemsize: int,
) -> SeparableFigures:
    """DW→PW at multiplier m: DW Cin→Cin·m (groups=Cin, conv's stride), PW Cin·m→Cout (1×1, groups=g, bias).

    params = Cin·m·∏k + Cin·m·Cout/g (+Cout); MACs = N·∏out·Cin·m·(∏k + Cout/g).
    For groups=1, m=1 the params ratio is 1/Cout + 1/∏k (the seed's formula).
    """
    n, spatial = _batch_and_spatial(out_shape, len(kernel))
    pixels = n * _prod(spatial)
    mid = c_in * m
    dw_params = mid * _prod(kernel)
    pw_params = mid * (c_out // groups) + (c_out if bias else 0)
    mid_numel = pixels * mid
    moved = (_prod(in_shape) + dw_params + mid_numel) + (mid_numel + pw_params + _prod(out_shape))
    return SeparableFigures(
        dw_params, pw_params, pixels * mid * _prod(kernel), pixels * mid * (c_out // groups), moved * itemsize
    )


def pw_dw_cost(
    in_shape: Shape,
    out_shape: Shape,
    c_in: int,
    c_out: int,
    groups: int,
    kernel: Shape,
    bias: bool,
    itemsize: int,
    m: int = 1,
) -> SeparableFigures:
    """PW→DW (BSConv-U): PW Cin→Cout·m at the *input* resolution (groups=g), then DW Cout·m→Cout (groups=Cout).

    params = Cin·Cout·m/g + Cout·m·∏k (+Cout); MACs = N·(∏in·Cin·Cout·m/g + ∏out·Cout·m·∏k).
    With stride 2 the PW runs on 4× the pixels of the output.
    """
    n_in, in_spatial = _batch_and_spatial(in_shape, len(kernel))
    n_out, out_spatial = _batch_and_spatial(out_shape, len(kernel))
    pw_params = c_in * (c_out // groups) * m
    dw_params = c_out * m * _prod(kernel) + (c_out if bias else 0)
    mid_numel = n_in * _prod(in_spatial) * c_out * m
    moved = (_prod(in_shape) + pw_params + mid_numel) + (mid_numel + dw_params + _prod(out_shape))
    return SeparableFigures(
        dw_params,
        pw_params,
        n_out * _prod(out_spatial) * c_out * m * _prod(kernel),
        n_in * _prod(in_spatial) * c_in * (c_out // groups) * m,
        moved * itemsize,
    )


def _batch_and_spatial(shape: Shape, nd: int) -> tuple[int, Shape]:
    """(N, spatial) of a conv tensor; an unbatched (C, *spatial) tensor has N = 1."""
    spatial = tuple(shape[-nd:])
    batch = _prod(shape[: len(shape) - nd - 1]) if len(shape) > nd + 1 else 1
    return batch, spatial


# ---------------------------------------------------------------- other contractions


def linear_macs(in_shape: Shape, out_features: int) -> int:
    """Linear: ∏(input shape)·out_features (every input element meets every output feature once)."""
    return _prod(in_shape) * out_features


def matmul_macs(a: Shape, b: Shape) -> int:
    """Batched matmul (…, n, k) @ (…, k, m): ∏broadcast(batch)·n·k·m; 1-D operands as in torch.matmul."""
    a2 = (1, a[0]) if len(a) == 1 else tuple(a)
    b2 = (b[0], 1) if len(b) == 1 else tuple(b)
    batch = torch.broadcast_shapes(tuple(a2[:-2]), tuple(b2[:-2]))
    return _prod(batch) * a2[-2] * a2[-1] * b2[-1]


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


def _shape(t: Any) -> Shape:
    return tuple(t.shape)


def _zero(category: str, *keys: Any) -> None:
    """Register keys whose ops do no multiply-accumulates (counted, named, 0 MACs)."""
    MAC_RULES.register(*keys)(lambda call: 0)
    CATEGORY.update(dict.fromkeys(keys, category))


def _rule(category: str, *keys: Any) -> Callable[[MacRule], MacRule]:
    def wrap(fn: MacRule) -> MacRule:
        CATEGORY.update(dict.fromkeys(keys, category))
        return MAC_RULES.register(*keys)(fn)

    return wrap


@_rule("convolution", nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
def _conv_module(call: OpCall) -> int:
    """nn.Conv*/ConvTranspose*: :func:`conv_macs` from the module's attributes and the call's shapes."""
    m = call.target
    return conv_macs(
        _shape(call.out), _shape(call.args[0]), m.in_channels, m.out_channels, m.groups, m.kernel_size, m.transposed
    )


@_rule("convolution", F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)
def _conv_function(call: OpCall) -> int:
    """F.conv*: :func:`conv_macs` from the weight's shape and ``groups``."""
    spec = functional_conv_args(call.target, call.args, call.kwargs)
    w = _shape(spec["weight"])
    g = int(spec["groups"])
    transposed = spec["transposed"]
    c_in, c_out = (w[0], w[1] * g) if transposed else (w[1] * g, w[0])
    return conv_macs(_shape(call.out), _shape(spec["input"]), c_in, c_out, g, w[2:], transposed)


_CONV_SIGNATURE = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_CONV_T_SIGNATURE = ("input", "weight", "bias", "stride", "padding", "output_padding", "groups", "dilation")
TRANSPOSED_CONV_FUNCTIONS = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)
CONV_FUNCTIONS = (F.conv1d, F.conv2d, F.conv3d) + TRANSPOSED_CONV_FUNCTIONS


def functional_conv_args(fn: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
    """Name the arguments of an F.conv*/F.conv_transpose* call, defaults filled in."""
    transposed = fn in TRANSPOSED_CONV_FUNCTIONS
    names = _CONV_T_SIGNATURE if transposed else _CONV_SIGNATURE
    spec: dict[str, Any] = {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1, "output_padding": 0}
    spec.update(zip(names, args))
    spec.update(kwargs)
    spec["transposed"] = transposed
    return spec


@_rule("linear algebra", nn.Linear)
def _linear_module(call: OpCall) -> int:
    """nn.Linear: ∏input·out_features."""
    return linear_macs(_shape(call.args[0]), call.target.out_features)


@_rule("linear algebra", F.linear)
def _linear_function(call: OpCall) -> int:
    """F.linear(x, W): ∏x·W.shape[0]."""
    weight = call.args[1] if len(call.args) > 1 else call.kwargs["weight"]
    return linear_macs(_shape(call.args[0]), _shape(weight)[0])


@_rule("linear algebra", nn.Bilinear)
def _bilinear_module(call: OpCall) -> int:
    """nn.Bilinear: N·in1·in2·out."""
    m = call.target
    return _prod(_shape(call.args[0])[:-1]) * m.in1_features * m.in2_features * m.out_features


@_rule("linear algebra", torch.matmul, operator.matmul, "matmul", "__matmul__", torch.bmm, "bmm", torch.mm, "mm")
def _matmul(call: OpCall) -> int:
    """matmul/mm/bmm: batch·n·k·m."""
    return matmul_macs(_shape(call.args[0]), _shape(call.args[1]))


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
    nn.ReLU,
    nn.ReLU6,
    nn.SiLU,
    nn.GELU,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Sigmoid,
    nn.Tanh,
    nn.LeakyReLU,
    nn.ELU,
    nn.Mish,
    nn.PReLU,
    nn.Softmax,
    nn.LogSoftmax,
    nn.Softplus,
    nn.Hardtanh,
    F.relu,
    F.relu6,
    F.silu,
    F.gelu,
    F.hardswish,
    F.hardsigmoid,
    F.sigmoid,
    F.tanh,
    F.leaky_relu,
    F.elu,
    F.mish,
    F.softmax,
    F.log_softmax,
    F.hardtanh,
    torch.relu,
    torch.sigmoid,
    torch.tanh,
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


# ---------------------------------------------------------------- aten level (fallback capture)

aten = torch.ops.aten


@_rule("convolution", aten.convolution, aten._convolution)
def _aten_convolution(call: OpCall) -> int:
    """aten.convolution(x, w, b, stride, padding, dilation, transposed, output_padding, groups)."""
    x, w = call.args[0], call.args[1]
    transposed, groups = bool(call.args[6]), int(call.args[8])
    kernel = _shape(w)[2:]
    if transposed:
        c_in, c_out = _shape(w)[0], _shape(w)[1] * groups
    else:
        c_out, c_in = _shape(w)[0], _shape(w)[1] * groups
    return conv_macs(_shape(call.out), _shape(x), c_in, c_out, groups, kernel, transposed)


@_rule("linear algebra", aten.mm, aten.bmm, aten.matmul)
def _aten_mm(call: OpCall) -> int:
    """aten.mm/bmm: batch·n·k·m."""
    return matmul_macs(_shape(call.args[0]), _shape(call.args[1]))


@_rule("linear algebra", aten.addmm, aten.baddbmm)
def _aten_addmm(call: OpCall) -> int:
    """aten.addmm(bias, a, b)/baddbmm: the product's MACs; the bias add is not a MAC."""
    return matmul_macs(_shape(call.args[1]), _shape(call.args[2]))


@_rule("linear algebra", aten.mv, aten.dot)
def _aten_mv(call: OpCall) -> int:
    """mv: n·k; dot: k."""
    return _prod(_shape(call.args[0]))


def _sdpa(call: OpCall) -> int:
    """Attention q(…,L,E)·k(…,S,E)ᵀ then ·v(…,S,Ev): ∏batch·L·S·(E + Ev)."""
    q, k, v = (_shape(t) for t in call.args[:3])
    batch = _prod(q[:-2])
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


for _name in (
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention",
    "scaled_dot_product_attention",
):
    if hasattr(aten, _name):
        _rule("attention", getattr(aten, _name))(_sdpa)
_rule("attention", F.scaled_dot_product_attention)(_sdpa)

#: aten ops known to do no multiply-accumulates, beyond pointwise-tagged ops and views.
ZERO_MAC_ATEN = frozenset(
    [
        "cat",
        "stack",
        "clone",
        "copy",
        "copy_",
        "empty",
        "empty_like",
        "empty_strided",
        "zeros",
        "zeros_like",
        "ones",
        "ones_like",
        "full",
        "full_like",
        "arange",
        "expand",
        "permute",
        "transpose",
        "t",
        "view",
        "reshape",
        "_unsafe_view",
        "slice",
        "select",
        "index",
        "index_select",
        "split",
        "split_with_sizes",
        "unbind",
        "squeeze",
        "unsqueeze",
        "flatten",
        "contiguous",
        "sum",
        "mean",
        "amax",
        "amin",
        "max",
        "min",
        "argmax",
        "argmin",
        "native_batch_norm",
        "_native_batch_norm_legit",
        "_native_batch_norm_legit_no_training",
        "_native_batch_norm_legit_functional",
        "native_layer_norm",
        "native_group_norm",
        "_softmax",
        "_log_softmax",
        "softmax",
        "log_softmax",
        "max_pool1d",
        "max_pool2d_with_indices",
        "max_pool3d_with_indices",
        "avg_pool1d",
        "avg_pool2d",
        "avg_pool3d",
        "_adaptive_avg_pool2d",
        "_adaptive_avg_pool3d",
        "adaptive_avg_pool1d",
        "adaptive_max_pool2d",
        "adaptive_max_pool3d",
        "upsample_nearest1d",
        "upsample_nearest2d",
        "upsample_nearest3d",
        "upsample_bilinear2d",
        "upsample_trilinear3d",
        "upsample_bicubic2d",
        "upsample_linear1d",
        "_upsample_nearest_exact2d",
        "constant_pad_nd",
        "reflection_pad1d",
        "reflection_pad2d",
        "reflection_pad3d",
        "replication_pad1d",
        "replication_pad2d",
        "replication_pad3d",
        "pad",
        "detach",
        "alias",
        "lift_fresh",
        "lift_fresh_copy",
        "_to_copy",
        "masked_fill",
        "embedding",
        "gather",
        "scatter",
        "scatter_add",
        "topk",
        "sort",
        "var_mean",
        "var",
        "std",
        "std_mean",
        "native_dropout",
        "dropout",
        "bernoulli",
        "bernoulli_",
        "roll",
        "flip",
        "_local_scalar_dense",
        "as_strided",
        "new_empty",
        "new_zeros",
        "new_ones",
        "new_full",
        "fill",
        "fill_",
        "zero_",
        "randn",
        "rand",
        "normal_",
        "uniform_",
        "diagonal",
        "tril",
        "triu",
        "cumsum",
        "linalg_vector_norm",
        "norm",
        "_assert_async",
        "_assert_tensor_metadata",
        "scalar_tensor",
        "sym_size",
        "sym_numel",
        "sym_stride",
        "sym_storage_offset",
        "is_same_size",
        "_reshape_alias",
        "unfold",
        "channel_shuffle",
        "pixel_shuffle",
        "pixel_unshuffle",
        "repeat",
        "expand_as",
        "item",
        "dim",
        "size",
        "stride",
        "numel",
    ]
)


def aten_is_zero_mac(op: Any) -> bool:
    """True for aten ops that do no multiply-accumulates (pointwise, views, data movement, norms, pools)."""
    packet = getattr(op, "overloadpacket", op)
    name = getattr(packet, "__name__", str(packet)).split(".")[-1]
    tags = getattr(op, "tags", ())
    if getattr(op, "namespace", "aten") == "prim":  # prim.device, prim.layout: metadata queries
        return True
    return name in ZERO_MAC_ATEN or torch.Tag.pointwise in tags or getattr(op, "is_view", False)
