"""aten-level MAC rules: the fallback capture, for ops recorded inside modules that have no rule.

Under ``FakeTensorMode`` the propagation pass records the aten ops a custom module runs (the convs of
a custom conv subclass, the matmuls of an attention module); these rules cost them, and
:func:`aten_is_zero_mac` says which of the rest do no multiply-accumulates at all.
"""

from __future__ import annotations

from typing import Any

import torch

from convaudit.analysis.rules.costs import OpCall, register_mac_rule, shape_of
from convaudit.analysis.rules.formulas import attention_macs, conv_macs, matmul_macs, numel

__all__ = ["ZERO_MAC_ATEN", "aten_is_zero_mac"]

aten = torch.ops.aten


@register_mac_rule("convolution", aten.convolution, aten._convolution)
def _aten_convolution(call: OpCall) -> int:
    """aten.convolution(x, w, b, stride, padding, dilation, transposed, output_padding, groups)."""
    x, w = call.args[0], call.args[1]
    transposed, groups = bool(call.args[6]), int(call.args[8])
    kernel = shape_of(w)[2:]
    if transposed:
        c_in, c_out = shape_of(w)[0], shape_of(w)[1] * groups
    else:
        c_out, c_in = shape_of(w)[0], shape_of(w)[1] * groups
    return conv_macs(shape_of(call.out), shape_of(x), c_in, c_out, groups, kernel, transposed)


@register_mac_rule("linear algebra", aten.mm, aten.bmm, aten.matmul)
def _aten_mm(call: OpCall) -> int:
    """aten.mm/bmm: batch·n·k·m."""
    return matmul_macs(shape_of(call.args[0]), shape_of(call.args[1]))


@register_mac_rule("linear algebra", aten.addmm, aten.baddbmm)
def _aten_addmm(call: OpCall) -> int:
    """aten.addmm(bias, a, b)/baddbmm: the product's MACs; the bias add is not a MAC."""
    return matmul_macs(shape_of(call.args[1]), shape_of(call.args[2]))


@register_mac_rule("linear algebra", aten.mv, aten.dot)
def _aten_mv(call: OpCall) -> int:
    """mv: n·k; dot: k."""
    return numel(shape_of(call.args[0]))


def _sdpa(call: OpCall) -> int:
    """aten scaled-dot-product attention (q, k, v, ...): :func:`attention_macs`."""
    q, k, v = (shape_of(t) for t in call.args[:3])
    return attention_macs(q, k, v)


for _name in (
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention",
    "scaled_dot_product_attention",
):
    if hasattr(aten, _name):
        register_mac_rule("attention", getattr(aten, _name))(_sdpa)


@register_mac_rule("attention", aten._native_multi_head_attention)
def _aten_native_mha(call: OpCall) -> int:
    """nn.MultiheadAttention's fused fast path (eval, no grad), query (B, L, E), key and value (B, S, E), H heads.

    In-projections B·L·E² + 2·B·S·E², attention per head B·H·L·S·2·(E/H), out-projection B·L·E²: what the
    unfused path's matmuls and attention cost.
    """
    q, k = shape_of(call.args[0]), shape_of(call.args[1])
    embed, heads = int(call.args[3]), int(call.args[4])
    batch, length, source = numel(q[:-2]), q[-2], k[-2]
    per_head = (batch, heads, length, embed // heads)
    kv = (batch, heads, source, embed // heads)
    return 2 * batch * (length + source) * embed * embed + attention_macs(per_head, kv, kv)


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
        "_safe_softmax",  # what attention with a mask decomposes into
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
        "hardswish",  # not tagged pointwise in aten (hardsigmoid, silu, gelu are)
        "_prelu_kernel",  # nn.PReLU: elementwise, a per-channel slope
        "prelu",
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
    if name in ZERO_MAC_ATEN or torch.Tag.pointwise in tags or getattr(op, "is_view", False):
        return True
    if name.endswith("_") and torch.Tag.inplace in tags:  # hardswish_, gelu_, as_strided_: as their out-of-place op
        base = getattr(getattr(aten, name[:-1], None), getattr(op, "_overloadname", "default"), None)
        return base is not None and aten_is_zero_mac(base)
    return False
