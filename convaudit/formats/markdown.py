"""Markdown: a summary sized for a pull-request comment (GitHub-flavoured tables).

Every name from the model is escaped: inside tables ``|`` cannot split a cell, and no backtick,
bracket or HTML in a module name can open a code span, a link or a tag.
"""

from __future__ import annotations

import os
import re
from collections import Counter

from convaudit.documents.records import Analysis, ConvLayer, Separable
from convaudit.formats.cautions import LEGEND, LOW, LOW_ENERGY, layer_marks
from convaudit.formats.common import (
    costliest,
    count,
    kept_energy,
    kernel,
    percent,
    plural,
    ratio,
    shape,
    si,
    summary_lines,
    weights_text,
    where,
)
from convaudit.formats.latency import COLUMNS, cells, latency_lines, latency_rows, profile_text
from convaudit.formats.signature import markdown_signature
from convaudit.formats.tree import OWN_OPS, tree_rows
from convaudit.formats.verdict import Verdict, verdict

__all__ = ["md", "md_code", "render_markdown"]

TOP = 10
_SPECIAL = re.compile(r"([\\`*_\[\]|~])")  # enough to stop emphasis, code spans, links and table cells


def md(text: object) -> str:
    """Plain Markdown text: HTML-escaped, Markdown punctuation backslash-escaped, one line."""
    s = " ".join(str(text).split())
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _SPECIAL.sub(r"\\\1", s)


def md_code(text: object, table: bool = True) -> str:
    """A code span (in a table, ``|`` escaped as GFM requires), or escaped text if it holds a backtick."""
    s = " ".join(str(text).split())
    if "`" in s or not s or (not table and "|" in s):
        return md(s)
    return "`" + (s.replace("|", "\\|") if table else s) + "`"


def render_markdown(analysis: Analysis) -> str:
    """The verdict, headline totals, predicted savings, the costliest candidates, skips, cross-check, gaps."""
    a, v = analysis, verdict(analysis)
    inputs = ", ".join(shape(s) for s in a.input_shapes)
    lines = [
        f"### convaudit: {md(a.model)}",
        "",
        f"{md_code(a.model_class, table=False)} · input {inputs} · traced with {md(a.trace_path)} in {md(a.mode)} mode"
        f" · weights {md(weights_text(a.weights, a.weights_source))}",
    ]
    lines += ["", *_verdict(v)]
    if a.trace_note:
        lines += ["", f"> **Trace:** {md(a.trace_note)}"]
    lines += ["", *_headline(a, v)]
    if a.layers:
        lines += ["", *_top(a), *_recommendations(a), *_skipped(a)]
    lines += ["", *_tree(a)] if a.modules else []
    lines += ["", *_coverage(a)]
    if a.warnings:
        lines += [""] + [f"> **Warning:** {md(w)}" for w in a.warnings]
    env = " · ".join(f"{md(k)} {md(v)}" for k, v in sorted(a.environment.items()) if k != "platform")
    lines += ["", f"<sub>{env} · schema {md(a.schema_version)}</sub>", markdown_signature()]  # --force knows it is ours
    return "\n".join(lines) + "\n"


def _verdict(v: Verdict) -> list[str]:
    """What the numbers mean, the next command, the cautions with their markers, and the legend."""
    command = md_code(v.command, table=False) if v.command else "nothing to run"
    lines = [f"**Verdict:** {md(v.headline)}\\", f"**Next:** {command} — {md(v.command_note)}"]
    if v.cautions:  # a backslash ends a line inside the paragraph (GFM hard line break)
        lines += ["", *(f"- **{md(c.marker)}** {md(c.text)}" for c in v.cautions)]
        lines += ["", "<sub>Legend: " + " · ".join(f"**{md(m)}** {md(LEGEND[m])}" for m in v.markers) + "</sub>"]
    return lines


def _headline(a: Analysis, v: Verdict) -> list[str]:
    """Totals table; the converted row is labelled as a prediction, a saving only when the verdict is to convert."""
    t = a.totals
    if not a.layers:
        return [
            "**This model has no convolutions**: there is nothing to rewrite as depthwise-separable.",
            "",
            f"params {count(t.params)} · MACs {count(t.macs)} ({si(t.macs)}; FLOPs = 2·MACs = {si(t.flops)})",
        ]
    cand_share = percent(t.candidate_macs / t.macs) if t.macs else "—"
    return [
        "| | params | MACs | share of MACs |",
        "|---|---:|---:|---:|",
        f"| model | {count(t.params)} | {count(t.macs)} ({si(t.macs)}) | 100% |",
        f"| {plural(len(a.layers), 'convolution')} | {count(t.conv_params)} | {count(t.conv_macs)} "
        f"| {percent(t.conv_macs_share)} |",
        f"| {plural(t.candidates, 'candidate')} | {count(t.candidate_params)} | {count(t.candidate_macs)} "
        f"| {cand_share} |",
        "| **predicted** after converting all candidates (DW→PW, m = 1) "
        f"| {count(t.params_after)} ({ratio(t.params_after_ratio)}) "
        f"| {count(t.macs_after)} ({ratio(t.macs_after_ratio)}) | |",
        "",
        f"MACs = multiply-accumulates; FLOPs = 2·MACs = {si(t.flops)} for the model.",
        "",
        _saving(a, v),
    ]


def _saving(a: Analysis, v: Verdict) -> str:
    """The all-candidates m = 1 prediction: bold as a saving only when the verdict is to convert, else plain."""
    t = a.totals
    figures = (
        f"{si(t.macs - t.macs_after)} fewer MACs ({percent(1 - t.macs_after_ratio)}) and "
        f"{si(t.params - t.params_after)} fewer params"
    )
    basis = " — a prediction from shapes (depthwise→pointwise, channel multiplier m = 1), not a measurement."
    if v.tone == "good":
        return f"**Predicted saving: {figures}**{basis}{_energy_note(a)}"
    return f"If every candidate were converted at m = 1: {figures}{basis}{_energy_note(a)} See the verdict above."


def _energy_note(a: Analysis) -> str:
    """How faithful the m = 1 forms are, from the weights (empty when there were none to read)."""
    kept = kept_energy(a)
    if kept is None:
        return ""
    mark = f"**{md(LOW)}** " if kept < LOW_ENERGY else ""
    return f" {mark}At m = 1 the candidates keep {percent(kept)} of their weight energy (MAC-weighted)."


def _top(a: Analysis) -> list[str]:
    """The candidates whose rewrite would save the most MACs."""
    top = costliest(a, TOP)
    if not top:
        return ["No candidates: no convolution here would get cheaper as depthwise→pointwise."]
    lines = [
        f"**Top {plural(len(top), 'candidate')}** by predicted MAC savings (of {a.totals.candidates}):",
        "",
        "| layer | source | kernel | in → out | MACs | predicted DW→PW MACs | × | params → predicted | energy kept "
        "| caution |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    marks = layer_marks(a)
    lines += [
        _top_row(layer, layer.separable, marks.get(layer.name, "")) for layer in top if layer.separable is not None
    ]
    lines += [
        "",
        "Energy kept: the share of the layer's weight energy the m = 1 form keeps (100% = exact; — = no weights);"
        " caution: the markers of the legend above.",
    ]
    return lines


def _top_row(layer: ConvLayer, sep: Separable, marks: str) -> str:
    io = f"{shape(layer.input_shape)} → {shape(layer.output_shape)}"
    return (
        f"| {md_code(layer.name)} | {md_code(_location(layer.source)) if layer.source else ''} "
        f"| {kernel(layer)} | {io} "
        f"| {si(layer.macs)} | {si(sep.dw_pw.macs)} | {ratio(sep.dw_pw.macs_ratio)} "
        f"| {count(layer.params)} → {count(sep.dw_pw.params)} "
        f"| {f'{layer.separability.dw_pw[0]:.0%}' if layer.separability and layer.separability.dw_pw else '—'} "
        f"| {' '.join(f'**{md(m)}**' for m in marks)} |"
    )


def _recommendations(a: Analysis) -> list[str]:
    """Per candidate: convert or keep, with MAC, bytes, predicted and measured time ratios and energy side by side."""
    table = [_recommendation_row(cells(r)) for r in latency_rows(a)]
    if not table:
        return []
    numeric = ("macs", "bytes", "predicted", "measured", "energy")
    lines = [
        "",
        f"**Recommendations** — predicted times from the device profile ({md(profile_text(a))}):",
        "",
        "| " + " | ".join(heading for _, heading in COLUMNS) + " |",
        "|" + "|".join("---:" if key in numeric else "---" for key, _ in COLUMNS) + "|",
        *table[:TOP],
    ]
    if len(table) > TOP:
        lines.append(f"| … {len(table) - TOP} more (see the HTML or JSON report) |" + " |" * (len(COLUMNS) - 1))
    lines += ["", *(f"- {md(line)}" for line in latency_lines(a))]
    return lines


def _recommendation_row(c: dict[str, str]) -> str:
    """One table row from ``formats.latency.cells``: names as code, a conversion in bold, 'unreliable' in bold."""
    shown = {
        **c,
        "name": md_code(c["name"]),
        "action": "**convert**" if c["action"] == "convert" else "keep",
        "form": md_code(c["form"]),
        "measured": md(c["measured"]).replace(" unreliable", " **unreliable**"),
        "reason": md(c["reason"]),
    }
    return "| " + " | ".join(shown[key] for key, _ in COLUMNS) + " |"


def _location(source: str) -> str:
    """Relative file:line under the working directory; otherwise only the file name and line."""
    shown = where(source)
    path = shown.rpartition(":")[0]
    return os.path.basename(path) + shown[len(path) :] if os.path.isabs(path) else shown


def _skipped(a: Analysis) -> list[str]:
    """Counts of non-candidate convs by reason."""
    reasons = Counter(layer.skip_reason or "not a candidate" for layer in a.layers if not layer.candidate)
    if not reasons:
        return []
    n = sum(reasons.values())
    items = "; ".join(f"{md(reason)} ({k})" for reason, k in reasons.most_common())
    return ["", f"**Not candidates ({n}):** {items}."]


def _coverage(a: Analysis) -> list[str]:
    """The cross-check line and the ops that ran without a cost rule."""
    check = next((line for line in summary_lines(a) if line.startswith("cross-check")), None)
    if check:
        head, _, rest = check.partition(": ")
        lines = [f"**{md(head[:1].upper() + head[1:])}:** {md(rest)}"]
    else:
        lines = ["**Cross-check:** not run."]
    if a.uncosted_ops:
        ops = ", ".join(md_code(op, table=False) for op in a.uncosted_ops)
        lines += ["", f"**Not costed ({len(a.uncosted_ops)})**, their MACs are not in the totals: {ops}"]
    else:
        lines += ["", "Every op that ran has a cost rule."]
    return lines


def _tree(a: Analysis) -> list[str]:
    """The module tree to the analysis's depth, with subtotals, shares and the totals row (formats/tree.py)."""
    rows = tree_rows(a)
    deepest = max(n.depth for n in a.modules)
    more = f"; deeper modules fold into their row (<code>--depth {deepest}</code> shows all {deepest} levels)"
    lines = [
        f"<details><summary><b>Modules</b> (depth ≤ {a.tree_depth}{more if deepest > a.tree_depth else ''})</summary>",
        "",
        "| module | type | params | MACs | share | output | DW→PW m=1 | × | convs |",
        "|---|---|---:|---:|---:|---|---:|---:|---|",
    ]
    for r in rows:
        label = "**total**" if r.total else ("&emsp;" * (r.depth - 1) + (md(OWN_OPS) if r.own else md_code(r.label)))
        after = si(r.after_macs) if r.after_macs is not None else ("—" if r.action else "")
        lines.append(
            f"| {label} | {md(r.type)} | {count(r.params)} | {si(r.macs) if r.macs else '0'} | {r.share:.1%} "
            f"| {r.output} | {after} | {ratio(r.after_ratio) if r.after_ratio is not None else ''} | {md(r.action)} |"
        )
    return [*lines, "", "</details>"]
