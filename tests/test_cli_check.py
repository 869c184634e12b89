"""``convaudit check``: exit 0 within budget, 3 over it (with the explanation), 2 for a bad budget."""

import json
import re
import tomllib
from pathlib import Path

import pytest
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from convaudit.cli.app import COMMANDS, build_parser, main
from convaudit.documents.check import CheckResult
from convaudit.errors import EXIT_BUDGET, EXIT_OK, EXIT_USAGE
from convaudit.review.budgets import resolve_budgets
from convaudit.review.check import analyse_for_check, check_analysis
from convaudit.sources import load

MODEL = """import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.body = nn.Conv2d(16, 64, 3, padding=1)
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        return self.head(self.body(self.stem(x)).mean((2, 3)))


def example_inputs():
    return (torch.randn(1, 3, 32, 32),)
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with model.py, as the working directory."""
    (tmp_path / "model.py").write_text(MODEL, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    """MACs by FlopCounterMode (FLOPs = 2·MACs) and params by counting, of the model in MODEL."""
    path = tmp_path_factory.mktemp("oracle") / "model.py"
    path.write_text(MODEL, encoding="utf-8")
    loaded = load(str(path))
    with FlopCounterMode(display=False) as counter:
        loaded.model(*loaded.args)
    return {"macs": counter.get_total_flops() // 2, "params": sum(p.numel() for p in loaded.model.parameters())}


def body_line() -> int:
    return next(n for n, line in enumerate(MODEL.splitlines(), 1) if "self.body = nn.Conv2d(" in line)


@pytest.mark.parametrize("flag,key", [("--max-macs", "macs"), ("--max-params", "params")])
def test_exit_0_at_the_limit_and_3_one_over(project: Path, oracle, capsys, flag: str, key: str) -> None:
    assert main(["check", "model.py", flag, str(oracle[key])]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith("convaudit check passed: 1 of 1 budgets met — model.py")
    assert main(["check", "model.py", flag, str(oracle[key] - 1)]) == EXIT_BUDGET
    out = capsys.readouterr().out
    assert out.startswith("convaudit check FAILED: 1 of 1 budgets exceeded — model.py")
    assert f"  OVER  {flag[2:]}: " in out
    assert f"model.py:{body_line()}" in out  # the layer responsible, where it is defined
    assert "next: convaudit " in out


def test_the_explanation_fits_one_screen(project: Path, capsys) -> None:
    args = ["--max-macs", "1M", "--max-params", "1k", "--max-conv-macs", "1M", "--max-layer-macs", "1M"]
    code = main(["check", "model.py", *args, "--max-candidate-share", "10%", "--max-latency", "1us"])
    assert code == EXIT_BUDGET
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) <= 50 and max(len(line) for line in lines) <= 100
    assert sum(line.startswith("  OVER  ") for line in lines) == 6
    latency = next(i for i, line in enumerate(lines) if line.startswith("  OVER  max-latency"))
    assert "a prediction" in lines[latency + 1] and "not a measurement" in lines[latency + 1]


def test_a_bad_budget_is_a_usage_error_before_the_model_loads(project: Path, capsys) -> None:
    (project / "model.py").write_text("raise SystemExit('must not run')\n", encoding="utf-8")
    assert main(["check", "model.py", "--max-macs", "4.2 gigamacs"]) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err == (
        "convaudit: error: --max-macs: '4.2 gigamacs' is not a count; write a whole number with an optional "
        "k, M, G or T suffix, e.g. 4.2G, 26M, 1.5k or 1200"
    )
    assert main(["check", "model.py"]) == EXIT_USAGE
    assert "no budget to check" in capsys.readouterr().err


def test_budgets_from_pyproject_per_model_and_flags_override(project: Path, oracle, capsys) -> None:
    (project / "pyproject.toml").write_text(
        f'[tool.convaudit]\nmax-macs = "1k"\n\n[tool.convaudit.models."model.py"]\nmax-params = {oracle["params"]}\n',
        encoding="utf-8",
    )
    assert main(["check", "model.py"]) == EXIT_BUDGET
    out = capsys.readouterr().out
    assert "budgets from pyproject.toml [tool.convaudit]" in out
    assert "OVER  max-macs" in out and "(pyproject.toml [tool.convaudit])" in out
    assert "ok    max-params" in out  # the per-model section applies to model.py
    assert main(["check", "model.py", "--max-macs", str(oracle["macs"])]) == EXIT_OK  # the flag wins
    assert "(--max-macs)" in capsys.readouterr().out
    assert main(["check", "model.py", "--no-config", "--max-params", "1"]) == EXIT_BUDGET
    assert "max-macs" not in capsys.readouterr().out
    (project / "sub").mkdir()
    (project / "sub" / "pyproject.toml").write_text('[tool.convaudit]\nmax-macs = "1G"\n', encoding="utf-8")
    (project / "sub" / "model.py").write_text(MODEL, encoding="utf-8")
    assert main(["check", "sub/model.py"]) == EXIT_OK  # the file nearest the model, not the working directory's


def test_json_is_a_check_result(project: Path, oracle, capsys) -> None:
    assert main(["check", "model.py", "--max-macs", "1M", "--format", "json"]) == EXIT_BUDGET
    doc = json.loads(capsys.readouterr().out)
    assert doc["passed"] is False and doc["schema_version"] == "1.0"
    result = CheckResult.from_dict(doc)
    assert result.to_dict() == doc
    (budget,) = result.budgets
    assert (budget.name, budget.actual, budget.limit, budget.exceeded) == ("max-macs", oracle["macs"], 1e6, True)
    assert budget.culprits[0].name == "body"


def test_output_file_format_from_its_suffix(project: Path, capsys) -> None:
    assert main(["check", "model.py", "--max-macs", "1M", "-o", "check.sarif"]) == EXIT_BUDGET
    assert json.loads((project / "check.sarif").read_text())["version"] == "2.1.0"
    out = capsys.readouterr().out
    assert "OVER  max-macs" in out and "check.sarif (sarif)" in out
    assert main(["check", "model.py", "--max-macs", "1M", "-o", "check.html"]) == EXIT_USAGE
    assert "a check is written as text, json or sarif" in capsys.readouterr().err
    assert main(["check", "model.py", "--max-macs", "1M", "-o", "check.csv"]) == EXIT_USAGE  # not text in disguise
    assert "unknown suffix .csv" in capsys.readouterr().err and not (project / "check.csv").exists()
    assert main(["check", "model.py", "--max-macs", "1M", "-o", "check.sarif"]) == EXIT_USAGE  # exists: --force
    for name in ("check.sarif", "check.json", "check.txt"):  # --force replaces what check wrote, in each format
        assert main(["check", "model.py", "--max-macs", "1M", "-o", name]) in (EXIT_BUDGET, EXIT_USAGE)
        assert main(["check", "model.py", "--max-macs", "1M", "-o", name, "--force", "-q"]) == EXIT_BUDGET
    (project / "notes.txt").write_text("my notes\n", encoding="utf-8")
    assert main(["check", "model.py", "--max-macs", "1M", "-o", "notes.txt", "--force"]) == EXIT_USAGE
    assert (project / "notes.txt").read_text(encoding="utf-8") == "my notes\n"


def test_the_model_is_left_as_found(project: Path) -> None:
    loaded = load("model.py")
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    analysis = analyse_for_check(loaded.model, loaded.args, source="model.py")
    check_analysis(analysis, resolve_budgets({"max-macs": "1"}), source="model.py")
    after = loaded.model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert loaded.model.training is True  # as the model file built it


def test_check_is_listed_after_convert() -> None:
    names = [c.name for c in COMMANDS]
    assert names.index("check") == names.index("convert") + 1


def test_the_pre_commit_hook_runs_a_real_command(project: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    (hook,) = yaml.safe_load((root / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    assert hook["id"] == "convaudit-check" and hook["language"] == "python"
    assert hook["pass_filenames"] is False  # check takes one model, named in the hook's args
    script, *args = hook["entry"].split()
    assert script in tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert re.search(hook["files"], "models/net.py") and re.search(hook["files"], "pyproject.toml")
    parsed = build_parser().parse_args([*args, "model.py", "--max-macs", "1G"])
    assert parsed.command == "check"
    assert main([*args, "model.py", "--max-macs", "1"]) == EXIT_BUDGET  # as pre-commit runs it, with args
