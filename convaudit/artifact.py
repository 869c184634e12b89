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
The directory appears atomically; an existing one is replaced only with ``force``.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import pprint
import re
import shutil
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import torch
import torch.fx
import torch.nn as nn
from torch.nn.modules.conv import _ConvNd

from .errors import ConvauditError, UsageError
from .output import default_mode, refuse_existing
from .policy import Plan
from .records import ConversionReport
from .rewrite import eval_mode
from .separable import SeparableConv
from .trace import ConvTracer

__all__ = ["write_artifact", "load_converted", "generate_source", "ARTIFACT_FILES"]

ARTIFACT_FILES = ("model.py", "state_dict.pt", "conversion.json", "conversion.html")


class _NotGenerable(Exception):
    """A module of the converted model cannot be written as a constructor call."""


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
) -> Path:
    """Write the artifact directory atomically; returns its path."""
    target = refuse_existing(out, force)
    if target.exists() and not target.is_dir():
        raise UsageError(f"{target} is a file; -o for convert names a directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    os.chmod(tmp, default_mode(directory=True))
    try:
        try:
            code, mode = generate_source(model, report), "generated"
        except _NotGenerable as exc:
            code, mode = _replay_source(report, plan, source, entry, reason=str(exc)), "replay"
        (tmp / "model.py").write_text(code)
        torch.save(model.state_dict(), tmp / "state_dict.pt")
        _check(tmp, model, example, mode)
        (tmp / "conversion.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        if html is not None:
            (tmp / "conversion.html").write_text(html)
        if target.exists():
            backup = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
            os.replace(target, backup / target.name)
            os.replace(tmp, target)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def load_converted(directory: str | os.PathLike[str], map_location: str = "cpu") -> nn.Module:
    """``model = convaudit.load_converted("OUT")``: build OUT/model.py's model and load its weights."""
    module = _import(Path(directory) / "model.py")
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
    if len(want_flat) != len(got_flat) or any(not torch.allclose(w, g, rtol=1e-5, atol=1e-6) for w, g in zip(want_flat, got_flat)):
        raise ConvauditError(f"the written model.py ({mode}) does not reproduce the converted model; please report this")


# ---------------------------------------------------------------- generated source

_HEADER = '''"""{title}

Generated by convaudit {version} from {source}: {summary}
Settings: {settings}

Load it in one line (torch only):   from model import load; model = load()
or from anywhere with convaudit:    model = convaudit.load_converted("{dirname}")
"""
'''

_HELPERS = '''

class SeparableConv(torch.nn.Module):
    """A conv rewritten as depthwise + pointwise by convaudit (children conv_dw, conv_pw)."""

    def __init__(self, conv_dw, conv_pw, order="dw_pw", bn_dw=None):
        super().__init__()
        self.order = order
        self.conv_dw = conv_dw
        if bn_dw is not None:
            self.bn_dw = bn_dw
            self.act_dw = torch.nn.ReLU(inplace=True)
        self.conv_pw = conv_pw

    def forward(self, x):
        if self.order == "pw_dw":
            return self.conv_dw(self.conv_pw(x))
        x = self.conv_dw(x)
        if hasattr(self, "bn_dw"):
            x = self.act_dw(self.bn_dw(x))
        return self.conv_pw(x)


def _put(root, path, module):
    """Attach module at a dotted path, creating plain containers on the way."""
    *parents, leaf = path.split(".")
    for name in parents:
        if name not in root._modules:
            root.add_module(name, torch.nn.Module())
        root = root._modules[name]
    root.add_module(leaf, module)


def _tensor(root, path, shape, dtype, parameter):
    """Register an empty parameter or buffer at a dotted path (its values come from state_dict.pt)."""
    *parents, leaf = path.split(".")
    for name in parents:
        if name not in root._modules:
            root.add_module(name, torch.nn.Module())
        root = root._modules[name]
    value = torch.empty(shape, dtype=dtype)
    if parameter:
        root.register_parameter(leaf, torch.nn.Parameter(value))
    else:
        root.register_buffer(leaf, value)


def load(directory=None, map_location="cpu"):
    """The converted model with its weights, in eval mode."""
    from pathlib import Path

    folder = Path(directory) if directory is not None else Path(__file__).resolve().parent
    model = ConvertedModel()
    state = torch.load(folder / "state_dict.pt", map_location=map_location, weights_only=True)
    model.load_state_dict(state)
    return model.eval()
'''


def generate_source(model: nn.Module, report: ConversionReport) -> str:
    """model.py for the converted model from its traced graph; raises _NotGenerable when it cannot."""
    try:
        tracer = ConvTracer(leaf_types=(SeparableConv,))
        graph = tracer.trace(model)
    except Exception as exc:
        raise _NotGenerable(f"the converted model cannot be traced symbolically ({type(exc).__name__})") from exc
    lines = []
    for node in graph.nodes:
        if node.op == "call_module" and node.target not in {ln[0] for ln in lines}:
            lines.append((node.target, _ctor(model.get_submodule(node.target))))
    tensors = []
    for node in graph.nodes:
        if node.op == "get_attr":
            t = _resolve(model, node.target)
            if not isinstance(t, torch.Tensor):
                raise _NotGenerable(f"get_attr {node.target} is not a tensor")
            tensors.append((node.target, tuple(t.shape), str(t.dtype), isinstance(t, nn.Parameter)))
    code = graph.python_code(root_module="self")
    used = {name: obj for name, obj in code.globals.items() if re.search(rf"\b{re.escape(name)}\b", code.src)}
    imports = _imports(used)
    body = ["class ConvertedModel(torch.nn.Module):", "    def __init__(self):", "        super().__init__()"]
    body += [f"        _put(self, {path!r}, {ctor})" for path, ctor in lines]
    body += [f"        _tensor(self, {p!r}, {s!r}, {d}, {par})" for p, s, d, par in dict.fromkeys(tensors)]
    forward = textwrap.dedent(code.src).strip("\n")
    body += [""] + ["    " + line if line.strip() else "" for line in forward.splitlines()]
    header = _header(report)
    return header + "\nimport torch\n" + "".join(f"{i}\n" for i in imports) + "\n" + "\n".join(body) + "\n" + _HELPERS


def _header(report: ConversionReport) -> str:
    from . import __version__

    n = len(report.layers)
    summary = (
        f"{n} conv{'s' if n != 1 else ''} rewritten; params {report.params_before:,} → {report.params_measured:,}, "
        f"MACs {report.macs_before:,} → {report.macs_measured:,}"
    )
    settings = ", ".join(f"{k}={v!r}" for k, v in report.settings.items() if v not in (None, [], (), 0.0, False))
    return _HEADER.format(
        title="A depthwise-separable version of " + report.model, version=__version__, source=report.model,
        summary=summary, settings=settings or "defaults", dirname="<this directory>",
    )  # fmt: skip


def _resolve(model: nn.Module, target: str) -> Any:
    obj: Any = model
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


#: Names fx's generated code may use that are not importable by their own __module__/__qualname__.
_SPECIAL_IMPORTS = {
    "torch": None,  # always imported
    "device": "from torch import device",
    "inf": "from math import inf",
    "nan": "from math import nan",
    "NoneType": "NoneType = type(None)",
    "fx_pytree": "import torch.fx._pytree as fx_pytree",
    "pytree": "import torch.utils._pytree as pytree",
}


def _imports(globals_: dict[str, Any]) -> list[str]:
    """Import lines for the globals the graph's code uses."""
    out = []
    for name, obj in sorted(globals_.items()):
        if name in _SPECIAL_IMPORTS or name.startswith("__"):
            if _SPECIAL_IMPORTS.get(name):
                out.append(_SPECIAL_IMPORTS[name])
            continue
        if inspect.ismodule(obj):
            out.append(f"import {obj.__name__} as {name}" if obj.__name__ != name else f"import {name}")
            continue
        module, qual = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
        if not module or not qual or "<" in qual or module == "__main__":
            raise _NotGenerable(f"the graph calls {name}, which cannot be imported by name")
        if "." in qual:
            out.append(f"from {module} import {qual.split('.')[0]} as _{name}_owner")
            out.append(f"{name} = _{name}_owner.{qual.split('.', 1)[1]}")
        else:
            out.append(f"from {module} import {qual} as {name}" if qual != name else f"from {module} import {name}")
    return out


def _ctor(m: nn.Module) -> str:
    """A constructor expression for a leaf module of the converted graph."""
    if isinstance(m, SeparableConv):
        args = [_conv_ctor(m.conv_dw), _conv_ctor(m.conv_pw), repr(m.order)]
        if m.style == "mobilenet":
            args.append(_generic_ctor(m.bn_dw))
        return f"SeparableConv({', '.join(args)})"
    if type(m) in (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d):
        return _conv_ctor(m)
    return _generic_ctor(m)


def _conv_ctor(c: _ConvNd) -> str:
    cls = f"torch.nn.{type(c).__name__}"
    extra = f", output_padding={tuple(c.output_padding)!r}" if c.transposed else ""
    return (
        f"{cls}({c.in_channels}, {c.out_channels}, kernel_size={tuple(c.kernel_size)!r}, stride={tuple(c.stride)!r}, "
        f"padding={c.padding if isinstance(c.padding, str) else tuple(c.padding)!r}, dilation={tuple(c.dilation)!r}, "
        f"groups={c.groups}, bias={c.bias is not None}, padding_mode={c.padding_mode!r}{extra}, dtype={c.weight.dtype})"
    )


def _generic_ctor(m: nn.Module) -> str:
    """torch.nn modules: their repr is usually a constructor call; checked by building it and comparing."""
    if not type(m).__module__.startswith("torch.nn"):
        raise _NotGenerable(f"{type(m).__qualname__} is not a torch.nn module")
    candidates = []
    text = repr(m)
    if "\n" not in text:
        candidates.append(f"torch.nn.{text}")
    candidates.append(_signature_ctor(m))
    for expr in candidates:
        if expr and _same_module(expr, m):
            return expr
    raise _NotGenerable(f"cannot write {type(m).__name__} as a constructor call")


def _signature_ctor(m: nn.Module) -> str | None:
    try:
        params = list(inspect.signature(type(m).__init__).parameters.values())[1:]
    except (TypeError, ValueError):
        return None
    parts = []
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name in ("device", "dtype"):
            continue
        if hasattr(m, p.name) and not isinstance(getattr(m, p.name), (nn.Module, torch.Tensor)):
            parts.append(f"{p.name}={getattr(m, p.name)!r}")
        elif p.default is p.empty:
            return None
    return f"torch.nn.{type(m).__name__}({', '.join(parts)})"


def _same_module(expr: str, m: nn.Module) -> bool:
    try:
        built = eval(expr, {"torch": torch, "inf": float("inf")})  # noqa: S307 - our own generated text
    except Exception:
        return False
    if type(built) is not type(m) or built.extra_repr() != m.extra_repr():
        return False
    a, b = built.state_dict(), m.state_dict()
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)


# ---------------------------------------------------------------- replay source (untraceable models)


def _replay_source(report: ConversionReport, plan: Plan, source: str | None, entry: str | None, reason: str) -> str:
    if not source:
        raise ConvauditError(f"model.py cannot be generated ({reason}) and the model's source is unknown; save from a source file")
    layers = [
        {"name": c.name, "order": c.order, "rank": c.rank, "style": report.settings.get("style")} for c in plan.choices
    ]
    src = str(Path(source).resolve()) if not source.startswith("torchvision:") else source
    return (
        _header(report)
        + f'''
# This model could not be written out as code ({reason}); it is rebuilt from its original source
# and the separable layers are swapped in. That needs convaudit and {src}.
import torch

SOURCE = {src!r}
ENTRY = {entry!r}
LAYERS = {pprint.pformat(layers, sort_dicts=False)}


def build():
    """The original model rebuilt from its source, with the chosen convs replaced by separable layers."""
    import convaudit.load
    from convaudit.rewrite import rebuild_structure

    return rebuild_structure(convaudit.load.load(SOURCE, entry=ENTRY).model, LAYERS)


def load(directory=None, map_location="cpu"):
    """The converted model with its weights, in eval mode."""
    from pathlib import Path

    folder = Path(directory) if directory is not None else Path(__file__).resolve().parent
    model = build()
    model.load_state_dict(torch.load(folder / "state_dict.pt", map_location=map_location, weights_only=True))
    return model.eval()
'''
    )
