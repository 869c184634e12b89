"""Cost formulas: pure functions of shapes, each with its formula in the docstring.

Conventions (the same as PyTorch's FlopCounterMode, halved):
- A MAC is one multiply-accumulate of a tensor contraction: convolutions, linear layers, matmuls,
  attention. Bias additions, normalisation, pooling and activations are *not* MACs; they are
  memory-bound and are reported by category with 0 MACs (fvcore estimates some of them; the
  cross-check shows its count of the same contraction ops and its total apart).
- FLOPs = 2·MACs, and only where labelled.
- Params count each tensor once; MACs count every call.

The per-op rules that apply these formulas to executed calls are in :mod:`convaudit.analysis.rules.costs`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from convaudit.vocab import Order

__all__ = [
    "ACTIVATIONS",
    "SeparableFigures",
    "attention_macs",
    "batch_and_spatial",
    "conv_bytes",
    "conv_macs",
    "conv_params",
    "dw_pw_cost",
    "exact_multiplier",
    "linear_macs",
    "matmul_macs",
    "numel",
    "pw_dw_cost",
]

Shape = tuple[int, ...]


def numel(xs: Sequence[int]) -> int:
    """∏ of the sizes, as a Python int (1 for an empty shape)."""
    return math.prod(map(int, xs))


# ---------------------------------------------------------------- convolution formulas


def conv_params(c_in: int, c_out: int, groups: int, kernel: Shape, bias: bool) -> int:
    """params = Cout·(Cin/g)·∏k (+ Cout bias). Same for transposed convs (Cin·(Cout/g)·∏k)."""
    return c_out * (c_in // groups) * numel(kernel) + (c_out if bias else 0)


def conv_macs(
    out_shape: Shape, in_shape: Shape, c_in: int, c_out: int, groups: int, kernel: Shape, transposed: bool
) -> int:
    """standard: N·∏out_spatial·Cout·(Cin/g)·∏k; transposed: N·∏in_spatial·Cin·(Cout/g)·∏k.

    ``out_shape``/``in_shape`` are (N, C, *spatial); an unbatched input (C, *spatial) counts as N = 1.
    """
    if transposed:
        n, spatial = batch_and_spatial(in_shape, len(kernel))
        return n * numel(spatial) * c_in * (c_out // groups) * numel(kernel)
    n, spatial = batch_and_spatial(out_shape, len(kernel))
    return n * numel(spatial) * c_out * (c_in // groups) * numel(kernel)


def conv_bytes(in_shape: Shape, out_shape: Shape, params: int, itemsize: int) -> int:
    """bytes = (∏in + params + ∏out)·itemsize: each tensor read or written once (ideal caching)."""
    return (numel(in_shape) + params + numel(out_shape)) * itemsize


def exact_multiplier(c_in: int, c_out: int, groups: int, kernel: Shape, order: str = Order.DW_PW) -> int:
    """m at which a separable form reproduces the conv exactly: the rank bound of the matrices it factors.

    dw_pw factors W[:, i] (Cout/g × ∏k) per input channel: min(Cout/g, ∏k); pw_dw factors W[o]
    (Cin/g × ∏k) per output channel: min(Cin/g, ∏k).
    """
    return min((c_out if order == Order.DW_PW else c_in) // groups, numel(kernel))


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
    n, spatial = batch_and_spatial(out_shape, len(kernel))
    pixels = n * numel(spatial)
    mid = c_in * m
    dw_params = mid * numel(kernel)
    pw_params = mid * (c_out // groups) + (c_out if bias else 0)
    mid_numel = pixels * mid
    moved = (numel(in_shape) + dw_params + mid_numel) + (mid_numel + pw_params + numel(out_shape))
    return SeparableFigures(
        dw_params, pw_params, pixels * mid * numel(kernel), pixels * mid * (c_out // groups), moved * itemsize
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
    n_in, in_spatial = batch_and_spatial(in_shape, len(kernel))
    n_out, out_spatial = batch_and_spatial(out_shape, len(kernel))
    pw_params = c_in * (c_out // groups) * m
    dw_params = c_out * m * numel(kernel) + (c_out if bias else 0)
    mid_numel = n_in * numel(in_spatial) * c_out * m
    moved = (numel(in_shape) + pw_params + mid_numel) + (mid_numel + dw_params + numel(out_shape))
    return SeparableFigures(
        dw_params,
        pw_params,
        n_out * numel(out_spatial) * c_out * m * numel(kernel),
        n_in * numel(in_spatial) * c_in * (c_out // groups) * m,
        moved * itemsize,
    )


def batch_and_spatial(shape: Shape, nd: int) -> tuple[int, Shape]:
    """(N, spatial) of a conv tensor; an unbatched (C, *spatial) tensor has N = 1."""
    spatial = tuple(shape[-nd:])
    batch = numel(shape[: len(shape) - nd - 1]) if len(shape) > nd + 1 else 1
    return batch, spatial


# ---------------------------------------------------------------- other contractions


def linear_macs(in_shape: Shape, out_features: int) -> int:
    """Linear: ∏(input shape)·out_features (every input element meets every output feature once)."""
    return numel(in_shape) * out_features


def matmul_macs(a: Shape, b: Shape) -> int:
    """Batched matmul (…, n, k) @ (…, k, m): ∏broadcast(batch)·n·k·m; 1-D operands as in torch.matmul."""
    a2 = (1, a[0]) if len(a) == 1 else tuple(a)
    b2 = (b[0], 1) if len(b) == 1 else tuple(b)
    batch = torch.broadcast_shapes(tuple(a2[:-2]), tuple(b2[:-2]))
    return numel(batch) * a2[-2] * a2[-1] * b2[-1]


def attention_macs(q: Shape, k: Shape, v: Shape) -> int:
    """Attention q(…,L,E)·k(…,S,E)ᵀ then ·v(…,S,Ev): ∏batch·L·S·(E + Ev)."""
    return numel(q[:-2]) * q[-2] * k[-2] * (q[-1] + v[-1])


#: Elementwise activations: the output has the input's shape and they cost 0 MACs. Both the cost and
#: the shape registries take them from here (each adds the ops only it knows).
ACTIVATIONS: tuple[object, ...] = (
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
    F.relu,
    F.relu6,
    F.silu,
    F.gelu,
    F.hardswish,
    F.hardsigmoid,
    F.sigmoid,
    F.leaky_relu,
    torch.relu,
    torch.sigmoid,
    torch.tanh,
)
