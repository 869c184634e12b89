"""The batch index page: sortable by clicking a header (checked in Chromium), self-contained, escaped."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from convaudit.formats.index import COLUMNS, render_index, summary_text
from convaudit.formats.signature import is_convaudit_report
from tests.fixtures.chromium import CHROMIUM, run_chromium

HOSTILE = '<img src=x onerror="alert(1)">&"\'.py'


def row(model: str, macs: int | None, status: str = "ok", **more: object) -> dict:
    base = {
        "name": "n",
        "model": model,
        "status": status,
        "error": None,
        "seconds": 1.0,
        "files": {"report": "n.html", "json": "n.json"} if status == "ok" else {},
        "params": None if macs is None else macs // 10,
        "macs": macs,
        "candidates": None if macs is None else 1,
        "macs_saved": None if macs is None else macs // 2,
        "macs_saved_share": None if macs is None else 0.5,
        "up_to_date": False,
    }
    return base | more


def doc(*rows: dict) -> dict:
    return {"generator": "convaudit", "document": "batch index", "convaudit_version": "0.1.0", "models": list(rows)}


def test_every_column_sorts_and_every_cell_has_its_key() -> None:
    page = render_index(doc(row("a.py", 300), row("b.py", None, "failed", error="x"), row("c.py", 20)))
    for key, _, numeric in COLUMNS:
        assert f'<th data-key="{key}" data-type="{"number" if numeric else "text"}"' in page
        assert page.count(f'<td data-key="{key}" data-sort=') == 3
    assert "addEventListener('click'" in page and "aria-sort" in page
    assert "<script src" not in page and "<link" not in page and "http" not in page  # self-contained


def test_model_derived_strings_are_escaped() -> None:
    page = render_index(
        doc(row(HOSTILE, 5, model_class="<b>Cls</b>"), row("e.py", None, "failed", error="<script>x()</script>"))
    )
    assert "<img" not in page and "<b>" not in page and "<script>x()" not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;&quot;&#x27;.py" in page
    assert page.count("<script>") == 1  # ours


def test_summary_and_status() -> None:
    rows = [row("a", 1), row("b", 1, up_to_date=True), row("c", None, "failed"), row("d", None, "timed out")]
    assert summary_text(rows) == "4 models: 2 ok (1 up to date), 1 failed, 1 timed out"
    page = render_index(doc(*rows))
    assert "ok · up to date" in page and 'class="status-timed-out"' in page
    assert is_convaudit_report(page.encode())  # --force may replace it, nothing else


CLICK = """<script>
function order() { return Array.from(document.querySelectorAll('tbody tr')).map(r => r.dataset.name).join(','); }
function click(key) { document.querySelector('th[data-key="' + key + '"] button').click(); }
click('macs'); document.body.setAttribute('data-after-one', order());
click('macs'); document.body.setAttribute('data-after-two', order());
click('model'); document.body.setAttribute('data-by-model', order());
</script></body>"""


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_clicking_a_header_sorts_in_chromium(tmp_path: Path) -> None:
    rows = [row("b.py", 300, name="b"), row("a.py", None, "failed", name="a"), row("c.py", 20, name="c")]
    page = tmp_path / "index.html"
    page.write_text(render_index(doc(*rows)).replace("</body>", CLICK, 1), encoding="utf-8")
    dom, _ = run_chromium(page, tmp_path / "profile", timeout=120)
    found = dict(re.findall(r'data-(after-one|after-two|by-model)="([^"]*)"', dom))
    # ascending MACs, then descending; a model without figures (failed) last either way
    assert found == {"after-one": "c,b,a", "after-two": "b,c,a", "by-model": "a,b,c"}
