"""Measured time: each candidate conv against its depthwise→pointwise replacement, on this device.

Depthwise convs are memory-bound, so a MAC ratio is a promise, not a speed-up (PyTorch #1708,
#18631; ShuffleNetV2's guidelines). This stage checks the promise: for every candidate it builds a
conv with the layer's exact configuration and the m = 1 replacement, both with fresh weights (time
does not depend on weight values, and the user's model is not touched), and times one call of each
at the layer's first-call input shape: eval, no_grad, warm-up first, median of repeated calls, the
thread count stated. Layers whose input would not fit a budget are skipped with the reason.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from convaudit.documents.records import ConvLayer, LayerTiming, Timing

__all__ = ["MAX_INPUT_BYTES", "measure"]

#: Layers whose input tensor is larger than this are not timed (a real forward must allocate it).
MAX_INPUT_BYTES = 512 * 1024**2

# the class follows layer.dims, so its argument types (per-class tuple lengths, padding_mode) are checked at run time
_CONV: dict[int, Callable[..., nn.Module]] = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


def measure(layers: tuple[ConvLayer, ...] | list[ConvLayer], repeats: int = 10, device: str = "cpu") -> Timing:
    """Time every candidate and its m = 1 depthwise→pointwise form."""
    timed = [_one(layer, repeats, torch.device(device)) for layer in layers if layer.candidate and layer.separable]
    return Timing(device=str(device), threads=torch.get_num_threads(), repeats=repeats, layers=tuple(timed))


@torch.no_grad()
def _one(layer: ConvLayer, repeats: int, device: torch.device) -> LayerTiming:
    predicted = layer.macs / layer.separable.dw_pw.macs if layer.separable and layer.separable.dw_pw.macs else 0.0
    dtype = getattr(torch, layer.dtype, torch.float32)
    if math.prod(layer.input_shape) * torch.empty((), dtype=dtype).element_size() > MAX_INPUT_BYTES:
        return LayerTiming(
            layer.name, None, None, None, predicted, skipped=f"input larger than {MAX_INPUT_BYTES // 1024**2} MiB"
        )
    shape, padding = _padded(layer)
    conv = _conv(layer, layer.out_channels, layer.groups, layer.bias, padding, device, dtype).eval()
    replacement = _dw_pw_stand_in(layer, device, dtype, padding)
    x = torch.randn(shape, device=device, dtype=dtype)
    try:
        seconds = _median_seconds(conv, x, repeats, device)
        seconds_dw_pw = _median_seconds(replacement, x, repeats, device)
    except RuntimeError as exc:  # e.g. a dtype this device has no kernel for
        line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return LayerTiming(layer.name, None, None, None, predicted, skipped=f"could not run: {line[:120]}")
    return LayerTiming(
        layer.name, seconds, seconds_dw_pw, seconds / seconds_dw_pw if seconds_dw_pw else None, predicted
    )


def _padded(layer: ConvLayer) -> tuple[tuple[int, ...], Any]:
    """(input shape, padding) to time: an asymmetric (before, after) padding is timed on the padded input."""
    nd, padding = layer.dims, layer.padding
    if isinstance(padding, str) or len(padding) != 2 * nd:
        return layer.input_shape, padding
    spatial = [size + padding[2 * i] + padding[2 * i + 1] for i, size in enumerate(layer.input_shape[-nd:])]
    return (*layer.input_shape[:-nd], *spatial), (0,) * nd


def _conv(
    layer: ConvLayer, out_channels: int, groups: int, bias: bool, padding: Any, device: torch.device, dtype: torch.dtype
) -> nn.Module:
    """A fresh conv with ``layer``'s kernel, stride, dilation and padding mode (timing needs shapes, not weights)."""
    return _CONV[layer.dims](
        layer.in_channels,
        out_channels,
        layer.kernel_size,
        stride=layer.stride,
        padding=padding,
        dilation=layer.dilation,
        groups=groups,
        bias=bias,
        padding_mode=layer.padding_mode,
        device=device,
        dtype=dtype,
    )


def _dw_pw_stand_in(layer: ConvLayer, device: torch.device, dtype: torch.dtype, padding: Any) -> nn.Module:
    """The m = 1 depthwise→pointwise form of ``layer``, freshly initialised."""
    depthwise = _conv(layer, layer.in_channels, layer.in_channels, False, padding, device, dtype)
    pointwise = _CONV[layer.dims](
        layer.in_channels, layer.out_channels, 1, groups=layer.groups, bias=layer.bias, device=device, dtype=dtype
    )
    return nn.Sequential(depthwise, pointwise).eval()


def _median_seconds(module: nn.Module, x: torch.Tensor, repeats: int, device: torch.device) -> float:
    for _ in range(2):  # warm-up: first calls pick kernels and allocate
        module(x)
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        module(x)
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
