"""The Markdown summary: golden file, escaping inside GFM tables, the top-10 table, labels."""

from __future__ import annotations

import dataclasses
import itertools
import re
from pathlib import Path

import pytest

import convaudit
from convaudit.documents.records import Analysis, CrossCheck
from convaudit.formats.common import costliest
from convaudit.formats.markdown import md, md_code, percent, render_markdown
from tests.fixtures.models import OnlyLinear, scrub

ROOT = Path(__file__).resolve().parents[1]
UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")


@pytest.fixture(scope="module")
def many() -> Analysis:
    """More than ten candidates: twelve 3×3 convs of growing width."""
    import torch.nn as nn

    widths = [3] + [8 + 4 * i for i in range(12)]
    model = nn.Sequential(*(nn.Conv2d(a, b, 3, padding=1) for a, b in itertools.pairwise(widths)))
    return convaudit.analyze(model, input_shape=(1, 3, 16, 16))


def tables(text: str) -> list[list[str]]:
    """The GFM tables of ``text``, each as its lines."""
    found: list[list[str]] = []
    for block in re.split(r"\n(?!\|)", text):
        rows = [line for line in block.splitlines() if line.startswith("|")]
        if rows:
            found.append(rows)
    return found


def test_golden(small: Analysis, golden, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    golden("report_small.md", scrub(render_markdown(small), small, ROOT))


def test_headline_and_prediction_labelled(small: Analysis) -> None:
    text = render_markdown(small)
    t = small.totals
    assert f"| model | {t.params:,} | {t.macs:,}" in text
    predicted = next(line for line in text.splitlines() if f"{t.macs_after:,}" in line)
    assert "**predicted**" in predicted and f"{t.params_after:,}" in predicted
    assert "a prediction from shapes" in text
    # a saving in bold only when the verdict is to convert: this fixture's m = 1 forms keep little energy
    assert "Predicted saving" not in text and "If every candidate were converted at m = 1" in text
    assert "FLOPs = 2·MACs" in text


def test_top_ten_costliest_candidates(many: Analysis) -> None:
    text = render_markdown(many)
    (_, top, *_) = tables(text)  # then the recommendations
    rows = top[2:]
    assert len(many.candidates) == 12 and len(rows) == 10
    assert [UNESCAPED_PIPE.split(r)[1].strip().strip("`") for r in rows] == [c.name for c in costliest(many, 10)]
    assert "**Top 10 candidates** by predicted MAC savings (of 12)" in text


def test_tables_keep_their_shape_with_hostile_names(evil: Analysis) -> None:
    text = render_markdown(evil)
    for table in tables(text):
        widths = {len(UNESCAPED_PIPE.findall(row)) for row in table}
        assert len(widths) == 1, table
    assert "<script>" not in text.replace("`<script>alert(1)</script>`", "")  # only inside a code span
    assert r"a\|b\`c\*\_\[x\](javascript:alert(1))" in text  # text, not a link or emphasis
    assert "`</script><!--`" in text


def test_skipped_counts_by_reason(small: Analysis) -> None:
    text = render_markdown(small)
    reasons = [layer.skip_reason for layer in small.layers if not layer.candidate]
    assert f"**Not candidates ({len(reasons)}):**" in text
    for reason in set(reasons):
        assert f"{md(reason)} ({reasons.count(reason)})" in text


@pytest.mark.parametrize(
    "cross_check, expected",
    [
        (None, "**Cross-check:** not run."),
        (
            CrossCheck("fvcore", "0.1.5", None, None, "no real forward at this size"),
            "skipped — no real forward at this size",
        ),
    ],
)
def test_cross_check_line(small: Analysis, cross_check: CrossCheck | None, expected: str) -> None:
    assert expected in render_markdown(dataclasses.replace(small, cross_check=cross_check))


def test_cross_check_beside_ours(small: Analysis) -> None:
    line = next(line for line in render_markdown(small).splitlines() if line.startswith("**Cross-check"))
    assert small.cross_check is not None and f"{small.cross_check.macs_same_ops:,}" in line


def test_uncosted_ops_listed_and_escaped(small: Analysis) -> None:
    text = render_markdown(dataclasses.replace(small, uncosted_ops=("aten::frobnicate", "weird`op|<b>")))
    line = next(line for line in text.splitlines() if line.startswith("**Not costed (2)**"))
    assert "`aten::frobnicate`" in line and r"weird\`op\|&lt;b&gt;" in line


def test_no_convolutions() -> None:
    text = render_markdown(convaudit.analyze(OnlyLinear(), input_shape=(2, 16)))
    assert "**This model has no convolutions**" in text and "Top" not in text


def test_pr_comment_sized(small: Analysis) -> None:
    text = render_markdown(small)
    head, _, tree = text.partition("<details><summary><b>Modules</b>")  # the module tree comes folded
    assert len(head.splitlines()) + len(tree.partition("</details>")[2].splitlines()) < 60


@pytest.mark.parametrize(
    "raw, escaped",
    [
        ("layer1.0.conv1", "layer1.0.conv1"),
        ("a|b", r"a\|b"),
        ("<img src=x onerror=alert(1)>", "&lt;img src=x onerror=alert(1)&gt;"),
        ("`code`", r"\`code\`"),
        ("[x](javascript:y)", r"\[x\](javascript:y)"),
        ("*bold* _it_ ~s~", r"\*bold\* \_it\_ \~s\~"),
        ("two\nlines", "two lines"),
        ("a\\b & c", r"a\\b &amp; c"),
    ],
)
def test_md_escapes(raw: str, escaped: str) -> None:
    assert md(raw) == escaped


@pytest.mark.parametrize(
    "raw, table, out",
    [
        ("layer1.0.conv1", True, "`layer1.0.conv1`"),
        ("a|b", True, r"`a\|b`"),
        ("a|b", False, r"a\|b"),
        ("<script>", True, "`<script>`"),
        ("has`tick", True, r"has\`tick"),
    ],
)
def test_md_code(raw: str, table: bool, out: str) -> None:
    assert md_code(raw, table=table) == out


@pytest.mark.parametrize(
    "x, text",
    [(0.9997, "99.97%"), (0.5, "50.0%"), (1.0, "100.0%"), (0.0, "0.0%"), (1e-6, "<0.01%"), (0.99999, ">99.99%")],
)
def test_percent(x: float, text: str) -> None:
    assert percent(x) == text


def test_weight_energy_note(small: Analysis) -> None:
    assert "of their weight energy (MAC-weighted)" in render_markdown(small)
    without = dataclasses.replace(small, layers=tuple(dataclasses.replace(x, separability=None) for x in small.layers))
    text = render_markdown(without)
    assert "weight energy (MAC-weighted)" not in text
    assert all(UNESCAPED_PIPE.split(row)[-3].strip() == "—" for row in tables(text)[1][2:])  # energy kept
