"""The README opens with the two set-up commands, CI runs the second one verbatim, and its sample output
is what the tool prints now.

A sample is a marked block in README.md::

    <!-- sample: convaudit report examples/small_cnn.py -->
    ```text
    $ convaudit report examples/small_cnn.py
    ...what it prints on stdout...
    ```
    <!-- /sample -->

The test runs the command (in a scratch directory holding a copy of examples/, so that a report it writes
lands there) and compares its stdout with the block, byte for byte once versions are scrubbed.
``python -m pytest tests/test_readme.py --update-golden`` rewrites every block from the tool's output.
"""

import difflib
import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SAMPLE = re.compile(r"<!-- sample: (?P<command>[^\n]+?) -->\n```text\n(?P<body>.*?)```\n<!-- /sample -->", flags=re.S)
#: Version numbers (of convaudit, torch, fvcore, ...) and the platform: what differs between machines.
VOLATILE = [
    (re.compile(r"\b(convaudit|torch|torchvision|timm|fvcore|python)([ =])v?\d[\w.+-]*"), r"\1\2<version>"),
    (re.compile(r"\b(Linux|macOS|Windows)-[\w.+-]+"), "<platform>"),
]


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


def samples(text: str) -> list[re.Match[str]]:
    """The README's sample blocks."""
    return list(SAMPLE.finditer(text))


def scrub_versions(text: str) -> str:
    """``text`` with versions and the platform replaced: what a sample may differ in from this machine."""
    for pattern, replacement in VOLATILE:
        text = pattern.sub(replacement, text)
    return text


def printed(command: str, workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> str:
    """What ``command`` (``convaudit ...``) prints on stdout, run in ``workdir`` (a copy of examples/ in it)."""
    from convaudit.cli.app import main

    argv = shlex.split(command)
    assert argv[0] == "convaudit", f"a sample runs convaudit, not {argv[0]}"
    shutil.copytree(ROOT / "examples", workdir / "examples", dirs_exist_ok=True)
    monkeypatch.chdir(workdir)
    for arg in argv:  # a model file imported under its own name, as in a fresh process (not a fallback name)
        if arg.endswith(".py"):
            monkeypatch.delitem(sys.modules, Path(arg).stem, raising=False)
    capsys.readouterr()
    code = main(argv[1:])
    out = capsys.readouterr().out
    assert code == 0, f"{command} exited {code}"
    return f"$ {command}\n{out}"


def test_readme_has_a_sample() -> None:
    found = samples(README.read_text(encoding="utf-8"))
    assert found and any(m["command"].startswith("convaudit report examples/") for m in found)


def test_readme_sample_output_is_what_the_tool_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    text = README.read_text(encoding="utf-8")
    updated, stale = text, []
    for i, match in enumerate(samples(text)):
        now = printed(match["command"], tmp_path / f"sample{i}", capsys, monkeypatch)
        if scrub_versions(now) != scrub_versions(match["body"]):
            diff = difflib.unified_diff(match["body"].splitlines(), now.splitlines(), "README", "now", lineterm="", n=0)
            stale.append(f"{match['command']}:\n" + "\n".join(list(diff)[:20]))
            block = f"<!-- sample: {match['command']} -->\n```text\n{now}```\n<!-- /sample -->"
            updated = updated.replace(match[0], block)
    if request.config.getoption("--update-golden"):
        README.write_text(updated, encoding="utf-8")
    elif stale:
        refresh = "python -m pytest tests/test_readme.py --update-golden"
        pytest.fail(f"README sample output is stale (refresh: {refresh}):\n" + "\n".join(stale))


def test_scrubbing_keeps_the_figures() -> None:
    line = "cross-check (fvcore 0.1.5.post20221221): same ops 634,829,312 MACs · torch 2.14.1+cu130 · Linux-6.1-x86_64"
    assert (
        scrub_versions(line)
        == "cross-check (fvcore <version>): same ops 634,829,312 MACs · torch <version> · <platform>"
    )
