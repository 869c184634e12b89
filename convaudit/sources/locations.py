"""Where a layer is defined: the file:line of the statement that created it.

While convaudit loads a model it records, through PyTorch's *global* module-registration hook, the
first stack frame outside torch for each submodule assignment (``self.conv1 = nn.Conv2d(...)``).
Nothing is attached to the modules themselves; the table is weak, so it holds no model alive.
For models built elsewhere, the parent class's source is searched for ``self.<name> =``.
"""

from __future__ import annotations

import functools
import linecache
import os
import re
import sys
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from types import CodeType, FrameType

import torch.nn as nn

__all__ = ["definition_of", "parameter_definition", "record_definitions"]

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


def definition_of(root: nn.Module, qualified_name: str) -> str | None:
    """file:line where ``root.<qualified_name>`` was created, if it can be told."""
    try:
        module = root.get_submodule(qualified_name)
    except AttributeError:
        return None
    if module in _DEFINED:
        return _DEFINED[module]
    parent_name, _, attr = qualified_name.rpartition(".")
    return _attribute_definition(root, parent_name, attr)


def parameter_definition(root: nn.Module, target: str) -> str | None:
    """file:line of ``self.<param> = ...`` in the owning module's class (a functional conv's weight)."""
    owner_name, _, attr = target.rpartition(".")
    return _attribute_definition(root, owner_name, attr)


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
        return definition_of(root, owner_name) or found
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
