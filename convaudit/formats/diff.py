"""A model diff (``documents.diff.ModelDiff``) as text and JSON, and the formatting every diff format shares.

Deltas are signed (``+78.12 M``, ``−1,024``); percentages are of the base (``new`` when the base is 0). The
changed-layers table is ordered by the size of the MAC change, largest first, then by params.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from convaudit.documents.diff import LayerDiff, MetricDelta, ModelDiff
from convaudit.formats.common import count, shape, si
from convaudit.formats.latency import ms
from convaudit.formats.signature import text_signature

__all__ = [
    "change_text",
    "metric_text",
    "ordered_layers",
    "render_diff_json",
    "render_diff_text",
    "signed",
    "signed_percent",
    "status_counts",
    "summary_line",
    "value_text",
]

#: Fields that follow from the others: shown only when nothing else explains a change.
_DERIVED = ("macs", "params", "input_shape", "output_shape")
_SECONDS = ("predicted_seconds", "measured_seconds")


def signed(n: float | None, unit: str = "", *, exact: bool = False) -> str:
    """+78.12 M / −1,024 / 0 (exact: thousands separators instead of SI prefixes)."""
    if n is None:
        return "—"
    if n == 0:
        return "0"
    text = count(abs(int(n))) if exact else si(abs(n), unit)
    return ("+" if n > 0 else "−") + text


def signed_percent(base: float | None, head: float | None) -> str:
    """(head − base)/base as +12.50%; 'new' from 0, '—' when a side is missing."""
    if base is None or head is None:
        return "—"
    if base == 0:
        return "0%" if head == 0 else "new"
    rel = (head - base) / base
    return "0%" if rel == 0 else f"{'+' if rel > 0 else '−'}{abs(rel):.2%}"


def metric_text(row: MetricDelta, value: float | None) -> str:
    """A total as reports show it: times in ms, counts with SI prefixes (exact counts below 10,000)."""
    if value is None:
        return "—"
    if row.metric in _SECONDS:
        return ms(value)
    return count(int(value)) if abs(value) < 10_000 else si(value)


def delta_text(row: MetricDelta) -> str:
    """The signed change of a total, in its unit."""
    if row.delta is None:
        return "—"
    if row.metric in _SECONDS:
        return ("+" if row.delta > 0 else "−" if row.delta < 0 else "") + ms(abs(row.delta))
    return signed(row.delta, exact=abs(row.delta) < 10_000)


def value_text(value: object) -> str:
    """A changed value: shapes as 1×64×56×56, None as —, integers with separators."""
    if value is None:
        return "—"
    if isinstance(value, tuple):
        return shape(value)
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def change_text(layer: LayerDiff, limit: int = 3) -> str:
    """'added', 'removed', 'renamed', or the changed configuration ('out_channels 64→128, groups 1→2')."""
    if layer.status in ("added", "removed", "renamed"):
        return layer.status
    shown = [c for c in layer.changes if c.field not in _DERIVED] or list(layer.changes)
    text = ", ".join(f"{c.field} {value_text(c.base)}→{value_text(c.head)}" for c in shown[:limit])
    return text + (f" (+{len(shown) - limit} more)" if len(shown) > limit else "")


def ordered_layers(diff: ModelDiff) -> list[LayerDiff]:
    """The differing layers, largest MAC change first (then params, then name)."""
    return sorted(diff.layers, key=lambda x: (-abs(x.macs_delta), -abs(x.params_delta), x.name))


def status_counts(diff: ModelDiff) -> str:
    """'1 changed · 0 added · 0 removed · 0 renamed · 3 unchanged'."""
    parts = [f"{diff.count(s)} {s}" for s in ("changed", "added", "removed", "renamed")]
    return " · ".join([*parts, f"{diff.unchanged} unchanged"])


def summary_line(diff: ModelDiff, strong: str = "") -> str:
    """MACs and params with their change, then how many layers changed; ``strong`` wraps each change ("**")."""
    parts = []
    for key in ("macs", "params"):
        row = diff.total(key)
        if row is not None:
            change = f"{strong}{row.label} {signed_percent(row.base, row.head)}{strong}"
            parts.append(f"{change} ({metric_text(row, row.base)} → {metric_text(row, row.head)})")
    return " · ".join([*parts, status_counts(diff)])


def _side_text(diff: ModelDiff) -> list[str]:
    lines = []
    for label, side in (("base", diff.base), ("head", diff.head)):
        inputs = ", ".join(shape(s) for s in side.input_shapes)
        origin = "saved report" if side.from_report else "analysed now"
        lines.append(f"{label}: {side.source} ({side.model_class}, input {inputs}, {origin})")
    return lines


def render_diff_text(diff: ModelDiff) -> str:
    """Both sides, the totals with deltas, every differing layer and op, warnings; aligned columns."""
    lines = ["convaudit diff", *_side_text(diff), "", summary_line(diff), ""]
    rows = [("", "base", "head", "Δ", "Δ%")]
    rows += [
        (t.label, metric_text(t, t.base), metric_text(t, t.head), delta_text(t), signed_percent(t.base, t.head))
        for t in diff.totals
    ]
    lines += _table(rows, right=(1, 2, 3, 4))
    layers = ordered_layers(diff)
    if layers:
        lines += ["", "layers (largest MAC change first):"]
        table = [("layer", "status", "MACs base → head", "Δ MACs", "Δ params", "what changed")]
        table += [
            (
                x.name,
                x.status,
                f"{si(x.base_macs)} → {si(x.head_macs)}",
                signed(x.macs_delta),
                signed(x.params_delta, exact=True),
                change_text(x, limit=6),
            )
            for x in layers
        ]
        lines += _table(table, right=(3, 4))
    else:
        lines += ["", "no convolution differs"]
    if diff.ops:
        lines += ["", "other ops:"]
        lines += [
            f"  {o.op} ({o.category}): count {o.base_count}→{o.head_count}, "
            f"MACs {signed(o.head_macs - o.base_macs)}, params {signed(o.head_params - o.base_params, exact=True)}"
            for o in diff.ops
        ]
    lines += [f"warning: {w}" for w in diff.warnings]
    return "\n".join([*lines, "", text_signature()]) + "\n"


def _table(rows: Sequence[Sequence[str]], right: tuple[int, ...]) -> list[str]:
    """Columns padded to their widest cell (``right``: right-aligned), the last column left ragged."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [
            cell.rjust(widths[i]) if i in right else (cell if i == len(r) - 1 else cell.ljust(widths[i]))
            for i, cell in enumerate(r)
        ]
        out.append("  " + "  ".join(cells).rstrip())
    return out


def render_diff_json(diff: ModelDiff) -> str:
    """The diff's versioned JSON document, indented, newline-terminated."""
    return json.dumps(diff.to_dict(), indent=2, ensure_ascii=False) + "\n"
