"""Generated code: every name reaches model.py (and fx's compiled code) as data, never as code.

The property test throws hostile names at a conversion, as submodule names (the conv being converted
included), a functional conv's parameter name, the source file name and the --include/--exclude globs,
then checks that model.py parses, that importing it leaves no marker and prints nothing, and that the
loaded model reproduces the converted one.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import io
import tempfile
import types
from pathlib import Path

import pytest
import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

import convaudit
from convaudit.analysis.tracing import ConvTracer
from convaudit.conversion.artifact.codegen import _imports
from convaudit.conversion.artifact.constructors import NotGenerable, _conv_ctor, constructor
from convaudit.conversion.artifact.writer import load_converted, write_artifact
from convaudit.conversion.safe_fx import safe_codegen

#: Replaced by a statement that leaves a marker file (relative: each example runs in its own marker directory).
MARK = "{mark}"
PAYLOADS = [
    'training"); {mark}; ("',  # closes torch.fx's getattr(self, "NAME")
    "training'); {mark}; ('",
    '"""; {mark}; """',  # ends a docstring
    "'''; {mark}; '''",
    "x\n{mark}\n#",  # ends a comment
    "A\n",  # fx takes it for a valid local name
    'x"); print("PWNED"); ("',
    "\\",
    "a\\",
    "\\N",
    "\\N{BULLET}",
    "\\x4",
    "\\u12",
    "\\'",
    '\\"',
    "class",
    "None",
    "lambda",
    "import",
    "match",
    "_",
    "__x",
    "__x__",
    "0",
    "01",
    "\u0663",  # keywords, digits
    "\ufb01",
    "fi",
    "\uff58",
    "x",
    "\u210c",
    "H",
    "\u00b5",
    "\u03bc",
    "e\u0301",
    "\u00e9",  # NFKC twins
    "\u221e",
    "\U0001f642",
    "\x00",
    "\u2028",
    "_convaudit_attr",
    "_convaudit_alias_0",
    "self",
    "torch",
    "F",
]
NAMES = st.one_of(st.sampled_from(PAYLOADS), st.text(min_size=1, max_size=6))
ROLES = ("conv", "keep", "act", "twin", "weight")
_MODULE = nn.Module()


def usable(name: str) -> bool:
    """A name add_module/register_parameter accept on a fresh module."""
    return bool(name) and "." not in name and not hasattr(_MODULE, name) and name != "roles"


def glob(name: str) -> str:
    """An fnmatch pattern matching exactly ``name``."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


class Hostile(nn.Module):
    """Two convs (one converted, one kept), an activation and its NFKC twin, and a functional conv's weight."""

    def __init__(self, names: dict[str, str]) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.roles = names
        self.add_module(names["conv"], nn.Conv2d(3, 4, 3, padding=1))
        self.add_module(names["keep"], nn.Conv2d(4, 4, 3, padding=1))
        self.add_module(names["act"], nn.Tanh())
        self.add_module(names["twin"], nn.Sigmoid())
        self.register_parameter(names["weight"], nn.Parameter(torch.randn(4, 4, 3, 3) / 6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.roles
        x = getattr(self, n["keep"])(getattr(self, n["conv"])(x))
        x = F.conv2d(x, getattr(self, n["weight"]), padding=1)
        return getattr(self, n["act"])(x) * 2 + getattr(self, n["twin"])(x)


def fill(text: str, i: int) -> str:
    return text.replace(MARK, f'open("m{i}", "w")')


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(names=st.lists(NAMES, min_size=6, max_size=6, unique=True))
@example(names=['training"); {mark}; ("', "class", "\ufb01", "fi", '"""; {mark}; """', "x\n{mark}\n#"])
@example(names=["\\N", "__x", "\uff58", "x", "training'); {mark}; ('", "\\N{BULLET}"])
@example(names=["0", "_convaudit_attr", "\u00b5", "\u03bc", "_convaudit_alias_0", 'x"); print("PWNED"); ("'])
@example(names=['training"); {mark}; ("', "class", "self", "exp", "x", "y"])  # `self = self.self(x)` in fx's code
def test_hostile_names_are_data(names: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        markers = Path(tmp) / "markers"
        markers.mkdir()
        filled = [fill(n, i) for i, n in enumerate(names)]
        roles, file_name = dict(zip(ROLES, filled[:5], strict=True)), filled[5].replace("/", "_").replace("\x00", "_")
        assume(len({*roles.values()}) == len(roles) and all(usable(n) for n in roles.values()))  # a buildable model
        model, x = Hostile(roles), torch.randn(1, 3, 6, 6)
        source = str(Path(tmp) / "src" / f"{file_name}.py")
        include, exclude = [glob(roles["conv"]), glob(roles["weight"])], [glob(roles["keep"])]
        printed = io.StringIO()
        with contextlib.chdir(markers), contextlib.redirect_stdout(printed):
            c = convaudit.convert(model, x, rank="full", include=include, exclude=exclude, source=source)
            out = write_artifact(Path(tmp) / "out", c.model, c.report, c.plan, ((x,), {}), source=source)
            rebuilt = load_converted(out)
        assert not any(markers.iterdir()), "a name ran as code"
        assert printed.getvalue() == ""
        code = (out / "model.py").read_text()
        tree = ast.parse(code)
        assert "class ConvertedModel" in code, "the model traces: model.py should be generated, not replayed"
        constants = {t.id: n.value for n in tree.body if isinstance(n, ast.Assign) for t in n.targets}
        assert ast.literal_eval(constants["MODEL"]) == source
        assert ast.literal_eval(constants["SETTINGS"])["include"] == include
        assert rebuilt.state_dict().keys() == c.model.state_dict().keys()
        with torch.no_grad():
            assert torch.allclose(rebuilt(x), c.model.eval()(x), rtol=1e-5, atol=1e-6)
            assert torch.allclose(rebuilt(x), model.eval()(x), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- torch.fx's own code generator


def test_fx_graph_module_compiles_hostile_names_as_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What convert compiles in its own process (a GraphModule for functional convs) holds the names as data."""
    monkeypatch.chdir(tmp_path)
    names = {"conv": 'training"); open("m1", "w"); ("', "keep": "class", "act": "\ufb01", "twin": "fi", "weight": "__w"}
    model = Hostile(names)
    tracer = ConvTracer()
    graph = tracer.trace(model)
    gm = torch.fx.GraphModule(tracer.root, safe_codegen(graph))
    x = torch.randn(1, 3, 6, 6)
    for m in (gm, copy.deepcopy(gm)):  # a deep copy compiles its code again, from the copied graph
        assert torch.equal(m(x), model(x))
    assert not (tmp_path / "m1").exists()
    assert "open(" not in gm.code.replace(repr(names["conv"]), "")  # the name, and only as one string literal


# ---------------------------------------------------------------- constructor calls from plain data only


def test_conv_attributes_must_be_plain_data(tmp_path: Path) -> None:
    conv = nn.Conv2d(3, 8, 3)
    conv.in_channels = f"open({str(tmp_path / 'm')!r}, 'w') or 3"  # as a pickle may set it
    with pytest.raises(NotGenerable):
        _conv_ctor(conv)
    assert not (tmp_path / "m").exists()


def test_module_attributes_are_written_as_strings(tmp_path: Path) -> None:
    bn = nn.BatchNorm2d(8)
    bn.affine = f"open({str(tmp_path / 'm')!r}, 'w') or True"  # BatchNorm's repr shows it raw
    expr = constructor(bn)
    call = ast.parse(expr, mode="eval").body
    assert isinstance(call, ast.Call)
    assert {k.arg: ast.literal_eval(k.value) for k in call.keywords}["affine"] == bn.affine
    assert not (tmp_path / "m").exists()


def test_imports_name_only_dotted_identifiers_of_loaded_modules() -> None:
    def f() -> None: ...

    for module, qual in [("os; import this", "f"), ("torch", "f(); import this"), ("not_loaded_anywhere", "f")]:
        f.__module__, f.__qualname__ = module, qual
        with pytest.raises(NotGenerable):
            _imports({"f": f})
    fake = types.ModuleType("x; import this")
    with pytest.raises(NotGenerable):
        _imports({"m": fake})
    assert _imports({"getattr": getattr}) == ["from builtins import getattr"]
