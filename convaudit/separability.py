"""Separability from trained weights: the energy each separable form keeps at every multiplier m."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from .cost_rules import exact_multiplier
from .decompose import singular_values
from .records import ConvLayer, Separability

__all__ = ["separability", "weight_of"]


def weight_of(model: nn.Module, layer: ConvLayer) -> torch.Tensor | None:
    """The real weight tensor behind a ConvLayer (None if it cannot be found or holds no data)."""
    try:
        if layer.op == "module":
            weight = model.get_submodule(layer.name).weight
        else:
            try:
                weight = model.get_parameter(f"{layer.name}.weight")
            except AttributeError:
                weight = model.get_parameter(layer.name)
    except AttributeError:
        return None
    return None if weight is None or weight.is_meta else weight


@torch.no_grad()
def separability(weight: torch.Tensor, groups: int) -> Separability:
    """Cumulative energy shares for dw_pw (per input channel) and pw_dw (per output channel)."""
    w = weight.detach()
    c_out, c_in_g = w.shape[:2]
    k = math.prod(w.shape[2:])
    per_in = w.reshape(groups, c_out // groups, c_in_g, k).permute(0, 2, 1, 3).reshape(-1, c_out // groups, k)
    per_out = w.reshape(c_out, c_in_g, k)
    return Separability(
        dw_pw=_cumulative(singular_values(per_in), exact_multiplier(c_in_g * groups, c_out, groups, w.shape[2:], "dw_pw")),
        pw_dw=_cumulative(singular_values(per_out), exact_multiplier(c_in_g * groups, c_out, groups, w.shape[2:], "pw_dw")),
    )


def _cumulative(s: torch.Tensor, rank: int) -> tuple[float, ...]:
    energy = (s**2).sum(0)  # pooled over channels, per singular-value index
    total = float(energy.sum())
    if total == 0:
        return (1.0,) * rank
    shares = torch.cumsum(energy, 0) / total
    return tuple(round(float(v), 6) for v in shares[:rank])
