"""Plain text within 100 columns: the summary, the module tree, functional ops, recommendations; also the
short terminal summary of the CLI. Tables are aligned with column widths computed once from their cells."""

from __future__ import annotations

import textwrap

from convaudit.documents.records import Analysis
from convaudit.formats.cautions import layer_marks
from convaudit.formats.common import (
    costliest,
    count,
    kernel,
    ratio,
    si,
    summary_lines,
    where,
)
from convaudit.formats.latency import LatencyRow, latency_rows, profile_text
from convaudit.formats.signature import text_signature
from convaudit.formats.tree import OWN_OPS, action_of, batch_of, reason_label, tree_rows
from convaudit.formats.verdict import verdict_lines

__all__ = ["WIDTH", "middle", "render_text", "table", "terminal_summary", "wrap"]

#: Every line of the text report fits this many columns.
WIDTH = 100

_LEFT, _RIGHT = "<", ">"


def middle(text: str, width: int) -> str:
    """``text`` cut to ``width`` with … in the middle (both ends of a dotted name stay readable)."""
    if len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head) :]


def table(
    headers: list[str], rows: list[list[str]], align: str, shrink: tuple[int, ...], width: int = WIDTH
) -> list[str]:
    """Aligned lines: column widths computed once, from headers and cells; over ``width``, the columns in
    ``shrink`` (most shrinkable first) lose characters, their cells cut in the middle with …."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    over = sum(widths) + len(widths) - 1 - width
    for i in shrink:
        if over <= 0:
            break
        cut = min(over, widths[i] - max(len(headers[i]), 6))
        if cut > 0:
            widths[i] -= cut
            over -= cut

    def line(cells: list[str]) -> str:
        parts = [f"{middle(c, w):{a}{w}}" for c, w, a in zip(cells, widths, align, strict=True)]
        return " ".join(parts).rstrip()

    return [line(headers), "-" * min(width, sum(widths) + len(widths) - 1), *(line(r) for r in rows)]


def wrap(line: str, width: int = WIDTH, indent: str = "    ") -> list[str]:
    """A prose line over ``width`` as several, the rest indented; words are never split."""
    if len(line) <= width:
        return [line]
    lead = line[: len(line) - len(line.lstrip())]
    return textwrap.wrap(
        line, width, subsequent_indent=lead + indent, break_long_words=False, break_on_hyphens=False
    ) or [line]


def _si(n: int | None) -> str:
    return "—" if n is None else si(n)


def _tree_lines(analysis: Analysis) -> list[str]:
    """The module tree to ``tree_depth``, with subtotals and a totals row (formats/tree.py)."""
    rows = tree_rows(analysis)
    if not rows:
        return []
    deepest = max(n.depth for n in analysis.modules)
    batch = batch_of(analysis.modules)
    cells = []
    for r in rows:
        indent = "  " * (r.depth - 1) if r.depth > 1 else ""
        label = r.label  # its last name part: the rows above it name its ancestors
        cells.append(
            [
                indent + label,
                r.type,
                count(r.params),
                si(r.macs) if r.macs else "0",
                percent_short(r.share),
                r.output,
                _si(r.after_macs) if r.after_macs is not None or r.action else "",
                ratio(r.after_ratio) if r.after_ratio is not None else "",
                r.action,
            ]
        )
    headers = ["module", "type", "params", "MACs", "share", "output", "DW→PW m=1", "×", "convs"]
    lines = table(headers, cells, "<<>>><>><", (0, 1, 5, 8))
    lines.insert(len(lines) - 1, lines[1])  # a rule above the totals row
    shown = analysis.tree_depth
    fold = f"; deeper modules fold into their row (of {deepest} levels: --depth {deepest} shows all)"
    title = f"Modules, depth ≤ {shown}" + (fold if deepest > shown else "") + ":"
    legend = (
        f"output: {f'per sample (N = {batch})' if batch is not None else 'the first call'} · "
        "share: of the model's MACs · DW→PW m=1: predicted MACs after converting the row's candidates "
        f"(for a conv: its m = 1 form) · convs: candidates/convs inside, or the conv's action · {OWN_OPS}: "
        "its forward's own ops and parameters, outside its submodules"
    )
    return [*wrap(title), *lines, *wrap(legend)]


def percent_short(x: float) -> str:
    """0.0651 → '6.5%', 0 → '0%', a partial share under 0.05% → '<0.1%'."""
    if x == 0:
        return "0%"
    return f"{x:.1%}" if x >= 0.0005 else "<0.1%"


def _ops_lines(analysis: Analysis) -> list[str]:
    """Functional ops (not module calls) by category, with totals."""
    ops = analysis.other_ops
    if not ops:
        return []
    total = analysis.totals.macs or 1
    cells = [
        [o.category, count(o.calls), si(o.macs) if o.macs else "0", percent_short(o.macs / total), ", ".join(o.ops)]
        for o in ops
    ]
    calls, macs = sum(o.calls for o in ops), sum(o.macs for o in ops)
    cells.append(["total", count(calls), si(macs) if macs else "0", percent_short(macs / total), ""])
    lines = table(["functional ops", "calls", "MACs", "share", "ops"], cells, "<>>><", (4, 0))
    lines.insert(len(lines) - 1, lines[1])
    return ["Functional ops (not module calls; counted in the module they run in):", *lines]


def _reason_lines(analysis: Analysis) -> list[str]:
    """Why the convs that are not candidates are not, by reason with counts (the tree shows each one's label)."""
    reasons: dict[tuple[str, str], int] = {}
    for layer in analysis.layers:
        if not layer.candidate:
            key = (reason_label(layer), layer.skip_reason or "not a candidate")
            reasons[key] = reasons.get(key, 0) + 1
    if not reasons:
        return []
    n = sum(reasons.values())
    items = " · ".join(
        f"{label} = {reason} (×{k})" for (label, reason), k in sorted(reasons.items(), key=lambda kv: -kv[1])
    )
    return wrap(f"Not candidates ({n}): {items}")


def _latency_lines(rows: list[LatencyRow]) -> list[str]:
    """Per candidate: MAC, bytes, predicted and measured time ratios and energy; the reason beneath when long."""
    cells = []
    for r in rows:
        pred = f"{r.predicted_ratio:.2f}" if r.predicted_ratio is not None else "—"
        energy = f"{r.energy:.0%}" if r.energy is not None else "—"
        cells.append([r.name, r.action, r.form, f"{r.macs_ratio:.2f}", f"{r.bytes_ratio:.2f}", pred, energy])
    headers = ["conv", "action", "form", "MACs×", "bytes×", "pred.×", "energy"]
    lines = table(headers, cells, "<<<>>>>", (0,), WIDTH - 24)
    out = lines[:2]
    for line, r in zip(lines[2:], rows, strict=True):
        tail = "  ".join(t for t in (r.measured_text if r.measured_text != "—" else "", r.reason) if t)
        if len(line) + 2 + len(tail) <= WIDTH:
            out.append(f"{line}  {tail}")
        else:
            out += [line, *wrap("    " + tail)]
    return out


def render_text(analysis: Analysis) -> str:
    """Full text report: the verdict, the summary, the module tree, functional ops, recommendations."""
    lines = [*verdict_lines(analysis), "", *summary_lines(analysis), ""]
    if not analysis.layers:
        lines += ["No convolutions found.", ""]
    tree = _tree_lines(analysis)
    lines += [*tree, ""] if tree else [*_conv_lines(analysis), ""]  # a document before 1.4 has no tree
    for section in (_candidate_lines(analysis), _reason_lines(analysis), _ops_lines(analysis)):
        lines += [*section, ""] if section else []
    rows = latency_rows(analysis)
    if rows:
        lines += [*wrap(f"Recommendations (predicted: {profile_text(analysis)}):"), *_latency_lines(rows), ""]
    elif analysis.timing is not None:  # a 1.2 document: its measured times only
        lines += [f"{'measured time (one call)':<36} {'conv [ms]':>10} {'DW→PW [ms]':>11} {'speed-up':>9}"]
        for t in analysis.timing.layers:
            if t.seconds is None or t.seconds_dw_pw is None or t.speedup_measured is None:
                lines.append(f"{middle(t.name, 36):<36} not timed: {t.skipped or 'no time measured'}")
            else:
                lines.append(
                    f"{middle(t.name, 36):<36} {t.seconds * 1e3:>10.3f} {t.seconds_dw_pw * 1e3:>11.3f} "
                    f"{t.speedup_measured:>8.2f}×"
                )
        lines.append("")
    lines.append(text_signature())  # how --force knows this file is ours
    return "\n".join(out for line in lines for out in wrap(line)) + "\n"


def _candidate_lines(analysis: Analysis) -> list[str]:
    """Every candidate, however deep: its params and MACs beside its m = 1 form's (depthwise + pointwise)."""
    cands = [x for x in analysis.layers if x.candidate and x.separable is not None]
    cells = []
    for layer in cands:
        dp = layer.separable.dw_pw if layer.separable else None
        if dp is None:
            continue
        parts = f"{count(dp.dw_params)} + {count(dp.pw_params)} = {count(dp.params)}"
        cells.append(
            [layer.name, kernel(layer), count(layer.params), parts, si(layer.macs), si(dp.macs), ratio(dp.macs_ratio)]
        )
    if not cells:
        return []
    headers = ["candidate", "kernel", "params", "DW+PW params (m=1)", "MACs", "DW→PW", "×"]
    return ["Candidates (depthwise→pointwise at m = 1, predicted):", *table(headers, cells, "<<>>>>>", (0, 1))]


def _conv_lines(analysis: Analysis) -> list[str]:
    """One line per conv: for a document without the module tree (before schema 1.4)."""
    if not analysis.layers:
        return []
    cells = []
    for layer in analysis.layers:
        sep = layer.separable
        after = (si(sep.dw_pw.macs), ratio(sep.dw_pw.macs_ratio)) if sep else ("—", "")
        cells.append(
            [layer.name, layer.kind, kernel(layer), count(layer.params), si(layer.macs), *after, action_of(layer)]
        )
    headers = ["conv", "kind", "kernel", "params", "MACs", "DW→PW m=1", "×", "action"]
    return table(headers, cells, "<<<>>>><", (0, 2))


def terminal_summary(analysis: Analysis, n: int = 5) -> str:
    """A few lines for the terminal: the verdict, headline figures and the costliest candidates (marked)."""
    lines = [*verdict_lines(analysis), "", *summary_lines(analysis)]
    marks = layer_marks(analysis)
    top = costliest(analysis, n)
    if top:
        lines.append("costliest candidates (MACs saved by depthwise→pointwise, m=1; markers: see the legend):")
        for layer in top:
            sep = layer.separable
            if sep is None:
                continue
            loc = f"  [{where(layer.source)}]" if layer.source else ""
            rec = layer.recommendation
            advice = ""
            if rec is not None:  # a keep with its reason's head: "low separability", "slower on this device", ...
                keep = f" · keep ({rec.reason.split(':')[0]})"
                advice = f" · convert {rec.order} m={rec.m}" if rec.action == "convert" else keep
            energy = layer.separability.dw_pw[0] if layer.separability and layer.separability.dw_pw else None
            kept = f" · keeps {energy:.0%} energy" if energy is not None else ""
            lines.append(
                f" {marks.get(layer.name, ''):>2} {layer.name}: {count(layer.macs)} → {count(sep.dw_pw.macs)} MACs "
                f"({ratio(sep.dw_pw.macs_ratio)}), params {count(layer.params)} → {count(sep.dw_pw.params)}{kept}"
                f"{advice}{loc}"
            )
    return "\n".join(lines)
