"""The wheel ships the templates, and an installed wheel renders HTML from them."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (found,) = out.glob("convaudit-*.whl")
    return found


def test_wheel_contains_templates_and_typing_marker(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "convaudit/templates/report.html.j2" in names
    assert "convaudit/py.typed" in names
    assert not any(n.startswith("tests/") for n in names)


def test_wheel_contains_every_module(wheel: Path) -> None:
    """A subpackage added to the source tree but not to pyproject's package list would be missing."""
    names = set(zipfile.ZipFile(wheel).namelist())
    package = ROOT / "convaudit"
    sources = {f"convaudit/{p.relative_to(package).as_posix()}" for p in package.rglob("*.py")}
    assert sources <= names, sorted(sources - names)


def test_installed_wheel_renders_html(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    script = (
        "import convaudit, torch.nn as nn\n"
        "from convaudit.formats import render\n"
        f"assert convaudit.__file__.startswith({str(site)!r}), convaudit.__file__\n"
        "a = convaudit.analyze(nn.Sequential(nn.Conv2d(3, 8, 3)), input_shape=(1, 3, 16, 16))\n"
        "print(render(a, 'html'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "<!doctype html" in done.stdout.lower() and "</html>" in done.stdout.lower()
