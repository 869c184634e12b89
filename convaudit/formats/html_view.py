"""The HTML report's data view: an Analysis turned into display strings and raw numbers for the template.

:func:`view_model` leaves no formatting to the template (``templates/report.html.j2``), which only lays
the view out; the per-layer tables are built in :mod:`convaudit.formats.html_table`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from convaudit.documents.records import Analysis
from convaudit.formats.cautions import LEGEND, LOW_ENERGY
from convaudit.formats.common import (
    count,
    kept_energy,
    likely_contractions,
    mode_text,
    percent,
    ratio,
    shape,
    si,
    timing_lines,
    weights_text,
)
from convaudit.formats.html_chart import chart_view
from convaudit.formats.html_graph import graph_data, graph_meta
from convaudit.formats.html_latency import latency_view
from convaudit.formats.html_table import GROUPS, columns, layer_row, module_view, op_row
from convaudit.formats.templating import script_json
from convaudit.formats.verdict import Verdict, verdict

__all__ = ["view_model"]


def view_model(analysis: Analysis) -> dict[str, Any]:
    """Everything the template shows, as display strings plus raw numbers (no formatting left to it)."""
    layers = analysis.layers
    columns_, batch = columns(layers)
    return {
        "title": f"convaudit · {analysis.model}",
        "model": analysis.model,
        "model_class": analysis.model_class,
        "inputs": [shape(s) for s in analysis.input_shapes],
        "trace_path": analysis.trace_path,
        "trace_note": analysis.trace_note,
        "mode": analysis.mode,
        "mode_text": mode_text(analysis.mode),
        "weights": weights_text(analysis.weights, analysis.weights_source),
        "has_convs": bool(layers),
        "verdict": _verdict(v := verdict(analysis)),
        "cards": _cards(analysis),
        "predicted": _predicted(analysis, v),
        "cross_check": _cross_check(analysis),
        "uncosted_ops": list(analysis.uncosted_ops),
        "uncalled_convs": list(analysis.uncalled_convs),
        "warnings": list(analysis.warnings),
        "skipped": [
            {"reason": r, "count": n}
            for r, n in Counter(x.skip_reason or "not a candidate" for x in layers if not x.candidate).most_common()
        ],
        "columns": columns_,
        "groups": GROUPS,
        "rows": [layer_row(i, layer, batch) for i, layer in enumerate(layers)],
        "chart": chart_view(layers) if layers else None,
        "graph": graph_meta(analysis),
        "ops": [op_row(op) for op in analysis.ops],
        "latency": latency_view(analysis),
        "modules": module_view(analysis),
        "timing": _timing(analysis) if analysis.measurement is None else None,  # the 1.2 section, 1.2 documents
        "environment": sorted(analysis.environment.items()),
        "schema_version": analysis.schema_version,
        "data_json": script_json(graph_data(analysis)),
    }


def _timing(a: Analysis) -> dict[str, Any] | None:
    """The measured-time section: per candidate, one call of the conv and of its DW→PW form."""
    if a.timing is None:
        return None
    rows = []
    for t in a.timing.layers:
        measured = t.speedup_measured
        rows.append(
            {
                "name": t.name,
                "skipped": t.skipped,
                "ms": f"{t.seconds * 1e3:.3f}" if t.seconds is not None else "—",
                "ms_dw_pw": f"{t.seconds_dw_pw * 1e3:.3f}" if t.seconds_dw_pw is not None else "—",
                "measured": f"{measured:.2f}×" if measured is not None else "—",
                "measured_sort": measured if measured is not None else -1,
                "promised": f"{t.speedup_predicted:.2f}×",
                "cls": "" if measured is None else ("good" if measured > 1 else "worse"),
            }
        )
    return {
        "headline": timing_lines(a),
        "device": a.timing.device,
        "threads": a.timing.threads,
        "repeats": a.timing.repeats,
        "rows": rows,
    }


def _cards(a: Analysis) -> list[dict[str, str]]:
    """The headline figures, each with its unit and exact value."""
    t = a.totals
    n = len(a.layers)
    share = percent(t.candidate_macs / t.macs) if t.macs else "—"
    return [
        {"label": "Parameters", "value": si(t.params), "detail": f"{count(t.params)} params"},
        {"label": "MACs", "value": si(t.macs), "detail": f"{count(t.macs)} MACs · FLOPs = 2·MACs = {si(t.flops)}"},
        {
            "label": "Convolutions",
            "value": str(n),
            "detail": f"{percent(t.conv_macs_share)} of MACs · {si(t.conv_params)} params",
        },
        {
            "label": "Candidates",
            "value": f"{t.candidates} of {n}",
            "detail": f"{share} of MACs · {si(t.candidate_params)} params",
        },
    ]


#: The colours of the verdict and prediction cards, as the legend explains them.
_TONES = {
    "good": "green: convert, the figures support it",
    "warn": "amber: a caution, read it first",
    "neutral": "grey: information, no saving claimed",
}


def _verdict(v: Verdict) -> dict[str, Any]:
    """The card the summary opens with: tone, headline, next command, cautions and the legend of their markers."""
    return {
        "tone": v.tone,
        "tones": list(_TONES.items()),
        "headline": v.headline,
        "command": v.command,
        "command_note": v.command_note,
        "cautions": [{"marker": c.marker, "text": c.text} for c in v.cautions],
        "legend": [{"marker": m, "text": LEGEND[m]} for m in v.markers],
    }


def _predicted(a: Analysis, v: Verdict) -> dict[str, str | None]:
    """Totals after converting every candidate depthwise→pointwise (m = 1): a prediction from shapes.

    Green, as a saving, only when the verdict is to convert; warning-coloured when the m = 1 forms keep
    little weight energy or the recommendations keep every candidate; neutral otherwise.
    """
    t = a.totals
    tone, why = _predicted_tone(a, v)
    return {
        "tone": tone,
        "label": "Predicted after rewrite" if tone == "good" else "If every candidate were converted (m = 1)",
        "why": why,
        "macs": si(t.macs_after),
        "macs_exact": count(t.macs_after),
        "macs_ratio": ratio(t.macs_after_ratio),
        "macs_saved": si(t.macs - t.macs_after),
        "macs_saved_pct": percent(1 - t.macs_after_ratio),
        "params": si(t.params_after),
        "params_exact": count(t.params_after),
        "params_ratio": ratio(t.params_after_ratio),
        "params_saved": si(t.params - t.params_after),
        "energy": percent(kept) if (kept := kept_energy(a)) is not None else None,
    }


def _predicted_tone(a: Analysis, v: Verdict) -> tuple[str, str | None]:
    """(tone of the prediction card, why it is not a saving): good only when the verdict is to convert."""
    if v.tone == "good":
        return "good", None
    kept = kept_energy(a)
    low = kept is not None and kept < LOW_ENERGY
    all_kept = bool(a.candidates) and all(x.recommendation and x.recommendation.action == "keep" for x in a.candidates)
    why = [f"the m = 1 forms keep only {percent(kept)} of the weight energy"] if low and kept is not None else []
    why += ["the recommendations keep every candidate"] if all_kept else []
    return ("warn" if why else "neutral"), "; ".join(why) or "not what the verdict advises"


def _agreement(ours: int, theirs: int | None) -> tuple[bool, str]:
    """Whether two MAC counts agree, and a short note saying by how much they differ."""
    if theirs == ours:
        return True, "matches"
    diff = (theirs or 0) - ours
    return False, f"differs by {count(diff)}" + (f" ({diff / ours:+.2%})" if ours else "")


def _cross_check(a: Analysis) -> dict[str, Any] | None:
    """Ours beside fvcore's (whose "flops" are MACs), or why it was skipped."""
    c = a.cross_check
    if c is None:
        return None
    out: dict[str, Any] = {"tool": c.tool, "version": c.version or "", "skipped": c.skipped}
    if c.skipped:
        return out
    t = a.totals
    modules = sum(layer.macs for layer in a.layers if layer.op == "module")  # fvcore names modules only
    ok, note = _agreement(t.macs, c.macs_same_ops)
    missed = likely_contractions(c.unsupported_ops) if not ok else []
    if missed:
        note += f"; {c.tool} did not count {', '.join(missed)}"
    conv_ok, conv_note = _agreement(modules, c.conv_macs)
    out["rows"] = [
        {"what": "all costed ops", "ours": count(t.macs), "theirs": count(c.macs_same_ops), "ok": ok, "note": note},
        {
            "what": "conv modules, by name",
            "ours": count(modules),
            "theirs": count(c.conv_macs),
            "ok": conv_ok,
            "note": conv_note,
        },
        {
            "what": f"{c.tool} total, incl. its norm/pool estimates",
            "ours": "",
            "theirs": count(c.macs),
            "ok": None,
            "note": "",
        },
    ]
    out["unsupported"] = [f"{op} ×{n}" for op, n in sorted(c.unsupported_ops.items())]
    out["seconds"] = f"{c.seconds:.2f} s" if c.seconds is not None else None
    return out
