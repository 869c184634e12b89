"""The README opens with the two set-up commands, and CI runs the second one verbatim."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)\n```", (ROOT / "README.md").read_text(), flags=re.S)
    return [b.strip() for b in blocks[:2]]


def test_readme_opens_with_two_commands() -> None:
    run, test = readme_commands()
    assert "pip install ." in run and "convaudit report examples/" in run
    example = re.search(r"convaudit report (examples/\S+)", run).group(1)
    assert (ROOT / example).is_file()
    assert "pip install '.[test]'" in test and "pytest" in test


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    _, test = readme_commands()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test in ci


def test_the_checks_run_after_the_install_and_before_the_tests() -> None:
    import tomllib

    _, test = readme_commands()
    steps = [step.strip() for step in test.split("&&")]
    install, tests = steps.index("pip install '.[test]'"), steps.index("python -m pytest")
    for check in ("ruff format --check", "ruff check", "mypy", "lint-imports"):
        assert install < steps.index(check) < tests, check
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    pinned = {e.split("==")[0] for e in extras if "==" in e}
    assert {"ruff", "mypy", "import-linter"} <= pinned


def test_test_extras_bring_torchvision() -> None:
    import tomllib

    extras = " ".join(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"])
    assert "torchvision" in extras and "hypothesis" in extras and "pytest" in extras
