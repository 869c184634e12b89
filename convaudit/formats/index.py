"""The batch index page: one self-contained HTML table of every model, sortable by clicking a header.

Reads the index document (``convaudit.batch.index``: ``{"document": "batch index", "models": [row, ...]}``,
each row a plain dict: ``name``, ``model``, ``status``, ``error``, ``seconds``, ``files``, ``params``,
``macs``, ``candidates``, ``macs_saved``, ``macs_saved_share``, ``up_to_date``). Every string that comes
from a model (its spec, class, error line) is HTML-escaped; the script reads only ``data-*`` attributes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import quote

from convaudit.formats.common import count, si

__all__ = ["COLUMNS", "render_index"]

#: (data key, header, numeric): the sortable columns, in order.
COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("model", "model", False),
    ("params", "params", True),
    ("macs", "MACs", True),
    ("candidates", "candidates", True),
    ("savings", "predicted savings", True),
    ("status", "status", False),
    ("seconds", "seconds", True),
)

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2430;background:#f7f8fa}
.wrap{max-width:1200px;margin:0 auto;padding:16px}
h1{font-size:20px;margin:8px 0}
.summary{margin:0 0 12px;color:#4a5568}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{padding:6px 10px;border-bottom:1px solid #e2e8f0;text-align:left;vertical-align:top}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.class{display:block;color:#718096}
th button{font:inherit;font-weight:600;background:none;border:0;padding:0;cursor:pointer;color:inherit}
th[aria-sort=ascending] button::after{content:" ▲"}
th[aria-sort=descending] button::after{content:" ▼"}
.status-ok{color:#276749}.status-failed,.status-timed-out{color:#c53030}.status-pending{color:#975a16}
.error{display:block;color:#742a2a;font-size:12px;word-break:break-word}
.mono{font-family:ui-monospace,monospace;font-size:12px;word-break:break-all}
footer{color:#718096;font-size:12px;margin-top:12px}
"""

_JS = """
(function(){
  var table=document.getElementById('models');
  var body=table.tBodies[0];
  function key(row,k,num){var v=row.querySelector('td[data-key="'+k+'"]').getAttribute('data-sort');
    if(!num)return v;var x=parseFloat(v);return isNaN(x)?null:x;}
  table.querySelectorAll('th[data-key]').forEach(function(th){
    th.querySelector('button').addEventListener('click',function(){
      var k=th.getAttribute('data-key'),num=th.getAttribute('data-type')==='number';
      var dir=th.getAttribute('aria-sort')==='ascending'?-1:1;
      table.querySelectorAll('th[data-key]').forEach(function(o){o.removeAttribute('aria-sort');});
      th.setAttribute('aria-sort',dir===1?'ascending':'descending');
      var rows=Array.prototype.slice.call(body.rows);
      rows.sort(function(a,b){var x=key(a,k,num),y=key(b,k,num);
        if(x===y)return 0;if(x===null)return 1;if(y===null)return -1;return (x<y?-1:1)*dir;});
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
})();
"""


def render_index(doc: Mapping[str, Any]) -> str:
    """The index page of a batch (self-contained: inline CSS and script, no network)."""
    rows = list(doc.get("models", ()))
    head = "".join(_header(key, label, numeric) for key, label, numeric in COLUMNS)
    body = "\n".join(_row(row) for row in rows)
    version = escape(str(doc.get("convaudit_version", "")))
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="generator" content="convaudit">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>convaudit: {len(rows)} models</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f'<div class="wrap">\n<h1>convaudit: {len(rows)} models</h1>\n'
        f'<p class="summary">{escape(summary_text(rows))} · click a header to sort</p>\n'
        f'<div class="scroll"><table id="models">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n'
        "</table></div>\n"
        f'<footer>convaudit <span class="mono">{version}</span> · index.json holds the same rows</footer>\n'
        f"</div>\n<script>{_JS}</script>\n</body>\n</html>\n"
    )


def summary_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """'4 models: 2 ok (1 up to date), 1 failed, 1 timed out'."""
    by_status: dict[str, int] = {}
    for row in rows:
        by_status[str(row.get("status"))] = by_status.get(str(row.get("status")), 0) + 1
    fresh = sum(1 for row in rows if row.get("up_to_date"))
    parts = [f"{by_status.pop('ok', 0)} ok" + (f" ({fresh} up to date)" if fresh else "")]
    parts += [f"{n} {status}" for status, n in sorted(by_status.items())]
    return f"{len(rows)} model{'s' if len(rows) != 1 else ''}: {', '.join(parts)}"


def _header(key: str, label: str, numeric: bool) -> str:
    kind = "number" if numeric else "text"
    cls = ' class="num"' if numeric else ""
    return f'<th data-key="{key}" data-type="{kind}"{cls}><button type="button">{escape(label)}</button></th>'


def _cell(key: str, sort: Any, shown: str, numeric: bool = False, *, raw: bool = False) -> str:
    """A cell: ``shown`` (escaped unless ``raw``: already-escaped markup) and its sort value."""
    cls = ' class="num"' if numeric else ""
    sort_text = "" if sort is None else str(sort)
    content = shown if raw else escape(shown)
    return f'<td data-key="{key}" data-sort="{escape(sort_text, quote=True)}"{cls}>{content}</td>'


def _row(row: Mapping[str, Any]) -> str:
    model = str(row.get("model", ""))
    files = row.get("files") or {}
    report = files.get("report") if isinstance(files, dict) else None
    label = escape(model)
    if isinstance(report, str):
        label = f'<a href="{escape(quote(report), quote=True)}">{label}</a>'
    if row.get("model_class"):
        label += f'<span class="mono class">{escape(str(row["model_class"]))}</span>'
    status = str(row.get("status", ""))
    shown = escape(status + (" · up to date" if row.get("up_to_date") else ""))
    status_html = f'<span class="status-{escape(status.replace(" ", "-"), quote=True)}">{shown}</span>'
    if row.get("error"):
        status_html += f'<span class="error">{escape(str(row["error"]))}</span>'
    share = row.get("macs_saved_share")
    saved = row.get("macs_saved")
    savings = "—" if saved is None else f"{si(saved)} MACs" + (f" ({share:.0%})" if share is not None else "")
    seconds = row.get("seconds")
    cells = [
        _cell("model", model.lower(), label, raw=True),
        _cell("params", row.get("params"), count(row.get("params")), True),
        _cell("macs", row.get("macs"), si(row.get("macs")), True),
        _cell("candidates", row.get("candidates"), count(row.get("candidates")), True),
        _cell("savings", saved, savings, True),
        _cell("status", status, status_html, raw=True),
        _cell("seconds", seconds, "—" if seconds is None else f"{seconds:.1f}", True),
    ]
    return f'<tr data-name="{escape(str(row.get("name", "")), quote=True)}">{"".join(cells)}</tr>'
