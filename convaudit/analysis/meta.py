"""Meta tensors: sizes, strides and dtypes without storage, as the cheap shape rules make them.

NB: made through a ``torch.device`` object (a device string is parsed at every call), and ``empty_like``
is avoided (on meta it runs a Python reference); :mod:`~convaudit.analysis.propagation` and
:mod:`~convaudit.analysis.census` share them.
"""

from __future__ import annotations

import torch

__all__ = ["empty_meta", "meta_like"]

_META = torch.device("meta")  # NB: a device object: a string is parsed at every call


def meta_like(t: torch.Tensor) -> torch.Tensor:
    """A meta tensor of ``t``'s size, strides and dtype (``empty_like`` on meta runs a Python reference)."""
    return torch.empty_strided(t.size(), t.stride(), dtype=t.dtype, device=_META)


def empty_meta(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """A contiguous meta tensor of ``shape``."""
    return torch.empty(shape, dtype=dtype, device=_META)
