"""Checkpoints are data: vetted from their pickle opcodes alone, then loaded by torch's ``weights_only``.

Nothing a checkpoint names is imported to check it. A global it names is let through only if

(a) torch's own ``weights_only`` allowlist accepts it (tensors, storages, ``OrderedDict``, ...), or
(b) it is an ``nn.Module`` class of a module this process has already imported (torch, the user's
    model.py), or of torchvision or timm, which are imported as packages when installed, or
(c) it is an ``nn.Module`` class of a module the user named with ``--trust MODULE``, which imports it.

The class is found by walking the module's ``__dict__`` (no ``getattr``, which could import lazily).
Everything else refuses the file with one line. The file is then unpickled by torch's ``weights_only``
unpickler with exactly those classes allowed; a protocol 3-5 pickle with opcodes that unpickler cannot
read is first rewritten to protocol 2 (:mod:`convaudit.pickleops`) and read by the same unpickler.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import pickle
import pickletools
import sys
import tarfile
import types
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import torch
import torch.nn as nn

from convaudit.errors import CheckpointError, ModelLoadError, UsageError
from convaudit.sources.pickleops import PickleScan, scan_pickle

__all__ = ["WELL_KNOWN_PACKAGES", "load_checkpoint_object", "load_weights", "vet_globals"]

WELL_KNOWN_PACKAGES = ("torchvision", "timm")  #: model libraries whose nn.Module classes pass once installed
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.save's non-zip format starts with this pickled number
_LEGACY_PICKLES = 5  # magic number, protocol, sys info, the object, its storage keys
_SAFE_PATH = "save a state_dict and pass it with --weights to a model.py or torchvision: source"


def load_checkpoint_object(path: Path, trust: Sequence[str] = ()) -> Any:
    """What a ``torch.save`` file holds, unpickled by ``weights_only`` with only vetted globals allowed."""
    with open(path, "rb") as f:  # one handle: what is vetted is what is loaded
        scans = _read_pickles(f, path)
        names = [g for scan in scans for g in scan.globals]
        allowed = vet_globals(names, path, trust)
        f.seek(0)
        return _weights_only_load(f, path, allowed, set(names), any(s.rewritten for s in scans))


def vet_globals(names: Sequence[tuple[str, str]], path: Path, trust: Sequence[str] = ()) -> list[tuple[Any, str]]:
    """``(object, "module.name")`` for each global torch's allowlist lacks; CheckpointError names the first refused."""
    known = _weights_only_names()
    trusted = [_check_trust_name(t) for t in trust]
    return [
        (_resolve(module, name, path, trusted), f"{module}.{name}")
        for module, name in names
        if f"{module}.{name}" not in known
    ]


# ---------------------------------------------------------------- reading the pickles


def _read_pickles(f: IO[bytes], path: Path) -> list[PickleScan]:
    head = f.read(4)
    f.seek(0)
    if head == b"PK\x03\x04":
        return [scan_pickle(_zip_pickle(f, path), str(path))]
    if tarfile.is_tarfile(f):
        raise CheckpointError(f"{path}: a torch.save file in the old tar format, which is not read here; re-save it")
    f.seek(0)
    first = scan_pickle(_one_pickle(f, path), str(path))
    if first.first_int != _LEGACY_MAGIC:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (no torch.save header); use torch.save")
    return [first] + [scan_pickle(_one_pickle(f, path), str(path)) for _ in range(_LEGACY_PICKLES - 1)]


def _zip_pickle(f: IO[bytes], path: Path) -> bytes:
    """data.pkl as torch's own zip reader finds it (the record torch.load will unpickle)."""
    try:
        reader = torch._C.PyTorchFileReader(f)
        if "constants.pkl" in reader.get_all_records():
            raise CheckpointError(
                f"{path}: a TorchScript archive, which convaudit does not load; save the module with torch.save "
                "or its state_dict (for --weights)"
            )
        data = reader.get_record("data.pkl")
    except CheckpointError:
        raise
    except Exception as exc:
        reason = _first_line(exc)
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({reason}); save it with torch.save") from exc
    finally:
        f.seek(0)
    return bytes(data)


def _one_pickle(f: IO[bytes], path: Path | str) -> bytes:
    """The bytes of the next pickle in a stream (up to its STOP), leaving the stream just after it."""
    start = f.tell()
    try:
        for _ in pickletools.genops(f):
            pass
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({exc}); save it with torch.save") from exc
    end = f.tell()
    f.seek(start)
    return f.read(end - start)


# ---------------------------------------------------------------- the policy


def _weights_only_names() -> set[str]:
    """The globals torch's weights_only unpickler accepts already (its allowlist and safe_globals)."""
    try:
        from torch import _weights_only_unpickler as wo

        return set(wo._get_allowed_globals()) | set(wo._get_user_allowed_globals())
    except (ImportError, AttributeError):  # a torch without them: every global must then pass our own test
        return set()


def _check_trust_name(name: str) -> str:
    if not all(part.isidentifier() for part in name.split(".")):
        raise UsageError(f"--trust {name!r}: give a module name like mypackage.models")
    return name


def _resolve(module: str, name: str, path: Path, trusted: list[str]) -> Any:
    """The nn.Module class ``module.name`` names, if rules (b) or (c) let it through; else the refusal."""
    full = f"{module}.{name}"
    if module == "__main__" or module.startswith("__main__."):
        raise CheckpointError(
            f"{path}: refused: it pickles {full}, a class of the script that saved it, which is not importable here; "
            "save model.state_dict() and pass it with --weights to a model.py defining that class"
        )
    loaded = _module_if_loaded(module, path, trusted)
    if loaded is None:
        raise CheckpointError(
            f"{path}: refused: unpickling it would call {full}, and module {module} is not loaded (convaudit imports "
            f"nothing a checkpoint names); if you trust it, pass --trust {module} (this runs that module's import), or "
            + _SAFE_PATH
        )
    obj = _walk(loaded, name)
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise CheckpointError(
            f"{path}: refused: unpickling it would call {full} (module {module}), which is not an nn.Module class; "
            f"only nn.Module classes are let through, with or without --trust; {_SAFE_PATH}"
        )
    if issubclass(obj, (torch.fx.GraphModule, torch.jit.ScriptModule)):
        raise CheckpointError(f"{path}: refused: {full} is rebuilt by running generated code; {_SAFE_PATH}")
    return obj


def _module_if_loaded(module: str, path: Path, trusted: list[str]) -> types.ModuleType | None:
    """sys.modules[module], after importing a trusted or well-known *package* it belongs to, never ``module`` itself."""
    if module not in sys.modules:
        top = module.partition(".")[0]
        owner = next((t for t in trusted if module == t or module.startswith(t + ".")), None)
        if owner is not None:
            _import_trusted(owner, path)
        elif top in WELL_KNOWN_PACKAGES and top not in sys.modules:
            package = WELL_KNOWN_PACKAGES[WELL_KNOWN_PACKAGES.index(top)]  # our constant, not the file's string
            _import_well_known(package, path)
    found = sys.modules.get(module)
    return found if isinstance(found, types.ModuleType) else None


def _import_trusted(name: str, path: Path) -> None:
    """``--trust NAME``: the user asked for this import (NAME comes from the command line, not the file)."""
    beside = str(path.resolve().parent)
    sys.path.append(beside)  # after everything else: an installed module of that name wins
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise UsageError(f"--trust {name}: no module {name} on sys.path or beside {path.name}") from exc
        raise ModelLoadError(f"--trust {name}: importing it raised ModuleNotFoundError: {exc}") from exc
    except (Exception, SystemExit) as exc:
        raise ModelLoadError(f"--trust {name}: importing it raised {type(exc).__name__}: {_first_line(exc)}") from exc
    finally:
        at = len(sys.path) - 1 - sys.path[::-1].index(beside) if beside in sys.path else None
        if at is not None:
            del sys.path[at]


def _import_well_known(package: str, path: Path) -> None:
    """Import torchvision or timm if installed, unless a same-named file in cwd or beside the checkpoint shadows it."""
    spec = importlib.util.find_spec(package)  # a top-level name from our own list: finding it runs nothing
    if spec is None or not spec.origin or not spec.has_location:
        return
    origin = Path(spec.origin).resolve()
    location = origin.parent.parent if origin.name == "__init__.py" else origin.parent
    if location in {Path.cwd().resolve(), path.resolve().parent}:
        return  # not the installed library: leave it alone (the global is then refused, naming --trust)
    try:
        importlib.import_module(package)
    except Exception:
        return


def _walk(module: types.ModuleType, qualname: str) -> Any:
    """``module.A.B`` through ``__dict__`` only: a module's ``__getattr__`` (lazy imports) is never called."""
    obj: Any = module
    for part in qualname.split("."):
        if not isinstance(obj, (types.ModuleType, type)):
            return None
        namespace = vars(obj)
        if part not in namespace:
            return None
        obj = namespace[part]
    return obj


# ---------------------------------------------------------------- loading


def _weights_only_load(
    f: IO[bytes], path: Path, allowed: list[Any], vetted: set[tuple[str, str]], rewritten: bool
) -> Any:
    try:
        with torch.serialization.safe_globals(allowed), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about every protocol but 2, and about TypedStorage
            if not rewritten:
                return torch.load(f, map_location="cpu", weights_only=True)
            with torch.sparse.check_sparse_tensor_invariants():  # what weights_only=True checks on its own
                return torch.load(f, map_location="cpu", weights_only=False, pickle_module=_protocol2(path, vetted))
    except CheckpointError:
        raise
    except (Exception, SystemExit) as exc:
        raise CheckpointError(f"{path}: refused by weights_only loading: {_weights_only_reason(exc)}") from exc


def _protocol2(path: Path, vetted: set[tuple[str, str]]) -> types.ModuleType:
    """A pickle module for torch.load: torch's weights_only unpickler, fed the protocol-2 rewrite of each pickle."""
    from torch import _weights_only_unpickler as wo

    class Unpickler(wo.Unpickler):
        def __init__(self, file: IO[bytes], *, encoding: str = "bytes") -> None:
            scan = scan_pickle(_one_pickle(file, path), str(path))
            if not set(scan.globals) <= vetted:
                raise pickle.UnpicklingError("the file changed while it was read")
            super().__init__(io.BytesIO(scan.protocol2), encoding=encoding)

    def load(file: IO[bytes], *, encoding: str = "ASCII") -> Any:
        return Unpickler(file, encoding=encoding).load()

    shim = types.ModuleType("convaudit_weights_only_protocol2")
    vars(shim).update(Unpickler=Unpickler, load=load, UnpicklingError=pickle.UnpicklingError)
    return shim


def _weights_only_reason(exc: BaseException) -> str:
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    if "Only persistent_load of storage" in text:
        return "it holds a module in torch's old non-zip format, which weights_only cannot read; re-save it"
    return _first_line(text) or type(exc).__name__


def _first_line(exc: object) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


# ---------------------------------------------------------------- --weights: the safe path for trained weights


def load_weights(model: nn.Module, path: Path, trust: Sequence[str] = ()) -> str:
    """Load a state_dict file into ``model`` (vetted, weights_only); returns what was loaded, e.g. "sd.pt['model']"."""
    if not path.is_file():
        raise UsageError(f"--weights {path}: no such file; give a state_dict saved with torch.save")
    state, where = _state_dict_in(load_checkpoint_object(path, trust), path)
    _check_fit(model, state, where)
    meta = any(t.is_meta for t in model.state_dict().values())
    try:
        with torch.no_grad():
            model.load_state_dict(state, strict=True, assign=meta)  # a meta model takes the tensors themselves
    except (RuntimeError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{where}: the weights do not load into the model: {_first_line(exc)}") from exc
    return where


def _state_dict_in(obj: Any, path: Path) -> tuple[Mapping[str, Any], str]:
    """A plain state_dict, one under "state_dict" or "model", or the state of a whole module."""
    if isinstance(obj, nn.Module):
        return obj.state_dict(), f"{path} (a whole module: its state_dict)"
    if isinstance(obj, Mapping):
        if _is_state_dict(obj):
            return obj, str(path)
        for key in ("state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, nn.Module):
                return inner.state_dict(), f"{path}[{key!r}] (a whole module: its state_dict)"
            if isinstance(inner, Mapping) and _is_state_dict(inner):
                return inner, f"{path}[{key!r}]"
        keys = ", ".join(repr(k) for k in list(obj)[:6]) + (", ..." if len(obj) > 6 else "")
        raise CheckpointError(
            f"{path}: --weights found no state_dict (names to tensors) in it, nor under 'state_dict' or 'model' "
            f"(its keys: {keys or 'none'}); save model.state_dict()"
        )
    raise CheckpointError(f"{path}: --weights holds a {type(obj).__name__}, not a state_dict; save model.state_dict()")


def _is_state_dict(obj: Mapping[Any, Any]) -> bool:
    return bool(obj) and all(
        isinstance(k, str) and (isinstance(v, torch.Tensor) or k.endswith("_extra_state")) for k, v in obj.items()
    )


def _check_fit(model: nn.Module, state: Mapping[str, Any], where: str) -> None:
    """One line naming a few missing, unexpected and mis-shaped keys, with counts."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} ({_shape(state[k])} in the file, {_shape(own[k])} in the model)"
        for k in own
        if k in state
        and isinstance(state[k], torch.Tensor)
        and isinstance(own[k], torch.Tensor)
        and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    found = (("missing", missing), ("unexpected", unexpected), ("with another shape", shapes))
    problems = [f"{len(items)} {what} ({_few(items)})" for what, items in found if items]
    if problems:
        prefixed = unexpected and all(k.startswith("module.") for k in unexpected)
        hint = "; its keys start with 'module.' (saved from DataParallel?)" if prefixed else ""
        raise CheckpointError(
            f"{where}: the weights do not fit the model: {'; '.join(problems)}{hint}; pass the state_dict of this model"
        )


def _few(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (", ..." if len(items) > n else "")


def _shape(t: torch.Tensor) -> str:
    return "×".join(map(str, t.shape)) or "scalar"
