"""JSON: ``Analysis.to_dict()`` as is (schema in docs/schema.md, versioned by ``schema_version``)."""

from __future__ import annotations

import json

from convaudit.documents.records import Analysis

__all__ = ["render_json"]


def render_json(analysis: Analysis) -> str:
    """The versioned JSON document, indented, newline-terminated."""
    return json.dumps(analysis.to_dict(), indent=2, ensure_ascii=False) + "\n"
