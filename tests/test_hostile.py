"""Hostile input: a file a user is handed never runs code, and a file a user owns is never lost.

Every case proves its point with marker files that only executed code could create, checks the exit
code, and checks that every file that existed before is byte-identical afterwards.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from convaudit.cli.app import main
from convaudit.errors import EXIT_FAILURE, EXIT_OK, EXIT_USAGE

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def run(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m convaudit ARGS`` in a real process (for effects on the process: exit, cwd imports, signals)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "convaudit", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every file, symlink and directory under ``root``: contents for files, targets for links."""
    out: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = "link:" + os.readlink(path)
        elif path.is_file():
            out[rel] = path.read_bytes()
        elif path.is_dir():
            out[rel] = "dir"
    return out


def assert_kept(before: dict[str, bytes | str], root: Path) -> None:
    """Every entry of ``before`` is still under ``root``, byte-identical."""
    now = snapshot(root)
    lost = [k for k in before if k not in now]
    changed = [k for k in before if k in now and now[k] != before[k]]
    assert not lost and not changed, f"lost {lost}, changed {changed}"


def no_markers(markers: Path) -> None:
    """The marker directory is empty: no hostile code ran."""
    made = sorted(p.name for p in markers.iterdir()) if markers.exists() else []
    assert not made, f"hostile code ran and left markers: {made}"


def marker_code(markers: Path, name: str) -> str:
    """A Python statement that leaves a marker file when executed."""
    return f"open({str(markers / name)!r}, 'w').close()"


@pytest.fixture
def markers(tmp_path: Path) -> Path:
    path = tmp_path / "markers"
    path.mkdir()
    return path


# ------------------------------------------------------- checkpoints (vetting imports nothing; --trust; --weights)


ZEN = "Beautiful is better than ugly"
#: pickles naming this.Zen in every way a pickle can name a global; each would print the Zen if imported
ZEN_PICKLES = {
    "GLOBAL": b"\x80\x02cthis\nZen\n)R.",
    "STACK_GLOBAL": b"\x80\x04\x8c\x04this\x94\x8c\x03Zen\x94\x93)R.",
    "STACK_GLOBAL via memo": b"\x80\x04\x8c\x04this\x94\x8c\x03Zen\x94\x86\x94h\x00h\x01\x93)R.",  # BINGET 0, BINGET 1
    "STACK_GLOBAL via LONG_BINGET": (
        b"\x80\x04\x8c\x04this\x94\x8c\x03Zen\x94\x86\x94j\x00\x00\x00\x00j\x01\x00\x00\x00\x93)R."
    ),
    "STACK_GLOBAL, protocol 5 framed": (
        b"\x80\x05\x95\x13\x00\x00\x00\x00\x00\x00\x00\x8c\x04this\x94\x8c\x03Zen\x94\x93)R."
    ),
    "INST": b"(ithis\nZen\n.",
    "OBJ": b"(cthis\nZen\no.",
}


def raw_checkpoint(path: Path, data: bytes, zip_format: bool = True) -> Path:
    """A torch.save file whose object pickle is exactly ``data`` (zip, or the legacy non-zip stream)."""
    import pickle
    import types

    class RawPickler:
        def __init__(self, file: object, protocol: int | None = None) -> None:
            self.file = file

        def dump(self, obj: object) -> None:
            self.file.write(data)  # type: ignore[attr-defined]

    module = types.ModuleType("rawpickle")
    module.Pickler, module.dump = RawPickler, pickle.dump  # type: ignore[attr-defined]
    torch.save(None, path, pickle_module=module, _use_new_zipfile_serialization=zip_format)
    return path


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("convaudit: error: "), stderr
    return lines[0]


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
@pytest.mark.parametrize("opcodes", sorted(ZEN_PICKLES))
def test_a_pickle_naming_this_zen_imports_nothing(tmp_path: Path, capsys, opcodes: str, zip_format: bool) -> None:
    assert "this" not in sys.modules, "precondition: an earlier import of `this` would hide the print"
    ckpt = raw_checkpoint(tmp_path / "zen.pt", ZEN_PICKLES[opcodes], zip_format)
    before = snapshot(tmp_path)
    code = main(["report", str(ckpt), "-o", str(tmp_path / "r.html")])
    out, err = capsys.readouterr()
    assert code == EXIT_FAILURE and ZEN not in out + err and "this" not in sys.modules
    line = one_error_line(err)
    assert "this.Zen" in line and "--trust this" in line and "--weights" in line
    assert snapshot(tmp_path) == before


def test_this_zen_in_a_real_process(tmp_path: Path) -> None:
    raw_checkpoint(tmp_path / "zen.pt", ZEN_PICKLES["STACK_GLOBAL via memo"])
    done = run("report", "zen.pt", "-o", "r.html", cwd=tmp_path)
    assert done.returncode == EXIT_FAILURE and ZEN not in done.stdout + done.stderr
    assert "module this is not loaded" in one_error_line(done.stderr)


def test_venv_main_creates_no_virtualenv(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    raw_checkpoint(work / "ck.pt", b"\x80\x04\x8c\rvenv.__main__\x94\x8c\x01X\x94\x93)R.")
    before = snapshot(work)
    done = run("report", "ck.pt", "-o", "r.html", cwd=work)
    assert done.returncode == EXIT_FAILURE and "venv.__main__.X" in one_error_line(done.stderr)
    assert snapshot(work) == before  # no pyvenv.cfg, bin/, lib/ ... and no report


def side_effect_module(folder: Path, name: str, markers: Path) -> None:
    folder.mkdir(exist_ok=True)
    code = f"{marker_code(markers, name)}\nimport torch.nn as nn\nclass Net(nn.Module):\n    pass\n"
    (folder / f"{name}.py").write_text(code)


def test_a_module_on_pythonpath_is_not_imported(tmp_path: Path, markers: Path) -> None:
    side_effect_module(tmp_path / "pp", "sidefx", markers)
    raw_checkpoint(tmp_path / "g.pt", b"\x80\x02csidefx\nNet\n)\x81.")
    raw_checkpoint(tmp_path / "s.pt", b"\x80\x04\x8c\x06sidefx\x94\x8c\x03Net\x94\x93)\x81.")
    for name in ("g.pt", "s.pt"):
        done = run("report", name, "-o", "r.html", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path / "pp")})
        assert done.returncode == EXIT_FAILURE and "--trust sidefx" in one_error_line(done.stderr)
    no_markers(markers)


def test_modules_beside_the_checkpoint_are_not_imported_under_python_m(tmp_path: Path, markers: Path) -> None:
    """cwd is sys.path[0] under ``python -m``: a module there, or one shadowing timm, must not be imported."""
    here = tmp_path / "here"
    side_effect_module(here, "beside", markers)
    side_effect_module(here, "timm", markers)  # timm is let in as a package only when it is the installed one
    raw_checkpoint(here / "a.pt", b"\x80\x02cbeside\nNet\n)\x81.")
    raw_checkpoint(here / "b.pt", b"\x80\x02ctimm.models.resnet\nResNet\n)\x81.")
    before = snapshot(here)
    for name in ("a.pt", "b.pt"):
        done = run("report", name, "-o", "r.html", cwd=here)
        assert done.returncode == EXIT_FAILURE and "refused" in one_error_line(done.stderr)
    no_markers(markers)
    assert snapshot(here) == before


def test_a_module_getattr_is_never_called(tmp_path: Path, markers: Path, monkeypatch, capsys) -> None:
    """An already-imported module is searched through its __dict__: a lazy __getattr__ never runs."""
    code = f"def __getattr__(name):\n    {marker_code(markers, 'getattr')}\n    raise AttributeError(name)\n"
    (tmp_path / "lazy_mod.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "lazy_mod", raising=False)  # removed again after the test
    import lazy_mod  # noqa: F401  (rule (b): its module is loaded)

    ckpt = raw_checkpoint(tmp_path / "ck.pt", b"\x80\x02clazy_mod\nNet\n)\x81.")
    assert main(["report", str(ckpt), "-o", str(tmp_path / "r.html")]) == EXIT_FAILURE
    assert "not an nn.Module class" in one_error_line(capsys.readouterr().err)
    no_markers(markers)


def test_a_stdlib_module_the_pickle_names_stays_unimported(tmp_path: Path, capsys) -> None:
    assert "json.tool" not in sys.modules  # importable and harmless: a vetting that imports would load it
    ckpt = raw_checkpoint(tmp_path / "ck.pt", b"\x80\x04\x8c\tjson.tool\x94\x8c\x04main\x94\x93)R.")
    assert main(["report", str(ckpt), "-o", str(tmp_path / "r.html")]) == EXIT_FAILURE
    assert "json.tool" not in sys.modules
    assert "--trust json.tool" in one_error_line(capsys.readouterr().err)


class _Reduces:
    def __init__(self, call: object, args: tuple) -> None:
        self.call, self.args = call, args

    def __reduce__(self) -> tuple:
        return self.call, self.args


def _reducers(markers: Path) -> dict[str, tuple[object, tuple]]:
    return {
        "os.system": (os.system, (f"touch {markers / 'system'}",)),
        "builtins.eval": (eval, (marker_code(markers, "eval"),)),
        "builtins.exec": (exec, (marker_code(markers, "exec"),)),
        "subprocess.Popen": (subprocess.Popen, (["touch", str(markers / "popen")],)),
    }


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("how", ["source", "--weights"])
@pytest.mark.parametrize("call", ["os.system", "builtins.eval", "builtins.exec", "subprocess.Popen"])
def test_reducers_are_refused(tmp_path: Path, markers: Path, capsys, call: str, how: str, protocol: int) -> None:
    ckpt = tmp_path / "evil.pt"
    torch.save({"model": _Reduces(*_reducers(markers)[call])}, ckpt, pickle_protocol=protocol)
    before = snapshot(tmp_path)
    argv = [str(ckpt)] if how == "source" else ["torchvision:resnet18", "--weights", str(ckpt)]
    assert main(["report", *argv, "-o", str(tmp_path / "r.html"), "--no-cross-check"]) == EXIT_FAILURE
    line = one_error_line(capsys.readouterr().err)
    assert "refused" in line and call.rpartition(".")[2] in line
    no_markers(markers)
    assert snapshot(tmp_path) == before  # nothing lost, changed or added


@pytest.mark.parametrize(
    "data,says",
    [
        (b"\x80\x04)\x8c\x01x\x93.", "computed value"),  # STACK_GLOBAL on a tuple: its name is not a plain string
        (b"\x80\x02\x82\x01.", "extension registry"),  # EXT1
        (b"\x80\x04h\x07\x8c\x01x\x93.", "memo entry 7"),  # BINGET of nothing
        (b"\x80\x02cos\nsys\x00tem\n)R.", "not an nn.Module"),
    ],
)
def test_pickles_that_cannot_be_vetted_are_refused(tmp_path: Path, capsys, data: bytes, says: str) -> None:
    ckpt = raw_checkpoint(tmp_path / "ck.pt", data)
    assert main(["report", str(ckpt), "-o", str(tmp_path / "r.html")]) == EXIT_FAILURE
    assert says in one_error_line(capsys.readouterr().err)


def test_trust_is_the_only_way_a_module_gets_imported(tmp_path: Path, markers: Path) -> None:
    """--trust MODULE imports it (the marker proves it ran) and lets its nn.Module class through; nothing else does."""
    ckdir, elsewhere = tmp_path / "ck", tmp_path / "elsewhere"
    ckdir.mkdir()
    elsewhere.mkdir()
    (ckdir / "trusted_net.py").write_text(
        f"{marker_code(markers, 'imported')}\nimport torch.nn as nn\n\n"
        "class Net(nn.Sequential):\n    def __init__(self):\n        super().__init__(nn.Conv2d(3, 8, 3), nn.ReLU())\n"
    )
    save = "import torch, trusted_net; torch.manual_seed(0); torch.save(trusted_net.Net(), 'net.pt', pickle_protocol=4)"
    subprocess.run([sys.executable, "-c", save], cwd=ckdir, check=True, timeout=120)
    (markers / "imported").unlink()
    ckpt = str(ckdir / "net.pt")
    refused = run("report", ckpt, "-o", "r.json", "--input-shape", "1,3,8,8", cwd=elsewhere)
    assert refused.returncode == EXIT_FAILURE and "--trust trusted_net" in one_error_line(refused.stderr)
    no_markers(markers)
    done = run("report", ckpt, "-o", "r.json", "--input-shape", "1,3,8,8", "--trust", "trusted_net", cwd=elsewhere)
    assert done.returncode == EXIT_OK, done.stderr
    assert (markers / "imported").exists()
    doc = json.loads((elsewhere / "r.json").read_text())
    assert doc["model_class"] == "trusted_net.Net" and doc["weights"] == "loaded" and len(doc["layers"]) == 1


def test_trust_does_not_let_functions_through(tmp_path: Path, capsys) -> None:
    ckpt = raw_checkpoint(tmp_path / "ck.pt", b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00true\x85R.")
    assert main(["report", str(ckpt), "--trust", "os", "-o", str(tmp_path / "r.html")]) == EXIT_FAILURE
    assert "not an nn.Module class" in one_error_line(capsys.readouterr().err)


def test_weights_flag_for_report_and_convert(tmp_path: Path, capsys) -> None:
    """--weights: the trained weights are what report and convert work on, and both say so."""
    import convaudit

    model_py = tmp_path / "net.py"
    model_py.write_text(
        "import torch.nn as nn\n\ndef build_model():\n"
        "    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))\n"
    )
    torch.manual_seed(1)
    nn = torch.nn
    trained = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))
    torch.save({"state_dict": trained.state_dict(), "epoch": 9}, tmp_path / "ckpt.pt", pickle_protocol=4)
    common = [str(model_py), "--weights", str(tmp_path / "ckpt.pt"), "--input-shape", "1,3,12,12"]
    assert main(["report", *common, "-o", str(tmp_path / "r.json"), "--no-cross-check"]) == EXIT_OK
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["weights"] == "loaded" and doc["weights_source"] == f"{tmp_path / 'ckpt.pt'}['state_dict']"
    assert main(["convert", *common, "-o", str(tmp_path / "out"), "--rank", "full"]) == EXIT_OK
    assert "weights: trained, loaded from" in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / "conversion.json").read_text())["weights"] == "loaded"
    x = torch.randn(2, 3, 12, 12)
    with torch.no_grad():
        assert torch.allclose(convaudit.load_converted(str(tmp_path / "out"))(x), trained(x), atol=1e-4)


def test_a_torchscript_archive_is_refused_unloaded(tmp_path: Path, capsys) -> None:
    ckpt = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Conv2d(3, 8, 3)), str(ckpt))
    assert main(["report", str(ckpt), "-o", str(tmp_path / "r.html")]) == EXIT_FAILURE
    assert "TorchScript archive" in one_error_line(capsys.readouterr().err)


# ---------------------------------------------------------------- generated code (names never become code)


def dotless_marker(markers: Path, name: str) -> str:
    """marker_code without dots, slashes, brackets or single quotes: it fits a module name, a file name, a glob."""
    return f'open(bytes({tuple(str(markers / name).encode())}), "w")'


def short_marker(name: str) -> str:
    """A marker statement short enough for a file name: relative, so the test runs with the markers as cwd."""
    return f'open("{name}", "w")'


def reproduces(out: Path, model_py: Path) -> bool:
    """The artifact at ``out`` computes what the model in ``model_py`` computes (rank full: exactly, up to rounding)."""
    from convaudit.conversion.artifact.writer import load_converted
    from convaudit.sources.loader import load

    loaded = load(str(model_py))
    with torch.no_grad():
        want, got = loaded.model.eval()(*loaded.args), load_converted(out)(*loaded.args)
    return want.shape == got.shape and bool(torch.allclose(want, got, rtol=1e-4, atol=1e-5))


def test_module_and_parameter_names_never_become_code(tmp_path: Path, markers: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    conv = f'training"); {dotless_marker(markers, "conv")}; ("'  # closes fx's getattr(self, "NAME")
    weight = f'training"); {dotless_marker(markers, "weight")}; ("'  # a functional conv's weight
    (src / "net.py").write_text(
        "import torch, torch.nn as nn, torch.nn.functional as F\n"
        "torch.manual_seed(0)\n"  # reproduces() loads it again
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        f"        self.add_module({conv!r}, nn.Conv2d(3, 8, 3, padding=1))\n"
        "        self.add_module('class', nn.ReLU())\n"  # a keyword: self.class is a SyntaxError
        "        self.add_module('\\ufb01', nn.Tanh())\n"  # 'ﬁ': Python reads self.ﬁ as self.fi
        "        self.add_module('fi', nn.Sigmoid())\n"
        f"        self.register_parameter({weight!r}, nn.Parameter(torch.randn(8, 8, 3, 3) / 8))\n"
        "    def forward(self, x):\n"
        f"        x = getattr(self, 'class')(getattr(self, {conv!r})(x))\n"
        f"        x = F.conv2d(x, getattr(self, {weight!r}), padding=1)\n"
        "        return getattr(self, '\\ufb01')(x) * 2 + self.fi(x)\n"
        "model = Net()\n"
        "def example_inputs():\n"
        "    return (torch.randn(1, 3, 8, 8),)\n"
    )
    before = snapshot(src)
    out = tmp_path / "out"
    assert main(["convert", str(src / "net.py"), "-o", str(out), "--rank", "full", "-q"]) == EXIT_OK
    no_markers(markers)
    assert_kept(before, src)
    code = (out / "model.py").read_text()
    assert "class ConvertedModel" in code, "the model traces: model.py should be generated, not replayed"
    strings = {n.value for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert {conv, "class", "\ufb01"} <= strings  # the names are in model.py, as data
    assert reproduces(out, src / "net.py")


HOSTILE_FILE_NAMES = {
    "triple_quotes": 'net"""; {marker}; """',  # ended the docstring the name was pasted into
    "backslash_N": "net\\N",  # a malformed \N escape in that docstring: a SyntaxError
    "backslash_N_name": "net\\N{{BULLET}}x",
}


@pytest.mark.parametrize("case", sorted(HOSTILE_FILE_NAMES))
def test_file_name_and_globs_never_become_code(tmp_path: Path, markers: Path, case: str, monkeypatch) -> None:
    monkeypatch.chdir(markers)
    src = tmp_path / "src"
    src.mkdir()
    model_py = src / (HOSTILE_FILE_NAMES[case].format(marker=short_marker("file")) + ".py")
    model_py.write_text(
        "import torch, torch.nn as nn\n"
        "torch.manual_seed(0)\n"
        "model = nn.Sequential()\n"
        "model.add_module('convx', nn.Conv2d(3, 8, 3))\n"
        "model.add_module('skipx', nn.Conv2d(8, 8, 3))\n"
        "def example_inputs():\n"
        "    return (torch.randn(1, 3, 12, 12),)\n"
    )
    # each glob matches its layer through a [...] set that holds a docstring break-out
    include = f'conv[x"""; {dotless_marker(markers, "include")}; """]'
    exclude = f'skip[x"""; {dotless_marker(markers, "exclude")}; """]'
    before = snapshot(src)
    out = tmp_path / "out"
    argv = [
        "convert",
        str(model_py),
        "-o",
        str(out),
        "--rank",
        "full",
        "--include",
        include,
        "--exclude",
        exclude,
        "-q",
    ]
    assert main(argv) == EXIT_OK
    no_markers(markers)
    assert_kept(before, src)
    tree = ast.parse((out / "model.py").read_text())
    constants = {t.id: ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign) for t in n.targets}
    assert model_py.name in constants["MODEL"]
    assert constants["SETTINGS"]["include"] == [include] and constants["SETTINGS"]["exclude"] == [exclude]
    assert reproduces(out, model_py)


def test_replay_source_path_never_becomes_code(tmp_path: Path, markers: Path, monkeypatch) -> None:
    monkeypatch.chdir(markers)
    src = tmp_path / "src"
    src.mkdir()
    # the replay's model.py names its source; a newline in the path used to end the comment it was written in
    model_py = src / f"dyn\n{short_marker('replay')}\n#.py"
    model_py.write_text("import torch\ntorch.manual_seed(0)\n" + (EXAMPLES / "dynamic_net.py").read_text())
    before = snapshot(src)
    out = tmp_path / "out"
    assert main(["convert", str(model_py), "-o", str(out), "--rank", "full", "-q"]) == EXIT_OK
    no_markers(markers)
    assert_kept(before, src)
    code = (out / "model.py").read_text()
    assert "rebuild_structure" in code, "dynamic_net does not trace: model.py should be a replay"
    constants = {t.id: n.value for n in ast.parse(code).body if isinstance(n, ast.Assign) for t in n.targets}
    assert ast.literal_eval(constants["SOURCE"]) == str(model_py.resolve())
    assert reproduces(out, model_py)


def test_module_attributes_are_data_not_code(tmp_path: Path, markers: Path) -> None:
    """A checkpoint's pickle sets attributes freely: one holding code is written as a string, never evaluated."""
    import convaudit
    from convaudit.conversion.artifact.writer import load_converted, write_artifact

    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 8, 3))
    model[1].affine = f"{marker_code(markers, 'affine')} or True"  # shown raw by BatchNorm's repr, unused by forward
    x = torch.randn(1, 3, 10, 10)
    c = convaudit.convert(model, x, rank="full", exclude=["2"])
    out = write_artifact(tmp_path / "out", c.model, c.report, c.plan, ((x,), {}))
    no_markers(markers)
    with torch.no_grad():
        assert torch.allclose(load_converted(out)(x), c.model.eval()(x), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- outputs (no file is ever lost)

TINY = '''
import os
import pathlib
import sys
import time

import torch
import torch.nn as nn


class Net(nn.Module):
    """One 3×3 conv whose weights are exactly depthwise × pointwise (m = 1 reproduces it), seeded by TINY_SEED."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(int(os.environ.get("TINY_SEED", "0")))
        self.conv = nn.Conv2d(8, 16, 3)
        with torch.no_grad():
            dw, pw = torch.randn(8, 3, 3, generator=g), torch.randn(16, 8, generator=g)
            self.conv.weight.copy_(pw[:, :, None, None] * dw[None])
            self.conv.bias.copy_(torch.randn(16, generator=g))

    def forward(self, x):
        {hook}
        return self.conv(x)


def example_inputs():
    return (torch.ones(1, 8, 8, 8),)
'''

#: Forward code that runs only while convaudit checks its own temporary artifact (inside write_artifact).
IN_WRITE_ARTIFACT = """frame = sys._getframe()
        while frame is not None and frame.f_code.co_name != "write_artifact":
            frame = frame.f_back
        if frame is not None:
"""


def tiny_model(tmp_path: Path, hook: str = "pass") -> Path:
    """tmp_path/proj/model.py: a tiny model, fast to convert; ``hook`` runs first in its forward."""
    path = tmp_path / "proj" / "model.py"
    path.parent.mkdir(exist_ok=True)
    path.write_text(TINY.replace("{hook}", hook))
    return path


def temp_entries(root: Path) -> list[str]:
    """Leftover temporary entries (``.NAME.XXXX`` files or directories) anywhere under ``root``."""
    return sorted(str(p.relative_to(root)) for p in root.rglob(".*"))


def error_line(stderr: str) -> str:
    """The one line convaudit printed (no traceback)."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("convaudit: "), stderr
    return lines[0]


ARTIFACT = ["conversion.html", "conversion.json", "model.py", "state_dict.pt"]


def artifact_files(out: Path) -> list[str]:
    """The names in an artifact directory, sorted."""
    return sorted(p.name for p in out.iterdir())


@pytest.mark.parametrize(
    "cwd,argv,says",
    [
        ("proj", ["convert", "model.py", "-o", "model.py", "--force"], "-o model.py is the input model.py"),
        ("proj", ["report", "model.py", "-o", "model.py", "--force"], "-o model.py is the input model.py"),
        ("proj", ["convert", "model.py", "-o", ".", "--force"], "-o . contains the input model.py"),
        ("proj", ["report", "model.py", "-o", ".", "--force"], "-o . contains the input model.py"),
        (".", ["convert", "proj/model.py", "-o", "proj", "--force"], "-o proj contains the input proj/model.py"),
        ("proj/deep", ["convert", "../model.py", "-o", "..", "--force"], "-o .. contains the input ../model.py"),
        (".", ["convert", "proj/model.py", "-o", ".", "--force"], "-o . contains the input proj/model.py"),
        (".", ["convert", "proj/model.py", "-o", "link-to-proj", "--force"], "-o link-to-proj contains the input"),
        (".", ["report", "proj/net.pt", "-o", "proj/net.pt", "--force"], "-o proj/net.pt is the input proj/net.pt"),
        (".", ["report", "proj/net.pt", "-o", "proj", "--force"], "-o proj contains the input proj/net.pt"),
    ],
)
def test_output_may_not_be_or_hold_an_input(
    tmp_path: Path, monkeypatch, capsys, cwd: str, argv: list, says: str
) -> None:
    tiny_model(tmp_path)
    (tmp_path / "proj" / "deep").mkdir()
    torch.save(torch.nn.Conv2d(3, 8, 3), tmp_path / "proj" / "net.pt")
    (tmp_path / "link-to-proj").symlink_to(tmp_path / "proj")
    before = snapshot(tmp_path)
    monkeypatch.chdir(tmp_path / cwd)
    assert main(argv) == EXIT_USAGE
    assert says in error_line(capsys.readouterr().err)
    assert snapshot(tmp_path) == before  # nothing lost, changed or added (no temporary entry either)


def test_a_new_output_beside_the_input_is_fine(tmp_path: Path, monkeypatch) -> None:
    tiny_model(tmp_path)
    before = snapshot(tmp_path)
    monkeypatch.chdir(tmp_path / "proj")
    assert main(["convert", "model.py", "-o", "out", "-q"]) == EXIT_OK
    assert main(["report", "model.py", "-q", "--no-cross-check"]) == EXIT_OK
    assert_kept(before, tmp_path)
    assert artifact_files(tmp_path / "proj" / "out") == ARTIFACT
    assert (tmp_path / "proj" / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert temp_entries(tmp_path) == []


def _user_files(root: Path) -> None:
    """Files a user might have at an -o path: none of them written by convaudit."""
    (root / "notes.html").write_text("<!DOCTYPE html><html><head><title>mine</title></head></html>\n")
    (root / "data.json").write_text('{"schema_version": "1.0", "mine": true}\n')
    (root / "notes.txt").write_text("my notes\n")
    (root / "edited.md").write_text("### convaudit: x\n<!-- generator: convaudit 0.1.0 -->\nmy own line below it\n")
    os.mkfifo(root / "pipe")
    (root / "mine").mkdir()
    (root / "mine" / "thesis.tex").write_text("years of work\n")
    (root / "fake").mkdir()
    (root / "fake" / "model.py").write_text("print('mine')\n")
    (root / "fake" / "conversion.json").write_text('{"hello": 1}\n')
    (root / "nested").mkdir()
    (root / "nested" / "model.py").mkdir()
    (root / "nested" / "model.py" / "keep.txt").write_text("inside a directory named like an artifact file\n")
    (root / "nested" / "conversion.json").write_text('{"schema_version": "1.0", "generator": "convaudit"}\n')


@pytest.mark.parametrize(
    "argv,says",
    [
        (["report", "M", "-o", "notes.html"], "notes.html was not written by convaudit"),
        (["report", "M", "-o", "data.json"], "data.json was not written by convaudit"),
        (["report", "M", "-o", "notes.txt"], "notes.txt was not written by convaudit"),
        (["report", "M", "-o", "edited.md"], "edited.md was not written by convaudit"),
        (["report", "M", "-o", "pipe", "--format", "text"], "pipe was not written by convaudit"),
        (["report", "M", "-o", "mine"], "mine is a directory"),
        (["convert", "M", "-o", "mine"], "mine was not written by convaudit (it holds 'thesis.tex'"),
        (["convert", "M", "-o", "fake"], "fake was not written by convaudit"),
        (["convert", "M", "-o", "nested"], "nested was not written by convaudit (it holds 'model.py'"),
        (["convert", "M", "-o", "."], ". was not written by convaudit"),
        (["convert", "M", "-o", "notes.txt"], "notes.txt is a file"),
    ],
)
def test_force_leaves_what_convaudit_did_not_write(tmp_path: Path, monkeypatch, capsys, argv: list, says: str) -> None:
    model = tiny_model(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    _user_files(work)
    before = snapshot(tmp_path)
    monkeypatch.chdir(work)
    assert main([str(model) if a == "M" else a for a in argv] + ["--force"]) == EXIT_USAGE
    line = error_line(capsys.readouterr().err)
    assert says in line and ("left it alone" in line or "is a " in line)
    assert snapshot(tmp_path) == before


def test_force_replaces_convaudits_own_outputs(tmp_path: Path, monkeypatch, capsys) -> None:
    model = tiny_model(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for name in ["r.html", "r.json", "r.txt", "r.md"]:
        assert main(["report", str(model), "-o", name, "-q", "--no-cross-check"]) == EXIT_OK
        assert main(["report", str(model), "-o", name, "-q", "--no-cross-check"]) == EXIT_USAGE  # not without --force
        assert main(["report", str(model), "-o", name, "-q", "--no-cross-check", "--force"]) == EXIT_OK
    assert main(["convert", str(model), "-o", "out", "-q"]) == EXIT_OK
    doc = json.loads((work / "out" / "conversion.json").read_text())
    assert doc["generator"] == "convaudit" and doc["schema_version"]
    (work / "out" / "__pycache__").mkdir()  # what importing the artifact's model.py leaves
    (work / "out" / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"\0")
    assert main(["convert", str(model), "-o", "out", "-q", "--force"]) == EXIT_OK
    del doc["generator"]  # an artifact of convaudit 0.1, before conversion.json named its generator
    (work / "out" / "conversion.json").write_text(json.dumps(doc))
    assert main(["convert", str(model), "-o", "out", "-q", "--force"]) == EXIT_OK
    assert artifact_files(work / "out") == ARTIFACT
    assert sorted(p.name for p in work.iterdir()) == ["out", "r.html", "r.json", "r.md", "r.txt"]  # no temporaries


def test_two_writers_at_once_exactly_one_wins(tmp_path: Path) -> None:
    sync = tmp_path / "sync"
    sync.mkdir()
    hook = (
        IN_WRITE_ARTIFACT
        + f"""            (pathlib.Path({str(sync)!r}) / str(os.getpid())).touch()  # wait for both
            deadline = time.time() + 120
            while len(list(pathlib.Path({str(sync)!r}).iterdir())) < 2 and time.time() < deadline:
                time.sleep(0.02)
"""
    )
    model = tiny_model(tmp_path, hook)
    work = tmp_path / "work"
    work.mkdir()
    before = snapshot(tmp_path / "proj")
    cmd = [sys.executable, "-m", "convaudit", "convert", str(model), "-o", "out", "-q"]
    procs = {
        seed: subprocess.Popen(
            cmd,
            cwd=work,
            env={**os.environ, "TINY_SEED": seed},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in ("1", "2")
    }
    done = {seed: (p.wait(timeout=300), p.stderr.read()) for seed, p in procs.items()}  # type: ignore[union-attr]
    assert len(list(sync.iterdir())) == 2  # both really were writing at the same time
    codes = sorted(code for code, _ in done.values())
    assert codes == [EXIT_OK, EXIT_USAGE], done
    winner = next(seed for seed, (code, _) in done.items() if code == EXIT_OK)
    loser_err = next(err for code, err in done.values() if code == EXIT_USAGE)
    assert "out appeared while convaudit was writing it" in error_line(loser_err)
    assert artifact_files(work / "out") == ARTIFACT
    assert temp_entries(tmp_path) == []
    assert_kept(before, tmp_path / "proj")
    # the winner's files, all of them: its weights (seeded by its TINY_SEED) reproduce its own model
    import importlib.util

    from convaudit.conversion.artifact.writer import load_converted

    spec = importlib.util.spec_from_file_location("tiny_concurrent", model)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    x = module.example_inputs()[0]
    with torch.no_grad():
        got = load_converted(work / "out")(x)
        expected = {}
        for seed in ("1", "2"):
            os.environ["TINY_SEED"] = seed
            expected[seed] = module.Net()(x)
        del os.environ["TINY_SEED"]
    assert torch.allclose(got, expected[winner], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(got, expected[{"1": "2", "2": "1"}[winner]], rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("command", ["report", "convert"])
@pytest.mark.parametrize("kind", ["dangling", "live"])
def test_a_symlink_at_the_output_is_never_followed(
    tmp_path: Path, monkeypatch, capsys, command: str, kind: str
) -> None:
    model = tiny_model(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    pointee = work / ("precious.txt" if command == "report" else "precious")
    if kind == "live" and command == "report":
        pointee.write_text("the user's file\n")
    elif kind == "live":
        pointee.mkdir()
        (pointee / "thesis.tex").write_text("years of work\n")
    name = "r.txt" if command == "report" else "out"
    (work / name).symlink_to(pointee)
    before = snapshot(tmp_path)
    monkeypatch.chdir(work)
    extra = ["--no-cross-check"] if command == "report" else []
    assert main([command, str(model), "-o", name, "-q", *extra]) == EXIT_USAGE
    assert "(a symlink: convaudit does not follow it)" in error_line(capsys.readouterr().err)
    assert snapshot(tmp_path) == before
    assert main([command, str(model), "-o", name, "-q", "--force", *extra]) == EXIT_OK
    assert not (work / name).is_symlink()  # the link itself was replaced ...
    assert (work / name).is_file() if command == "report" else (work / name / "model.py").is_file()
    assert_kept({k: v for k, v in before.items() if k != f"work/{name}"}, tmp_path)  # ... and what it named is intact
    assert os.path.lexists(pointee) == (kind == "live")  # a dangling link's target was not created
    assert temp_entries(tmp_path) == []


@pytest.mark.parametrize("command,sig", [("convert", "SIGTERM"), ("convert", "SIGINT"), ("report", "SIGTERM")])
def test_a_signal_mid_run_leaves_no_temporary_files(tmp_path: Path, command: str, sig: str) -> None:
    import signal
    import time

    reached = tmp_path / "reached"
    if command == "convert":  # hold while the temporary artifact directory exists
        hook = IN_WRITE_ARTIFACT + f"            pathlib.Path({str(reached)!r}).touch()\n            time.sleep(120)\n"
    else:  # report: hold in the analysis
        hook = f"pathlib.Path({str(reached)!r}).touch()\n        time.sleep(120)\n"
    model = tiny_model(tmp_path, hook)
    work = tmp_path / "work"
    work.mkdir()
    (work / "mine.txt").write_text("keep\n")
    before = snapshot(tmp_path)
    args = [command, str(model), "-o", "out" if command == "convert" else "r.html"]
    args += ["--no-cross-check"] if command == "report" else []
    proc = subprocess.Popen(
        [sys.executable, "-m", "convaudit", *args], cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 240
    while not reached.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert reached.exists(), proc.communicate()
    if command == "convert":
        assert [p.name for p in work.iterdir() if p.name.startswith(".out.")], "no temporary directory to clean up"
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_FAILURE, err
    line = error_line(err)
    assert ("SIGTERM" in line) if sig == "SIGTERM" else ("interrupt" in line.lower())
    assert temp_entries(tmp_path) == []
    assert_kept(before, tmp_path)
    assert sorted(p.name for p in work.iterdir()) == ["mine.txt"]


@pytest.mark.parametrize("command", ["report", "convert"])
@pytest.mark.parametrize("case", ["read-only directory", "name too long"])
def test_a_failed_write_is_one_clear_line(tmp_path: Path, monkeypatch, capsys, command: str, case: str) -> None:
    if case == "read-only directory" and os.geteuid() == 0:
        pytest.skip("root writes into read-only directories")
    model = tiny_model(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    (work / "mine.txt").write_text("keep\n")
    name = "x" * 300 if case == "name too long" else "out"
    before = snapshot(tmp_path)
    monkeypatch.chdir(work)
    if case == "read-only directory":
        work.chmod(0o555)
    try:
        extra = ["--no-cross-check"] if command == "report" else []
        assert main([command, str(model), "-o", name, "-q", *extra]) == EXIT_USAGE
    finally:
        work.chmod(0o755)
    line = error_line(capsys.readouterr().err)
    assert ("File name too long" in line) if case == "name too long" else ("permission denied" in line.lower())
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------- the user's code is contained

BUSY = """
import sys
import torch
import torch.nn as nn


class Busy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.calls = 0
        self.register_buffer("seen", torch.zeros(1))

    def forward(self, x):
        {body}
        return self.conv2(torch.relu(self.bn(self.conv1(x))))


def example_inputs():
    return torch.randn(1, 3, 8, 8)
"""


def busy_file(tmp_path: Path, body: str, top: str = "") -> Path:
    path = tmp_path / "proj" / "busy.py"
    path.parent.mkdir(exist_ok=True)
    path.write_text(top + BUSY.replace("{body}", body))
    return path


@pytest.mark.parametrize(
    "top,body",
    [("import sys\nsys.exit(0)\n", "pass"), ("", "sys.exit(0)"), ("", "raise KeyboardInterrupt")],
    ids=["exit-at-import", "exit-in-forward", "interrupt-in-forward"],
)
@pytest.mark.parametrize("command", ["report", "convert"])
def test_model_code_cannot_pass_for_success(tmp_path: Path, capsys, top: str, body: str, command: str) -> None:
    path = busy_file(tmp_path, body, top)
    before = snapshot(tmp_path)
    out = tmp_path / ("out.json" if command == "report" else "out")
    assert main([command, str(path), "-o", str(out)]) == EXIT_FAILURE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("convaudit: "), err
    assert not out.exists()
    assert snapshot(tmp_path) == before  # nothing written, no temp file left


def test_prints_go_to_stderr_while_data_goes_to_stdout(tmp_path: Path) -> None:
    top = "print('printed at import')\n"
    body = "print('printed in forward'); import os; os.write(1, b'written to fd 1 from forward')"
    path = busy_file(tmp_path, body, top)
    done = run("report", str(path), "--format", "json", "-o", "-", cwd=tmp_path)
    assert done.returncode == EXIT_OK, done.stderr
    import json

    assert json.loads(done.stdout)["model"].endswith("busy.py")
    assert "printed at import" in done.stderr and "written to fd 1" in done.stderr


def state_of(model: torch.nn.Module) -> dict:
    """What analysis must leave as it was: every module's attributes (by identity), hooks, flags and tensors."""
    out: dict = {}
    for name, m in model.named_modules():
        hooks = [list(d) for d in (m._forward_hooks, m._forward_pre_hooks, m._backward_hooks)]
        out[name] = ({k: id(v) for k, v in vars(m).items()}, hooks, m.training)
    out["tensors"] = {k: v.clone() for k, v in model.state_dict(keep_vars=False).items()}
    out["global hooks"] = len(torch.nn.modules.module._global_forward_hooks)
    return out


def assert_same_state(before: dict, after: dict) -> None:
    tensors_before, tensors_after = before.pop("tensors"), after.pop("tensors")
    assert before == after
    assert tensors_before.keys() == tensors_after.keys()
    changed = [k for k in tensors_before if not torch.equal(tensors_before[k], tensors_after[k])]
    assert not changed, f"tensors changed: {changed}"


class _Output:
    """A custom output object: fvcore's jit trace fails on it."""

    def __init__(self, value: torch.Tensor) -> None:
        self.value = value


def _count_hook(module: torch.nn.Module, inputs: tuple, output: object) -> None:
    module.hooked = getattr(module, "hooked", 0) + 1


def _pre_hook(module: torch.nn.Module, inputs: tuple) -> None:
    module.pre_hooked = 1


class BusyNet(torch.nn.Module):
    """A forward with side effects on itself, hooks of its own, and optionally a custom output or a shape branch."""

    def __init__(self, custom_output: bool = False, data_dependent: bool = False) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.calls = 0
        self.custom_output, self.data_dependent = custom_output, data_dependent
        self.register_buffer("seen", torch.zeros(1))
        self.register_forward_hook(_count_hook)
        self.conv1.register_forward_pre_hook(_pre_hook)
        self.train()  # as zoo builders return models: BatchNorm would update its statistics

    def forward(self, x: torch.Tensor) -> object:
        self.calls += 1
        self.last = x  # fx would leave a Proxy here
        self.conv1.extra = x
        self.seen.add_(1)
        if self.data_dependent and x.shape[-1] > 4:  # a Python branch on a shape: the tracer cannot follow it
            x = x * 1.0
        y = self.conv2(torch.relu(self.bn(self.conv1(x))))
        return _Output(y) if self.custom_output else y


@pytest.mark.parametrize(
    "entry",
    [
        "analyze",
        "analyze-hooks-path",
        "analyze-cross-check",
        "analyze-cross-check-fvcore-fails",
        "convert",
        "convert-recalibrate-bn",
    ],
)
def test_entry_points_leave_the_model_as_found(entry: str) -> None:
    import io

    import convaudit

    model = BusyNet(custom_output="fails" in entry, data_dependent="hooks" in entry)
    x = torch.randn(1, 3, 8, 8)
    before = state_of(model)
    if entry.startswith("analyze"):
        a = convaudit.analyze(model, (x,), cross_check="cross-check" in entry)
        assert a.trace_path == "hooks" if "hooks" in entry else a.trace_path in ("fx", "hooks")
        if "fails" in entry:
            assert a.cross_check is not None and a.cross_check.skipped
    else:
        calibration = [torch.randn(2, 3, 8, 8)] if "recalibrate" in entry else None
        convaudit.convert(model, (x,), recalibrate_bn=calibration is not None, calibration=calibration)
    assert_same_state(before, state_of(model))
    torch.save(model, io.BytesIO())  # fvcore's hooks left behind would make this fail


# ---------------------------------------------------------------- clear lines instead of internal errors

MODELS = {
    "meta": "def build_model():\n    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3)).to('meta')\n",
    "cycle": "def build_model():\n    m = nn.Sequential(nn.Conv2d(3, 8, 3))\n    m._modules['me'] = m\n    return m\n",
    "quantized": (
        "import torch.ao.nn.quantized as nnq\n\nclass Net(nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n        self.c = nnq.Conv2d(3, 8, 3)\n\n    def forward(self, x):\n"
        "        return self.c(x)\n\ndef example_inputs():\n    return torch.randn(1, 3, 8, 8)\n"
    ),
    "fp16": "def build_model():\n    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3)).half()\n",
}


@pytest.mark.parametrize(
    "model,command,extra,code,pattern",
    [
        ("meta", "convert", [], EXIT_FAILURE, "on the meta device (no data)"),
        ("cycle", "report", [], EXIT_FAILURE, "the module tree contains a cycle"),
        ("cycle", "convert", [], EXIT_FAILURE, "the module tree contains a cycle"),
        ("quantized", "report", [], EXIT_FAILURE, "is a quantized conv"),
        ("quantized", "convert", [], EXIT_FAILURE, "is a quantized conv"),
        ("fp16", "report", ["--input-shape", "1,3,99999999999,99999999999"], EXIT_USAGE, "--input-shape"),
        ("fp16", "report", ["--input-shape", "99999999999999999999999,3,9,9"], EXIT_USAGE, "--input-shape"),
    ],
)
def test_bad_models_get_one_clear_line(
    tmp_path: Path, capsys, model: str, command: str, extra: list[str], code: int, pattern: str
) -> None:
    path = tmp_path / f"{model}.py"
    path.write_text("import torch\nimport torch.nn as nn\n\n" + MODELS[model])
    before = snapshot(tmp_path)
    out = tmp_path / ("r.json" if command == "report" else "out")
    assert main([command, str(path), "-o", str(out), *extra]) == code
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "Warning" not in line]
    assert err[-1].startswith("convaudit: error: ") and pattern in err[-1], err
    assert "internal error" not in err[-1]
    assert snapshot(tmp_path) == before


def test_fp16_model_converts_from_a_shape(tmp_path: Path, capsys) -> None:
    path = tmp_path / "fp16.py"
    path.write_text("import torch\nimport torch.nn as nn\n\n" + MODELS["fp16"])
    assert (
        main(["convert", str(path), "-o", str(tmp_path / "out"), "--input-shape", "1,3,16,16", "--rank", "full"]) == 0
    )
    assert (tmp_path / "out" / "state_dict.pt").exists()


_CONV = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3))
_X = torch.randn(1, 3, 16, 16)


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.analyze(_CONV, input_shape=(1, -3, 16, 16)),
        lambda c: c.analyze(_CONV, input_shape="1,3,16,16"),
        lambda c: c.analyze(_CONV, input_shape=(1, 3, 2**40, 2**40)),
        lambda c: c.analyze(_CONV, 5),
        lambda c: c.analyze(_CONV, _X, [1, 2]),
        lambda c: c.analyze("resnet", _X),
        lambda c: c.analyze(_CONV, _X, rules={torch.nn.Conv2d: 5}),
        lambda c: c.convert(_CONV, _X, rank="two"),
        lambda c: c.convert(_CONV, _X, rank=1.5),
        lambda c: c.convert(_CONV, _X, rank=True),
        lambda c: c.convert(_CONV, _X, min_savings=5),
        lambda c: c.convert(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3)).to("meta"), torch.empty(1, 3, 8, 8)),
        lambda c: c.load_converted("/nonexistent/dir"),
        lambda c: c.load_converted(__file__),
    ],
    ids=[
        "negative-shape",
        "shape-string",
        "shape-overflow",
        "inputs-int",
        "kwargs-list",
        "not-a-module",
        "rule-int",
        "rank-word",
        "rank-float",
        "rank-bool",
        "min-savings",
        "meta-weights",
        "artifact-missing",
        "artifact-file",
    ],
)
def test_api_raises_its_own_errors(call: object) -> None:
    import convaudit
    from convaudit.errors import ConvauditError

    with pytest.raises(ConvauditError):
        call(convaudit)  # type: ignore[operator]
