"""SARIF 2.1.0: valid against the official schema, and each result at the line that defines its layer."""

import json
from pathlib import Path

import jsonschema
import pytest

from convaudit.cli.app import main
from convaudit.errors import EXIT_BUDGET, EXIT_OK
from convaudit.formats.sarif import COSTLY_SHARE, RULES, WARNING_SHARE

SCHEMA = Path(__file__).resolve().parent / "fixtures" / "sarif" / "sarif-schema-2.1.0.json"

MODEL = """import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.body = nn.Conv2d(16, 64, 3, padding=1)
        self.down = nn.Conv2d(64, 16, 3, stride=4, padding=1)
        self.head = nn.Linear(16, 10)
        with torch.no_grad():  # separable weights: every form keeps all the energy at m = 1
            for conv in (self.body, self.down):
                o, i, kh, kw = conv.weight.shape
                conv.weight.copy_(torch.randn(o, i, 1, 1) * torch.randn(1, i, kh, kw))

    def forward(self, x):
        return self.head(self.down(self.body(self.stem(x))).mean((2, 3)))


def example_inputs():
    return (torch.randn(1, 3, 32, 32),)
"""


def line_of(text: str) -> int:
    """The oracle: the line of model.py where the layer's nn.Conv2d( is written."""
    return next(n for n, line in enumerate(MODEL.splitlines(), 1) if text in line)


def validate(log: dict) -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft4Validator.check_schema(schema)
    jsonschema.Draft4Validator(schema).validate(log)


def sarif(capsys, *args: str, code: int = EXIT_OK) -> dict:
    assert main([*args, "--format", "sarif", "-o", "-"]) == code
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / ".git").mkdir()  # the repository root the URIs are relative to
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "net.py").write_text(MODEL, encoding="utf-8")
    monkeypatch.chdir(tmp_path / "models")
    return tmp_path


def test_the_schema_is_the_official_one() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert schema["id"] == "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
    with pytest.raises(jsonschema.ValidationError):  # it does reject a broken log
        validate({"version": "2.1.0", "runs": [{"tool": {"driver": {}}, "results": []}]})


def test_report_sarif_is_valid_and_points_at_each_defining_line(project: Path, capsys) -> None:
    log = sarif(capsys, "report", "net.py", "--no-cross-check")
    validate(log)
    (run,) = log["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "convaudit" and driver["version"] and driver["informationUri"].startswith("https://")
    assert [r["id"] for r in driver["rules"]] == [rule[0] for rule in RULES]
    found = {}
    for result in run["results"]:
        assert driver["rules"][result["ruleIndex"]]["id"] == result["ruleId"] == "convaudit/costly-conv"
        (location,) = result["locations"]
        physical = location["physicalLocation"]
        assert physical["artifactLocation"] == {"uri": "models/net.py", "uriBaseId": "%SRCROOT%"}
        share = result["properties"]["share"]
        assert share >= COSTLY_SHARE and result["level"] == ("warning" if share >= WARNING_SHARE else "note")
        assert "would save" in result["message"]["text"]
        found[location["logicalLocations"][0]["fullyQualifiedName"]] = (physical["region"]["startLine"], result)
    assert found["body"][0] == line_of("self.body = nn.Conv2d(")
    assert found["down"][0] == line_of("self.down = nn.Conv2d(")
    assert found["body"][1]["level"] == "warning" and found["down"][1]["level"] == "note"
    assert [r["properties"]["macs"] for r in run["results"]] == sorted(
        (r["properties"]["macs"] for r in run["results"]), reverse=True
    )


def test_check_sarif_has_an_error_per_exceeded_budget(project: Path, capsys) -> None:
    log = sarif(capsys, "check", "net.py", "--max-macs", "1M", "--max-params", "1G", code=EXIT_BUDGET)
    validate(log)
    results = log["runs"][0]["results"]
    budget = [r for r in results if r["ruleId"] == "convaudit/budget-exceeded"]
    assert [(r["level"], r["properties"]["budget"]) for r in budget] == [("error", "max-macs")]  # not max-params
    region = budget[0]["locations"][0]["physicalLocation"]["region"]
    assert region["startLine"] == line_of("self.body = nn.Conv2d(")  # at the costliest layer responsible
    assert (
        "max-macs exceeded: MACs" in budget[0]["message"]["text"]
        and "> 1M (--max-macs)" in budget[0]["message"]["text"]
    )
    assert {r["ruleId"] for r in results} == {"convaudit/budget-exceeded", "convaudit/costly-conv"}


def test_files_outside_the_root_get_an_absolute_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "net.py").write_text(MODEL, encoding="utf-8")
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "repo")
    log = sarif(capsys, "report", str(tmp_path / "elsewhere" / "net.py"), "--no-cross-check")
    validate(log)
    artifact = log["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert artifact == {"uri": (tmp_path / "elsewhere" / "net.py").resolve().as_uri()}


def test_passing_check_has_no_budget_result_and_output_is_stable(project: Path, capsys) -> None:
    first = sarif(capsys, "check", "net.py", "--max-macs", "1G")
    validate(first)
    assert first["runs"][0]["results"] == []
    assert sarif(capsys, "check", "net.py", "--max-macs", "1G") == first
