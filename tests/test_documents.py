"""Records: the JSON schema document lists exactly the fields the records have."""

import dataclasses
import re
from pathlib import Path

import pytest

from convaudit import records

DOC = (Path(__file__).resolve().parents[1] / "docs" / "schema.md").read_text()


def section(title: str) -> set[str]:
    body = DOC.split(f"## {title}", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(\w+)` \|", body, flags=re.M))


@pytest.mark.parametrize(
    "title,record",
    [
        ("Analysis (top level)", records.Analysis),
        ("totals", records.Totals),
        ("layers[]", records.ConvLayer),
        ("separable costs", records.SeparableCost),
        ("cross_check", records.CrossCheck),
        ("ops[]", records.OpSummary),
        ("separability", records.Separability),
    ],
)
def test_schema_doc_matches_records(title: str, record: type) -> None:
    assert section(title) == {f.name for f in dataclasses.fields(record)}


def test_graph_section() -> None:
    fields = section("graph")
    assert {f.name for f in dataclasses.fields(records.GraphView)} <= fields
    assert {f.name for f in dataclasses.fields(records.GraphNode)} <= fields


def test_timing_section() -> None:
    fields = section("timing")
    assert {f.name for f in dataclasses.fields(records.Timing)} | {
        f.name for f in dataclasses.fields(records.LayerTiming)
    } == fields


def test_schema_version_is_documented() -> None:
    assert f"schema {records.SCHEMA_VERSION}" in DOC


def test_records_and_renderers_do_not_import_torch() -> None:
    import subprocess
    import sys

    probe = (
        "import sys, convaudit.records, convaudit.formats.html, convaudit.formats.markdown, convaudit.formats.text\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(Path(__file__).resolve().parents[1]),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_a_replaced_layer_is_what_dataclasses_replace_makes() -> None:
    """ConvLayer.replaced copies without __init__: right only while every field is an init field and there is no
    __post_init__ (checked here); the copy equals dataclasses.replace's, field for field, the original untouched."""
    import convaudit
    from convaudit.documents.latency import LayerLatency

    assert all(f.init for f in dataclasses.fields(records.ConvLayer))
    assert not hasattr(records.ConvLayer, "__post_init__")
    import torch.nn as nn

    (layer,) = convaudit.analyze(nn.Conv2d(4, 8, 3), input_shape=(1, 4, 9, 9)).layers
    latency = LayerLatency({"original": 1.0, "dw_pw": 0.5, "pw_dw": 0.6}, None, None, None, "contiguous")
    made = layer.replaced(name="other", latency=latency)
    assert made == dataclasses.replace(layer, name="other", latency=latency) and type(made) is records.ConvLayer
    assert list(vars(made)) == list(vars(layer)) and layer.name != "other" and layer.latency is not latency
