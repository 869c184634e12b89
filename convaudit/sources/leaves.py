"""Module classes named on the command line (``--leaf MODULE.CLASS``): what the tracer must not enter.

The name is the user's own command line, like ``--trust``: its module is imported (which runs that
module's import) and the class read from it. A bare ``CLASS``, or one under the model file's own name
(``net.Block`` for net.py), is the class the model file defined when it was loaded (not a second import).
Only ``nn.Module`` classes pass; anything else is one UsageError line naming the flag.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch.nn as nn

from convaudit.errors import UsageError

__all__ = ["import_module_classes"]


def import_module_classes(
    names: Sequence[str], namespace: Mapping[str, Any] | None = None, flag: str = "--leaf"
) -> tuple[type[nn.Module], ...]:
    """The nn.Module classes ``names`` name (``pkg.mod.Class``, or ``Class`` of the model file's ``namespace``)."""
    return tuple(_one(name.strip(), namespace or {}, flag) for name in names)


def _one(name: str, namespace: Mapping[str, Any], flag: str) -> type[nn.Module]:
    parts = name.split(".")
    if not name or not all(p.isidentifier() for p in parts):
        raise UsageError(f"{flag} {name!r}: give MODULE.CLASS, e.g. {flag} timm.layers.SqueezeExcite")
    # The model file by its module name or its file name (``net.Block`` for net.py): the classes as loaded.
    # A model file whose name was taken is loaded as _convaudit_<hash>, which differs from run to run.
    own = {str(namespace.get("__name__", "")), Path(str(namespace.get("__file__", ""))).stem} - {""}
    if len(parts) > 1 and namespace and (parts[0] in own or parts[0].startswith("_convaudit_")):
        parts = parts[1:]
    elif len(parts) > 1:
        return _imported(name, parts, flag)
    if parts[0] not in namespace:
        raise UsageError(f"{flag} {name}: give MODULE.CLASS (a bare CLASS must be defined in the model file)")
    obj = namespace[parts[0]]
    for attr in parts[1:]:
        if not hasattr(obj, attr):
            raise UsageError(f"{flag} {name}: {parts[0]} has no {attr}{_suggest(obj, attr)}")
        obj = getattr(obj, attr)
    return _checked(obj, name, flag)


def _imported(name: str, parts: list[str], flag: str) -> type[nn.Module]:
    """``pkg.mod.Class`` (or ``pkg.mod.Outer.Inner``): the module imported, the class read from it."""
    for i in range(len(parts) - 1, 0, -1):  # the longest importable prefix is the module; the rest are attributes
        module_name = ".".join(parts[:i])
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
                continue  # this prefix is no module: try a shorter one
            raise UsageError(f"{flag} {name}: importing {module_name} failed: {exc}") from exc
        except Exception as exc:  # the module's import raised: its first line
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise UsageError(f"{flag} {name}: importing {module_name} raised {type(exc).__name__}: {first}") from exc
        obj: Any = module
        for depth, attr in enumerate(parts[i:], start=i):
            if not hasattr(obj, attr):
                owner = ".".join(parts[:depth])
                raise UsageError(f"{flag} {name}: {owner} has no {attr}{_suggest(obj, attr)}")
            obj = getattr(obj, attr)
        return _checked(obj, name, flag)
    raise UsageError(f"{flag} {name}: no module {parts[0]} on sys.path")


def _checked(obj: Any, name: str, flag: str) -> type[nn.Module]:
    if not (inspect.isclass(obj) and issubclass(obj, nn.Module)):
        raise UsageError(f"{flag} {name} is a {type(obj).__name__}, not an nn.Module class")
    return obj


def _suggest(owner: Any, attr: str) -> str:
    """'; did you mean X?' among the owner's nn.Module classes."""
    classes = [k for k, v in vars(owner).items() if inspect.isclass(v) and issubclass(v, nn.Module)]
    close = difflib.get_close_matches(attr, classes, n=3)
    return f"; did you mean {', '.join(close)}?" if close else ""
