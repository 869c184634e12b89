"""Separability from trained weights: the energy each separable form keeps at every multiplier m."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from convaudit.analysis.adapters import conv_adapter
from convaudit.analysis.rules.formulas import exact_multiplier
from convaudit.documents.records import ConvLayer, Separability
from convaudit.vocab import Order

__all__ = ["per_input_channel", "separability", "singular_values", "weight_of"]


def weight_of(model: nn.Module, layer: ConvLayer) -> torch.Tensor | None:
    """The real weight tensor behind a ConvLayer (None if it cannot be found or holds no data).

    For a module, the weight its forward really convolves with, by its adapter (e.g. the standardised
    weight of a weight-standardised conv).
    """
    try:
        if layer.op == "module":
            module = model.get_submodule(layer.name)
            adapter = conv_adapter(module)
            weight = adapter.weight(module) if adapter is not None else module.weight
        else:
            try:
                weight = model.get_parameter(f"{layer.name}.weight")
            except AttributeError:
                weight = model.get_parameter(layer.name)
    except AttributeError:
        return None
    # a submodule attribute called `weight` may be no tensor at all (or None)
    return weight if isinstance(weight, torch.Tensor) and not weight.is_meta else None


@torch.no_grad()
def separability(weight: torch.Tensor, groups: int) -> Separability:
    """Cumulative energy shares for dw_pw (per input channel) and pw_dw (per output channel)."""
    w = weight.detach()
    c_out, c_in_g = w.shape[:2]
    per_in = per_input_channel(w, groups)
    per_out = w.reshape(c_out, c_in_g, math.prod(w.shape[2:]))
    return Separability(
        dw_pw=_cumulative(
            singular_values(per_in), exact_multiplier(c_in_g * groups, c_out, groups, w.shape[2:], Order.DW_PW)
        ),
        pw_dw=_cumulative(
            singular_values(per_out), exact_multiplier(c_in_g * groups, c_out, groups, w.shape[2:], Order.PW_DW)
        ),
    )


def _cumulative(s: torch.Tensor, rank: int) -> tuple[float, ...]:
    energy = (s**2).sum(0)  # pooled over channels, per singular-value index
    total = float(energy.sum())
    if total == 0:
        return (1.0,) * rank
    shares = torch.cumsum(energy, 0) / total
    return tuple(round(float(v), 6) for v in shares[:rank])


def per_input_channel(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """(Cin, Cout/g, ∏k): M_i for every input channel i."""
    c_out, c_in_g = weight.shape[:2]
    k = math.prod(weight.shape[2:])
    w = weight.reshape(groups, c_out // groups, c_in_g, k)  # (g, Cout/g, Cin/g, K)
    return w.permute(0, 2, 1, 3).reshape(groups * c_in_g, c_out // groups, k)


def singular_values(a: torch.Tensor) -> torch.Tensor:
    """Batched singular values (b, min(r, c)), descending, from the small Gram matrix's eigenvalues.

    NB: the Gram matrix is accumulated at the weight's own precision (float32 for most models; a
    float64 copy of every weight would cost more than the whole shape analysis) and solved in float64:
    energy shares come out to ~1e-6, which is all a report shows.
    """
    a = a.detach()
    if not a.is_floating_point() or a.dtype in (torch.float16, torch.bfloat16):
        a = a.float()
    gram = a.transpose(-1, -2) @ a if a.shape[-1] <= a.shape[-2] else a @ a.transpose(-1, -2)
    return torch.linalg.eigvalsh(gram.double()).flip(-1).clamp_min(0).sqrt()
