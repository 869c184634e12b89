"""Where a layer is defined: the file:line of the statement that created it.

While convaudit loads a model it records, through PyTorch's *global* module-registration hook, the
first stack frame outside torch for each submodule assignment (``self.conv1 = nn.Conv2d(...)``).
Nothing is attached to the modules themselves; the table is weak, so it holds no model alive.
For models built elsewhere, the parent class's source is searched for ``self.<name> =``.

Locations are recorded as absolute paths and handed out as reports show them (:func:`display_path`):
an installed library's file relative to its library root (``torchvision/models/resnet.py:85``), else
relative to the working directory when under it, else absolute. Two runs of the same command on the
same machine give the same strings, and none names this machine's directories needlessly.
"""

from __future__ import annotations

import functools
import linecache
import os
import re
import site
import sys
import sysconfig
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from types import CodeType, FrameType

import torch.nn as nn

__all__ = ["definition_of", "display_location", "display_path", "parameter_definition", "record_definitions"]

_DEFINED: weakref.WeakKeyDictionary[nn.Module, str] = weakref.WeakKeyDictionary()
_TORCH = os.sep + "torch" + os.sep
_SKIP = (_TORCH, os.sep + "convaudit" + os.sep, "<frozen ", os.sep + "importlib" + os.sep)


@contextmanager
def record_definitions() -> Iterator[None]:
    """Record the defining file:line of every submodule registered inside the block."""

    def hook(parent: nn.Module, name: str, submodule: nn.Module | None) -> None:
        if submodule is None or submodule in _DEFINED:
            return
        frame: FrameType | None = sys._getframe(1)
        while frame is not None:
            path = frame.f_code.co_filename
            if not any(part in path for part in _SKIP):
                _DEFINED[submodule] = f"{path}:{frame.f_lineno}"
                return
            frame = frame.f_back

    handle = nn.modules.module.register_module_module_registration_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def display_path(path: str) -> str:
    """``path`` as reports show it: an installed library's file relative to its library root (site-packages,
    the standard library: ``torchvision/models/resnet.py``, also when a virtualenv lies in the working
    directory), else relative to the working directory when under it, else absolute.

    What names no file path (``torchvision:resnet18``, ``<string>``) is returned as it is.
    """
    return _display_path(path, os.getcwd())


@functools.lru_cache(maxsize=4096)
def _display_path(path: str, cwd: str) -> str:
    """``display_path`` in ``cwd``: cached, as every conv of a model names the same few files."""
    if not path or path.startswith("<") or (":" in path and not os.path.isabs(path) and not os.path.exists(path)):
        return path
    absolute = os.path.abspath(path)
    candidates = dict.fromkeys((absolute, os.path.realpath(absolute)))  # as given, and through symlinks
    for root in (*_library_roots(), cwd):
        for candidate in candidates:
            inside = _relative_to(candidate, root)
            if inside is not None:
                return inside
    return absolute


def display_location(location: str | None) -> str | None:
    """``display_path`` of a ``file:line`` location (the line kept)."""
    if not location:
        return location
    path, sep, line = location.rpartition(":")
    if not sep or not line.isdigit():
        return display_path(location)
    return f"{display_path(path)}:{line}"


def _relative_to(path: str, root: str) -> str | None:
    """``path`` relative to ``root`` when it lies under it (in POSIX form), else None."""
    try:
        if os.path.commonpath([path, root]) != root:
            return None
    except ValueError:  # another drive, or one relative and one absolute
        return None
    rel = os.path.relpath(path, root)
    return None if rel == "." else rel.replace(os.sep, "/")


@functools.lru_cache(maxsize=1)
def _library_roots() -> tuple[str, ...]:
    """Where installed libraries live (site-packages, the standard library), the deepest first."""
    roots = {sysconfig.get_paths()[key] for key in ("purelib", "platlib", "stdlib", "platstdlib")}
    roots |= set(site.getsitepackages()) | {site.getusersitepackages()}
    roots |= {entry for entry in sys.path if os.path.basename(entry) in ("site-packages", "dist-packages")}
    found = {os.path.realpath(r) for r in roots if r} | {os.path.abspath(r) for r in roots if r}
    return tuple(sorted(found, key=lambda r: (-len(r), r)))


def definition_of(root: nn.Module, qualified_name: str) -> str | None:
    """file:line where ``root.<qualified_name>`` was created, if it can be told (as :func:`display_path` shows it)."""
    return display_location(_definition(root, qualified_name))


def parameter_definition(root: nn.Module, target: str) -> str | None:
    """file:line of ``self.<param> = ...`` in the owning module's class (a functional conv's weight)."""
    owner_name, _, attr = target.rpartition(".")
    return display_location(_attribute_definition(root, owner_name, attr))


def _definition(root: nn.Module, qualified_name: str) -> str | None:
    """The absolute file:line where ``root.<qualified_name>`` was created."""
    try:
        module = root.get_submodule(qualified_name)
    except AttributeError:
        return None
    if module in _DEFINED:
        return _DEFINED[module]
    parent_name, _, attr = qualified_name.rpartition(".")
    return _attribute_definition(root, parent_name, attr)


def _attribute_definition(root: nn.Module, owner_name: str, attr: str) -> str | None:
    """Where ``self.<attr>`` is assigned in the owner's ``__init__``; inside torch's own containers, where
    the container itself was made; else the owner's ``__init__`` line."""
    try:
        owner = root.get_submodule(owner_name)
    except AttributeError:
        return None
    init = _init_code(type(owner))
    found = _assignment_in_init(init, attr) if init is not None else None
    if owner_name and (found is None or _TORCH in found):  # e.g. inside an nn.Sequential: where was that made?
        return _definition(root, owner_name) or found
    return found or _init_line(type(owner))


def _init_code(cls: type[nn.Module]) -> CodeType | None:
    """The code object of ``cls.__init__``; None where it has none (a C-level or wrapped ``__init__``)."""
    return getattr(cls.__init__, "__code__", None)


def _init_line(cls: type[nn.Module]) -> str | None:
    code = _init_code(cls)
    return f"{code.co_filename}:{code.co_firstlineno}" if code is not None else None


# keyed by the code object, not the class: the answer depends on the code alone, and classes sharing an
# inherited __init__ share an entry
@functools.lru_cache(maxsize=4096)
def _assignment_in_init(init: CodeType, attr: str) -> str | None:
    """file:line of ``self.<attr> =`` in the ``__init__`` whose code is ``init`` (line table, no AST parse)."""
    path = init.co_filename
    last = max((line for _, _, line in init.co_lines() if line is not None), default=init.co_firstlineno)
    pattern = re.compile(rf"self\.{re.escape(attr)}\s*(:[^=]*)?=")
    for lineno in range(init.co_firstlineno, last + 1):
        if pattern.search(linecache.getline(path, lineno)):
            return f"{path}:{lineno}"
    return None
