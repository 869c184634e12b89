"""The HTML report's tables: a row per conv and per other op, each cell a shown text and a raw sort value."""

from __future__ import annotations

import math
from typing import Any

from convaudit.documents.records import Analysis, ConvLayer, OpSummary
from convaudit.formats.common import count, cut_left, kernel, ratio, shape, si, where
from convaudit.formats.tree import OWN_OPS, tree_rows

__all__ = ["COLUMNS", "GROUPS", "columns", "layer_row", "module_view", "op_row"]


# Per-layer table columns: (label, unit, numeric, help). A label that is itself a unit (params, MACs,
# bytes, FLOP/byte) carries no separate unit line.
COLUMNS = (
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
#: Header groups over the columns above: (label, span, css class, tooltip); spans add up to len(COLUMNS).
GROUPS = (
    ("this convolution", 12, "", ""),
    ("DW→PW, m = 1", 4, "pred", "predicted: depthwise then pointwise, channel multiplier 1"),
    ("PW→DW", 2, "pred", "predicted: pointwise at input resolution, then depthwise with the conv's stride (BSConv-U)"),
    ("exact", 2, "pred", "predicted: depthwise→pointwise at the multiplier that reproduces the conv exactly"),
)


def columns(layers: tuple[ConvLayer, ...]) -> tuple[list[dict[str, Any]], int | None]:
    """Column headers, and the batch size when every shape shares it (then shapes omit it)."""
    batches = {s[0] for layer in layers for s in (layer.input_shape, layer.output_shape) if len(s) > 1}
    all_batched = all(len(layer.input_shape) > 1 and len(layer.output_shape) > 1 for layer in layers)
    batch = batches.pop() if len(batches) == 1 and all_batched else None
    cols = [dict(zip(("label", "unit", "num", "help"), c, strict=True)) for c in COLUMNS]
    if batch is not None:
        cols[5]["unit"] = f"per sample, N = {batch}"
    return cols, batch


def _cell(text: str, sort: Any = None, title: str | None = None, cls: str = "") -> dict[str, Any]:
    """A table cell: shown text, raw sort value (``data-v``), tooltip, CSS class."""
    return {"text": text, "sort": "" if sort is None else sort, "title": title, "cls": cls}


def layer_row(i: int, layer: ConvLayer, batch: int | None) -> dict[str, Any]:
    """One table row: a cell per column, in ``COLUMNS`` order."""
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
        _cell(cut_left(layer.name, 30), layer.name, f"{layer.name}: {layer.type} ({layer.op}){calls}", "name"),
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
                f"{count(dp.dw_params)} depthwise + {count(dp.pw_params)} pointwise"
                f" = {ratio(dp.params_ratio)} the params",
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


def _file_line(src: str) -> str:
    """The file name and line of a location (the full path is in the cell's tooltip)."""
    return src.replace("\\", "/").rsplit("/", 1)[-1]


def op_row(op: OpSummary) -> list[dict[str, Any]]:
    """One row of the other-ops table."""
    return [
        _cell(op.op, op.op, None, "name"),
        _cell(op.category, op.category),
        _cell(count(op.count), op.count),
        _cell(si(op.macs) if op.macs else "0", op.macs, f"{count(op.macs)} MACs"),
        _cell(count(op.params), op.params),
    ]


def module_view(analysis: Analysis) -> dict[str, Any] | None:
    """The whole module tree as a flat list of open / row / close items for nested ``<details>``: every depth,
    open down to the analysis's ``tree_depth`` (names are escaped by the template's autoescaping)."""
    if not analysis.modules:
        return None
    deepest = max(n.depth for n in analysis.modules)
    rows = tree_rows(analysis, deepest)
    items: list[dict[str, Any]] = []
    open_depths: list[int] = []
    for i, r in enumerate(rows):
        while open_depths and (r.total or open_depths[-1] >= r.depth):
            open_depths.pop()
            items.append({"kind": "close"})
        nxt = rows[i + 1] if i + 1 < len(rows) else None
        parent = not r.own and not r.total and nxt is not None and not nxt.total and nxt.depth > r.depth
        after = si(r.after_macs) if r.after_macs is not None else ("—" if r.action else "")
        title = f"{r.name or analysis.model}: {count(r.macs)} MACs, {count(r.params)} params"
        if r.conv is not None and r.conv.skip_reason:
            title += f"; not a candidate: {r.conv.skip_reason}"
        label = OWN_OPS if r.own else r.label
        items.append(
            {
                "kind": "open" if parent else "row",
                "open": r.depth < analysis.tree_depth,
                "depth": r.depth,
                "cells": [
                    label,
                    r.type,
                    count(r.params),
                    si(r.macs) if r.macs else "0",
                    f"{r.share:.1%}",
                    r.output,
                    after,
                    ratio(r.after_ratio) if r.after_ratio is not None else "",
                    r.action,
                ],
                "title": title,
                "cls": "total" if r.total else ("conv" if r.conv is not None else ("own" if r.own else "")),
            }
        )
        if parent:
            open_depths.append(r.depth)
    items += [{"kind": "close"} for _ in open_depths]
    return {"items": items, "depth": analysis.tree_depth, "deepest": deepest, "modules": len(analysis.modules) - 1}
