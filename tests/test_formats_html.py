"""The HTML report: golden file, escaping, self-containment, sortable table, graph, and a real browser."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path

import pytest

import convaudit
from convaudit.documents.records import Analysis, CrossCheck, GraphNode, GraphView
from convaudit.formats import html_table, templating
from convaudit.formats.common import cut_left
from convaudit.formats.html import render_html
from convaudit.formats.templating import SOURCE_TEMPLATES, script_json, template_root
from tests.fixtures.chromium import CHROMIUM, run_chromium
from tests.fixtures.models import EvilNames, OnlyLinear, scrub

ROOT = Path(__file__).resolve().parents[1]
DATA_BLOCK = re.compile(r'<script type="application/json" id="report-data">(.*?)</script>', re.S)


@pytest.fixture
def in_root(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Source locations are shown relative to the working directory: pin it."""
    monkeypatch.chdir(ROOT)
    return ROOT


def big_graph(base: Analysis, n: int, truncated: bool = False) -> Analysis:
    """``base`` with a synthetic chain of ``n`` graph nodes (every third one a conv, residual skips)."""
    convs = [layer.name for layer in base.layers]
    nodes = tuple(
        GraphNode(
            id=f"n{i}",
            op="call_module" if i % 3 == 1 else "call_function",
            label=f"op{i}",
            macs=1000 * (i % 97) if i % 3 == 1 else 0,
            conv=convs[i % len(convs)] if i % 3 == 1 else None,
            depth=i - i // 5,
            lane=1 if i % 5 == 4 else 0,
        )
        for i in range(n)
    )
    edges = tuple((f"n{i}", f"n{i + 1}") for i in range(n - 1)) + tuple(
        (f"n{i}", f"n{i + 6}") for i in range(0, n - 6, 6)
    )
    return dataclasses.replace(base, graph=GraphView(nodes=nodes, edges=edges, truncated=truncated))


# --- golden -------------------------------------------------------------------------------------


def test_golden(small: Analysis, in_root: Path, golden) -> None:
    golden("report_small.html", scrub(render_html(small), small, in_root))


def test_golden_is_scrubbed(small: Analysis, in_root: Path) -> None:
    text = scrub(render_html(small), small, in_root)
    assert "<torch>" in text and "<platform>" in text and "<fvcore>" in text
    assert str(in_root) not in text
    assert "tests/fixtures/models.py:" in text  # relative source locations survive


# --- content ------------------------------------------------------------------------------------


def test_summary_names_units_and_labels_the_prediction(small: Analysis, in_root: Path) -> None:
    text = render_html(small)
    t = small.totals
    for figure in (
        f"{t.params:,} params",
        f"{t.macs:,} MACs",
        "FLOPs = 2·MACs",
        f"{t.macs_after:,} MACs",
        f"{t.params_after:,} params",
    ):
        assert figure in text
    # not "Predicted after rewrite" in green: this fixture's m = 1 forms keep little energy
    assert "If every candidate were converted (m = 1)" in text and ">prediction<" in text
    assert "Predicted after rewrite" not in text and 'class="card predicted tone-warn"' in text
    assert small.model_class in text and "1×3×32×32" in text and "traced with" in text


def test_cross_check_beside_ours(small: Analysis, in_root: Path) -> None:
    text = render_html(small)
    c = small.cross_check
    assert c is not None and c.macs_same_ops is not None and c.macs is not None
    assert f"{small.totals.macs:,}" in text and f"{c.macs_same_ops:,}" in text and f"{c.macs:,}" in text
    assert "they are MACs" in text


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"cross_check": None}, "Not run"),
        ({"uncosted_ops": ("aten::frobnicate", "my.Op")}, "aten::frobnicate"),
        ({"warnings": ("weights were not loaded",)}, "weights were not loaded"),
        ({"trace_path": "hooks", "trace_note": "symbolic tracing failed (x)", "graph": None}, "No graph view"),
    ],
)
def test_optional_parts(small: Analysis, in_root: Path, change: dict, expected: str) -> None:
    text = render_html(dataclasses.replace(small, **change))
    assert expected in text
    if "trace_note" in change:
        assert "symbolic tracing failed (x)" in text


def test_skipped_cross_check_gives_the_reason(evil: Analysis) -> None:
    skipped = CrossCheck(
        tool="fvcore", version="0.1.5", macs=None, conv_macs=None, skipped="no real forward at this size"
    )
    assert "skipped — no real forward at this size" in render_html(dataclasses.replace(evil, cross_check=skipped))


def test_no_convolutions_said_plainly() -> None:
    text = render_html(convaudit.analyze(OnlyLinear(), input_shape=(2, 16)))
    assert "This model has no convolutions." in text
    assert 'id="layer-table"' not in text and 'class="chart"' not in text


def test_every_layer_has_a_row_with_its_figures(small: Analysis, in_root: Path) -> None:
    text = render_html(small)
    for i, layer in enumerate(small.layers, 1):
        assert f'id="layer-{i}"' in text
        assert f'data-v="{layer.macs}"' in text and f'data-v="{layer.params}"' in text
        if layer.separable:
            assert f'data-v="{layer.separable.dw_pw.macs}"' in text and f'data-v="{layer.separable.pw_dw.macs}"' in text
        else:
            assert (layer.skip_reason or "") in text
    assert "tests/fixtures/models.py" in text  # source file:line column


def test_chart_has_a_bar_pair_per_candidate(small: Analysis) -> None:
    text = render_html(small)
    assert text.count('class="b0"') == len(small.layers)
    assert text.count('class="b1"') == len(small.candidates)


# --- table markup -------------------------------------------------------------------------------


def test_sortable_table_markup(small: Analysis) -> None:
    text = render_html(small)
    table = re.search(r'<table id="layer-table" class="data sortable">(.*?)</table>', text, re.S)
    assert table is not None
    head = re.findall(r'<th class="[^"]*" data-type="(num|text)"', table.group(1))
    assert len(head) == len(html_table.COLUMNS) and "num" in head and "text" in head
    for label in ("params", "MACs", "bytes moved", "FLOP per byte", "file:line", "shape"):
        assert label in table.group(1)
    assert "makeSortable" in text and 'id="ops-table" class="data sortable compact"' in text


# --- escaping -----------------------------------------------------------------------------------


def test_module_names_are_escaped(evil: Analysis) -> None:
    text = render_html(evil)
    assert "<script>alert(1)" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<!--" not in text
    assert text.count("</script>") == text.count("<script")  # no name closed or opened a script element
    assert "a|b`c*_[x](javascript:alert(1))" in text.replace("&#96;", "`")


def test_embedded_json_cannot_close_its_script(evil: Analysis) -> None:
    text = render_html(evil)
    (block,) = DATA_BLOCK.findall(text)
    assert "<" not in block and ">" not in block and "&" not in block
    data = json.loads(block)
    assert [row[0] for row in data["layers"]] == list(EvilNames.NAMES)
    assert {item[0] for item in data["graph"]["items"]} >= set(EvilNames.NAMES)


@pytest.mark.parametrize(
    "value", ["</script><script>alert(1)</script>", "<!--", "a & b", "\u2028\u2029", {"k": ["</"]}]
)
def test_script_json_roundtrips_without_markup(value: object) -> None:
    out = str(script_json(value))
    assert not set(out) & set("<>&\u2028\u2029")
    assert json.loads(out) == value


# --- self-contained -----------------------------------------------------------------------------


def test_self_contained(small: Analysis) -> None:
    text = render_html(small)
    assert not re.search(r"""(?:src|href|action|poster|data)\s*=\s*["']?\s*(?:[a-z][a-z0-9+.-]*:)?//""", text, re.I)
    assert not re.search(r"@import|url\(\s*['\"]?(?:https?:)?//", text, re.I)
    assert '<link rel="stylesheet"' not in text and "fetch(" not in text and "XMLHttpRequest" not in text
    assert "default-src 'none'" in text  # the page itself forbids any request
    assert text.count("<style>") == 1 and "function sortBy" in text  # CSS and JS inlined


# --- templates ----------------------------------------------------------------------------------


def test_templates_from_the_source_tree(small: Analysis, in_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = render_html(small)
    assert render_html(small, templates=SOURCE_TEMPLATES) == expected

    def not_installed(name: str):
        raise ModuleNotFoundError(name)

    monkeypatch.setattr(templating.importlib.resources, "files", not_installed)
    assert template_root() == SOURCE_TEMPLATES
    assert render_html(small) == expected


def test_templates_from_the_package(small: Analysis) -> None:
    root = template_root()
    assert root.joinpath("report.html.j2").is_file()
    assert root.joinpath("report.css").is_file() and root.joinpath("report.js").is_file()


def test_autoescape_is_on() -> None:
    env = templating.jinja_environment(SOURCE_TEMPLATES)
    assert env.from_string("{{ x }}").render(x="<b>") == "&lt;b&gt;"


# --- graph --------------------------------------------------------------------------------------


def test_truncated_graph_is_announced(small: Analysis) -> None:
    text = render_html(big_graph(small, 60, truncated=True))
    assert "only convolutions" in text


def test_large_graph_renders_fast(small: Analysis) -> None:
    start = time.perf_counter()
    text = render_html(big_graph(small, 2400))
    assert time.perf_counter() - start < 5
    (block,) = DATA_BLOCK.findall(text)
    assert len([item for item in json.loads(block)["graph"]["items"] if item[2] != "c"]) == 2400  # + the model


# --- in a real browser --------------------------------------------------------------------------


def html_tag(dom: str) -> str:
    """The opening <html> tag, where the page records that it ran (and any script error)."""
    found = re.search(r"<html[^>]*>", dom)
    assert found is not None, dom[:500]
    return found.group(0)


#: Injected into a copy of the page: drives the UI like a reviewer and writes what it saw into the DOM.
PROBE = """<script>
(function () {
  var t = document.getElementById("layer-table"), th = t.tHead.rows[1].cells[9];
  th.click();
  var v = Array.prototype.map.call(t.tBodies[0].rows, function (r) { return +r.cells[9].getAttribute("data-v"); });
  var desc = v.every(function (x, i) { return i === 0 || v[i - 1] >= x; });
  th.click();
  var w = Array.prototype.map.call(t.tBodies[0].rows, function (r) { return +r.cells[9].getAttribute("data-v"); });
  var asc = w.every(function (x, i) { return i === 0 || w[i - 1] <= x; });
  var only = document.getElementById("only-candidates");
  only.checked = true; only.dispatchEvent(new Event("change"));
  var shown = Array.prototype.filter.call(t.tBodies[0].rows, function (r) { return !r.hidden; }).length;
  document.body.setAttribute("data-probe", [desc, asc, th.getAttribute("aria-sort"), shown].join(","));
})();
</script></body>"""


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
@pytest.mark.parametrize("case", ["small", "evil", "large", "no-convs"])
def test_renders_in_chromium_without_errors(case: str, small: Analysis, evil: Analysis, tmp_path: Path) -> None:
    analysis = {
        "small": lambda: small,
        "evil": lambda: evil,
        "large": lambda: big_graph(small, 2400),
        "no-convs": lambda: convaudit.analyze(OnlyLinear(), input_shape=(2, 16)),
    }[case]()
    page = tmp_path / "report.html"
    page.write_text(render_html(analysis), encoding="utf-8")
    start = time.perf_counter()
    dom, log = run_chromium(page, tmp_path / "profile", "--window-size=1400,1000")
    assert time.perf_counter() - start < 120
    root = html_tag(dom)
    assert 'data-report-ready="ok"' in root, "the page's script did not finish"
    assert "data-js-errors" not in root, root
    assert not [line for line in log.splitlines() if ":CONSOLE" in line]
    if analysis.graph is not None:
        assert dom.count("data-i=") == len(analysis.graph.nodes)  # every node drawn
    if case == "evil":
        assert "<script>alert(1)" not in dom and "&lt;script&gt;alert(1)&lt;/script&gt;" in dom


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_table_sorts_and_filters_in_chromium(small: Analysis, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_html(small).replace("</body>", PROBE), encoding="utf-8")
    dom, _ = run_chromium(page, tmp_path / "profile", "--window-size=1400,1000")
    assert "data-js-errors" not in html_tag(dom)
    probe = re.search(r'data-probe="([^"]*)"', dom)
    assert probe is not None
    assert probe.group(1) == f"true,true,ascending,{len(small.candidates)}"


# --- helpers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, shown",
    [
        ("layer1.0.conv1", "layer1.0.conv1"),
        ("features.denseblock1.denselayer1.conv2", "…denseblock1.denselayer1.conv2"),
        ("features.denseblock4.denselayer16.conv1", "…denselayer16.conv1"),
        ("x" * 40, "…" + "x" * 29),
    ],
)
def test_long_names_keep_their_specific_end(name: str, shown: str) -> None:
    assert cut_left(name, 30) == shown


def test_weight_energy_shown_when_known(small: Analysis) -> None:
    text = render_html(small)
    for layer in small.candidates:
        assert layer.separability is not None
        assert f'data-v="{round(layer.separability.dw_pw[0], 4)}"' in text
    assert "of the candidates' weight energy" in text
    without = dataclasses.replace(small, layers=tuple(dataclasses.replace(x, separability=None) for x in small.layers))
    text = render_html(without)
    assert "no weights to measure" in text and "weight energy (MAC-weighted" not in text
