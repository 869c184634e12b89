"""JSON: a document's ``to_dict()`` as is (schema in docs/schema.md, versioned by ``schema_version``)."""

from __future__ import annotations

import json

from convaudit.documents.records import Analysis, ConversionReport

__all__ = ["render_conversion_json", "render_json"]


def render_json(analysis: Analysis) -> str:
    """The versioned JSON document, indented, newline-terminated."""
    return json.dumps(analysis.to_dict(), indent=2, ensure_ascii=False) + "\n"


def render_conversion_json(report: ConversionReport) -> str:
    """conversion.json: the report's document, indented, newline-terminated (ASCII, as 0.1 wrote it)."""
    return json.dumps(report.to_dict(), indent=2) + "\n"
