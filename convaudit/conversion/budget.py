"""Choosing one option per layer under a MAC budget for the least summed error: a multiple-choice knapsack.

Pure planning over records and measured figures (a :class:`Sensitivity` table: each layer's options, each
with the output error it causes alone), no model: :func:`least_error_plan` solves it by dynamic programming
over the MAC budget cut into ``BUDGET_STEPS`` (each option's MACs rounded *up*, so the plan never exceeds the
budget), and returns a :class:`~convaudit.conversion.planning.Plan` like ``plan_conversion``'s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from convaudit.conversion.planning import Choice, Plan, assemble_plan
from convaudit.documents.records import Analysis
from convaudit.errors import UsageError

__all__ = ["BUDGET_STEPS", "Sensitivity", "cheapest_macs", "least_error_plan"]

BUDGET_STEPS = 2000  #: resolution of the knapsack over the MAC budget (each option's MACs rounded up)


@dataclass(frozen=True)
class Sensitivity:
    """Each candidate's options, with the output error when it alone is converted so."""

    options: dict[str, tuple[tuple[Choice, float], ...]]  #: layer name → ((choice, output error alone), ...)
    skipped: tuple[tuple[str, str], ...]  #: (layer name, reason), as a Plan has them
    #: (layer, order, m) whose error is interpolated between measured neighbours (geometrically), not measured
    estimated: frozenset[tuple[str, str, int]]
    batches: int  #: calibration batches measured on
    samples: int
    seconds: float


def cheapest_macs(analysis: Analysis, table: Sensitivity) -> int:
    """The model's MACs with every measured layer at its cheapest option."""
    saved = sum(opts[0][0].macs_before - min(c.macs_after for c, _ in opts) for opts in table.options.values())
    return analysis.totals.macs - saved


def least_error_plan(analysis: Analysis, table: Sensitivity, target: float, squared: bool) -> Plan:
    """Per layer one of its options or none, the model's MACs ≤ ``target`` × today's, least summed error.

    The errors are each option's alone (``squared``: summed as squares, as independent errors add).

    Raises:
        UsageError: even every layer at its cheapest option exceeds the budget.
    """
    names = list(table.options)
    budget = target * analysis.totals.macs - (analysis.totals.macs - _pool_macs(table))
    cheapest = cheapest_macs(analysis, table)
    if cheapest > target * analysis.totals.macs:
        raise UsageError(
            f"--target-macs {target}: cannot be met; converting every candidate at its cheapest gives "
            f"{cheapest:,} MACs ({cheapest / analysis.totals.macs:.3f}× of {analysis.totals.macs:,})"
        )
    items: list[list[tuple[int, float, Choice | None]]] = []  # per layer (macs, cost, choice); None: keep it
    for name in names:
        opts = table.options[name]
        macs_before = opts[0][0].macs_before
        items.append([(macs_before, 0.0, None)] + [(c.macs_after, e * e if squared else e, c) for c, e in opts])
    picked = _solve(items, budget)
    if picked is None:  # the rounding of the MAC grid lost the only feasible corner: every layer at its cheapest
        picked = [min(range(1, len(it)), key=lambda j: it[j][0]) for it in items]
    choices, skipped = [], list(table.skipped)
    for name, it, j in zip(names, items, picked, strict=True):
        choice = it[j][2]
        if choice is None:
            skipped.append(
                (name, f"kept as is: within --target-macs {target:g}, converting it costs more output error")
            )
        else:
            alone = next(e for c, e in table.options[name] if c is choice)
            how = "about " if (choice.name, str(choice.order), choice.rank) in table.estimated else ""
            note = f"output error {how}{alone:.2g} when converted alone (--select sensitivity)"
            choices.append(replace(choice, note=note))
    order_of = {layer.name: i for i, layer in enumerate(analysis.layers)}
    choices.sort(key=lambda c: order_of[c.name])
    plan = assemble_plan(analysis, choices, skipped)
    note = f"--target-macs {target:g}: {plan.macs_after:,} MACs predicted ({plan.macs_after / plan.macs_before:.3f}×)"
    return replace(plan, notes=(note,))


def _solve(items: list[list[tuple[int, float, Choice | None]]], budget: float) -> list[int] | None:
    """Multiple-choice knapsack: index of one (macs, cost, _) per item, Σ macs ≤ budget, least Σ cost."""
    if budget <= 0:
        return None
    steps = BUDGET_STEPS
    unit = budget / steps
    total_macs = max(sum(it[0][0] for it in items), 1)
    inf = torch.tensor(float("inf"), dtype=torch.float64)
    best = torch.zeros(steps + 1, dtype=torch.float64)  # best[c]: least cost within c budget units
    picks, weights = [], []
    for it in items:
        w = [math.ceil(macs / unit - 1e-9) for macs, _, _ in it]
        new = torch.full((steps + 1,), math.inf, dtype=torch.float64)
        arg = torch.full((steps + 1,), -1, dtype=torch.long)
        for j, ((macs, cost, _), wj) in enumerate(zip(it, w, strict=True)):
            if wj > steps:
                continue
            cand = torch.full((steps + 1,), math.inf, dtype=torch.float64)
            # a tiny MAC term breaks ties between equally harmless options toward fewer MACs
            cand[wj:] = best[: steps + 1 - wj] + cost + 1e-12 * macs / total_macs
            better = cand < new
            new, arg = torch.where(better, cand, new), torch.where(better, j, arg)
        best = new
        picks.append(arg)
        weights.append(w)
    if bool(best[steps] == inf):
        return None
    chosen, c = [], steps
    for arg, w in zip(reversed(picks), reversed(weights), strict=True):
        j = int(arg[c])
        chosen.append(j)
        c -= w[j]
    return chosen[::-1]


def _pool_macs(table: Sensitivity) -> int:
    return sum(opts[0][0].macs_before for opts in table.options.values())
