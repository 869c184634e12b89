"""The jinja2 environment both HTML pages share (the report and the conversion page).

Templates come from the installed ``convaudit.templates`` package, else from the source tree; they are
autoescaped, and ``report.css``/``report.js``/``graph.js`` are inlined verbatim so every page is self-contained.
JSON for the page's JS goes into a ``<script type="application/json">`` block through :func:`script_json`,
escaped so no name can close it.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

__all__ = ["ASSETS", "SOURCE_TEMPLATES", "jinja_environment", "script_json", "template_root"]

#: A template every templates directory has: how :func:`template_root` recognises one.
_MARKER = "report.html.j2"
ASSETS = ("report.css", "report.js", "graph.js")
#: Source-tree fallback when the package ``convaudit.templates`` is not importable (uninstalled checkout).
SOURCE_TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def template_root() -> Any:
    """The templates directory: the installed ``convaudit.templates`` package, else the source tree."""
    try:
        root = importlib.resources.files("convaudit.templates")
        if root.joinpath(_MARKER).is_file():
            return root
    except (ModuleNotFoundError, TypeError):  # not installed, or a namespace package without files
        pass
    return SOURCE_TEMPLATES


@functools.lru_cache(maxsize=4)
def jinja_environment(root: Any) -> jinja2.Environment:
    """Autoescaping environment reading templates from ``root`` (a Path or importlib Traversable).

    The CSS and JS files are ours and are inlined verbatim as globals (not templated, not escaped).
    """
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(lambda name: root.joinpath(name).read_text(encoding="utf-8")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    for name in ASSETS:
        env.globals[name.replace(".", "_")] = Markup(root.joinpath(name).read_text(encoding="utf-8"))
    return env


def script_json(data: Any) -> Markup:
    """JSON safe inside ``<script type="application/json">``: no ``<``, ``>`` or ``&`` survive literally."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    for char, escape in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escape)
    return Markup(text)
