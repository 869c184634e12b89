"""How a report says it was written by convaudit, so that ``--force`` replaces only our own files.

HTML carries ``<meta name="generator" content="convaudit">`` in its head; JSON is the schema document
(``schema_version`` and its top-level keys); text ends with ``— convaudit VERSION`` and Markdown with an
invisible ``<!-- generator: convaudit VERSION -->`` line.
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
        return isinstance(doc, dict) and doc.keys() >= _JSON_KEYS and isinstance(doc["schema_version"], str)
    lines = [line for line in text.splitlines() if line.strip()]
    last = lines[-1].strip() if lines else ""
    return bool(_TEXT_LAST.fullmatch(last) or _MARKDOWN_LAST.fullmatch(last))
