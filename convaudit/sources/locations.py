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

__all__ = ["Locator", "definition_of", "display_location", "display_path", "parameter_definition", "record_definitions"]

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
    return _display_location(location, os.getcwd())


def _display_location(location: str | None, cwd: str) -> str | None:
    if not location:
        return location
    path, sep, line = location.rpartition(":")
    if not sep or not line.isdigit():
        return _display_path(location, cwd)
    return f"{_display_path(path, cwd)}:{line}"


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
    return Locator(root).definition(qualified_name)


def parameter_definition(root: nn.Module, target: str) -> str | None:
    """file:line of ``self.<param> = ...`` in the owning module's class (a functional conv's weight)."""
    return Locator(root).parameter(target)


class Locator:
    """:func:`definition_of` and :func:`parameter_definition` of one model, for many of its layers at once.

    Made once per analysis: the working directory is read once, and each module path is resolved once
    (a model's convs share their parents). It remembers what it found, so it must not outlive a model
    whose submodules change.
    """

    def __init__(self, root: nn.Module) -> None:
        self._root = root
        self._cwd = os.getcwd()
        # a model with its own get_submodule alone says what a name is; else a name resolves as in torch's
        self._own_lookup = type(root).get_submodule is not nn.Module.get_submodule
        self._modules: dict[str, nn.Module | None] = {"": root}
        self._definitions: dict[str, str | None] = {}
        self._shown: dict[str, str | None] = {}

    def definition(self, qualified_name: str) -> str | None:
        """As :func:`definition_of`."""
        return self._show(self._definition(qualified_name))

    def parameter(self, target: str) -> str | None:
        """As :func:`parameter_definition`."""
        owner_name, _, attr = target.rpartition(".")
        return self._show(self._attribute_definition(owner_name, attr))

    def _show(self, location: str | None) -> str | None:
        if not location:
            return location
        if location not in self._shown:
            self._shown[location] = _display_location(location, self._cwd)
        return self._shown[location]

    def _module(self, name: str) -> nn.Module | None:
        """``root.get_submodule(name)``, None where that raises AttributeError; each prefix looked up once."""
        if name in self._modules:
            return self._modules[name]
        parent_name, _, item = name.rpartition(".")
        found: object = None
        if self._own_lookup or not item or name.startswith(".") or ".." in name:  # odd names: torch says
            try:
                found = self._root.get_submodule(name)
            except AttributeError:
                found = None
        else:
            parent = self._module(parent_name)
            if parent is not None:
                # get_submodule's hasattr-then-getattr, in one getattr
                found = getattr(parent, item, None)
        module = found if isinstance(found, nn.Module) else None
        self._modules[name] = module
        return module

    def _definition(self, qualified_name: str) -> str | None:
        """The absolute file:line where ``root.<qualified_name>`` was created."""
        if qualified_name in self._definitions:
            return self._definitions[qualified_name]
        module = self._module(qualified_name)
        if module is None:
            found = None
        else:
            found = _DEFINED.get(module)
            if found is None:
                parent_name, _, attr = qualified_name.rpartition(".")
                found = self._attribute_definition(parent_name, attr)
        self._definitions[qualified_name] = found
        return found

    def _attribute_definition(self, owner_name: str, attr: str) -> str | None:
        """Where ``self.<attr>`` is assigned in the owner's ``__init__``; inside torch's own containers, where
        the container itself was made; else the owner's ``__init__`` line."""
        owner = self._module(owner_name)
        if owner is None:
            return None
        init = _init_code(type(owner))
        found = _assignment_in_init(init, attr) if init is not None else None
        if owner_name and (found is None or _TORCH in found):  # e.g. inside an nn.Sequential: where was that made?
            return self._definition(owner_name) or found
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
