"""Renderers: Analysis (plain records) → text, JSON, Markdown, HTML.

More formats plug in through the ``convaudit.formats`` entry-point group: a callable taking an
Analysis and returning a string.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points

from convaudit.documents.records import Analysis
from convaudit.errors import UsageError

__all__ = ["BUILTIN", "SUFFIXES", "available_formats", "render"]

Renderer = Callable[[Analysis], str]

#: File suffix → format, for ``-o report.json`` without ``--format``.
SUFFIXES = {".html": "html", ".htm": "html", ".json": "json", ".txt": "text", ".md": "markdown"}


#: Built-in formats: name → "module:function", imported only when used.
BUILTIN = {
    "html": "convaudit.formats.html:render_html",
    "json": "convaudit.formats.json:render_json",
    "text": "convaudit.formats.text:render_text",
    "markdown": "convaudit.formats.markdown:render_markdown",
}


def available_formats() -> list[str]:
    """Names of the built-in formats and of those installed under the ``convaudit.formats`` group."""
    return sorted(set(BUILTIN) | {ep.name for ep in entry_points(group="convaudit.formats")})


def _renderer(fmt: str) -> Renderer:
    if fmt in BUILTIN:
        module, _, name = BUILTIN[fmt].partition(":")
        return getattr(importlib.import_module(module), name)
    for ep in entry_points(group="convaudit.formats", name=fmt):
        return ep.load()
    raise UsageError(f"unknown format {fmt!r}; choose one of {', '.join(available_formats())}")


def render(analysis: Analysis, fmt: str) -> str:
    """Render ``analysis`` in the named format."""
    return _renderer(fmt)(analysis)
