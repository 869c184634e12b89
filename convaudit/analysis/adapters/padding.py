"""TF 'SAME' padding computed from the input size at run time, as timm's ``pad_same`` does it.

``pad_same`` is one node in a traced graph (``torch.fx.wrap``): a model that holds a :class:`SamePad`
still traces, and the padding is computed when the model runs, so any input size works.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["SamePad", "pad_same", "same_padding"]


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """(before, after) TF 'SAME' padding of one dimension, as timm's ``pad_same``.

    total = max((⌈size/stride⌉ − 1)·stride + (kernel − 1)·dilation + 1 − size, 0); before = total // 2.
    """
    total = max((-(-size // stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel_size: Sequence[int], stride: Sequence[int], dilation: Sequence[int]) -> Any:
    """``x`` zero-padded for TF 'SAME' output sizes of a conv over its last ``len(kernel_size)`` dimensions."""
    nd = len(kernel_size)
    pads: list[int] = []
    for size, k, s, d in reversed(list(zip(x.shape[-nd:], kernel_size, stride, dilation, strict=True))):
        pads.extend(same_padding(int(size), k, s, d))
    return F.pad(x, pads)


# One node in a traced graph: the padding is computed from the input's size when the model runs.
torch.fx.wrap("pad_same")


class SamePad(nn.Module):
    """Pads its input for TF 'SAME' output sizes of a conv, computed from the input size at every call."""

    def __init__(self, kernel_size: Sequence[int], stride: Sequence[int], dilation: Sequence[int]) -> None:
        super().__init__()
        self.kernel_size = tuple(int(k) for k in kernel_size)
        self.stride = tuple(int(s) for s in stride)
        self.dilation = tuple(int(d) for d in dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pad_same(x, self.kernel_size, self.stride, self.dilation)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, dilation={self.dilation}"
