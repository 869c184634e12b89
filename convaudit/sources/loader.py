"""Sources: a model.py, ``torchvision:NAME``, ``timm:NAME``, a checkpoint holding a whole module, a model.onnx;
``--weights``.

Loading a model file runs it, as pytest runs a test file. Loading a checkpoint (or ``--weights``) must
not run code: it is vetted from its pickle opcodes and unpickled with ``weights_only`` (see
:mod:`convaudit.vetting`); neither does an ONNX file (read as data, see :mod:`convaudit.sources.onnx`).
Every source says where its weights come from: ``"loaded"`` (a checkpoint, an ONNX file,
``--weights``), ``"model file"`` (whatever model.py builds) or ``"initialised"`` (a zoo model, fresh: see
:mod:`convaudit.sources.zoo`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from convaudit.errors import CheckpointError, ModelLoadError, UsageError
from convaudit.sources.checkpoints import load_checkpoint_object, load_weights
from convaudit.sources.inputs import (
    InputForm,
    floating_dtype,
    guess_shape,
    parse_shape,
    split_inputs,
)
from convaudit.sources.locations import display_path, record_definitions
from convaudit.sources.onnx import load_onnx
from convaudit.sources.zoo import SEED, ZOO_PREFIXES, load_zoo, seeded
from convaudit.vocab import WeightsOrigin

__all__ = ["CHECKPOINT_SUFFIXES", "LoadedModel", "load", "parse_shape"]

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")


@dataclass
class LoadedModel:
    """A model and the inputs to analyse it at."""

    model: nn.Module
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    source: str
    entry: str  #: what was built: "build_model()", "model", "Net()", "torchvision.models.resnet18", ...
    notes: list[str] = field(default_factory=list)  #: e.g. a guessed input shape
    namespace: dict[str, Any] = field(default_factory=dict)  #: the model file's globals (calibration_inputs, ...)
    weights: str = WeightsOrigin.MODEL_FILE  #: loaded (checkpoint, --weights) | model file | initialised (fresh)
    weights_source: str | None = None  #: the file (and key) they were loaded from, the model file, or the builder
    form: InputForm = field(default_factory=InputForm)  #: how --input-shape shapes become its inputs


def load(
    spec: str,
    entry: str | None = None,
    input_shapes: Sequence[tuple[int, ...]] = (),
    *,
    weights: str | None = None,
    trust: Sequence[str] = (),
) -> LoadedModel:
    """Load a model from a path (model.py, checkpoint, .onnx), ``torchvision:NAME`` or ``timm:NAME``.

    ``input_shapes`` override its example inputs (per image for a detector, per graph input for an ONNX file).

    Args:
        weights: a state_dict file to load into the model (vetted, ``weights_only``; strict keys and shapes).
        trust: modules whose nn.Module classes a checkpoint may name; importing them runs their code.
    """
    if weights is not None and not Path(weights).is_file():
        raise UsageError(f"--weights {weights}: no such file; give a state_dict saved with torch.save")
    if spec.startswith(ZOO_PREFIXES):
        loaded = _load_zoo(spec)
    else:
        path = Path(spec)
        if not path.exists():
            raise UsageError(
                f"{spec}: no such file; give a model.py, a checkpoint (.pt/.pth), a model.onnx, torchvision:NAME "
                "or timm:NAME"
            )
        if path.is_dir():
            raise UsageError(f"{spec} is a directory; give a model.py or a checkpoint file inside it")
        if path.suffix.lower() in CHECKPOINT_SUFFIXES:  # model.PT is a checkpoint too, not Python
            loaded = _load_checkpoint(path, trust)
        elif path.suffix.lower() == ".onnx":
            loaded = _load_onnx(path, shapes_given=bool(input_shapes))
        else:
            loaded = _load_python(path, entry)
    if weights is not None:
        loaded.weights, loaded.weights_source = WeightsOrigin.LOADED, load_weights(loaded.model, Path(weights), trust)
    if input_shapes:
        dtype = floating_dtype(loaded.model)  # a float16 model gets float16 inputs
        loaded.args = loaded.form.inputs(input_shapes, dtype, spec)
        loaded.kwargs = {}
        loaded.notes = [n for n in loaded.notes if "input shape" not in n]
    elif not loaded.args and not loaded.kwargs:
        loaded.args = (torch.empty(guess_shape(loaded.model, spec), dtype=floating_dtype(loaded.model), device="meta"),)
        shape = ",".join(map(str, loaded.args[0].shape))
        loaded.notes.append(f"input shape {shape} guessed from the first conv; pass --input-shape to set it")
    return loaded


# ---------------------------------------------------------------- model.py


def _module_name(path: Path) -> str:
    """The name a model file is imported under: its stem, else one from its path as reports show it (the
    same in every run and checkout, unlike ``hash()``), else from its absolute path when that one is taken."""
    if path.stem.isidentifier() and path.stem not in sys.modules:
        return path.stem
    for key in (display_path(str(path)), str(path.resolve())):
        name = f"_convaudit_{hashlib.sha256(key.encode()).hexdigest()[:16]}"
        taken = sys.modules.get(name)
        if taken is None or Path(getattr(taken, "__file__", "") or "").resolve() == path.resolve():
            return name
    return name


def _load_python(path: Path, entry: str | None) -> LoadedModel:
    name = _module_name(path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"{path}: not a Python file; give a model.py, a checkpoint (.pt/.pth) or torchvision:NAME")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(path.parent.resolve()))
    try:  # under a fixed seed, restored after: weights initialised at import or build are the same each run
        with seeded(), record_definitions():
            try:
                spec.loader.exec_module(module)
            except SyntaxError as exc:
                raise ModelLoadError(
                    f"{path}:{exc.lineno}: syntax error: {exc.msg}; fix the file and run again"
                ) from exc
            except SystemExit as exc:
                raise _exit_error(exc, path, "at import; keep script code under `if __name__ == '__main__':`") from exc
            except Exception as exc:
                raise ModelLoadError(
                    f"{_user_frame(exc, path)}: {type(exc).__name__}: {exc} (while running {path.name})"
                ) from exc
            model, what = _pick_entry(module, path, entry)
            args, kwargs = _example_inputs(module, path)
    finally:
        sys.path.remove(str(path.parent.resolve()))
    built = f"{display_path(str(path))}, built under seed {SEED}"
    return LoadedModel(model, args, kwargs, str(path), what, namespace=vars(module), weights_source=built)


def _pick_entry(module: Any, path: Path, entry: str | None) -> tuple[nn.Module, str]:
    if entry:
        if not hasattr(module, entry):
            names = _module_names(module, path)
            hint = f" (it defines {', '.join(names)})" if names else ""
            raise ModelLoadError(f"{path}: --entry {entry} not found{hint}")
        return _build(getattr(module, entry), entry, path), entry
    if callable(getattr(module, "build_model", None)):
        return _build(module.build_model, "build_model", path), "build_model()"
    if isinstance(getattr(module, "model", None), nn.Module):
        return module.model, "model"
    classes = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, nn.Module)
        and obj.__module__ == module.__name__
        and _no_required_args(obj)
    ]
    if len(classes) == 1:
        return _build(classes[0], classes[0].__name__, path), f"{classes[0].__name__}()"
    if not classes:
        raise _no_entry_error(module, path)
    listed = ", ".join(c.__name__ for c in classes)
    raise ModelLoadError(f"{path} defines several nn.Module classes ({listed}); pick one with --entry NAME")


def _build(obj: Any, what: str, path: Path) -> nn.Module:
    if isinstance(obj, nn.Module):
        return obj
    if not callable(obj):
        raise ModelLoadError(
            f"{path}: {what} is neither an nn.Module nor callable; point --entry at a class or function"
        )
    try:
        built = obj()
    except SystemExit as exc:
        raise _exit_error(exc, path, f"in {what}()") from exc
    except Exception as exc:
        raise ModelLoadError(f"{_user_frame(exc, path)}: {what}() raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(built, nn.Module):
        raise ModelLoadError(f"{path}: {what}() returned {type(built).__name__}, not an nn.Module")
    return built


def _example_inputs(module: Any, path: Path) -> tuple[tuple, dict]:
    fn = getattr(module, "example_inputs", None)
    if fn is None:
        return (), {}
    try:
        value = fn() if callable(fn) else fn
    except SystemExit as exc:
        raise _exit_error(exc, path, "in example_inputs()") from exc
    except Exception as exc:
        raise ModelLoadError(f"{_user_frame(exc, path)}: example_inputs() raised {type(exc).__name__}: {exc}") from exc
    return split_inputs(value, f"{path}: example_inputs()")


def _no_entry_error(module: Any, path: Path) -> ModelLoadError:
    """No entry found: name the classes that need constructor arguments, if that is why."""
    needy = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj) and issubclass(obj, nn.Module) and obj.__module__ == module.__name__
    ]
    if not needy:
        return ModelLoadError(
            f"{path} defines no nn.Module to analyse; add build_model() or a module-level `model`, or pass --entry NAME"
        )
    what = "; ".join(
        f"{c.__name__} needs constructor arguments ({', '.join(_required_args(c)) or '?'})" for c in needy[:3]
    )
    return ModelLoadError(f"{path}: {what}; add build_model() or pass --entry NAME of a function that builds it")


def _required_args(cls: type) -> list[str]:
    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in params if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _exit_error(exc: SystemExit, path: Path, when: str) -> ModelLoadError:
    return ModelLoadError(f"{_user_frame(exc, path)}: called sys.exit({exc.code!r}) while loading {path.name} ({when})")


def _no_required_args(cls: type) -> bool:
    try:
        params = list(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError):
        return False
    return all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params)


def _module_names(module: Any, path: Path) -> list[str]:
    return sorted(
        k
        for k, v in vars(module).items()
        if not k.startswith("_")
        and (
            isinstance(v, nn.Module)
            or (inspect.isclass(v) and issubclass(v, nn.Module) and v.__module__ == module.__name__)
            or (inspect.isfunction(v) and v.__module__ == module.__name__)
        )
    )


def _user_frame(exc: BaseException, path: Path) -> str:
    """'model.py:12' for the deepest traceback frame inside the user's file."""
    where = str(path)
    resolved = str(path.resolve())
    for frame in traceback.extract_tb(exc.__traceback__):
        if str(Path(frame.filename).resolve()) == resolved:
            where = f"{path}:{frame.lineno}"
    return where


# ---------------------------------------------------------------- zoos


def _load_zoo(spec: str) -> LoadedModel:
    zoo = load_zoo(spec)
    shape = zoo.shape or guess_shape(zoo.model, spec)
    note = zoo.shape_note or f"input shape {','.join(map(str, shape))} guessed from the first conv; pass --input-shape"
    return LoadedModel(
        zoo.model,
        zoo.form.inputs([shape], floating_dtype(zoo.model), spec),
        {},
        spec,
        zoo.entry,
        notes=[note, *zoo.notes],
        weights=WeightsOrigin.INITIALISED,
        weights_source=zoo.built,
        form=zoo.form,
    )


# ---------------------------------------------------------------- ONNX


def _load_onnx(path: Path, shapes_given: bool) -> LoadedModel:
    onnx = load_onnx(path, shapes_given=shapes_given)
    dtype = floating_dtype(onnx.model)
    return LoadedModel(
        onnx.model,
        onnx.form.inputs(onnx.shapes, dtype, str(path)) if onnx.shapes else (),
        {},
        str(path),
        onnx.entry,
        notes=list(onnx.notes),
        weights=WeightsOrigin.LOADED,
        weights_source=str(path),
        form=onnx.form,
    )


# ---------------------------------------------------------------- checkpoints


def _load_checkpoint(path: Path, trust: Sequence[str]) -> LoadedModel:
    obj = load_checkpoint_object(path, trust)
    if isinstance(obj, nn.Module):
        return LoadedModel(
            obj, (), {}, str(path), type(obj).__name__, weights=WeightsOrigin.LOADED, weights_source=str(path)
        )
    kind = "a state_dict" if isinstance(obj, dict) else f"a {type(obj).__name__}"
    raise CheckpointError(
        f"{path} holds {kind}, not a whole module; pass a model.py (or torchvision:NAME) that builds the model, "
        f"with --weights {path}"
    )
