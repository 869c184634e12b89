"""A model diff as one self-contained HTML page (``templates/diff.html.j2``, the report's stylesheet inlined).

:func:`diff_view` turns the record into display strings; the template only lays them out and, autoescaped,
escapes every name that came from a model. The page runs no script.
"""

from __future__ import annotations

from typing import Any

from convaudit.documents.diff import LayerDiff, ModelDiff
from convaudit.formats.common import count, shape, si
from convaudit.formats.diff import (
    change_text,
    delta_text,
    metric_text,
    ordered_layers,
    signed,
    signed_percent,
    status_counts,
    summary_line,
    value_text,
)

__all__ = ["diff_view", "render_diff_html"]

TEMPLATE = "diff.html.j2"


def _direction(delta: float | None) -> str:
    """CSS class: growth is 'up' (a cost), shrinking 'down'."""
    return "" if not delta else ("up" if delta > 0 else "down")


def _layer(layer: LayerDiff) -> dict[str, Any]:
    changes = (
        [f"{c.field} {value_text(c.base)} → {value_text(c.head)}" for c in layer.changes]
        if layer.status == "changed"
        else [change_text(layer)]
    )
    return {
        "name": layer.name,
        "status": layer.status,
        "matched_by": layer.matched_by,
        "kind": layer.kind,
        "macs": f"{si(layer.base_macs)} → {si(layer.head_macs)}",
        "macs_delta": signed(layer.macs_delta),
        "macs_percent": signed_percent(layer.base_macs, layer.head_macs),
        "direction": _direction(layer.macs_delta),
        "params": f"{count(layer.base_params)} → {count(layer.head_params)}",
        "params_delta": signed(layer.params_delta, exact=True),
        "changes": changes,
        "source": layer.source or "",
    }


def diff_view(diff: ModelDiff) -> dict[str, Any]:
    """Everything the template shows, as display strings."""
    sides = [
        {
            "label": label,
            "model_class": side.model_class,
            "inputs": [shape(s) for s in side.input_shapes],
            "origin": "saved report" if side.from_report else "analysed now",
        }
        for label, side in (("base", diff.base), ("head", diff.head))
    ]
    return {
        "title": f"convaudit diff · {diff.base.source} → {diff.head.source}",
        "base": diff.base,
        "head": diff.head,
        "sides": sides,
        "summary": summary_line(diff),
        "counts": status_counts(diff),
        "cards": [
            {
                "label": t.label,
                "base": metric_text(t, t.base),
                "head": metric_text(t, t.head),
                "delta": delta_text(t),
                "percent": signed_percent(t.base, t.head),
                "direction": _direction(t.delta),
            }
            for t in diff.totals
        ],
        "warnings": list(diff.warnings),
        "layers": [_layer(x) for x in ordered_layers(diff)],
        "ops": [
            {
                "op": o.op,
                "category": o.category,
                "count": f"{o.base_count} → {o.head_count}",
                "macs_delta": signed(o.head_macs - o.base_macs),
                "params_delta": signed(o.head_params - o.base_params, exact=True),
            }
            for o in diff.ops
        ],
        "schema_version": diff.schema_version,
    }


def render_diff_html(diff: ModelDiff) -> str:
    """The diff as one HTML document (no external resources, no script)."""
    from convaudit.formats.templating import jinja_environment, template_root

    return jinja_environment(template_root()).get_template(TEMPLATE).render(diff_view(diff))
