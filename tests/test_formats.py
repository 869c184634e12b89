"""The formats registry: keyed by (document, format), one way in, entry points for Analysis formats."""

import json
import sys
from pathlib import Path

import pytest
import torch

import convaudit
from convaudit.conversion.artifact.writer import write_artifact
from convaudit.documents.records import Analysis, ConversionReport
from convaudit.errors import UsageError
from convaudit.formats import available_formats, default_suffix, register_format, render
from tests.fixtures import nets


@pytest.fixture(scope="module")
def conversion():
    torch.manual_seed(0)
    return convaudit.convert(nets.Seed64(), (torch.randn(1, 64, 8, 8),), rank="full")


def test_each_document_has_its_own_renderers(conversion) -> None:
    assert available_formats(Analysis) == ["html", "json", "markdown", "sarif", "text"]
    assert available_formats(ConversionReport) == ["html", "json", "text"]
    assert render(conversion.analysis, "text") != render(conversion.report, "text")
    assert "measured = predicted" in render(conversion.report, "text")
    assert render(conversion.report, "html").lstrip().lower().startswith("<!doctype html")
    with pytest.raises(UsageError, match="unknown format 'markdown' for ConversionReport; choose one of html, json"):
        render(conversion.report, "markdown")


def test_conversion_json_is_what_the_artifact_holds(conversion, tmp_path: Path) -> None:
    x = torch.randn(1, 64, 8, 8)
    out = write_artifact(
        tmp_path / "a", conversion.model, conversion.report, conversion.plan, ((x,), {}), source="seed", entry=None
    )
    assert (Path(out) / "conversion.json").read_text() == render(conversion.report, "json")
    assert json.loads(render(conversion.report, "json")) == conversion.report.to_dict()


def test_register_format_is_a_decorator_and_refuses_a_taken_name(monkeypatch) -> None:
    from convaudit import formats

    monkeypatch.setattr(formats, "_REGISTRY", dict(formats._REGISTRY))  # leave the real registry as it was

    @register_format(ConversionReport, "csv")
    def render_csv(report: ConversionReport) -> str:
        return "\n".join(f"{layer.name},{layer.rank}" for layer in report.layers)

    report = ConversionReport("m", {}, (), (), 0, 0, 0, 0, 0, 0, None, True)
    assert render(report, "csv") == "" and "csv" in available_formats(ConversionReport)
    assert "csv" not in available_formats(Analysis)
    with pytest.raises(ValueError, match="already registered"):
        register_format(ConversionReport, "json", render_csv)


def test_an_installed_package_adds_an_analysis_format(tmp_path: Path, monkeypatch, conversion) -> None:
    """A real distribution on sys.path (dist-info with entry_points.txt), as pip would install it."""
    dist = tmp_path / "convaudit_shout-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: convaudit-shout\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[convaudit.formats]\nshout = convaudit_shout:render\n")
    (tmp_path / "convaudit_shout.py").write_text("def render(analysis):\n    return analysis.model.upper()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "convaudit_shout", raising=False)
    assert "shout" in available_formats(Analysis) and "shout" not in available_formats(ConversionReport)
    assert render(conversion.analysis, "shout") == conversion.analysis.model.upper()
    assert default_suffix("shout") == ".shout" and default_suffix("markdown") == ".md"
