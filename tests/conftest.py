"""Shared pytest options and fixtures."""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from convaudit.documents.records import Analysis

GOLDEN = Path(__file__).resolve().parent / "golden"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite tests/golden/* from the current output instead of comparing against them",
    )


@pytest.fixture(scope="session", autouse=True)
def _no_calibrated_profile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Predicted times come from the built-in default profile: no calibrated cache of this machine is read."""
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Callable[[str, str], None]:
    """``golden(name, text)``: compare ``text`` with tests/golden/NAME, or rewrite it under --update-golden.

    Golden files test layout and counts: their analyses predict times with the frozen profile of
    tests/fixtures/profiles.py (``latency_profile=golden_profile()``, as ``small`` does), so refitting the
    built-in profile's constants rewrites none of them.
    """

    def check(name: str, text: str) -> None:
        path = GOLDEN / name
        if request.config.getoption("--update-golden"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            return
        if not path.exists():
            pytest.fail(f"no golden file {path}; run pytest with --update-golden to create it")
        expected = path.read_text(encoding="utf-8")
        if text != expected:
            diff = list(
                difflib.unified_diff(expected.splitlines(), text.splitlines(), "golden", "now", lineterm="", n=1)
            )
            shown = "\n".join(diff[:80]) + ("\n…" if len(diff) > 80 else "")
            pytest.fail(f"{name} differs from its golden file (rerun with --update-golden if intended):\n{shown}")

    return check


@pytest.fixture(scope="module")
def small() -> Analysis:
    """The renderers' golden-file analysis (seeded small CNN, cross-checked, with separability)."""
    from tests.fixtures.models import report_analysis

    return report_analysis()


@pytest.fixture(scope="module")
def evil() -> Analysis:
    """An analysis whose layer names try to break out of HTML, JSON-in-script and Markdown."""
    import convaudit
    from tests.fixtures.models import EvilNames

    return convaudit.analyze(EvilNames(), input_shape=(1, 3, 8, 8))
