"""convaudit: find every k×k convolution in a PyTorch model, cost it, say what a depthwise-separable
rewrite would save, and build it.

    >>> import convaudit, torchvision
    >>> a = convaudit.analyze(torchvision.models.resnet18(), input_shape=(1, 3, 224, 224))
    >>> a.totals.macs, len(a.candidates)
    >>> c = convaudit.convert(torchvision.models.resnet18(), input_shape=...)  # doctest: +SKIP

Names are imported on first use, so ``import convaudit.records`` or the renderers do not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "analyze": "analysis",
    "convert": "conversion",
    "Conversion": "conversion",
    "load_converted": "artifact",
    "Analysis": "records",
    "ConvLayer": "records",
    "ConversionReport": "records",
    "SCHEMA_VERSION": "records",
    "SeparableConv": "separable",
    "SeparableConv1d": "separable",
    "SeparableConv2d": "separable",
    "SeparableConv3d": "separable",
}

__all__ = [*_EXPORTS, "__version__"]

if TYPE_CHECKING:
    from .analysis import analyze
    from .artifact import load_converted
    from .conversion import Conversion, convert
    from .records import SCHEMA_VERSION, Analysis, ConversionReport, ConvLayer
    from .separable import SeparableConv, SeparableConv1d, SeparableConv2d, SeparableConv3d


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    try:
        return importlib.import_module(f".{name}", __name__)  # submodules: convaudit.errors, ...
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise  # the submodule exists but something it needs is missing
        raise AttributeError(f"module 'convaudit' has no attribute {name!r}") from None
