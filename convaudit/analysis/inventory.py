"""Conv inventory: what each conv is, whether it is a candidate, and what its separable forms cost.

One definition of each kind lives in :func:`conv_kind`. Candidates are standard and grouped convs
with a kernel larger than 1 in some dimension whose depthwise→pointwise form (m = 1) saves MACs;
every other conv carries the reason it is not one. Conv modules are read through their adapter
(:mod:`convaudit.analysis.adapters`): a conv-like module with one is a conv here, with the adapter's
effective padding and its reason when it is never a candidate.
"""

from __future__ import annotations

import torch

from convaudit.analysis.adapters import STANDARD_CONV_TYPES, ConvSpec, is_conv_module, module_spec
from convaudit.analysis.propagation import Call
from convaudit.analysis.rules.costs import CONV_FUNCTIONS, functional_conv_args
from convaudit.analysis.rules.formulas import (
    conv_bytes,
    conv_macs,
    dw_pw_cost,
    exact_multiplier,
    pw_dw_cost,
)
from convaudit.analysis.rules.shapes import as_tuple
from convaudit.documents.records import ConvLayer, Separable, SeparableCost
from convaudit.vocab import Kind, Order

__all__ = ["STANDARD_CONV_TYPES", "ConvSpec", "build_layer", "conv_kind", "conv_spec", "is_conv_call"]

Shape = tuple[int, ...]


def conv_kind(spec: ConvSpec) -> Kind:
    """standard | grouped | depthwise | pointwise | transposed | custom — the one definition of each.

    depthwise: groups == in_channels > 1 and out_channels % in_channels == 0 (a 1-channel input conv is
    standard: it mixes nothing, but a depthwise→pointwise form can still be cheaper).
    """
    if spec.custom:
        return Kind.CUSTOM
    if spec.transposed:
        return Kind.TRANSPOSED
    if spec.groups == spec.in_channels > 1 and spec.out_channels % spec.in_channels == 0:
        return Kind.DEPTHWISE
    if all(k == 1 for k in spec.kernel_size):
        return Kind.POINTWISE
    return Kind.GROUPED if spec.groups > 1 else Kind.STANDARD


_REASONS = {
    Kind.DEPTHWISE: "already depthwise (groups = in_channels)",
    Kind.POINTWISE: "pointwise 1×1: no spatial kernel to separate",
    Kind.TRANSPOSED: "transposed convolution: not rewritten",
}


def is_conv_call(call: Call) -> bool:
    """True for a conv module call (a conv-like module with an adapter included) or a functional conv call."""
    if call.node_op == "call_module":
        return is_conv_module(call.target)
    return call.node_op == "call_function" and call.target in CONV_FUNCTIONS


def conv_spec(call: Call) -> ConvSpec:
    """Describe the conv a call runs (a module by its adapter: the padding is the effective one at this input)."""
    if call.node_op == "call_module":
        first = call.args[0] if call.args else None
        return module_spec(call.target, tuple(first.shape) if isinstance(first, torch.Tensor) else ())
    a = functional_conv_args(call.target, call.args, call.kwargs)
    w = tuple(a["weight"].shape)
    nd = len(w) - 2
    g = int(a["groups"])
    transposed = a["transposed"]
    c_in, c_out = (w[0], w[1] * g) if transposed else (w[1] * g, w[0])
    padding = a["padding"] if isinstance(a["padding"], str) else as_tuple(a["padding"], nd)
    from_param = call.weight_target is not None
    bias = a["bias"] is not None
    params = (a["weight"].numel() + (a["bias"].numel() if bias else 0)) if from_param else 0
    # a rewrite reaches a functional conv through its fx node: seen by the hook or real path, it has none
    unreachable = from_param and not call.node_name
    return ConvSpec(
        type=f"torch.nn.functional.{getattr(call.target, '__name__', 'conv')}",
        op="functional",
        in_channels=c_in,
        out_channels=c_out,
        kernel_size=w[2:],
        stride=as_tuple(a["stride"], nd),
        padding=padding,
        dilation=as_tuple(a["dilation"], nd),
        groups=g,
        bias=bias,
        padding_mode="zeros",
        transposed=transposed,
        custom=False,
        weight_is_parameter=from_param,
        params=params,
        reason="functional conv seen without a symbolic trace: a rewrite cannot reach it" if unreachable else None,
    )


def build_layer(
    name: str, spec: ConvSpec, calls: list[tuple[Shape, Shape, int]], dtype: torch.dtype, source: str | None
) -> ConvLayer:
    """One ConvLayer from a spec and its calls (input shape, output shape, MACs of each call)."""
    itemsize = dtype.itemsize
    kind = conv_kind(spec)
    macs = sum(c[2] for c in calls)
    moved = sum(conv_bytes(i, o, spec.params, itemsize) for i, o, _ in calls)
    separable = None
    reason = spec.reason or _REASONS.get(kind)  # an adapter's reason first: it holds whatever the shape
    if kind is Kind.CUSTOM and reason is None:
        reason = (
            f"custom subclass with its own forward ({spec.type.rsplit('.', 1)[-1]}): not rewritten from .weight alone"
        )
    elif not spec.weight_is_parameter and reason is None:
        reason = "weight is computed in forward, not a parameter: cannot be rewritten"
    if reason is None:
        dw_pw = _cost(spec, calls, itemsize, macs, Order.DW_PW, 1)
        if dw_pw.macs >= macs:  # the other forms are not worth computing
            reason = f"no savings: depthwise→pointwise would cost {dw_pw.macs:,} MACs vs {macs:,}"
        else:
            separable = _separable(spec, calls, itemsize, macs, dw_pw)
    first_in, first_out = calls[0][0], calls[0][1]
    return ConvLayer(
        name=name,
        op=spec.op,
        type=spec.type,
        kind=kind,
        candidate=reason is None,
        skip_reason=reason,
        source=source,
        dims=len(spec.kernel_size),
        in_channels=spec.in_channels,
        out_channels=spec.out_channels,
        input_shape=first_in,
        output_shape=first_out,
        kernel_size=spec.kernel_size,
        stride=spec.stride,
        padding=spec.padding,
        dilation=spec.dilation,
        groups=spec.groups,
        bias=spec.bias,
        padding_mode=spec.padding_mode,
        dtype=str(dtype).replace("torch.", ""),
        calls=len(calls),
        params=spec.params,
        macs=macs,
        flops=2 * macs,
        bytes=moved,
        arithmetic_intensity=(2 * macs / moved) if moved else 0.0,
        separable=separable,
        input_pixels=sum(_pixels(i, len(spec.kernel_size)) for i, _, _ in calls),
        output_pixels=sum(_pixels(o, len(spec.kernel_size)) for _, o, _ in calls),
    )


def _pixels(shape: Shape, nd: int) -> int:
    """N·∏spatial of a conv tensor (an unbatched tensor has N = 1)."""
    n = 1
    for d in shape[: len(shape) - nd - 1]:
        n *= d
    for d in shape[-nd:]:
        n *= d
    return n


_DW_PW_FORMULA = "N·∏out·Cin·m·(∏k + Cout/g)"
_PW_DW_FORMULA = "N·(∏in·Cin·Cout/g + ∏out·Cout·∏k)"


def _separable(
    spec: ConvSpec, calls: list[tuple[Shape, Shape, int]], itemsize: int, macs: int, dw_pw: SeparableCost
) -> Separable:
    """The three forms of a candidate whose depthwise→pointwise form at m = 1 is ``dw_pw``."""
    exact = exact_multiplier(spec.in_channels, spec.out_channels, spec.groups, spec.kernel_size, Order.DW_PW)
    # at m = 1 the exact form is dw_pw itself (same figures; records are frozen, so it may be shared)
    dw_pw_exact = dw_pw if exact == 1 else _cost(spec, calls, itemsize, macs, Order.DW_PW, exact)
    return Separable(dw_pw=dw_pw, pw_dw=_cost(spec, calls, itemsize, macs, Order.PW_DW, 1), dw_pw_exact=dw_pw_exact)


def _cost(
    spec: ConvSpec, calls: list[tuple[Shape, Shape, int]], itemsize: int, macs: int, order: Order, m: int
) -> SeparableCost:
    """One separable form of the conv at multiplier ``m``, summed over its calls."""
    ci, co, g, k, b = spec.in_channels, spec.out_channels, spec.groups, spec.kernel_size, spec.bias
    if order is Order.DW_PW:
        figs = [dw_pw_cost(i, o, ci, co, g, k, m, b, itemsize) for i, o, _ in calls]
    else:
        figs = [pw_dw_cost(i, o, ci, co, g, k, b, itemsize) for i, o, _ in calls]
    first = figs[0]
    if len(figs) == 1:  # most convs run once: no sums to make
        dw_macs, pw_macs, moved = first.dw_macs, first.pw_macs, first.bytes
    else:
        dw_macs, pw_macs, moved = sum(f.dw_macs for f in figs), sum(f.pw_macs for f in figs), sum(f.bytes for f in figs)
    params = first.dw_params + first.pw_params
    return SeparableCost(
        order=order,
        multiplier=m,
        params=params,
        macs=dw_macs + pw_macs,
        bytes=moved,
        dw_params=first.dw_params,
        pw_params=first.pw_params,
        dw_macs=dw_macs,
        pw_macs=pw_macs,
        params_ratio=params / spec.params if spec.params else 0.0,
        macs_ratio=(dw_macs + pw_macs) / macs if macs else 0.0,
        formula=_DW_PW_FORMULA if order is Order.DW_PW else _PW_DW_FORMULA,
    )


def call_macs(spec: ConvSpec, in_shape: Shape, out_shape: Shape) -> int:
    """MACs of one call of a (non-custom) conv."""
    return conv_macs(
        out_shape, in_shape, spec.in_channels, spec.out_channels, spec.groups, spec.kernel_size, spec.transposed
    )
