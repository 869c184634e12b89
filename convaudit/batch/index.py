"""The batch's index: ``DIR/index.json`` (what ran, with which key, and its figures) and ``DIR/index.html``.

index.json is the document (``{"generator": "convaudit", "document": "batch index", ...}``, one row per
model in the order given); the next run reads it to skip models whose report is up to date. It is rewritten
while the batch runs (at most every :data:`SAVE_EVERY_SECONDS`), so a stopped batch still says what finished.
Rows are plain dicts (the JSON form), rendered by :mod:`convaudit.formats.index`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from convaudit.batch.plan import ModelJob, Outcome, Status
from convaudit.formats.signature import is_convaudit_report

__all__ = [
    "INDEX_HTML",
    "INDEX_JSON",
    "INDEX_SCHEMA",
    "SAVE_EVERY_SECONDS",
    "IndexWriter",
    "figures",
    "index_document",
    "read_index",
    "row_of",
    "up_to_date",
]

INDEX_JSON = "index.json"
INDEX_HTML = "index.html"
INDEX_SCHEMA = "1.0"
SAVE_EVERY_SECONDS = 2.0


def index_document(rows: list[dict[str, Any]], fmt: str) -> dict[str, Any]:
    """The index.json document."""
    from convaudit import __version__

    return {
        "generator": "convaudit",
        "document": "batch index",
        "schema_version": INDEX_SCHEMA,
        "convaudit_version": __version__,
        "format": fmt,
        "models": rows,
    }


def read_index(directory: Path) -> dict[str, dict[str, Any]] | None:
    """The rows of ``directory``'s index.json by name; {} for none, None when it is not convaudit's."""
    path = directory / INDEX_JSON
    if not os.path.lexists(path):
        return {}
    try:
        data = path.read_bytes() if path.is_file() and not path.is_symlink() else b""
        doc = json.loads(data) if is_convaudit_report(data) else None
    except (OSError, ValueError):
        doc = None
    if not isinstance(doc, dict) or doc.get("document") != "batch index" or not isinstance(doc.get("models"), list):
        return None
    return {row["name"]: row for row in doc["models"] if isinstance(row, dict) and isinstance(row.get("name"), str)}


def figures(report_json: str) -> dict[str, Any]:
    """The index's figures from a JSON report: params, MACs, candidates and the predicted savings."""
    doc = json.loads(report_json)
    totals = doc.get("totals") or {}
    macs, after = totals.get("macs"), totals.get("macs_after")
    saved = macs - after if isinstance(macs, int) and isinstance(after, int) else None
    return {
        "model_class": doc.get("model_class"),
        "params": totals.get("params"),
        "macs": macs,
        "candidates": totals.get("candidates"),
        "macs_saved": saved,
        "macs_saved_share": saved / macs if saved is not None and macs else None,
    }


def row_of(job: ModelJob, outcome: Outcome | None, files: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One index row: the model, its key, how it ended, its files and figures (pending while ``outcome`` is None)."""
    row: dict[str, Any] = {
        "name": job.name,
        "model": job.spec,
        "key": job.key,
        "status": str(outcome.status) if outcome else str(Status.PENDING),
        "error": outcome.error if outcome else None,
        "seconds": round(outcome.seconds, 2) if outcome else None,
        "up_to_date": False,
        "files": dict(files) if files else {},
    }
    if outcome is not None and outcome.report_json is not None and outcome.status == Status.OK:
        row |= figures(outcome.report_json)
    if outcome is not None and outcome.worker:
        row["worker"] = outcome.worker
    return row


def up_to_date(old: Mapping[str, Any] | None, job: ModelJob, directory: Path) -> bool:
    """Whether the last run of ``job`` was ok with the same key and its report files are still there."""
    if not old or old.get("key") != job.key or old.get("status") != Status.OK:
        return False
    files = old.get("files")
    if not isinstance(files, dict) or not files:
        return False
    return all(isinstance(f, str) and (directory / f).is_file() for f in files.values())


class IndexWriter:
    """Writes index.json as rows change (throttled) and, at the end, index.html too."""

    def __init__(self, directory: Path, fmt: str, rows: dict[str, dict[str, Any]]) -> None:
        self.directory, self.fmt, self.rows = directory, fmt, rows  # rows: by name, in the batch's order
        self._saved = 0.0

    def update(self, row: dict[str, Any]) -> None:
        """Replace one row; save when the last save is old enough."""
        self.rows[row["name"]] = row
        if time.monotonic() - self._saved >= SAVE_EVERY_SECONDS:
            self.save_json()

    def save_json(self) -> Path:
        """Write index.json now."""
        from convaudit.outputs.files import write_atomic

        doc = index_document(list(self.rows.values()), self.fmt)
        text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
        self._saved = time.monotonic()
        return write_atomic(self.directory / INDEX_JSON, text, force=True)

    def finish(self) -> Path:
        """Write index.json and index.html; returns the HTML's path."""
        from convaudit.formats.index import render_index
        from convaudit.outputs.files import write_atomic

        self.save_json()
        html = render_index(index_document(list(self.rows.values()), self.fmt))
        return write_atomic(self.directory / INDEX_HTML, html, force=True)
