"""The HTML report's data view: an Analysis turned into display strings and raw numbers for the template.

:func:`view_model` leaves no formatting to the template (``templates/report.html.j2``), which only lays
the view out; the per-layer tables are built in :mod:`convaudit.formats.html_table`.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from convaudit.documents.records import Analysis, ConvLayer
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
from convaudit.formats.html_latency import latency_view
from convaudit.formats.html_table import GROUPS, columns, layer_row, op_row
from convaudit.formats.templating import script_json

__all__ = ["view_model"]

# Chart geometry (SVG user units; the SVG scales to the page width).
_CHART_W, _CHART_H, _CHART_LEFT, _CHART_TOP, _CHART_BOTTOM = 1240, 250, 70, 14, 30


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
        "cards": _cards(analysis),
        "predicted": _predicted(analysis),
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
        "chart": _chart(layers) if layers else None,
        "graph": _graph_meta(analysis),
        "ops": [op_row(op) for op in analysis.ops],
        "latency": latency_view(analysis),
        "timing": _timing(analysis) if analysis.measurement is None else None,  # the 1.2 section, 1.2 documents
        "environment": sorted(analysis.environment.items()),
        "schema_version": analysis.schema_version,
        "data_json": script_json(_graph_data(analysis)),
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


def _predicted(a: Analysis) -> dict[str, str | None]:
    """Totals after converting every candidate depthwise→pointwise (m = 1): a prediction from shapes."""
    t = a.totals
    return {
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


def _nice_step(top: float, ticks: int = 4) -> float:
    """A 1/2/5×10^k step giving about ``ticks`` gridlines up to ``top``."""
    raw = top / ticks
    mag = 10 ** math.floor(math.log10(raw))
    return next(s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw)


def _chart(layers: tuple[ConvLayer, ...]) -> dict[str, Any]:
    """Bar geometry for MACs per conv before and after DW→PW (m = 1), in execution order."""
    n = len(layers)
    width = max(_CHART_W, _CHART_LEFT + 10 + 2 * n)
    plot_w, plot_h = width - _CHART_LEFT - 10, _CHART_H - _CHART_TOP - _CHART_BOTTOM
    top = max(layer.macs for layer in layers) or 1
    step = _nice_step(top)
    ymax = step * math.ceil(top / step)
    y = lambda v: _CHART_TOP + plot_h * (1 - v / ymax)  # noqa: E731
    slot = plot_w / n
    bars = []
    for i, layer in enumerate(layers):
        after = layer.separable.dw_pw.macs if layer.separable else layer.macs
        w = min(slot * 0.76, 56)
        x = _CHART_LEFT + i * slot + (slot - w) / 2
        tip = f"#{i + 1} {layer.name}: {count(layer.macs)} MACs"
        tip += (
            f" → {count(after)} predicted (DW→PW, m = 1)"
            if layer.separable
            else f" (not a candidate: {layer.skip_reason})"
        )
        bars.append(
            {
                "x": round(x, 2),
                "w": round(max(w, 0.8), 2),
                "href": f"#layer-{i + 1}",
                "title": tip,
                "y0": round(y(layer.macs), 2),
                "h0": round(_CHART_TOP + plot_h - y(layer.macs), 2),
                "y1": round(y(after), 2),
                "h1": round(_CHART_TOP + plot_h - y(after), 2),
                "candidate": layer.separable is not None,
            }
        )
    every = max(1, math.ceil(n / 24))
    every = next(s for s in (1, 2, 5, 10, 20, 25, 50, 100, 200, 500, 1000, every) if s >= every)
    ticks = [1] + [k for k in range(every, n + 1, every) if k != 1]
    return {
        "width": width,
        "wide": width > _CHART_W,
        "height": _CHART_H,
        "left": _CHART_LEFT,
        "right": width - 10,
        "base": _CHART_TOP + plot_h,
        "bars": bars,
        "yticks": [{"y": round(y(v), 2), "label": si(v).replace(".00 ", " ")} for v in _frange(0, ymax, step)],
        "xticks": [{"x": round(_CHART_LEFT + (k - 0.5) * slot, 2), "label": str(k)} for k in ticks],
    }


def _frange(start: float, stop: float, step: float) -> list[float]:
    """start, start + step, … stop (inclusive), without float drift in the count."""
    return [start + k * step for k in range(round((stop - start) / step) + 1)]


def _graph_meta(a: Analysis) -> dict[str, Any] | None:
    """What the template says about the graph view (the drawing itself is done by the page's JS)."""
    g = a.graph
    if g is None:
        return None
    depth = max((node.depth for node in g.nodes), default=0)
    return {"nodes": len(g.nodes), "edges": len(g.edges), "depth": depth + 1, "truncated": g.truncated}


def _graph_data(a: Analysis) -> dict[str, Any]:
    """Compact arrays for the page's JS: nodes, edges by node index, and conv rows by table index."""
    index = {layer.name: i for i, layer in enumerate(a.layers)}
    data: dict[str, Any] = {
        "layers": [
            [
                layer.name,
                layer.kind,
                int(layer.candidate),
                layer.macs,
                layer.separable.dw_pw.macs if layer.separable else layer.macs,
            ]
            for layer in a.layers
        ]
    }
    g = a.graph
    if g is not None:
        ids = {node.id: i for i, node in enumerate(g.nodes)}
        data["nodes"] = [
            [n.id, n.label, n.op, n.macs, index.get(n.conv, -1) if n.conv else -1, n.depth, n.lane] for n in g.nodes
        ]
        data["edges"] = [[ids[s], ids[d]] for s, d in g.edges if s in ids and d in ids]
        data["truncated"] = g.truncated
    return data
