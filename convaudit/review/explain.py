"""Why a budget is exceeded: the layers responsible, costliest first, and what converting them would save.

Savings are of the form each candidate's recommendation names (convert: its order and m; keep: the form
its reason weighs, so the reader sees what keeping it costs), from the m-linear costs already in the
analysis; predicted times are the recommendation's figures at that m. Only the fewest costliest layers
whose conversion brings the figure within the limit are named (at most :data:`MAX_CULPRITS`), so the
explanation fits on one screen. Records only: no torch.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence

from convaudit.documents.check import Culprit
from convaudit.documents.records import Analysis, ConvLayer
from convaudit.review.budgets import Budget, candidate_seconds

__all__ = ["MAX_CULPRITS", "explain", "next_command"]

#: The most layers an explanation names per budget (``convaudit report`` lists every layer).
MAX_CULPRITS = 5


def explain(analysis: Analysis, budget: Budget, actual: float) -> tuple[tuple[Culprit, ...], float | None]:
    """(the layers responsible, costliest first, the figure once they are converted) for an exceeded budget."""
    total = analysis.totals.macs
    name = budget.name
    if name == "max-layer-macs":  # every conv over the limit; converting one replaces it by two smaller parts
        over = sorted((x for x in analysis.layers if x.macs > budget.limit), key=lambda x: -x.macs)
        found = tuple(Culprit.of_layer(x, total) for x in over[:MAX_CULPRITS])
        after = max((_layer_after(x, c) for x, c in zip(over, found, strict=False)), default=0.0)
        rest = max((x.macs for x in analysis.layers if x.macs <= budget.limit), default=0)
        return found, float(max(after, rest)) if len(over) <= MAX_CULPRITS else None
    key: Callable[[Culprit], float] = {
        "max-params": lambda c: c.params,
        "max-latency": lambda c: c.predicted_seconds or 0.0,
    }.get(name, lambda c: c.macs)
    ranked = sorted((Culprit.of_layer(x, total) for x in analysis.candidates if x.separable), key=key, reverse=True)
    chosen: list[Culprit] = []
    after = actual
    for culprit in ranked:
        if after <= budget.limit or len(chosen) == MAX_CULPRITS:
            break
        if _saving(name, culprit) <= 0 and name != "max-latency":
            continue
        chosen.append(culprit)
        after = _figure_after(analysis, name, chosen)
    return tuple(chosen), after


def _saving(name: str, c: Culprit) -> float:
    return {"max-params": c.params_saved, "max-latency": c.seconds_saved or 0.0}.get(name, c.macs_saved)


def _layer_after(layer: ConvLayer, c: Culprit) -> float:
    """MACs of the costlier part of the layer once converted (itself when it is kept as it is)."""
    if c.form is None or layer.separable is None:
        return float(layer.macs)
    cost = layer.separable.dw_pw if c.form.startswith("dw_pw") else layer.separable.pw_dw
    m = int(c.form.rpartition("=")[2])
    return max(cost.dw_macs, cost.pw_macs) * m / cost.multiplier


def _figure_after(analysis: Analysis, name: str, chosen: Sequence[Culprit]) -> float:
    """The budget's figure once ``chosen`` are converted (they stop being candidates)."""
    t = analysis.totals
    macs_saved = sum(c.macs_saved for c in chosen)
    if name == "max-macs":
        return float(t.macs - macs_saved)
    if name == "max-conv-macs":
        return float(t.conv_macs - macs_saved)
    if name == "max-params":
        return float(t.params - sum(c.params_saved for c in chosen))
    if name == "max-latency":
        return candidate_seconds(analysis) - sum(c.seconds_saved or 0.0 for c in chosen)
    remaining = t.candidate_macs - sum(c.macs for c in chosen)  # max-candidate-share
    return remaining / (t.macs - macs_saved) if t.macs - macs_saved > 0 else 0.0


def next_command(source: str | None, culprits: Sequence[Culprit]) -> str | None:
    """The command to run next: convert the layers recommended for conversion, else the full report."""
    if not source:
        return None
    convert = [c.name for c in culprits if c.action == "convert"]
    src = shlex.quote(source)
    if not convert:
        return f"convaudit report {src} -o report.html"
    include = " ".join(f"--include {shlex.quote(name)}" for name in dict.fromkeys(convert))
    return f"convaudit convert {src} {include} -o converted/"
