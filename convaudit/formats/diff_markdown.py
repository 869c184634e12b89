"""A model diff as Markdown for a pull-request comment: a summary line, the totals, the changed layers.

The first :data:`TOP` layers (largest MAC change first) form a table; the rest go into a collapsible
``<details>`` block. The whole comment stays under :data:`BUDGET` UTF-8 bytes, well inside GitHub's 65,536
characters per comment: rows that do not fit are counted ("and N more not shown") instead of being cut mid-row.
Every name from a model is escaped (``formats.markdown.md``) and long names are shortened.
"""

from __future__ import annotations

from convaudit.documents.diff import LayerDiff, ModelDiff
from convaudit.formats.common import si
from convaudit.formats.diff import (
    change_text,
    delta_text,
    metric_text,
    ordered_layers,
    signed,
    signed_percent,
    summary_line,
)
from convaudit.formats.markdown import md, md_code
from convaudit.formats.signature import markdown_signature

__all__ = ["BUDGET", "COMMENT_LIMIT", "TOP", "render_diff_markdown"]

TOP = 20  #: changed layers in the visible table; the rest are in <details>
COMMENT_LIMIT = 65_536  #: GitHub's limit on one comment's body, in characters
BUDGET = 60_000  #: what this renderer allows itself, in UTF-8 bytes (≥ characters)
_NAME_CHARS = 120  #: longer names are shortened in the middle
_HEADER = [
    "| layer | status | MACs base → head | Δ MACs | Δ params | what changed |",
    "|---|---|---:|---:|---:|---|",
]
#: A comment tool can find (and update) the comment by this first line.
MARKER = "<!-- convaudit-diff -->"


def _short(text: str, limit: int = _NAME_CHARS) -> str:
    return text if len(text) <= limit else text[: limit // 2 - 1] + "…" + text[-(limit // 2) :]


def _row(layer: LayerDiff) -> str:
    cells = [
        md_code(_short(layer.name)),
        md(layer.status),
        f"{si(layer.base_macs)} → {si(layer.head_macs)}",
        signed(layer.macs_delta),
        signed(layer.params_delta, exact=True),
        md(_short(change_text(layer), 200)),
    ]
    return "| " + " | ".join(cells) + " |"


def _size(lines: list[str]) -> int:
    return sum(len(line.encode("utf-8")) + 1 for line in lines)


def render_diff_markdown(diff: ModelDiff, budget: int = BUDGET) -> str:
    """The comment body: summary, totals table, the top changed layers, the rest collapsed, within ``budget``."""
    base, head = diff.base, diff.head
    lines = [
        MARKER,
        f"### convaudit diff: {md_code(_short(base.source), False)} → {md_code(_short(head.source), False)}",
        "",
        summary_line(diff, strong="**"),
        "",
    ]
    lines += [f"> **Warning:** {md(w)}" for w in diff.warnings] + ([""] if diff.warnings else [])
    lines += ["| | base | head | Δ | Δ% |", "|---|---:|---:|---:|---:|"]
    lines += [
        f"| {md(t.label)} | {metric_text(t, t.base)} | {metric_text(t, t.head)} | {delta_text(t)} | "
        f"{signed_percent(t.base, t.head)} |"
        for t in diff.totals
    ]
    tail = [*_ops(diff), "", markdown_signature()]
    layers = ordered_layers(diff)
    if not layers:
        return "\n".join([*lines, "", "No convolution differs.", *tail]) + "\n"
    room = budget - _size(lines) - _size(tail) - 400  # the headings and the "more" lines
    top, room = _fill(layers[:TOP], room)
    lines += ["", "#### Changed layers (largest MAC change first)", "", *_HEADER, *top]
    rest = layers[len(top) :]
    if len(top) == TOP and rest:
        shown, room = _fill(rest, room - _size(_HEADER))
        lines += ["", f"…and {len(rest)} more:" if shown else f"…and {len(rest)} more."]
        if shown:
            summary = f"{len(shown)} more layers" if len(shown) == len(rest) else f"{len(shown)} of {len(rest)} more"
            lines += ["", f"<details><summary>{summary}</summary>", "", *_HEADER, *shown, "", "</details>"]
        rest = rest[len(shown) :]
    if rest:
        lines += ["", f"_{len(rest)} more layers not shown (comment size limit); see the JSON or HTML diff._"]
    return "\n".join([*lines, *tail]) + "\n"


def _fill(layers: list[LayerDiff], room: int) -> tuple[list[str], int]:
    """As many rows as fit in ``room`` bytes, in order, and the room left."""
    rows = []
    for layer in layers:
        row = _row(layer)
        size = len(row.encode("utf-8")) + 1
        if size > room:
            break
        rows.append(row)
        room -= size
    return rows, room


def _ops(diff: ModelDiff, limit: int = 5) -> list[str]:
    """One line on the other ops that changed (the largest MAC changes)."""
    if not diff.ops:
        return []
    shown = [
        f"{md_code(_short(o.op, 60), table=False)} {o.base_count}→{o.head_count} "
        f"({signed(o.head_macs - o.base_macs)} MACs, {signed(o.head_params - o.base_params, exact=True)} params)"
        for o in diff.ops[:limit]
    ]
    more = f" and {len(diff.ops) - limit} more" if len(diff.ops) > limit else ""
    return ["", "Other ops: " + ", ".join(shown) + more + "."]
