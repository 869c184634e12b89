"""A pickle read as opcodes, never run: the globals it names, and a protocol-2 copy torch can load safely.

:func:`scan_pickle` walks ``pickletools.genops`` and records every global a pickle names (``GLOBAL``,
``INST``, and ``STACK_GLOBAL`` whose two names are plain strings, pushed directly or through the memo).
A pickle that computes a global's name, or uses the copyreg extension registry, cannot be vetted
this way and is refused. It also rewrites the opcodes of protocols 3-5 that torch's ``weights_only``
unpickler does not read (``FRAME``, ``MEMOIZE``, ``SHORT_BINUNICODE``, ``STACK_GLOBAL``, sets built
with ``ADDITEMS``, bytes) into the protocol-2 opcodes it does read, with the same meaning.
"""

from __future__ import annotations

import pickletools
import struct
from dataclasses import dataclass, field
from typing import Any

from convaudit.errors import CheckpointError

__all__ = ["WEIGHTS_ONLY_OPS", "PickleScan", "scan_pickle"]

#: the opcodes torch's weights_only unpickler reads (torch/_weights_only_unpickler.py)
WEIGHTS_ONLY_OPS = frozenset(
    {
        "GLOBAL",
        "NEWOBJ",
        "REDUCE",
        "BUILD",
        "APPEND",
        "APPENDS",
        "SETITEM",
        "SETITEMS",
        "MARK",
        "TUPLE",
        "TUPLE1",
        "TUPLE2",
        "TUPLE3",
        "NONE",
        "NEWFALSE",
        "NEWTRUE",
        "EMPTY_TUPLE",
        "EMPTY_LIST",
        "EMPTY_DICT",
        "EMPTY_SET",
        "BININT",
        "BININT1",
        "BININT2",
        "BINFLOAT",
        "BINUNICODE",
        "SHORT_BINSTRING",
        "BINPERSID",
        "BINGET",
        "LONG_BINGET",
        "BINPUT",
        "LONG_BINPUT",
        "LONG1",
        "PROTO",
        "STOP",
    }
)
_POPS_MARK = frozenset(
    {
        "APPENDS",
        "SETITEMS",
        "ADDITEMS",
        "TUPLE",
        "FROZENSET",
        "LIST",
        "DICT",
        "INST",
        "OBJ",
        "POP_MARK",
    }
)
_STRINGS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8"})
_PUTS = frozenset({"MEMOIZE", "BINPUT", "LONG_BINPUT"})
_GETS = frozenset({"BINGET", "LONG_BINGET"})
_BYTES = frozenset({"SHORT_BINBYTES", "BINBYTES", "BINBYTES8"})
_OBJ, _DEFERRED = object(), object()  # memo entries: an emitted object / a set not built yet


@dataclass
class PickleScan:
    """What one pickle names, and a copy of it in the opcodes torch's weights_only unpickler reads."""

    globals: list[tuple[str, str]] = field(default_factory=list)  #: (module, qualified name), first use first
    protocol: int = 0
    rewritten: bool = False  #: it used opcodes that weights_only cannot read; ``protocol2`` has replaced them
    protocol2: bytes = b""
    first_int: int | None = None  #: the value of a pickle that is a single integer (torch's legacy magic number)


def scan_pickle(data: bytes, where: str) -> PickleScan:
    """Read ``data`` as opcodes (nothing is imported or run); raises CheckpointError if it cannot be vetted."""
    try:
        ops = list(pickletools.genops(data))
    except Exception as exc:  # genops raises ValueError, struct.error, ... on anything malformed
        raise CheckpointError(f"{where}: not a readable PyTorch checkpoint ({exc}); save it with torch.save") from exc
    return _Rewriter(data, ops, where).run()


def _name_mapping(module: str, name: str) -> tuple[str, str]:
    """Python 2 names as torch's weights_only unpickler maps them, so both sides see the same global."""
    from torch._utils import IMPORT_MAPPING, NAME_MAPPING

    if (module, name) in NAME_MAPPING:
        return NAME_MAPPING[(module, name)]
    return IMPORT_MAPPING.get(module, module), name


class _Rewriter:
    """One pass over the opcodes: records globals, writes the protocol-2 copy.

    Strings are held back (``pending``) until an opcode consumes them, so that a ``STACK_GLOBAL`` can
    take its two names off the top and become a ``GLOBAL``; a memoised string is remembered by value
    and every later ``BINGET`` of it pushes a fresh copy (strings are immutable: same meaning).
    """

    def __init__(self, data: bytes, ops: list[tuple[Any, Any, int | None]], where: str) -> None:
        self.data, self.ops, self.where = data, ops, where
        self.scan = PickleScan()
        self.out = bytearray()
        self.pending: list[str] = []
        self.memo: dict[int, object] = {}
        self.set_puts: dict[int, list[int]] = {}  # EMPTY_SET index -> memo indices waiting for the set
        self.deferred_put: dict[int, int] = {}  # op index of a put of such a set -> its EMPTY_SET index
        self.closing: dict[int, tuple[int, bool]] = {}  # ADDITEMS index -> (EMPTY_SET index, last batch)
        self._plan_sets()

    def run(self) -> PickleScan:
        """Every opcode once; the scan with its protocol-2 copy."""
        for i, (op, arg, _) in enumerate(self.ops):
            if op.name not in WEIGHTS_ONLY_OPS:
                self.scan.rewritten = True
            getattr(self, f"_op_{op.name}", self._copy)(i, op.name, arg)
        body = [(op.name, arg) for op, arg, _ in self.ops if op.name not in ("PROTO", "FRAME", "STOP")]
        if len(body) == 1 and body[0][0] in ("LONG1", "BININT", "BININT1", "BININT2"):
            self.scan.first_int = body[0][1]
        self.scan.protocol2 = bytes(self.out)
        return self.scan

    # ------------------------------------------------------------ helpers

    def _raw(self, i: int) -> bytes:
        start = self.ops[i][2] or 0
        end = self.ops[i + 1][2] if i + 1 < len(self.ops) else start + 1
        return self.data[start:end]

    def _refuse(self, why: str) -> CheckpointError:
        return CheckpointError(
            f"{self.where}: refused: {why}, which cannot be vetted without running it; "
            "save a state_dict and pass it with --weights"
        )

    def _flush(self) -> None:
        for text in self.pending:
            self._emit_str(text)
        self.pending.clear()

    def _emit_str(self, text: str) -> None:
        encoded = text.encode("utf-8", "surrogatepass")
        self.out += b"X" + struct.pack("<I", len(encoded)) + encoded

    def _emit_global(self, module: str, name: str) -> None:
        if "\n" in module or "\n" in name:
            raise self._refuse(f"the pickle names a global with a line break ({module!r}, {name!r})")
        self.out += b"c" + module.encode("utf-8") + b"\n" + name.encode("utf-8") + b"\n"

    def _emit_put(self, idx: int) -> None:
        self.out += b"q" + bytes([idx]) if idx < 256 else b"r" + struct.pack("<I", idx)

    def _record(self, module: str, name: str) -> None:
        entry = _name_mapping(module, name)
        if entry not in self.scan.globals:
            self.scan.globals.append(entry)

    def _global_pair(self, i: int) -> tuple[str, str]:
        module, name, *_ = self._raw(i)[1:].split(b"\n")
        return module.decode("utf-8", "replace"), name.decode("utf-8", "replace")

    def _plan_sets(self) -> None:
        """Find sets built as EMPTY_SET, [put], (MARK items ADDITEMS)+ so they can become set(list)."""
        names = [op.name for op, _, _ in self.ops]
        match: dict[int, int] = {}
        marks: list[int] = []
        for i, name in enumerate(names):
            if name == "MARK":
                marks.append(i)
            elif name in _POPS_MARK and marks:
                match[marks.pop()] = i
        for i, name in enumerate(names):
            if name != "EMPTY_SET":
                continue
            j, puts, closes = i + 1, [], []
            while j < len(names) and names[j] in _PUTS | {"FRAME"}:
                puts += [j] if names[j] != "FRAME" else []
                j += 1
            while j < len(names) and names[j] == "MARK" and j in match and names[match[j]] == "ADDITEMS":
                closes.append(match[j])
                j = match[j] + 1
                while j < len(names) and names[j] == "FRAME":
                    j += 1
            if closes:
                self.set_puts[i] = []
                self.deferred_put.update(dict.fromkeys(puts, i))
                self.closing.update({c: (i, c == closes[-1]) for c in closes})

    # ------------------------------------------------------------ opcodes

    def _copy(self, i: int, name: str, arg: Any) -> None:
        self._flush()
        self.out += self._raw(i)

    def _op_PROTO(self, i: int, name: str, arg: Any) -> None:
        self.scan.protocol = arg
        self.out += b"\x80\x02"

    def _op_FRAME(self, i: int, name: str, arg: Any) -> None:
        pass  # framing only groups bytes for reading; it means nothing

    def _op_str(self, i: int, name: str, arg: Any) -> None:
        self.pending.append(arg)

    _op_SHORT_BINUNICODE = _op_BINUNICODE = _op_BINUNICODE8 = _op_str

    def _op_put(self, i: int, name: str, arg: Any) -> None:
        idx = len(self.memo) if name == "MEMOIZE" else arg
        if i in self.deferred_put:
            self.memo[idx] = _DEFERRED
            self.set_puts[self.deferred_put[i]].append(idx)
        elif self.pending:
            self.memo[idx] = self.pending[-1]
        else:
            self.memo[idx] = _OBJ
            self._emit_put(idx)

    _op_MEMOIZE = _op_BINPUT = _op_LONG_BINPUT = _op_put

    def _op_get(self, i: int, name: str, arg: Any) -> None:
        value = self.memo.get(arg, _DEFERRED)
        if value is _DEFERRED:
            raise self._refuse(f"the pickle reads memo entry {arg} before it is defined")
        if isinstance(value, str):
            self.pending.append(value)
        else:
            self._copy(i, name, arg)

    _op_BINGET = _op_LONG_BINGET = _op_get

    def _op_GLOBAL(self, i: int, name: str, arg: Any) -> None:
        self._record(*self._global_pair(i))
        self._copy(i, name, arg)

    _op_INST = _op_GLOBAL  # INST names its class the same way (torch refuses the opcode itself later)

    def _op_STACK_GLOBAL(self, i: int, name: str, arg: Any) -> None:
        if len(self.pending) < 2:
            raise self._refuse("a STACK_GLOBAL takes its module or name from a computed value")
        qualname, module = self.pending.pop(), self.pending.pop()
        self._record(module, qualname)
        self._flush()
        self._emit_global(module, qualname)

    def _op_ext(self, i: int, name: str, arg: Any) -> None:
        raise self._refuse(f"the pickle names a global through the copyreg extension registry ({name} {arg})")

    _op_EXT1 = _op_EXT2 = _op_EXT4 = _op_ext

    def _op_EMPTY_SET(self, i: int, name: str, arg: Any) -> None:
        if i not in self.set_puts:
            self._copy(i, name, arg)
            return
        self._flush()
        self._emit_global("builtins", "set")
        self.out += b"]"  # EMPTY_LIST: the items go here; set(list) is built at the last batch

    def _op_ADDITEMS(self, i: int, name: str, arg: Any) -> None:
        if i not in self.closing:
            self._copy(i, name, arg)  # not a set we rewrote: weights_only refuses the opcode
            return
        self._flush()
        self.out += b"e"  # APPENDS
        start, last = self.closing[i]
        if last:
            self.out += b"\x85R"  # TUPLE1 REDUCE: set(list)
            for idx in self.set_puts[start]:
                self.memo[idx] = _OBJ
                self._emit_put(idx)

    def _op_bytes(self, i: int, name: str, arg: Any) -> None:
        self._flush()
        if name == "BYTEARRAY8":
            self._emit_global("builtins", "bytearray")
        self._emit_global("_codecs", "encode")  # protocol 2 writes bytes as _codecs.encode(text, "latin1")
        self._emit_str(bytes(arg).decode("latin-1"))
        self._emit_str("latin1")
        self.out += b"\x86R"  # TUPLE2 REDUCE
        if name == "BYTEARRAY8":
            self.out += b"\x85R"

    _op_SHORT_BINBYTES = _op_BINBYTES = _op_BINBYTES8 = _op_BYTEARRAY8 = _op_bytes
