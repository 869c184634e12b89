"""Replacement layers: a conv as depthwise + pointwise (either order), built from the conv's own weights.

``SeparableConv2d.from_conv(conv, rank=1)`` returns a module with children ``conv_dw`` and ``conv_pw``
(timm's names) that computes the best rank-1 approximation of ``conv``; ``rank="full"`` reproduces
it exactly. Stride, padding (ints, tuples, ``'same'``, ``'valid'``), dilation, padding mode, bias,
groups, dtype, device and memory format carry over.

A conv-like module is read through its adapter (:mod:`convaudit.analysis.adapters`): the layer is built
from the weight its forward really uses (a weight-standardised conv's standardised weight: the rewrite
is inference-equivalent), and a conv that pads TF 'SAME' at run time gets the same padding module
(child ``pad``, computing the padding from each input's size) in front of its depthwise part.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn as nn
from torch.nn.modules.conv import _ConvNd

from convaudit.analysis.adapters import SamePad, conv_adapter
from convaudit.analysis.rules.formulas import exact_multiplier
from convaudit.conversion.factorize import (
    Factors,
    dw_pw_factors,
    patch_covariance,
    pw_dw_factors,
)
from convaudit.errors import UsageError
from convaudit.vocab import LAYER_ORDERS, Init, Order, Style

__all__ = [
    "INITS",
    "ORDERS",
    "SeparableConv",
    "SeparableConv1d",
    "SeparableConv2d",
    "SeparableConv3d",
    "separable_class",
]

ORDERS = LAYER_ORDERS  #: the orders a separable layer can have
INITS = tuple(Init)  #: where its weights can come from
_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_BN = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


class SeparableConv(nn.Module):
    """Depthwise→pointwise (``order="dw_pw"``) or pointwise→depthwise (``"pw_dw"``) conv.

    dw_pw: ``conv_dw`` Cin→Cin·m (groups=Cin, the conv's stride/padding/dilation/padding_mode), then
    ``conv_pw`` Cin·m→Cout (1×1, groups=g, bias). pw_dw: ``conv_pw`` Cin→Cout·m (1×1, groups=g) at the
    input resolution, then ``conv_dw`` Cout·m→Cout (groups=Cout, the conv's stride..., bias).
    ``style="mobilenet"`` puts BatchNorm+ReLU between the parts (dw_pw only; for training from scratch:
    not function-preserving). ``pad``: a module padding the input of the depthwise part at run time (TF
    'SAME' padding of the conv it replaces); in pw_dw order it runs after the bias-free pointwise part,
    which commutes with zero padding, so the 1×1 conv still runs at the input resolution.
    """

    dims: int = 2

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        multiplier: int = 1,
        order: str = Order.DW_PW,
        style: str | None = None,
        device: Any = None,
        dtype: Any = None,
        pad: nn.Module | None = None,
    ) -> None:
        super().__init__()
        order = Order.of(order, "order", allowed=ORDERS)
        style = None if style is None else Style.of(style, "style")
        if style is not None and order is not Order.DW_PW:
            raise UsageError("style='mobilenet' is the only style, and only for order='dw_pw'")
        if in_channels % groups or out_channels % groups or multiplier < 1:
            raise UsageError(f"channels {in_channels}→{out_channels} do not split into {groups} groups (or m < 1)")
        conv = _CONV[self.dims]
        f = {"device": device, "dtype": dtype}
        spatial = {"stride": stride, "padding": padding, "dilation": dilation, "padding_mode": padding_mode}
        self.order, self.multiplier, self.style = order, multiplier, style
        if order is Order.DW_PW:
            mid = in_channels * multiplier
            self.conv_dw = conv(in_channels, mid, kernel_size, groups=in_channels, bias=False, **spatial, **f)
            if style is Style.MOBILENET:
                self.bn_dw = _BN[self.dims](mid, **f)
                self.act_dw = nn.ReLU(inplace=True)
            self.conv_pw = conv(mid, out_channels, 1, groups=groups, bias=bias, **f)
        else:
            mid = out_channels * multiplier
            self.conv_pw = conv(in_channels, mid, 1, groups=groups, bias=False, **f)
            self.conv_dw = conv(mid, out_channels, kernel_size, groups=out_channels, bias=bias, **spatial, **f)
        if pad is not None:
            self.pad = pad
        self.energy: float | None = None  # share of the weight energy kept, set by from_conv
        self.note: str | None = None  # what the rewrite means, from the conv's adapter (set by from_conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = self._modules.get("pad")
        if self.order == Order.PW_DW:
            x = self.conv_pw(x)
            return self.conv_dw(x if pad is None else pad(x))
        x = self.conv_dw(x if pad is None else pad(x))
        if self.style == Style.MOBILENET:
            x = self.act_dw(self.bn_dw(x))
        return self.conv_pw(x)

    def extra_repr(self) -> str:
        style = f", style={str(self.style)!r}" if self.style else ""  # str(): the value, not the enum's repr
        return f"order={str(self.order)!r}, multiplier={self.multiplier}{style}"

    @classmethod
    def from_conv(
        cls,
        conv: nn.Module,
        rank: int | str = 1,
        order: str = Order.DW_PW,
        init: str = Init.SVD,
        calibration: Iterable[torch.Tensor] | None = None,
        style: str | None = None,
    ) -> SeparableConv:
        """A separable layer that approximates ``conv`` (exactly at ``rank="full"``).

        ``conv`` is a torch.nn conv or a conv-like module with an adapter (read through it: its effective
        weight, and its run-time 'SAME' padding as the layer's ``pad``).

        Args:
            rank: channel multiplier m, or "full" = min(Cout/g, ∏k) (dw_pw) / min(Cin/g, ∏k) (pw_dw).
            init: "svd" (weight space), "calibrated" (fit to the conv's inputs in ``calibration``,
                dw_pw only), or "random" (fresh init, e.g. with ``style="mobilenet"`` for training).
            calibration: batches of *inputs to this conv*.
        """
        order, init = Order.of(order, "order", allowed=ORDERS), Init.of(init, "init")
        adapter = conv_adapter(conv)
        if adapter is None:
            raise UsageError(
                f"{type(conv).__name__} is not a Conv1d/2d/3d computing what its base computes; "
                "only those are rewritten from .weight (or register an adapter: convaudit.register_conv)"
            )
        pad, plain = adapter.pre_pad(conv), adapter.as_conv(conv)  # the plain conv the layer reproduces after pad
        if pad is not None and calibration is not None:
            calibration = [pad(x) for x in calibration]  # the conv's inputs as the plain conv sees them
        layer = cls._from_plain(plain, rank, order, init, calibration, style, pad)
        layer.note = adapter.note
        return layer

    @classmethod
    def _from_plain(
        cls,
        conv: _ConvNd,
        rank: int | str,
        order: Order,
        init: Init,
        calibration: Iterable[torch.Tensor] | None,
        style: str | None,
        pad: SamePad | None,
    ) -> SeparableConv:
        dims = len(conv.kernel_size)
        target = separable_class(dims)
        groups = conv.groups
        if rank == "full":
            m = exact_multiplier(conv.in_channels, conv.out_channels, groups, tuple(conv.kernel_size), order)
        else:
            m = int(rank)
        layer = target(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
            groups,
            conv.bias is not None,
            conv.padding_mode,
            m,
            order,
            style,
            device=conv.weight.device,
            dtype=conv.weight.dtype,
            pad=pad,
        )
        if init == Init.RANDOM:
            return layer
        if style is not None:
            raise UsageError("style='mobilenet' is not function-preserving: use it with init='random' only")
        if init == Init.CALIBRATED:
            if order != Order.DW_PW:
                raise UsageError("init='calibrated' fits the depthwise→pointwise order only; use order='dw_pw'")
            if calibration is None:
                raise UsageError("init='calibrated' needs calibration inputs")
            factors = dw_pw_factors(conv.weight, groups, m, covariance=conv_input_covariance(conv, calibration))
        else:  # Init.SVD
            factors = (dw_pw_factors if order == Order.DW_PW else pw_dw_factors)(conv.weight, groups, m)
        layer.load_factors(factors, conv)
        return layer

    @torch.no_grad()
    def load_factors(self, factors: Factors, conv: _ConvNd) -> None:
        """Copy factor weights (and the conv's bias) in, at the conv's dtype and memory format."""
        first, second = (self.conv_dw, self.conv_pw) if self.order == Order.DW_PW else (self.conv_pw, self.conv_dw)
        fmt = _memory_format(conv.weight)
        for part, w in ((first, factors.first), (second, factors.second)):
            part.weight.copy_(w.to(part.weight.dtype))
            if fmt is not None:
                part.weight.data = part.weight.data.contiguous(memory_format=fmt)
        if conv.bias is not None:
            if second.bias is None:
                raise UsageError("the conv has a bias but this separable layer was built without one")
            second.bias.copy_(conv.bias)
        self.energy = factors.energy


class SeparableConv1d(SeparableConv):
    dims = 1


class SeparableConv2d(SeparableConv):
    dims = 2


class SeparableConv3d(SeparableConv):
    dims = 3


def separable_class(dims: int) -> type[SeparableConv]:
    """SeparableConv1d/2d/3d for a conv of ``dims`` spatial dimensions."""
    return {1: SeparableConv1d, 2: SeparableConv2d, 3: SeparableConv3d}[dims]


def _memory_format(weight: torch.Tensor) -> torch.memory_format | None:
    if weight.dim() == 4 and weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous():
        return torch.channels_last
    if weight.dim() == 5 and weight.is_contiguous(memory_format=torch.channels_last_3d) and not weight.is_contiguous():
        return torch.channels_last_3d
    return None


@torch.no_grad()
def conv_input_covariance(conv: _ConvNd, inputs: Iterable[torch.Tensor]) -> torch.Tensor:
    """Per-channel patch covariance (Cin, ∏k, ∏k) of the conv's inputs, padded as the conv pads them."""
    total, count = None, 0
    for x in inputs:
        padded = _pad_like(conv, x.to(torch.float64))
        s, n = patch_covariance(padded, conv.kernel_size, conv.stride, conv.dilation)
        total, count = (s if total is None else total + s), count + n
    if total is None or count == 0:
        raise UsageError("calibration gave no inputs for the layer")
    return total / count


def _pad_like(conv: _ConvNd, x: torch.Tensor) -> torch.Tensor:
    """The input as the conv sees it after padding (explicit pads, 'same', 'valid', padding modes)."""
    import torch.nn.functional as F

    if x.dim() == len(conv.kernel_size) + 1:
        x = x.unsqueeze(0)
    if conv.padding == "valid":
        return x
    if isinstance(conv.padding, str):  # "same" (the only other string, "valid", returned above)
        pads: list[int] = []
        for k, d in zip(reversed(conv.kernel_size), reversed(conv.dilation), strict=True):
            total = d * (k - 1)
            pads += [total // 2, total - total // 2]
    else:
        pads = [p for p in reversed(conv.padding) for _ in range(2)]
    mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
    return F.pad(x, pads, mode=mode) if any(pads) else x
