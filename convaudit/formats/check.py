"""``convaudit check`` rendered: the one-screen explanation (text) and the JSON document of a CheckResult.

The text names each exceeded budget with the figure against the limit, the layers responsible (costliest
first, where they are defined) and what converting them saves, then the command to run next. The pytest
plugin fails a test with exactly this text. Fits 100 columns.
"""

from __future__ import annotations

import json

from convaudit.documents.check import BudgetResult, CheckResult, Culprit
from convaudit.formats.common import shape, where
from convaudit.formats.signature import text_signature

__all__ = ["figure", "render_check_json", "render_check_text"]

#: Columns of a layer name in the table (longer names are cut in the middle).
_NAME_WIDTH = 28


def figure(value: float | None, unit: str) -> str:
    """4712345678 → '4.71G' (count), 0.0123 → '12.3 ms' (seconds), 0.255 → '25.5%' (share)."""
    if value is None:
        return "—"
    if unit == "seconds":
        return f"{value * 1e3:.3g} ms" if value < 1 else f"{value:.3g} s"
    if unit == "share":
        return f"{value:.1%}"
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{prefix}"
    return f"{value:.0f}"


def render_check_text(result: CheckResult) -> str:
    """The explanation: verdict, each budget (exceeded ones with their layers and savings), the next command."""
    inputs = ", ".join(shape(s) for s in result.input_shapes)
    failed = result.exceeded
    head = (
        f"FAILED: {len(failed)} of {len(result.budgets)} budgets exceeded"
        if failed
        else f"passed: {len(result.budgets)} of {len(result.budgets)} budgets met"
    )
    model_class = result.model_class.rpartition(".")[2]
    lines = [_fit(f"convaudit check {head} — {result.model} ({model_class}, input {inputs})")]
    if result.config:
        lines.append(_fit(f"budgets from {result.config} (a budget given as a flag or keyword overrides it)"))
    explained: set[str] = set()  # a layer's reason to keep it is given once, where it first appears
    for budget in result.budgets:
        lines += _budget_lines(budget, explained)
    if result.next_command:
        lines.append(f"next: {result.next_command}")
    lines.append(text_signature())  # marks a file as ours, for --force
    return "\n".join(lines) + "\n"


def _budget_lines(b: BudgetResult, explained: set[str]) -> list[str]:
    actual, limit = figure(b.actual, b.unit), figure(b.limit, b.unit)
    if not b.exceeded:
        return [_fit(f"  ok    {b.name}: {b.metric} {actual} ≤ {limit} ({b.origin})")]
    over = f", {b.actual / b.limit - 1:.0%} over" if b.limit and b.unit != "share" else ""
    lines = [_fit(f"  OVER  {b.name}: {b.metric} {actual} > {limit}{over} ({b.origin})")]
    if b.note:
        lines.append(_fit(f"{_INDENT}{b.note}"))
    if not b.culprits:
        lines.append(f"{_INDENT}no convertible conv is responsible: a separable rewrite cannot bring it down")
        return lines
    lines.append(
        f"{_INDENT}{'layers responsible, costliest first':<{_NAME_WIDTH + _PLACE_WIDTH + 1}}{'cost':>13}  saves"
    )
    for c in b.culprits:
        lines += _culprit_lines(c, b, explained)
    lines.append(_fit(_after_line(b)))
    return lines


_INDENT = " " * 8
_PLACE_WIDTH = 20


def _culprit_lines(c: Culprit, b: BudgetResult, explained: set[str]) -> list[str]:
    """The layer's row (name, where, cost, what converting it saves) and, when it is to be kept, why."""
    name = c.name if len(c.name) <= _NAME_WIDTH else f"{c.name[:12]}…{c.name[-(_NAME_WIDTH - 13) :]}"
    place = where(c.source).rpartition("/")[2] if c.source else ""
    cost = {
        "max-params": f"{figure(c.params, 'count')} params",
        "max-latency": figure(c.predicted_seconds, "seconds"),
    }.get(b.name, f"{figure(c.macs, 'count')} {c.share:>6.1%}")
    if c.form is None:
        saves = "nothing: not a candidate"
    elif b.name == "max-latency":
        saves = f"{figure(c.seconds_saved, 'seconds')} as {c.form}"
    elif b.name == "max-params":
        saves = f"{figure(c.params_saved, 'count')} params as {c.form}"
    else:
        saves = f"{figure(c.macs_saved, 'count')} MACs as {c.form}"
    rows = [_fit(f"{_INDENT}{name:<{_NAME_WIDTH}} {place:<{_PLACE_WIDTH}}{cost:>13}  {saves}")]
    if c.action != "convert" and c.name not in explained:
        rows.append(_fit(f"{_INDENT}  keep recommended: {c.reason}"))
    explained.add(c.name)
    return rows


def _after_line(b: BudgetResult) -> str:
    n = len(b.culprits)
    if b.after is None:
        return f"{_INDENT}more than {n} layers are over the limit: see --format json for all of them"
    layers = "this layer" if n == 1 else f"these {n} layers"
    if b.after >= b.actual:
        return f"{_INDENT}converting {layers} would not bring it down on this device: keep them, or change the model"
    after, limit = figure(b.after, b.unit), figure(b.limit, b.unit)
    verdict = f"within {limit}" if b.after <= b.limit else f"still over {limit}"
    return f"{_INDENT}converting {layers} brings it to {after}, {verdict}"


def _fit(line: str, width: int = 100) -> str:
    return line if len(line) <= width else line[: width - 1] + "…"


def render_check_json(result: CheckResult) -> str:
    """The CheckResult as JSON (schema ``CHECK_SCHEMA_VERSION``), keys in the records' field order."""
    return json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n"
