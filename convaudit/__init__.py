"""convaudit: find every k×k convolution in a PyTorch model, cost it, say what a depthwise-separable
rewrite would save, and build it.

    >>> import convaudit, torchvision
    >>> a = convaudit.analyze(torchvision.models.resnet18(), input_shape=(1, 3, 224, 224))
    >>> a.totals.macs, len(a.candidates)
    >>> c = convaudit.convert(torchvision.models.resnet18(), input_shape=...)  # doctest: +SKIP

Names are imported on first use, so ``import convaudit.documents.records`` or the renderers do not load torch.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "analyze": "convaudit.analysis",
    "convert": "convaudit.conversion",
    "Conversion": "convaudit.conversion",
    "load_converted": "convaudit.conversion.artifact",
    "recover": "convaudit.conversion.recovery",
    "Recovery": "convaudit.conversion.recovery",
    "Analysis": "convaudit.documents",
    "ConvLayer": "convaudit.documents",
    "ConversionReport": "convaudit.documents",
    "SCHEMA_VERSION": "convaudit.documents",
    "SeparableConv": "convaudit.conversion",
    "SeparableConv1d": "convaudit.conversion",
    "SeparableConv2d": "convaudit.conversion",
    "SeparableConv3d": "convaudit.conversion",
    "AnalysisOptions": "convaudit.options",
    "ConversionOptions": "convaudit.options",
    "register_conv": "convaudit.analysis.adapters",
    "ConvAdapter": "convaudit.analysis.adapters",
}

#: Module paths of 0.1 that files written by it import (an artifact's replay model.py imports
#: ``convaudit.load`` and ``convaudit.rewrite``) or that its README named; they resolve to today's modules.
COMPAT_MODULES = {
    "convaudit.load": "convaudit.sources.loader",
    "convaudit.rewrite": "convaudit.conversion.rewrite",
    "convaudit.records": "convaudit.documents.records",
}

# a literal list (the names of _EXPORTS and __version__), so that linters and type checkers can read it
__all__ = [
    "SCHEMA_VERSION",
    "Analysis",
    "AnalysisOptions",
    "ConvAdapter",
    "ConvLayer",
    "Conversion",
    "ConversionOptions",
    "ConversionReport",
    "Recovery",
    "SeparableConv",
    "SeparableConv1d",
    "SeparableConv2d",
    "SeparableConv3d",
    "__version__",
    "analyze",
    "convert",
    "load_converted",
    "recover",
    "register_conv",
]

if TYPE_CHECKING:
    from convaudit.analysis import analyze
    from convaudit.analysis.adapters import ConvAdapter, register_conv
    from convaudit.conversion import (
        Conversion,
        SeparableConv,
        SeparableConv1d,
        SeparableConv2d,
        SeparableConv3d,
    )
    from convaudit.conversion.artifact import load_converted

    # from its own module: through the package, mypy (in the import cycle with `from convaudit import
    # __version__`) takes `convert` for the submodule convaudit.conversion.convert as well, a redefinition
    from convaudit.conversion.convert import convert
    from convaudit.conversion.recovery import Recovery, recover
    from convaudit.documents import (
        SCHEMA_VERSION,
        Analysis,
        ConversionReport,
        ConvLayer,
    )
    from convaudit.options import AnalysisOptions, ConversionOptions


class _CompatFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports a 0.1 module path as the module that holds its code today (the same module object)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in COMPAT_MODULES:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return importlib.import_module(COMPAT_MODULES[spec.name])

    def exec_module(self, module: types.ModuleType) -> None:
        sys.modules[module.__name__] = module  # already executed under its own name


if not any(isinstance(f, _CompatFinder) for f in sys.meta_path):
    sys.meta_path.append(_CompatFinder())


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    try:
        return importlib.import_module(f".{name}", __name__)  # subpackages: convaudit.errors, convaudit.analysis, ...
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise  # the submodule exists but something it needs is missing
        raise AttributeError(f"module 'convaudit' has no attribute {name!r}") from None
