"""``convaudit diff BASE HEAD`` as a user meets it: model specs or saved reports, formats, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from convaudit.cli.app import main
from convaudit.cli.diff import is_saved_report
from convaudit.errors import EXIT_BUDGET, EXIT_FAILURE, EXIT_OK, EXIT_USAGE

ROOT = Path(__file__).resolve().parents[1]
SMALL = (ROOT / "examples" / "small_cnn.py").read_text(encoding="utf-8")
#: The head of a pull request widening conv256 (and what it feeds: BatchNorm and the classifier, not a conv).
WIDER = (
    SMALL.replace("256, 256, kernel_size=3", "256, 512, kernel_size=3")
    .replace("BatchNorm2d(256)", "BatchNorm2d(512)")
    .replace("Linear(256", "Linear(512")
)


@pytest.fixture(scope="module")
def sides(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """base.py, head.py (conv256 widened) and base.json, the report `convaudit report base.py` saved."""
    root = tmp_path_factory.mktemp("diff")
    (root / "base.py").write_text(SMALL, encoding="utf-8")
    (root / "head.py").write_text(WIDER, encoding="utf-8")
    assert main(["report", str(root / "base.py"), "-o", str(root / "base.json"), "-q", "--no-cross-check"]) == 0
    return root


def diff_json(capsys, *args: str) -> dict:
    capsys.readouterr()
    assert main(["diff", *args, "--format", "json"]) == EXIT_OK
    return json.loads(capsys.readouterr().out)


def test_a_saved_report_against_a_model_spec(sides: Path, capsys) -> None:
    doc = diff_json(capsys, str(sides / "base.json"), str(sides / "head.py"))
    assert (doc["base"]["from_report"], doc["head"]["from_report"]) == (True, False)
    assert [(x["head_name"], x["status"]) for x in doc["layers"]] == [("conv256", "changed")]
    assert doc["unchanged"] == 3
    same = diff_json(capsys, str(sides / "base.json"), str(sides / "base.py"))
    assert same["layers"] == [] and same["unchanged"] == 4  # the saved report agrees with analysing the file now


def test_text_is_the_default_on_stdout(sides: Path, capsys) -> None:
    assert main(["diff", str(sides / "base.py"), str(sides / "head.py")]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith("convaudit diff\n") and "conv256  changed" in out and "out_channels 256→512" in out


@pytest.mark.parametrize(
    "limit,code",
    [("5%", EXIT_BUDGET), ("100%", EXIT_OK), ("macs=100%,params=50%", EXIT_BUDGET), ("params=100%", EXIT_OK)],
)
def test_fail_on_increase(sides: Path, capsys, limit: str, code: int) -> None:
    capsys.readouterr()
    argv = ["diff", str(sides / "base.json"), str(sides / "head.py"), "--fail-on-increase", limit, "-q"]
    assert main([*argv, "-o", str(sides / f"gate-{code}-{limit.replace('%', '')}.md"), "--force"]) == code
    err = capsys.readouterr().err
    if code == EXIT_BUDGET:
        assert err.startswith("convaudit: --fail-on-increase: ") and "conv256 +" in err
    else:
        assert err == ""


def test_shrinking_never_fails_the_gate(sides: Path, capsys) -> None:
    assert main(["diff", str(sides / "head.py"), str(sides / "base.json"), "--fail-on-increase", "0%"]) == EXIT_OK


@pytest.mark.parametrize(
    "suffix,start", [(".md", "<!-- convaudit-diff -->"), (".html", "<!DOCTYPE html>"), (".json", "{"), (".txt", "conv")]
)
def test_the_suffix_picks_the_format_and_force_replaces_our_own(sides: Path, suffix: str, start: str) -> None:
    out = sides / f"d{suffix}"
    argv = ["diff", str(sides / "base.json"), str(sides / "head.py"), "-o", str(out), "-q"]
    assert main(argv) == EXIT_OK
    assert out.read_text(encoding="utf-8").startswith(start)
    assert main(argv) == EXIT_USAGE  # exists
    assert main([*argv, "--force"]) == EXIT_OK  # recognised as convaudit's


@pytest.mark.parametrize(
    "args,code,says",
    [
        (["missing.json", "head.py"], EXIT_USAGE, "missing.json: no such file"),
        (["notes.json", "head.py"], EXIT_FAILURE, "notes.json is JSON, not a convaudit report"),
        (["broken.json", "head.py"], EXIT_FAILURE, "broken.json: not valid JSON"),
        (["d.json", "head.py"], EXIT_FAILURE, "is a convaudit diff, not a convaudit report"),
        (["base.json", "head.py", "-o", "d.xyz"], EXIT_USAGE, "cannot tell the format from .xyz"),
        (["base.json", "head.py", "-o", "d.md", "--format", "html"], EXIT_USAGE, "looks like markdown"),
        (["base.json", "head.py", "--fail-on-increase", "5"], EXIT_USAGE, "write a percentage such as 5%"),
        (["base.json", "head.py", "-o", "base.json", "--force"], EXIT_USAGE, "is the input base.json"),
    ],
)
def test_bad_input_is_one_line(sides: Path, capsys, monkeypatch, args: list[str], code: int, says: str) -> None:
    monkeypatch.chdir(sides)
    (sides / "notes.json").write_text('{"mine": true}\n')
    (sides / "broken.json").write_text('{"layers": [')
    if not (sides / "d.json").exists():
        assert main(["diff", "base.json", "head.py", "-o", "d.json", "-q"]) == EXIT_OK
    capsys.readouterr()
    assert main(["diff", *args]) == code
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("convaudit: error: ") and says in lines[0], lines


def test_a_report_is_read_as_data_whatever_its_name(sides: Path, capsys, tmp_path: Path) -> None:
    disguised = tmp_path / "model.py"  # a report saved under a model's name is still JSON, never run
    disguised.write_bytes((sides / "base.json").read_bytes())
    assert is_saved_report(str(disguised)) and not is_saved_report(str(sides / "head.py"))
    assert not is_saved_report("torchvision:resnet18")
    doc = diff_json(capsys, str(disguised), str(sides / "head.py"))
    assert doc["base"]["from_report"] and [x["head_name"] for x in doc["layers"]] == ["conv256"]
