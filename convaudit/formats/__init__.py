"""Renderers: documents (plain records) → text, JSON, Markdown, HTML, in one registry keyed by (document, format).

Built-in renderers are registered by reference (``"module:function"``) and imported when first used, so
``import convaudit.formats`` stays light. Others come in the same way, :func:`register_format` (also a
decorator), or, for Analysis formats, through the ``convaudit.formats`` entry-point group: a callable taking
an Analysis and returning a string. A built-in or registered name wins over an entry point of that name.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable
from typing import Any

from convaudit.documents.check import CheckResult
from convaudit.documents.diff import ModelDiff
from convaudit.documents.records import Analysis, ConversionReport
from convaudit.errors import ConvauditError, UsageError
from convaudit.vocab import Format

__all__ = [
    "ENTRY_POINT_GROUP",
    "SUFFIXES",
    "Renderer",
    "available_formats",
    "default_suffix",
    "register_format",
    "render",
]

Renderer = Callable[[Any], str]

#: Analysis formats installed by other packages register here (``[project.entry-points."convaudit.formats"]``).
ENTRY_POINT_GROUP = "convaudit.formats"

#: File suffix → format, for ``-o report.json`` without ``--format``.
SUFFIXES: dict[str, str] = {
    ".html": Format.HTML,
    ".htm": Format.HTML,
    ".json": Format.JSON,
    ".txt": Format.TEXT,
    ".md": Format.MARKDOWN,
    ".sarif": Format.SARIF,
}

#: (document type, format name) → the renderer, or "module:function" until first used.
_REGISTRY: dict[tuple[type, str], Renderer | str] = {}


def register_format(document: type, name: str, renderer: Renderer | str | None = None) -> Any:
    """Register ``renderer`` for documents of type ``document`` under ``name``; without it, a decorator.

    ``renderer`` may be ``"module:function"``, imported on first use. Registering a taken name raises.
    """

    def add(fn: Renderer | str) -> Renderer | str:
        key = (document, str(name))
        if key in _REGISTRY:
            raise ValueError(f"format {name!r} is already registered for {document.__name__}")
        _REGISTRY[key] = fn
        return fn

    return add if renderer is None else add(renderer)


register_format(Analysis, Format.HTML, "convaudit.formats.html:render_html")
register_format(Analysis, Format.JSON, "convaudit.formats.json:render_json")
register_format(Analysis, Format.TEXT, "convaudit.formats.text:render_text")
register_format(Analysis, Format.MARKDOWN, "convaudit.formats.markdown:render_markdown")
register_format(Analysis, Format.SARIF, "convaudit.formats.sarif:render_sarif")
register_format(ConversionReport, Format.TEXT, "convaudit.formats.conversion:render_conversion_text")
register_format(ConversionReport, Format.HTML, "convaudit.formats.conversion:render_conversion_html")
register_format(ConversionReport, Format.JSON, "convaudit.formats.json:render_conversion_json")
register_format(CheckResult, Format.TEXT, "convaudit.formats.check:render_check_text")
register_format(CheckResult, Format.JSON, "convaudit.formats.check:render_check_json")
register_format(CheckResult, Format.SARIF, "convaudit.formats.sarif:render_check_sarif")
register_format(ModelDiff, Format.TEXT, "convaudit.formats.diff:render_diff_text")
register_format(ModelDiff, Format.JSON, "convaudit.formats.diff:render_diff_json")
register_format(ModelDiff, Format.MARKDOWN, "convaudit.formats.diff_markdown:render_diff_markdown")
register_format(ModelDiff, Format.HTML, "convaudit.formats.diff_html:render_diff_html")


def available_formats(document: type = Analysis) -> list[str]:
    """Names of the formats for ``document``: registered ones and, for Analysis, installed entry points."""
    names = {name for doc, name in _REGISTRY if issubclass(document, doc)}
    if issubclass(document, Analysis):
        names |= {ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    return sorted(names)


def default_suffix(fmt: str) -> str:
    """The file suffix a document in ``fmt`` is written with by default (``.md`` for markdown)."""
    return next((suffix for suffix, name in SUFFIXES.items() if name == fmt), f".{fmt}")


def render(document: Any, fmt: str) -> str:
    """Render ``document`` (an Analysis, a ConversionReport, ...) in the named format."""
    return _renderer(type(document), fmt)(document)


def _renderer(document: type, fmt: str) -> Renderer:
    for doc in document.__mro__:
        found = _REGISTRY.get((doc, fmt))
        if found is None:
            continue
        if isinstance(found, str):
            module, _, name = found.partition(":")
            found = _REGISTRY[(doc, fmt)] = getattr(importlib.import_module(module), name)
        return found
    if issubclass(document, Analysis):
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP, name=fmt):
            try:
                loaded: Renderer = ep.load()
            except Exception as exc:  # a broken plugin is its package's fault: say which one
                raise ConvauditError(f"format {fmt!r} (entry point {ep.value}) cannot be loaded: {exc}") from exc
            return loaded
    choices = ", ".join(available_formats(document))
    raise UsageError(f"unknown format {fmt!r} for {document.__name__}; choose one of {choices}")
