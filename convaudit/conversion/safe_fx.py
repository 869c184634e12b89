"""torch.fx code in which no name from a model becomes code.

torch.fx writes the target of a ``call_module`` or ``get_attr`` node as ``self.a.b``, and a segment that is not
an identifier as ``getattr(self, "NAME")`` with NAME pasted between the quotes: a submodule named
``x"); open("m", "w"); ("`` runs when that code is compiled and called, a keyword (``class``) is a SyntaxError,
and Python NFKC-normalises identifiers, so ``self.ﬁ`` reads ``self.fi``. :func:`safe_codegen` gives a graph a
code generator that writes every such target as ``_convaudit_attr(self, 'a', 'x"y')``: the path as repr()'d
data, walked with getattr when the code runs (nothing is registered, state_dict keys stay as they are). Names fx
would paste elsewhere (method names, keyword arguments, enum members) must be plain identifiers, or the code is
refused with :class:`UnsafeNameError`. torch.fx itself is not changed: only the graphs given to safe_codegen.
"""

from __future__ import annotations

import enum
import keyword
import re
from typing import Any

import torch.fx
from torch.fx.graph import CodeGen, PythonCode
from torch.fx.node import map_aggregate

from convaudit.errors import ConvauditError

__all__ = ["ATTR_HELPER", "UnsafeNameError", "attr_path", "is_plain", "safe_codegen"]

#: The global the generated code calls to reach a submodule, parameter or buffer by a path of raw names.
ATTR_HELPER = "_convaudit_attr"

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_DIGITS = re.compile(r"[0-9]+\Z")
_NOT_IDENTIFIER = re.compile(r"[^0-9A-Za-z_]+")
_TARGET_OPS = frozenset({"call_module", "get_attr"})
_ROOT = object()  #: what the root's name stands for in fx's namespace


class UnsafeNameError(ConvauditError):
    """A name in the model's graph cannot be written as Python code safely."""


def is_plain(name: str) -> bool:
    """An ASCII identifier that is no keyword and that a class body does not mangle (``__x``)."""
    mangled = name.startswith("__") and not name.endswith("__")
    return bool(_IDENTIFIER.match(name)) and not keyword.iskeyword(name) and not mangled


def attr_path(root: Any, *names: str) -> Any:
    """``root.<names[0]>.<names[1]>...`` with every name taken literally (getattr, no normalisation)."""
    for name in names:
        root = getattr(root, name)
    return root


def safe_codegen(graph: torch.fx.Graph) -> torch.fx.Graph:
    """Give ``graph`` a code generator that writes no name as code; returns the graph."""
    codegen = graph._codegen
    if not isinstance(codegen, _SafeNames):
        safe: CodeGen = object.__new__(_safe_class(type(codegen)))
        safe.__dict__.update(codegen.__dict__)
        graph.set_codegen(safe)
    return graph


class _SafeNames(CodeGen):
    """Mixed into a graph's own CodeGen class: aliases unsafe targets while fx writes, then writes them as data."""

    def _gen_python_code(self, nodes: Any, root_module: str, namespace: Any, **kwargs: Any) -> PythonCode:
        listed = list(nodes)
        for node in listed:
            _refuse_pasted_names(node)
        # Locals get their names from ``namespace`` as fx writes them: taking these first keeps every local off
        # them (fx itself does not keep them off the root's name: a submodule "self" gives `self = self.self(x)`).
        namespace.create_name(root_module, _ROOT)
        helper = namespace.create_name(ATTR_HELPER, attr_path)
        for node in listed:
            if not _IDENTIFIER.match(node.name):  # fx's own check lets a trailing newline through: "A\n"
                namespace.create_name(_NOT_IDENTIFIER.sub("_", node.name), node)
        hidden = [n for n in listed if n.op in _TARGET_OPS and not _writable_target(n.target)]
        originals = [n.target for n in hidden]
        token = _free_token(listed)
        try:
            for i, node in enumerate(hidden):
                node.target = f"{token}{i}"
            code = super()._gen_python_code(nodes, root_module, namespace, **kwargs)
        finally:
            for node, target in zip(hidden, originals, strict=True):
                node.target = target
        if not hidden:
            return code

        def data(match: re.Match[str]) -> str:
            path = ", ".join(ascii(part) for part in originals[int(match.group(1))].split("."))
            return f"{helper}({root_module}, {path})"

        alias = re.compile(rf"(?<![\w.]){re.escape(root_module)}\.{token}(\d+)(?!\w)")
        if len(alias.findall(code.src)) != len(hidden):  # each alias is written once, and only where fx wrote it
            raise UnsafeNameError("the model's graph cannot be written as code with its names as data")
        code.src = alias.sub(data, code.src)
        code.globals[helper] = attr_path
        return code


_SAFE_CLASSES: dict[type, type] = {}


def _safe_class(base: type) -> type:
    """``base`` (CodeGen or a subclass such as fx's pytree CodeGen) with _SafeNames in front; one class per base."""
    if base not in _SAFE_CLASSES:
        _SAFE_CLASSES[base] = type(f"Safe{base.__name__}", (_SafeNames, base), {"__module__": __name__})
    return _SAFE_CLASSES[base]


def _writable_target(target: str) -> bool:
    """fx writes each segment as ``.name`` or ``getattr(x, "name")``: safe only for plain names and ASCII digits."""
    return all(is_plain(part) or bool(_DIGITS.match(part)) for part in target.split("."))


def _is_parameter_name(name: str) -> bool:
    """A forward's parameter name (from its signature, which ``__signature__`` can make up)."""
    return name.isidentifier() and not keyword.iskeyword(name)


def _free_token(nodes: list[torch.fx.Node]) -> str:
    """An alias prefix that nothing fx writes for these nodes contains (so each alias is found again exactly)."""
    texts: list[str] = []
    for node in nodes:
        texts.extend((node.name, str(node.target), repr(node.type)))
        map_aggregate((node.args, node.kwargs), lambda v: texts.append(v if isinstance(v, str) else repr(v)))
    token = "_convaudit_alias_"
    while any(token in text for text in texts):
        token += "x"
    return token


def _refuse_pasted_names(node: torch.fx.Node) -> None:
    """Names fx pastes raw outside targets: method names, attribute names, keyword names, enum members."""
    target = str(node.target)
    if node.op == "call_method" and not is_plain(target):
        raise UnsafeNameError(f"the model calls a method named {node.target!r}, which cannot be written as code")
    if node.op == "placeholder" and not _is_parameter_name(target.lstrip("*")):
        raise UnsafeNameError(f"the model's forward takes an argument named {node.target!r}")
    attr = node.args[1] if node.op == "call_function" and node.target is getattr and len(node.args) == 2 else None
    if isinstance(attr, str) and attr.isidentifier() and not is_plain(attr):
        raise UnsafeNameError(f"the model reads an attribute named {attr!r}, which cannot be written as code")
    bad = [k for k in node.kwargs if not is_plain(k)]
    if bad:
        raise UnsafeNameError(f"the model passes a keyword argument named {bad[0]!r}, which cannot be written as code")

    def member(value: Any) -> Any:
        if isinstance(value, enum.Enum) and not (is_plain(value.name) and is_plain(type(value).__name__)):
            raise UnsafeNameError(f"the model uses an enum member {value.name!r}, which cannot be written as code")
        return value

    map_aggregate((node.args, node.kwargs), member)
