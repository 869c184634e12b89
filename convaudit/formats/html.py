"""HTML: one self-contained page (inline CSS and JS, no network) from a jinja2 template.

Data preparation lives in :mod:`convaudit.formats.html_view` (:func:`view_model`: plain dicts of display
strings and raw sort values); the layout lives in ``templates/report.html.j2`` (autoescaped), with
``report.css`` and ``report.js`` inlined verbatim. The graph view is drawn by the page's JS from
JSON embedded in a ``<script type="application/json">`` block, escaped so no name can close it.
"""

from __future__ import annotations

from typing import Any

from convaudit.documents.records import Analysis
from convaudit.formats.html_view import view_model
from convaudit.formats.templating import SOURCE_TEMPLATES, jinja_environment, script_json, template_root

# script_json, template_root, view_model and SOURCE_TEMPLATES were defined here in 0.1; they stay importable.
__all__ = ["SOURCE_TEMPLATES", "render_html", "script_json", "template_root", "view_model"]

TEMPLATE = "report.html.j2"


def render_html(analysis: Analysis, *, templates: Any = None) -> str:
    """The report as one HTML document (no external resources).

    Args:
        templates: a templates directory to use instead of :func:`template_root` (for tests).
    """
    env = jinja_environment(template_root() if templates is None else templates)
    return env.get_template(TEMPLATE).render(view_model(analysis))
