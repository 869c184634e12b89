"""The module tree as rendered: 100 columns, aligned columns, subtotals, a golden file; Markdown, HTML, JSON."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import torchvision

import convaudit
from convaudit.documents.records import Analysis
from convaudit.formats.html import render_html
from convaudit.formats.json import render_json
from convaudit.formats.markdown import render_markdown
from convaudit.formats.text import WIDTH, middle, render_text, table
from convaudit.formats.tree import tree_rows


def section(text: str, title: str) -> list[str]:
    """The lines of a text report from the one starting with ``title`` to the next blank line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next(i for i in range(start, len(lines)) if not lines[i])
    return lines[start:end]


@pytest.fixture(scope="module")
def zoo_texts() -> dict[str, tuple[Analysis, str]]:
    out = {}
    for name in ("resnet18", "efficientnet_b0"):
        a = convaudit.analyze(getattr(torchvision.models, name)(), input_shape=(1, 3, 224, 224), separability=True)
        out[name] = (a, render_text(a))
    return out


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0"])
def test_text_reports_fit_100_columns(zoo_texts: dict, name: str) -> None:
    a, text = zoo_texts[name]
    too_wide = [line for line in text.splitlines() if len(line) > WIDTH]
    assert not too_wide, too_wide[:3]
    deep = render_text(dataclasses.replace(a, tree_depth=9))  # every module, the deepest names included
    assert max(len(line) for line in deep.splitlines()) <= WIDTH


def test_efficientnet_skips_are_grouped_not_listed(zoo_texts: dict) -> None:
    _, text = zoo_texts["efficientnet_b0"]
    assert "Not candidates (80):" in text and "(×64)" in text and "(×16)" in text
    assert not [line for line in text.splitlines() if line.startswith("  features.") and ": " in line]
    tree = section(text, "Modules, depth ≤ 3")
    assert any(line.startswith("  1 ") and "0/4 cand" in line for line in tree)  # a block's convs, folded


def test_columns_are_aligned(zoo_texts: dict) -> None:
    _, text = zoo_texts["resnet18"]
    header, rule, *rows = section(text, "Modules, depth")[1:-3]  # without the title and the legend
    assert all(len(r) <= len(rule) for r in rows)
    ends = [header.index("params") + len("params"), header.index("MACs") + len("MACs"), header.index("share") + 5]
    for row in rows:
        if set(row) == {"-"}:
            continue
        for end in ends:  # numbers are right-aligned under their header
            assert row[end - 1] != " " and (end == len(row) or row[end] == " "), row
    total = rows[-1]
    assert total.startswith("total ") and "100.0%" in total and "17/20 cand" in total


def test_middle_truncation_and_shrinking() -> None:
    assert middle("features.1.0.block.0.0", 11) == "featu…k.0.0"
    assert middle("short", 10) == "short"
    lines = table(["name", "n"], [["x" * 150, "1"], ["y", "22"]], "<>", (0,), 40)
    assert max(len(line) for line in lines) <= 40 and lines[2].endswith(" 1") and "…" in lines[2]


def test_rows_add_up_and_mark_convs(small: Analysis) -> None:
    rows = tree_rows(small)
    total = rows[-1]
    assert total.total and total.macs == small.totals.macs and total.params == small.totals.params
    assert sum(r.macs for r in rows[:-1] if r.depth == 1) == small.totals.macs
    convs = {r.name: r for r in rows if r.conv is not None}
    assert set(convs) == {layer.name for layer in small.layers if layer.op == "module"}
    for r in convs.values():
        sep = r.conv.separable
        assert r.after_macs == (sep.dw_pw.macs if sep else None)
        assert r.action in ("convert", "keep", "candidate") if r.conv.candidate else r.action != ""


def test_text_golden(small: Analysis, golden) -> None:
    text = render_text(small)
    tree = section(text, "Modules, depth")
    ops = section(text, "Functional ops")
    golden("tree_small.txt", "\n".join([*tree, "", *ops]) + "\n")


def test_markdown_tree_is_a_depth_limited_table(small: Analysis) -> None:
    text = render_markdown(dataclasses.replace(small, tree_depth=1))
    block = text.split("<details><summary><b>Modules</b>", 1)[1].split("</details>", 1)[0]
    rows = [line for line in block.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| module | type | params | MACs | share |")
    assert "&emsp;" not in block  # depth 1: no nested rows
    assert rows[-1].startswith("| **total** |") and "100.0%" in rows[-1]


def test_html_tree_collapses_and_escapes(evil: Analysis) -> None:
    page = render_html(evil)
    tree = page.split('<section id="modules">', 1)[1].split("</section>", 1)[0]
    assert tree.count("<details") == tree.count("</details>")
    for name in ("<script>alert(1)</script>", "</script><!--"):
        assert name not in tree
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in tree


def test_json_lists_the_modules(small: Analysis) -> None:
    doc = json.loads(render_json(small))
    assert doc["schema_version"] == convaudit.SCHEMA_VERSION == "1.4"
    assert [m["name"] for m in doc["modules"]][:1] == [""] and doc["modules"][0]["macs"] == doc["totals"]["macs"]
    assert doc["tree_depth"] == 3 and {c["category"] for c in doc["other_ops"]}
    assert all(re.fullmatch(r"[\w.]*", m["name"]) for m in doc["modules"])


def test_a_1_3_document_shows_its_convs_without_a_tree(small: Analysis) -> None:
    old = Analysis.from_dict({k: v for k, v in small.to_dict().items() if k not in ("modules", "other_ops")})
    text = render_text(old)
    assert "Modules, depth" not in text
    table_lines = section(text, "conv ")
    assert len(table_lines) == 2 + len(small.layers) and max(len(line) for line in text.splitlines()) <= WIDTH
