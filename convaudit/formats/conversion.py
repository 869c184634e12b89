"""Renderers for a ConversionReport: terminal text and a self-contained HTML page."""

from __future__ import annotations

from collections import Counter
from typing import Any

from convaudit.documents.records import MODE_AS_FOUND, ConversionReport, ConvertedLayer
from convaudit.formats.common import count, mode_text, ratio, weights_text

__all__ = ["conversion_view", "render_conversion_html", "render_conversion_text"]


def _err(e: float | None) -> str:
    return "—" if e is None else f"{e:.2e}"


def _energy(e: float | None) -> str:
    return "—" if e is None else f"{e:.1%}"


def render_conversion_text(report: ConversionReport) -> str:
    """Summary, one line per converted layer, skip reasons counted."""
    r = report
    check = "measured = predicted" if r.costs_match else "MEASURED ≠ PREDICTED"
    lines = [
        f"converted {len(r.layers)} conv(s) of {r.model}",
        f"weights: {weights_text(r.weights, r.weights_source)}",
        f"mode: {mode_text(str(r.settings.get('mode', MODE_AS_FOUND)))}; verified in eval mode",
        f"params: {count(r.params_before)} → {count(r.params_measured)} "
        f"({ratio(r.params_measured / r.params_before if r.params_before else 1)}) · "
        f"MACs: {count(r.macs_before)} → {count(r.macs_measured)} "
        f"({ratio(r.macs_measured / r.macs_before if r.macs_before else 1)}) · {check}",
        f"final output relative error on the example inputs: {_err(r.output_error)}"
        + (f" · worst layer: {_err(r.max_layer_error)}" if r.max_layer_error is not None else ""),
    ]
    if r.layers:
        head = f"{'layer':<32} {'order':<6} {'m':>3} {'energy':>7} {'params':>21} {'MACs':>27} {'rel. error':>10}"
        lines += ["", head, "-" * len(head)]
        for layer in r.layers:
            name = layer.name if len(layer.name) <= 32 else "…" + layer.name[-31:]
            lines.append(
                f"{name:<32} {layer.order:<6} {layer.rank:>3} {_energy(layer.energy):>7} "
                f"{count(layer.params_before) + ' → ' + count(layer.params_measured):>21} "
                f"{count(layer.macs_before) + ' → ' + count(layer.macs_measured):>27} {_err(layer.relative_error):>10}"
            )
            if layer.note:
                lines.append(f"  note: {layer.note}")
    reasons = Counter(reason for _, reason in r.skipped)
    if reasons:
        lines += ["", "not converted:"] + [f"  {n} × {reason}" for reason, n in reasons.most_common()]
    lines += [f"note: {n}" for n in r.notes]
    return "\n".join(lines)


def conversion_view(report: ConversionReport) -> dict[str, Any]:
    """Display strings for the HTML template (names are escaped by the template)."""
    r = report

    def row(layer: ConvertedLayer) -> dict[str, Any]:
        return {
            "name": layer.name,
            "order": layer.order,
            "rank": layer.rank,
            "exact_rank": layer.exact_rank,
            "init": layer.init,
            "energy": _energy(layer.energy),
            "energy_sort": layer.energy or 0.0,
            "params_before": count(layer.params_before),
            "params_after": count(layer.params_measured),
            "macs_before": count(layer.macs_before),
            "macs_after": count(layer.macs_measured),
            "macs_sort": layer.macs_before,
            "saving": ratio(layer.macs_measured / layer.macs_before if layer.macs_before else 1),
            "match": (layer.params_measured, layer.macs_measured) == (layer.params_predicted, layer.macs_predicted),
            "error": _err(layer.relative_error),
            "error_sort": layer.relative_error if layer.relative_error is not None else -1,
            "note": layer.note or "",
        }

    return {
        "title": f"convaudit conversion — {r.model}",
        "model": r.model,
        "settings": [(k, str(v)) for k, v in r.settings.items() if v not in (None, [], 0.0, False)],
        "params": (count(r.params_before), count(r.params_predicted), count(r.params_measured)),
        "macs": (count(r.macs_before), count(r.macs_predicted), count(r.macs_measured)),
        "params_ratio": ratio(r.params_measured / r.params_before if r.params_before else 1),
        "macs_ratio": ratio(r.macs_measured / r.macs_before if r.macs_before else 1),
        "costs_match": r.costs_match,
        "output_error": _err(r.output_error),
        "max_layer_error": _err(r.max_layer_error),
        "layers": [row(layer) for layer in r.layers],
        "skipped": [{"name": n, "reason": why} for n, why in r.skipped],
        "notes": list(r.notes),
        "environment": sorted(r.environment.items()),
        "schema_version": r.schema_version,
    }


def render_conversion_html(report: ConversionReport) -> str:
    """One self-contained HTML page (the report's stylesheet inlined, no network)."""
    from convaudit.formats.templating import jinja_environment, template_root

    env = jinja_environment(template_root())
    return env.get_template("conversion.html.j2").render(conversion_view(report))
