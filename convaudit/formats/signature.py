"""How a report says it was written by convaudit, so that ``--force`` replaces only our own files.

HTML carries ``<meta name="generator" content="convaudit">`` in its head; JSON is the schema document
(``schema_version`` and its top-level keys; a diff or a batch index: ``"generator": "convaudit"``, its ``"document"``);
text ends with ``— convaudit VERSION`` and Markdown with an invisible ``<!-- generator: convaudit VERSION -->`` line.
"""

from __future__ import annotations

import json
import re

__all__ = ["is_convaudit_report", "markdown_signature", "text_signature"]

_HTML_META = '<meta name="generator" content="convaudit">'
_TEXT_LAST = re.compile(r"— convaudit \S+")
_MARKDOWN_LAST = re.compile(r"<!-- generator: convaudit \S+ -->")
#: Keys every JSON report has (docs/schema.md, "Analysis"); a document with all of them is ours.
_JSON_KEYS = frozenset({"schema_version", "model", "model_class", "input_shapes", "trace_path", "layers", "totals"})
#: Other JSON documents of ours: (generator, document); a batch's index.json is one (convaudit.batch).
_OWN_DOCUMENTS = frozenset({("convaudit", "diff"), ("convaudit", "batch index"), ("convaudit", "check")})


def _version() -> str:
    from convaudit import __version__

    return __version__


def text_signature() -> str:
    """The last line of a text report."""
    return f"— convaudit {_version()}"


def markdown_signature() -> str:
    """The last line of a Markdown report (an HTML comment: invisible where the Markdown is rendered)."""
    return f"<!-- generator: convaudit {_version()} -->"


def is_convaudit_report(data: bytes) -> bool:
    """Whether ``data`` (a whole file) is a report in one of convaudit's built-in formats."""
    text = data.decode("utf-8", errors="replace")
    head = text[:4096].lstrip().lower()
    if head.startswith("<!doctype html") and _HTML_META in text[:4096]:
        return True
    if head.startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError:
            return False
        if _is_our_sarif(doc):
            return True
        if not isinstance(doc, dict) or not isinstance(doc.get("schema_version"), str):
            return False
        return doc.keys() >= _JSON_KEYS or (doc.get("generator"), doc.get("document")) in _OWN_DOCUMENTS
    lines = [line for line in text.splitlines() if line.strip()]
    last = lines[-1].strip() if lines else ""
    return bool(_TEXT_LAST.fullmatch(last) or _MARKDOWN_LAST.fullmatch(last))


def _is_our_sarif(doc: object) -> bool:
    """A SARIF log whose only run is convaudit's (``report``/``check --format sarif``)."""
    runs = doc.get("runs") if isinstance(doc, dict) and doc.get("version") == "2.1.0" else None
    if not isinstance(runs, list) or len(runs) != 1 or not isinstance(runs[0], dict):
        return False
    driver = runs[0].get("tool", {}).get("driver", {}) if isinstance(runs[0].get("tool"), dict) else {}
    return isinstance(driver, dict) and driver.get("name") == "convaudit"
