"""The layout keeps its promises: small modules, no private names across modules, documented
subpackages, and 0.1 artifacts that still load (docs/architecture.md)."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest
import torch

import convaudit
from convaudit.sources import load

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "convaudit"
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_LINES = 420  # STYLE.md: "a file past ~400 lines splits by concept"
ARTIFACTS_0_1 = ROOT / "tests" / "fixtures" / "artifact_0_1"
#: Where the 0.1 replay artifact's model.py rebuilds its model from (its SOURCE, written by 0.1).
REPLAY_SOURCE = Path("/tmp/art01/untraceable01.py")


def module_name(path: Path) -> str:
    """convaudit/analysis/rules/costs.py → convaudit.analysis.rules.costs (a package → its name)."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_private(name: str) -> bool:
    """``_x`` is private; dunders such as ``__version__`` are not."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def is_module(name: str) -> bool:
    """Whether a dotted convaudit name is a module or package of the source tree."""
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def private_imports(path: Path) -> list[str]:
    """Every private convaudit name another module reaches into: imported, or read off an imported module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[str] = []
    modules: dict[str, str] = {}  # local name → the convaudit module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("convaudit"):
            for alias in node.names:
                if is_private(alias.name) or any(is_private(p) for p in node.module.split(".")):
                    found.append(f"from {node.module} import {alias.name}")
                elif is_module(f"{node.module}.{alias.name}"):
                    modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("convaudit"):
                    if any(is_private(p) for p in alias.name.split(".")):
                        found.append(f"import {alias.name}")
                    if alias.asname:
                        modules[alias.asname] = alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and is_private(node.attr):
            bound = modules.get(node.value.id)
            if bound is not None:
                found.append(f"{bound}.{node.attr}")
    return found


def test_the_scan_sees_what_it_forbids(tmp_path: Path) -> None:
    source = (
        "from convaudit.formats.templating import _MARKER\n"
        "from convaudit.formats import templating\n"
        "import convaudit.formats.common as common\n"
        "from convaudit import __version__\n"
        "x = templating._MARKER, common._private, templating.template_root\n"
    )
    fake = tmp_path / "probe.py"  # names resolve against the source tree wherever the file is
    fake.write_text(source, encoding="utf-8")
    assert private_imports(fake) == [
        "from convaudit.formats.templating import _MARKER",
        "convaudit.formats.templating._MARKER",
        "convaudit.formats.common._private",
    ]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_no_module_is_too_long(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)}: {lines} lines; split it by concept (docs/architecture.md)"


def test_no_private_name_crosses_modules() -> None:
    found = {module_name(p): names for p in MODULES if (names := private_imports(p))}
    assert not found, f"private names used outside their module (make them public or move the code): {found}"


@pytest.mark.parametrize("package", sorted(p.parent for p in PACKAGE.rglob("__init__.py")), ids=str)
def test_every_package_says_what_it_holds(package: Path) -> None:
    assert ast.get_docstring(ast.parse((package / "__init__.py").read_text(encoding="utf-8"))), (
        f"{package.relative_to(ROOT)}/__init__.py has no docstring"
    )


@pytest.fixture
def replay_source() -> Path:
    """The 0.1 replay artifact's SOURCE, put where 0.1 recorded it (only ever our own fixture's copy)."""
    original = ARTIFACTS_0_1 / "untraceable01.py"
    if REPLAY_SOURCE.exists() and REPLAY_SOURCE.read_bytes() != original.read_bytes():
        pytest.fail(f"{REPLAY_SOURCE} exists and is not tests/fixtures/artifact_0_1/untraceable01.py; remove it")
    created = not REPLAY_SOURCE.parent.exists()
    REPLAY_SOURCE.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(original, REPLAY_SOURCE)
    yield REPLAY_SOURCE
    if created:
        shutil.rmtree(REPLAY_SOURCE.parent, ignore_errors=True)


@pytest.mark.parametrize(
    "artifact, source",
    [("tiny01_artifact", "tiny01.py"), ("replay01_artifact", "untraceable01.py")],
    ids=["generated code", "replayed from source"],
)
def test_a_0_1_artifact_still_loads_and_reproduces_its_model(artifact: str, source: str, replay_source: Path) -> None:
    original = load(str(ARTIFACTS_0_1 / source))
    converted = convaudit.load_converted(ARTIFACTS_0_1 / artifact)
    assert any(type(m).__name__.startswith("SeparableConv") for m in converted.modules())
    with torch.no_grad():
        expected = original.model.eval()(*original.args, **original.kwargs)
        actual = converted(*original.args, **original.kwargs)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)
