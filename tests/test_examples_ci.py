"""examples/ci/github-workflow.yml as a new user would try it: every ``convaudit`` command of its ``run:``
steps runs locally, as written, in a checkout-like directory holding the small example model (and the base
branch's copy in ``base/``, where the workflow's ``git worktree add base`` puts it). Only the GitHub
expressions (``${{ ... }}``) are replaced, by local values; the workflow's ``env:`` is passed on as Actions does.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from convaudit.errors import EXIT_BUDGET, EXIT_OK

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / "examples" / "ci" / "github-workflow.yml"
MODEL = ROOT / "examples" / "small_cnn.py"
#: Local values of the expressions the workflow uses (an unknown one fails the test: add it here).
EXPRESSIONS = {
    "github.event.pull_request.base.sha": "HEAD",
    "github.event.pull_request.number": "1",
}


def parse_textually(text: str) -> tuple[dict[str, str], list[str], list[str]]:
    """(env, run scripts, ``path:`` entries) read line by line: the subset of YAML this workflow uses."""
    lines = text.splitlines()
    env: dict[str, str] = {}
    runs: list[str] = []
    paths: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        key = re.match(r"^(\s*)(?:- )?(run|env|path):\s*(.*?)\s*$", line)
        i += 1
        if key is None or line.lstrip().startswith("#"):
            continue
        indent, name, value = len(key.group(1)), key.group(2), key.group(3)
        block: list[str] = []
        while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
            block.append(lines[i])
            i += 1
        inner = [b.strip() for b in block if b.strip() and not b.strip().startswith("#")]
        if name == "env":
            env |= {k.strip(): v.strip().strip("\"'") for k, _, v in (b.partition(":") for b in inner)}
        elif name == "run":
            runs.append("\n".join(inner) if value in ("|", "|-") else value)
        else:
            paths += inner if value in ("|", "|-") else [value]
    return env, runs, paths


def parse(text: str) -> tuple[dict[str, str], list[str], list[str]]:
    """The same with PyYAML when it is installed (it is not a dependency of convaudit)."""
    try:
        import yaml
    except ImportError:
        return parse_textually(text)
    doc = yaml.safe_load(text)
    env = {k: str(v) for k, v in (doc.get("env") or {}).items()}
    runs, paths = [], []
    for job in doc["jobs"].values():
        env |= {k: str(v) for k, v in (job.get("env") or {}).items()}
        for step in job["steps"]:
            if "run" in step:
                runs.append(step["run"].strip())
            if "path" in step.get("with", {}):
                paths += str(step["with"]["path"]).split()
    return env, runs, paths


def substitute(command: str) -> str:
    """Replace each ``${{ expr }}`` by its local value."""

    def value(match: re.Match[str]) -> str:
        expr = match.group(1)
        assert expr in EXPRESSIONS, f"the workflow uses ${{{{ {expr} }}}}: give it a local value in EXPRESSIONS"
        return EXPRESSIONS[expr]

    return re.sub(r"\$\{\{\s*(.*?)\s*\}\}", value, command)


def convaudit_commands(runs: list[str]) -> list[str]:
    """The lines that run convaudit, in the workflow's order."""
    lines = [line.strip() for script in runs for line in script.replace("\\\n", " ").splitlines()]
    return [substitute(line) for line in lines if line.startswith("convaudit ")]


def checkout(root: Path, env: dict[str, str]) -> None:
    """A pull request's checkout: the model at $MODEL, the base branch's copy under base/."""
    for where in (root, root / "base"):
        target = where / env["MODEL"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(MODEL, target)


def shell(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = os.environ | env | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=full, capture_output=True, text=True, timeout=300, check=False
    )


def test_the_textual_reading_agrees_with_yaml() -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed: only the textual reading is used")
    text = WORKFLOW.read_text(encoding="utf-8")
    assert yaml.safe_load(text)["jobs"]["review"]["steps"]
    assert parse_textually(text) == parse(text)


def test_the_workflow_posts_markdown_and_uploads_html() -> None:
    text = WORKFLOW.read_text(encoding="utf-8")
    assert "actions/upload-artifact@" in text and "marocchino/sticky-pull-request-comment@" in text
    commands = convaudit_commands(parse(text)[1])
    names = [shlex.split(c)[1] for c in commands]
    assert {"check", "report", "diff"} <= set(names)
    assert any("--fail-on-increase" in c for c in commands)


def test_every_convaudit_command_runs_locally_as_written(tmp_path: Path) -> None:
    env, runs, paths = parse(WORKFLOW.read_text(encoding="utf-8"))
    checkout(tmp_path, env)
    commands = convaudit_commands(runs)
    for command in commands:
        done = shell(command, tmp_path, env)
        assert done.returncode == EXIT_OK, f"{command!r} exited {done.returncode}:\n{done.stderr}"
    for path in paths:  # what the artifact and the comment steps pick up
        assert (tmp_path / path).is_file(), f"the workflow uploads or posts {path}, which no command wrote"
    comment = (tmp_path / "diff.md").read_text(encoding="utf-8")
    assert "0 changed · 0 added · 0 removed · 0 renamed · 4 unchanged" in comment

    # the pull request widens a conv: the gate (the last command) fails with exit 3 and names it
    head = tmp_path / env["MODEL"]
    head.write_text(
        head.read_text()
        .replace("256, 256, kernel_size=3", "256, 384, kernel_size=3")
        .replace("BatchNorm2d(256)", "BatchNorm2d(384)")
        .replace("Linear(256", "Linear(384")
    )
    again = [c for c in commands if "-o head.json" in c] + [commands[-1]]
    assert "--fail-on-increase" in again[-1]
    (tmp_path / "head.json").unlink()  # a fresh runner: the report of the new head is written anew
    assert shell(again[0], tmp_path, env).returncode == EXIT_OK
    gate = shell(again[1], tmp_path, env)
    assert gate.returncode == EXIT_BUDGET, gate.stderr
    assert "conv256" in gate.stderr and "out_channels 256→384" in gate.stderr
