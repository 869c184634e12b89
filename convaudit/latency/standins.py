"""Stand-ins for timing a conv: fresh modules of its configuration and of its separable forms, and an input.

Time does not depend on weight values, so ``stand_ins`` builds the conv, its depthwise→pointwise and its
pointwise→depthwise form from the layer's record alone (never the user's weights); ``stand_in_input`` is a
seeded input of its first-call shape. Layers whose tensors would not fit ``MAX_INPUT_BYTES`` are not timed
(``largest_tensor`` says why).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from convaudit.documents.records import ConvLayer

__all__ = ["CHANNELS_LAST", "MAX_INPUT_BYTES", "largest_tensor", "stand_in_input", "stand_ins"]

#: Layers with a tensor (input, intermediate or output) larger than this are not timed.
MAX_INPUT_BYTES = 512 * 1024**2

# the class follows layer.dims, so its argument types (per-class tuple lengths, padding_mode) are checked at run time
_CONV: dict[int, Callable[..., nn.Module]] = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
CHANNELS_LAST = {2: torch.channels_last, 3: torch.channels_last_3d}


def largest_tensor(layer: ConvLayer, m: int | None, dtype: torch.dtype) -> str | None:
    """Why the layer is too big to time (a tensor over ``MAX_INPUT_BYTES``), or None."""
    sep = layer.separable
    m_dw, m_pw = (m, m) if m else (sep.dw_pw.multiplier, sep.pw_dw.multiplier) if sep else (1, 1)
    n, nd = _padded(layer)[0], layer.dims
    batch = math.prod(n[: len(n) - nd - 1])
    sizes = {
        "input": math.prod(n),
        "output": math.prod(layer.output_shape),
        "dw_pw intermediate": batch * layer.in_channels * m_dw * math.prod(layer.output_shape[-nd:]),
        "pw_dw intermediate": batch * layer.out_channels * m_pw * math.prod(n[-nd:]),
    }
    what, numel = max(sizes.items(), key=lambda kv: kv[1])
    nbytes = numel * dtype.itemsize
    if nbytes <= MAX_INPUT_BYTES:
        return None
    return f"its {what} of {nbytes / 1024**2:.0f} MiB exceeds the {MAX_INPUT_BYTES // 1024**2} MiB memory guard"


def stand_ins(
    layer: ConvLayer,
    *,
    m: int | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    memory_format: str = "contiguous",
) -> dict[str, nn.Module]:
    """Fresh, eval-mode modules for each of ``FORMS`` built from ``layer``'s configuration (never its weights).

    ``original``: the conv (asymmetric padding moved into the input, see ``stand_in_input``);
    ``dw_pw``: depthwise Cin→Cin·m (the conv's stride, padding, dilation, padding mode) then 1×1 Cin·m→Cout
    (groups g, bias); ``pw_dw``: 1×1 Cin→Cout·m (groups g) at the input resolution, then depthwise
    Cout·m→Cout (the conv's stride..., bias), as ``conversion.layers.SeparableConv`` builds them.
    ``m`` defaults to the multipliers of ``layer.separable``'s costs (1).
    """
    sep = layer.separable
    m_dw, m_pw = (m, m) if m else (sep.dw_pw.multiplier, sep.pw_dw.multiplier) if sep else (1, 1)
    padding = _padded(layer)[1]
    conv, f = _CONV[layer.dims], {"device": device, "dtype": dtype}
    spatial = {
        "stride": layer.stride,
        "padding": padding,
        "dilation": layer.dilation,
        "padding_mode": layer.padding_mode,
    }
    cin, cout, k, g = layer.in_channels, layer.out_channels, layer.kernel_size, layer.groups
    modules: dict[str, nn.Module] = {
        "original": conv(cin, cout, k, groups=g, bias=layer.bias, **spatial, **f),
        "dw_pw": nn.Sequential(
            conv(cin, cin * m_dw, k, groups=cin, bias=False, **spatial, **f),
            conv(cin * m_dw, cout, 1, groups=g, bias=layer.bias, **f),
        ),
        "pw_dw": nn.Sequential(
            conv(cin, cout * m_pw, 1, groups=g, bias=False, **f),
            conv(cout * m_pw, cout, k, groups=cout, bias=layer.bias, **spatial, **f),
        ),
    }
    fmt = CHANNELS_LAST.get(layer.dims) if memory_format == "channels_last" else None
    return {name: (module.to(memory_format=fmt) if fmt else module).eval() for name, module in modules.items()}


def stand_in_input(
    layer: ConvLayer,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    memory_format: str = "contiguous",
) -> torch.Tensor:
    """A random input of ``layer``'s first-call shape (an asymmetric padding already applied), seeded."""
    shape = _padded(layer)[0]
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device=device, dtype=dtype)
    fmt = CHANNELS_LAST.get(layer.dims) if memory_format == "channels_last" else None
    return x.contiguous(memory_format=fmt) if fmt and x.dim() == layer.dims + 2 else x


def _padded(layer: ConvLayer) -> tuple[tuple[int, ...], Any]:
    """(input shape, padding) to time: an asymmetric (before, after) padding is timed on the padded input."""
    nd, padding = layer.dims, layer.padding
    if isinstance(padding, str) or len(padding) != 2 * nd:
        return tuple(layer.input_shape), padding
    spatial = [size + padding[2 * i] + padding[2 * i + 1] for i, size in enumerate(layer.input_shape[-nd:])]
    return (*layer.input_shape[:-nd], *spatial), (0,) * nd
