"""HTML: one self-contained page (inline CSS and JS, no network) from a jinja2 template.

Data preparation lives here: :func:`view_model` turns an Analysis into plain dicts of display
strings and raw sort values; the layout lives in ``templates/report.html.j2`` (autoescaped), with
``report.css`` and ``report.js`` inlined verbatim. The graph view is drawn by the page's JS from
JSON embedded in a ``<script type="application/json">`` block, escaped so no name can close it.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from convaudit.documents.records import Analysis, ConvLayer, OpSummary
from convaudit.formats.common import (
    count,
    kept_energy,
    kernel,
    likely_contractions,
    percent,
    ratio,
    shape,
    si,
    timing_lines,
    weights_text,
    where,
)

__all__ = ["render_html", "script_json", "template_root", "view_model"]

TEMPLATE = "report.html.j2"
ASSETS = ("report.css", "report.js")
#: Source-tree fallback when the package ``convaudit.templates`` is not importable (uninstalled checkout).
SOURCE_TEMPLATES = Path(__file__).resolve().parents[2] / "templates"

# Chart geometry (SVG user units; the SVG scales to the page width).
_CHART_W, _CHART_H, _CHART_LEFT, _CHART_TOP, _CHART_BOTTOM = 1240, 250, 70, 14, 30


def render_html(analysis: Analysis, *, templates: Any = None) -> str:
    """The report as one HTML document (no external resources).

    Args:
        templates: a templates directory to use instead of :func:`template_root` (for tests).
    """
    env = _environment(template_root() if templates is None else templates)
    return env.get_template(TEMPLATE).render(view_model(analysis))


def template_root() -> Any:
    """The templates directory: the installed ``convaudit.templates`` package, else the source tree."""
    try:
        root = importlib.resources.files("convaudit.templates")
        if root.joinpath(TEMPLATE).is_file():
            return root
    except (ModuleNotFoundError, TypeError):  # not installed, or a namespace package without files
        pass
    return SOURCE_TEMPLATES


@functools.lru_cache(maxsize=4)
def _environment(root: Any) -> jinja2.Environment:
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


def view_model(analysis: Analysis) -> dict[str, Any]:
    """Everything the template shows, as display strings plus raw numbers (no formatting left to it)."""
    layers = analysis.layers
    columns, batch = _columns(layers)
    return {
        "title": f"convaudit · {analysis.model}",
        "model": analysis.model,
        "model_class": analysis.model_class,
        "inputs": [shape(s) for s in analysis.input_shapes],
        "trace_path": analysis.trace_path,
        "trace_note": analysis.trace_note,
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
        "columns": columns,
        "groups": _GROUPS,
        "rows": [_row(i, layer, batch) for i, layer in enumerate(layers)],
        "chart": _chart(layers) if layers else None,
        "graph": _graph_meta(analysis),
        "ops": [_op_row(op) for op in analysis.ops],
        "timing": _timing(analysis),
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


def _predicted(a: Analysis) -> dict[str, str]:
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


# Per-layer table columns: (label, unit, numeric, help). A label that is itself a unit (params, MACs,
# bytes, FLOP/byte) carries no separate unit line.
_COLUMNS = (
    ("#", "", True, "execution order"),
    ("layer", "", False, "module name, or fx node name for a functional conv; hover for its type"),
    ("kind", "", False, "standard · grouped · depthwise · pointwise · transposed · custom"),
    ("candidate / why not", "", False, "whether a depthwise-separable rewrite applies, and if not, why"),
    ("source", "file:line", False, "where the layer is defined"),
    ("input → output", "shape", False, "tensor shapes of the first call"),
    ("kernel /stride", "", False, "kernel size, and stride when not 1"),
    ("groups", "", True, "conv groups"),
    ("params", "", True, "weights + bias, counted once however many calls"),
    ("MACs", "", True, "multiply-accumulates, summed over calls (FLOPs = 2·MACs)"),
    ("bytes moved", "", True, "inputs + weights + outputs, summed over calls, at the tensors' dtypes"),
    ("FLOP per byte", "", True, "arithmetic intensity: FLOPs (2·MACs) per byte moved"),
    ("params", "", True, "predicted depthwise + pointwise params, channel multiplier m = 1"),
    ("MACs", "", True, "predicted depthwise + pointwise MACs, m = 1"),
    ("×\u00a0MACs", "", True, "predicted DW→PW MACs / original MACs"),
    (
        "energy",
        "%",
        True,
        "share of the weight energy the DW→PW form keeps at m = 1 (from the layer's weights; 100% = exact)",
    ),
    ("MACs", "", True, "predicted pointwise (at input resolution) then depthwise MACs; hover for the ratio"),
    ("energy", "%", True, "share of the weight energy the PW→DW form keeps at rank 1 (from the layer's weights)"),
    ("m", "", True, "channel multiplier at which DW→PW reproduces the conv exactly (per-channel SVD)"),
    ("MACs", "", True, "predicted DW→PW MACs at the exact multiplier m"),
)
#: Header groups over the columns above: (label, span, css class, tooltip); spans add up to len(_COLUMNS).
_GROUPS = (
    ("this convolution", 12, "", ""),
    ("DW→PW, m = 1", 4, "pred", "predicted: depthwise then pointwise, channel multiplier 1"),
    ("PW→DW", 2, "pred", "predicted: pointwise at input resolution, then depthwise with the conv's stride (BSConv-U)"),
    ("exact", 2, "pred", "predicted: depthwise→pointwise at the multiplier that reproduces the conv exactly"),
)


def _columns(layers: tuple[ConvLayer, ...]) -> tuple[list[dict[str, Any]], int | None]:
    """Column headers, and the batch size when every shape shares it (then shapes omit it)."""
    batches = {s[0] for layer in layers for s in (layer.input_shape, layer.output_shape) if len(s) > 1}
    all_batched = all(len(layer.input_shape) > 1 and len(layer.output_shape) > 1 for layer in layers)
    batch = batches.pop() if len(batches) == 1 and all_batched else None
    cols = [dict(zip(("label", "unit", "num", "help"), c)) for c in _COLUMNS]
    if batch is not None:
        cols[5]["unit"] = f"per sample, N = {batch}"
    return cols, batch


def _cell(text: str, sort: Any = None, title: str | None = None, cls: str = "") -> dict[str, Any]:
    """A table cell: shown text, raw sort value (``data-v``), tooltip, CSS class."""
    return {"text": text, "sort": "" if sort is None else sort, "title": title, "cls": cls}


def _row(i: int, layer: ConvLayer, batch: int | None) -> dict[str, Any]:
    """One table row: a cell per column, in ``_COLUMNS`` order."""
    sep = layer.separable
    src = where(layer.source)
    calls = f" · {layer.calls} calls" if layer.calls > 1 else ""
    reason = layer.skip_reason or "not a candidate"
    status = _cell("candidate", 1, None, "yes") if layer.candidate else _cell(reason, 0, reason, "no")
    ins, outs = (
        (layer.input_shape[1:], layer.output_shape[1:])
        if batch is not None
        else (layer.input_shape, layer.output_shape)
    )
    cells = [
        _cell(str(i + 1), i + 1),
        _cell(_short_name(layer.name), layer.name, f"{layer.name}: {layer.type} ({layer.op}){calls}", "name"),
        _cell(layer.kind, layer.kind),
        status,
        _cell(_file_line(src), src, src or None, "src"),
        _cell(
            f"{shape(ins)} → {shape(outs)}",
            math.prod(layer.output_shape),
            f"{shape(layer.input_shape)} → {shape(layer.output_shape)}",
        ),
        _cell(kernel(layer), math.prod(layer.kernel_size)),
        _cell(str(layer.groups), layer.groups),
        _cell(count(layer.params), layer.params),
        _cell(si(layer.macs), layer.macs, f"{count(layer.macs)} MACs{calls}"),
        _cell(si(layer.bytes, "B"), layer.bytes, f"{count(layer.bytes)} bytes"),
        _cell(f"{layer.arithmetic_intensity:.1f}", round(layer.arithmetic_intensity, 4)),
    ]
    if sep is None:
        cells += [_cell("—") for _ in range(8)]
    else:
        dp, pd, ex = sep.dw_pw, sep.pw_dw, sep.dw_pw_exact
        energy = layer.separability
        cells += [
            _cell(
                count(dp.params),
                dp.params,
                f"{count(dp.dw_params)} depthwise + {count(dp.pw_params)} pointwise = {ratio(dp.params_ratio)} the params",
            ),
            _cell(si(dp.macs), dp.macs, f"{count(dp.macs)} MACs = {dp.formula}"),
            _cell(ratio(dp.macs_ratio), round(dp.macs_ratio, 6), None, "good" if dp.macs_ratio < 0.5 else ""),
            _energy(energy.dw_pw if energy else None, "DW→PW"),
            _cell(si(pd.macs), pd.macs, f"{count(pd.macs)} MACs = {pd.formula}; {ratio(pd.macs_ratio)} the original"),
            _energy(energy.pw_dw if energy else None, "PW→DW"),
            _cell(str(ex.multiplier), ex.multiplier),
            _cell(
                si(ex.macs),
                ex.macs,
                f"{count(ex.macs)} MACs; {ratio(ex.macs_ratio)} the original",
                "worse" if ex.macs_ratio > 1 else "",
            ),
        ]
    return {"id": f"layer-{i + 1}", "candidate": layer.candidate, "cells": cells}


def _energy(shares: tuple[float, ...] | None, form: str) -> dict[str, Any]:
    """The weight energy kept at m = 1, with the multiplier that keeps 90% in the tooltip."""
    if not shares:
        return _cell("—", None, "no weights to measure (e.g. a meta-device or functional weight)")
    m90 = next((m for m, e in enumerate(shares, 1) if e >= 0.9), len(shares))
    tip = f"{form} keeps {shares[0]:.1%} of the weight energy at m = 1; 90% at m = {m90}; exact at m = {len(shares)}"
    return _cell(f"{shares[0]:.0%}", round(shares[0], 4), tip, "worse" if shares[0] < 0.5 else "")


def _short_name(name: str, budget: int = 30) -> str:
    """A long dotted name cut from the left, whole parts first: '…denseblock1.denselayer1.conv2'."""
    if len(name) <= budget:
        return name
    kept = ""
    for part in reversed(name.split(".")):
        candidate = f"{part}.{kept}" if kept else part
        if len(candidate) > budget - 1:
            break
        kept = candidate
    return "…" + (kept or name[-(budget - 1) :])


def _file_line(src: str) -> str:
    """The file name and line of a location (the full path is in the cell's tooltip)."""
    return src.replace("\\", "/").rsplit("/", 1)[-1]


def _op_row(op: OpSummary) -> list[dict[str, Any]]:
    """One row of the other-ops table."""
    return [
        _cell(op.op, op.op, None, "name"),
        _cell(op.category, op.category),
        _cell(count(op.count), op.count),
        _cell(si(op.macs) if op.macs else "0", op.macs, f"{count(op.macs)} MACs"),
        _cell(count(op.params), op.params),
    ]


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
    return [start + k * step for k in range(int(round((stop - start) / step)) + 1)]


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
