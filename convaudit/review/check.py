"""The pre-merge gate: a model's analysis against its budgets → a CheckResult (exit 3 when one is exceeded).

:func:`check_analysis` works on records alone; :func:`analyse_for_check` runs the analysis the way
``convaudit report`` does (weights read for the recommendations, no fvcore cross-check, no graph: a
gate stays fast) and is imported lazily, so importing this module does not import torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from convaudit.documents.check import BudgetResult, CheckResult
from convaudit.documents.records import Analysis
from convaudit.review.budgets import Budget
from convaudit.review.explain import explain, next_command

if TYPE_CHECKING:
    import torch.nn as nn

__all__ = ["analyse_for_check", "check_analysis"]


def check_analysis(
    analysis: Analysis,
    budgets: Sequence[Budget],
    *,
    source: str | None = None,
    config: str | None = None,
) -> CheckResult:
    """Every budget against the analysis; for each exceeded one the layers responsible and their savings.

    Args:
        source: the model as the user named it, for the next command (None: no command is suggested).
        config: the pyproject.toml the budgets came from, if any.
    """
    results = []
    profile = analysis.environment.get("latency profile")
    for budget in budgets:
        spec = budget.spec
        actual = spec.measure(analysis)
        exceeded = actual > budget.limit
        culprits, after = explain(analysis, budget, actual) if exceeded else ((), None)
        note = None
        if spec.unit == "seconds":
            about = (profile or "default profile").partition(":")[0]
            note = f"a prediction of the candidate convs' time ({about} device profile), not a measurement"
        results.append(
            BudgetResult(
                name=budget.name,
                metric=spec.metric,
                unit=spec.unit,
                actual=actual,
                limit=budget.limit,
                exceeded=exceeded,
                origin=budget.origin,
                culprits=culprits,
                after=after,
                note=note,
            )
        )
    responsible = [c for r in results for c in r.culprits]
    failed = any(r.exceeded for r in results)
    return CheckResult(
        model=analysis.model,
        model_class=analysis.model_class,
        input_shapes=analysis.input_shapes,
        budgets=tuple(results),
        macs=analysis.totals.macs,
        params=analysis.totals.params,
        next_command=next_command(source, responsible) if failed else None,
        config=config,
        warnings=analysis.warnings,
    )


def analyse_for_check(
    model: nn.Module,
    args: Any = None,
    kwargs: Mapping[str, Any] | None = None,
    *,
    source: str | None = None,
    leaf_types: tuple[type, ...] = (),
    train_mode: bool = False,
) -> Analysis:
    """The analysis a check reads: candidates with their separable costs, predicted times and recommendations."""
    from convaudit.analysis.engine import analyze
    from convaudit.options import AnalysisOptions

    options = AnalysisOptions(
        cross_check=False,
        graph=False,
        separability=True,
        source=source,
        leaf_types=leaf_types,
        train_mode=train_mode,
    )
    return analyze(model, args, kwargs, options=options)
