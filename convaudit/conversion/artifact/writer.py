"""The conversion artifact: a directory with a readable model.py, its state_dict, and the report.

    OUT/model.py          defines ConvertedModel (torch only) and load(); see its docstring
    OUT/state_dict.pt     the weights (load with weights_only=True)
    OUT/conversion.json   the ConversionReport
    OUT/conversion.html   the same, for a reviewer

model.py is generated from the traced graph of the converted model: every module the graph calls is
constructed explicitly and ``forward`` is the graph's code. When the model cannot be traced, or a
module cannot be written as a constructor call, model.py instead rebuilds the original model from its
source and swaps the separable layers in (it then needs convaudit and the original source).
The generated file is always imported and checked against the converted model before it is kept.
The directory appears atomically; ``force`` replaces only an earlier artifact, never a user's directory.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from convaudit.analysis.guard import eval_mode
from convaudit.conversion.artifact.codegen import NotGenerable, generate_source
from convaudit.conversion.artifact.codegen import replay_source as _replay_source
from convaudit.conversion.planning import Plan
from convaudit.documents.records import ConversionReport
from convaudit.errors import ConvauditError, UsageError
from convaudit.outputs.files import (
    check_output,
    claim_directory,
    discard,
    make_temp_dir,
    output_errors,
)

__all__ = ["ARTIFACT_FILES", "generate_source", "load_converted", "write_artifact"]

ARTIFACT_FILES = ("model.py", "state_dict.pt", "conversion.json", "conversion.html")


def write_artifact(
    out: str | os.PathLike[str],
    model: nn.Module,
    report: ConversionReport,
    plan: Plan,
    example: tuple[tuple, dict],
    *,
    source: str | None = None,
    entry: str | None = None,
    html: str | None = None,
    force: bool = False,
    inputs: Sequence[str | os.PathLike[str]] = (),
) -> Path:
    """Write the artifact directory atomically; returns its path.

    ``out`` may not be or hold ``source`` or any of ``inputs``; ``force`` replaces only an earlier artifact
    (recognised by its conversion.json), an empty directory, or a symlink (the link itself).
    """
    inputs = (*inputs, *([source] if source else []))
    target = check_output(out, inputs=inputs, force=force, directory=True, files=ARTIFACT_FILES)
    with output_errors(out):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = make_temp_dir(target)
    try:
        try:
            code, mode = generate_source(model, report), "generated"
        except NotGenerable as exc:
            code, mode = _replay_source(report, plan, source, entry, reason=str(exc)), "replay"
        with output_errors(out):
            (tmp / "model.py").write_text(code)
            torch.save(model.state_dict(), tmp / "state_dict.pt")
        _check(tmp, model, example, mode)
        with output_errors(out):
            (tmp / "conversion.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
            if html is not None:
                (tmp / "conversion.html").write_text(html)
        claim_directory(tmp, target, force=force, files=ARTIFACT_FILES)  # resolved: the model may chdir
    finally:
        discard(tmp)  # gone already once claimed
    return target


def load_converted(directory: str | os.PathLike[str], map_location: str = "cpu") -> nn.Module:
    """``model = convaudit.load_converted("OUT")``: build OUT/model.py's model and load its weights.

    OUT/model.py is code and this runs it: load only artifact directories you or convaudit wrote.
    """
    folder = Path(directory)
    missing = [name for name in ("model.py", "state_dict.pt") if not (folder / name).is_file()]
    if missing:
        what = "no such directory" if not folder.exists() else f"no {' or '.join(missing)} in it"
        raise UsageError(
            f"{folder}: not a convaudit artifact directory ({what}); give the -o directory of convaudit convert"
        )
    module = _import(folder / "model.py")
    return module.load(directory, map_location=map_location)


def _import(path: Path) -> Any:
    name = f"_convaudit_artifact_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConvauditError(f"{path}: not an artifact's model.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@torch.no_grad()
def _check(tmp: Path, model: nn.Module, example: tuple[tuple, dict], mode: str) -> None:
    """Import the written model.py, load the weights, and compare outputs with the converted model."""
    rebuilt = load_converted(tmp)
    args, kwargs = example
    with eval_mode(model):
        want, got = model(*args, **kwargs), rebuilt(*args, **kwargs)
    want_flat = [t for t in torch.utils._pytree.tree_leaves(want) if isinstance(t, torch.Tensor)]
    got_flat = [t for t in torch.utils._pytree.tree_leaves(got) if isinstance(t, torch.Tensor)]
    if len(want_flat) != len(got_flat) or any(
        not torch.allclose(w, g, rtol=1e-5, atol=1e-6) for w, g in zip(want_flat, got_flat, strict=True)
    ):
        raise ConvauditError(
            f"the written model.py ({mode}) does not reproduce the converted model; please report this"
        )
