"""Output-aware layer choice: what each candidate does to the final output, converted alone, at each m.

:func:`sensitivity_plan` (``--select sensitivity``) measures, on calibration batches, the model's output error
when one candidate alone is converted at one multiplier m (1, 2, 4, ... and the largest m that still saves
MACs; the m between are interpolated), then chooses per layer an m, or none, under ``target_macs`` for the
least output error: a multiple-choice knapsack over the MAC budget (:mod:`convaudit.conversion.budget`) on the
summed errors (squared: independent errors add so; and plain: correlated ones do). The plans it yields and
the energy-based plan at the same budget are then measured for real, converted together; the lowest error
wins (so the result is never worse than the default on the batches measured).

:func:`cheapest_plan` (``--max-output-error``) orders such plans by their MACs and bisects with the caller's
``evaluate(plan)`` (held-out error, after recovery when asked) for the cheapest that meets the bound.

Measurements run on one working copy of the model, in eval mode, each candidate swapped in and back out
(functional convs: a rewritten copy): the user's model is never changed. Errors are
:func:`convaudit.conversion.fidelity.compare_outputs`' relative error (the worst output tensor's).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch
import torch.nn as nn

from convaudit.analysis.adapters import is_conv_module
from convaudit.analysis.guard import untouched
from convaudit.analysis.rules.formulas import exact_multiplier
from convaudit.conversion.budget import Sensitivity, cheapest_macs, least_error_plan
from convaudit.conversion.fidelity import compare_outputs
from convaudit.conversion.layers import SeparableConv
from convaudit.conversion.planning import (
    Choice,
    Plan,
    candidate_pool,
    make_choice,
    plan_conversion,
)
from convaudit.conversion.rewrite import capture_conv_inputs, recalibrate_batchnorm, replace_module, rewrite
from convaudit.documents.records import Analysis, ConvLayer
from convaudit.errors import UnmeetableError, UsageError
from convaudit.options import ConversionOptions
from convaudit.sources.inputs import materialize, split_inputs
from convaudit.vocab import LAYER_ORDERS, Init, Order, Select

__all__ = [
    "LADDER_PLANS",
    "MAX_RUNGS",
    "MEASURE_BATCHES",
    "Sensitivity",
    "cheapest_plan",
    "measure_sensitivity",
    "plan_ladder",
    "sensitivity_plan",
]

MAX_RUNGS = 6  #: multipliers measured per layer and order: 1, 2, 4, ... and the largest that saves MACs
MEASURE_BATCHES = 4  #: calibration batches the measurements run on (the first ones)
LADDER_PLANS = 12  #: MAC budgets at which --max-output-error builds a candidate plan

Batch = tuple[tuple, dict]


def sensitivity_plan(
    model: nn.Module, analysis: Analysis, options: ConversionOptions, batches: Sequence[Any] | None
) -> Plan:
    """Layers and m under ``options.target_macs`` with the least final-output error on ``batches``.

    Args:
        analysis: of ``model`` (candidates and costs; with separability, the energy plan is compared too).
        batches: calibration batches (each a tensor, a tuple, or (args, kwargs)); at most ``MEASURE_BATCHES`` used.
    Raises:
        UsageError: no batches, no ``target_macs``, or a budget no conversion meets.
    """
    if options.target_macs is None:
        raise UsageError("--select sensitivity chooses under a MAC budget: give --target-macs (or --max-output-error)")
    probe = _Probe(model, batches, options)
    table = probe.measure(analysis)
    plans = [least_error_plan(analysis, table, options.target_macs, squared) for squared in (True, False)]
    energy = _energy_plan(analysis, options, table)
    errors = {_key(p): probe.error(p.choices) for p in [*plans, *([energy] if energy else [])]}
    best = min(plans, key=lambda p: (errors[_key(p)], p.macs_after))
    note = (
        f"--select sensitivity: {sum(len(v) for v in table.options.values()) - len(table.estimated)} single-layer "
        f"conversions measured on {table.samples} calibration samples ({table.seconds:.1f} s); output error of "
        f"the plan on them {errors[_key(best)]:.3g}"
    )
    if energy is not None:
        note += f" (energy-based choice: {errors[_key(energy)]:.3g})"
        if errors[_key(energy)] < errors[_key(best)]:
            best, note = energy, note + "; the energy-based plan measured lower, so it is used"
    return replace(best, notes=(*best.notes, note))


def _energy_plan(analysis: Analysis, options: ConversionOptions, table: Sensitivity) -> Plan | None:
    """The default (energy-based) plan at the same budget, to check against; None when it has no meaning."""
    if options.rank is not None or not _has_energies(analysis, table):
        return None
    try:
        return plan_conversion(analysis, replace(options, select=None))
    except UsageError:  # its budget rule differs (it ignores min_savings): then there is nothing to compare
        return None


def cheapest_plan(
    model: nn.Module,
    analysis: Analysis,
    options: ConversionOptions,
    batches: Sequence[Any] | None,
    evaluate: Callable[[Plan], float],
    max_error: float,
) -> Plan:
    """The plan with the fewest MACs whose ``evaluate(plan)`` (held-out error) is at most ``max_error``.

    Candidates come from :func:`plan_ladder`; the most expensive is evaluated first (if it fails, nothing
    will), then a bisection over MACs. NB: it assumes the error falls as MACs grow; with a bumpy
    ``evaluate`` it returns the cheapest plan it saw meet the bound.

    Raises:
        UnmeetableError: (exit 1) no candidate meets ``max_error``; names the best error reached.
    """
    plans, table = _ladder(model, analysis, options, batches)
    if not plans:
        raise UsageError("--max-output-error: no candidate conv can be converted with savings (see convaudit report)")
    seen: dict[int, float] = {}

    def error_of(i: int) -> float:
        if i not in seen:
            seen[i] = float(evaluate(plans[i]))
        return seen[i]

    hi = len(plans) - 1
    if not error_of(hi) <= max_error:  # NaN fails too
        raise UnmeetableError(_unmeetable(max_error, plans, seen, table))
    lo = 0
    while lo < hi:
        mid = (lo + hi) // 2
        if error_of(mid) <= max_error:
            hi = mid
        else:
            lo = mid + 1
    best = min((i for i, e in seen.items() if e <= max_error), key=lambda i: plans[i].macs_after)
    plan = plans[best]
    note = (
        f"--max-output-error {max_error:g}: the cheapest of {len(plans)} candidate plans meeting it "
        f"({len(seen)} evaluated): held-out error {seen[best]:.3g} at {plan.macs_after / plan.macs_before:.3f}× MACs"
    )
    return replace(plan, notes=(*plan.notes, note))


def plan_ladder(
    model: nn.Module, analysis: Analysis, options: ConversionOptions, batches: Sequence[Any] | None
) -> list[Plan]:
    """Distinct non-empty candidate plans, cheapest first, at ``LADDER_PLANS`` MAC budgets.

    By sensitivity (measured on ``batches``), unless ``options.select`` is energy (then batches are not used).
    """
    return _ladder(model, analysis, options, batches)[0]


def measure_sensitivity(
    model: nn.Module, analysis: Analysis, options: ConversionOptions, batches: Sequence[Any] | None
) -> Sensitivity:
    """The output error of each candidate converted alone at each m of its ladder (``options.rank`` fixes m)."""
    return _Probe(model, batches, options).measure(analysis)


# --------------------------------------------------------------------------------------------- internals


def _ladder(
    model: nn.Module, analysis: Analysis, options: ConversionOptions, batches: Sequence[Any] | None
) -> tuple[list[Plan], Sensitivity | None]:
    table = None if options.select is Select.ENERGY else _Probe(model, batches, options).measure(analysis)

    def make(target: float) -> Plan:
        if table is None:
            return plan_conversion(analysis, replace(options, max_output_error=None, target_macs=target))
        return least_error_plan(analysis, table, target, True)

    if table is None:
        cheapest = plan_conversion(analysis, replace(options, max_output_error=None, rank=1))
        floor = cheapest.macs_after / max(analysis.totals.macs, 1)
    else:
        floor = cheapest_macs(analysis, table) / max(analysis.totals.macs, 1)
    plans: dict[tuple, Plan] = {}
    for k in range(LADDER_PLANS):
        target = min(1.0, floor + (1.0 - floor) * k / LADDER_PLANS)
        try:
            plan = make(target)
        except UsageError:
            continue
        if plan.choices:
            plans.setdefault(_key(plan), plan)
    return sorted(plans.values(), key=lambda p: p.macs_after), table


class _Probe:
    """A working copy of the model and its reference outputs on the calibration batches."""

    def __init__(self, model: nn.Module, batches: Sequence[Any] | None, options: ConversionOptions) -> None:
        normal = [_as_batch(b) for b in batches] if batches is not None else []
        if not normal:
            raise UsageError(
                "--select sensitivity (and --max-output-error) measure each layer's effect on the output: they need "
                "calibration batches (calibration_inputs() in model.py)"
            )
        self.batches = normal[:MEASURE_BATCHES]
        self.options = options
        with untouched(model):  # deepcopy runs no model code, but a __deepcopy__ might
            self.work = copy.deepcopy(model)
        self.work.eval()
        self.modules = dict(self.work.named_modules(remove_duplicate=False))
        with torch.no_grad():
            self.reference = [self.work(*a, **k) for a, k in self.batches]
        self.inputs: dict[str, list[torch.Tensor]] = {}  #: each conv's captured inputs (init="calibrated")

    def measure(self, analysis: Analysis) -> Sensitivity:
        start = time.perf_counter()
        pool, skipped = candidate_pool(analysis, self.options)
        table: dict[str, tuple[tuple[Choice, float], ...]] = {}
        estimated: set[tuple[str, str, int]] = set()
        for layer in pool:
            entries: list[tuple[Choice, float]] = []
            for saving, measured in _rungs(layer, self.options):
                errors = {i: self.error([saving[i]]) for i in measured}
                for i, c in enumerate(saving):
                    if i not in errors:
                        estimated.add((c.name, str(c.order), c.rank))
                    entries.append((c, errors[i] if i in errors else _between(errors, i)))
            if entries:
                table[layer.name] = tuple(entries)
            else:
                why = "no multiplier saves MACs"
                if self.options.min_savings:
                    why = f"no multiplier saves {self.options.min_savings:.0%} of its MACs (--min-savings)"
                skipped.append((layer.name, why))
        samples = sum(_batch_size(a, k) for a, k in self.batches)
        seconds = time.perf_counter() - start
        return Sensitivity(table, tuple(skipped), frozenset(estimated), len(self.batches), samples, seconds)

    def error(self, choices: Sequence[Choice]) -> float:
        """Output error with ``choices`` converted together (each fitted alone, as convert does by default)."""
        if not choices:
            return 0.0
        with torch.no_grad(), untouched(self.work):  # every swap and BatchNorm statistic put back after
            if all(is_conv_module(self.modules.get(c.name)) for c in choices):
                for c in choices:
                    conv = self.modules[c.name]
                    replace_module(self.work, conv, self._factory(c, conv, self._inputs_of(c.name)))
                model = self.work
            else:  # a functional conv: the traced rewrite, on a copy of the working copy
                model, _ = rewrite(
                    self.work,
                    choices,
                    self._factory,
                    calibration=self.batches if self.options.init is Init.CALIBRATED else None,
                    leaf_types=self.options.leaf_types,
                    training=self.options.train_mode,
                )
                model.eval()
            if self.options.recalibrate_bn:
                recalibrate_batchnorm(model, self.batches)
            got = [model(*a, **k) for a, k in self.batches]
        return compare_outputs(self.reference, got, inputs="calibration batches").relative_error

    def _inputs_of(self, name: str) -> list[torch.Tensor] | None:
        if self.options.init is not Init.CALIBRATED:
            return None
        if name not in self.inputs:
            self.inputs.update(capture_conv_inputs(self.work, [name], self.batches))
        return self.inputs[name]

    def _factory(self, choice: Choice, conv: nn.Module, inputs: list[torch.Tensor] | None) -> SeparableConv:
        init = self.options.init if (self.options.init is not Init.CALIBRATED or inputs) else Init.SVD
        return SeparableConv.from_conv(conv, rank=choice.rank, order=choice.order, init=init, calibration=inputs)


def _rungs(layer: ConvLayer, options: ConversionOptions) -> list[tuple[list[Choice], list[int]]]:
    """Per order, ``layer``'s options that save MACs (and ``min_savings``) by m, and which of them to measure.

    m is ``rank`` when fixed; otherwise every m, of which 1, 2, 4, ... (``MAX_RUNGS`` - 1 of them) and the
    largest are measured, the others interpolated.
    """
    orders = LAYER_ORDERS if options.order is Order.AUTO else (options.order,)
    out = []
    for order in orders:
        exact = exact_multiplier(layer.in_channels, layer.out_channels, layer.groups, layer.kernel_size, order)
        if options.rank is not None:
            ms = [exact if options.rank == "full" else int(options.rank)]
        else:
            ms = list(range(1, exact + 1))
        saving = [c for m in ms if _saves(c := make_choice(layer, order, m, exact), options.min_savings)]
        if saving:
            powers = [i for i, c in enumerate(saving) if c.rank & (c.rank - 1) == 0][: MAX_RUNGS - 1]
            out.append((saving, sorted({*powers, 0, len(saving) - 1})))
    return out


def _between(errors: dict[int, float], i: int) -> float:
    """The error at rung ``i`` from the measured rungs either side: geometric (linear when one is 0)."""
    lo, hi = max(k for k in errors if k < i), min(k for k in errors if k > i)
    t = (i - lo) / (hi - lo)
    a, b = errors[lo], errors[hi]
    if a > 0 and b > 0:
        return math.exp((1 - t) * math.log(a) + t * math.log(b))
    return (1 - t) * a + t * b


def _saves(choice: Choice, min_savings: float) -> bool:
    return choice.macs_after < choice.macs_before and 1 - choice.macs_after / choice.macs_before >= min_savings


def _has_energies(analysis: Analysis, table: Sensitivity) -> bool:
    layers = {layer.name: layer for layer in analysis.layers}
    return bool(table.options) and all(layers[n].separability is not None for n in table.options)


def _key(plan: Plan) -> tuple:
    return tuple((c.name, str(c.order), c.rank) for c in plan.choices)


def _unmeetable(max_error: float, plans: list[Plan], seen: dict[int, float], table: Sensitivity | None) -> str:
    i = min(seen, key=lambda k: seen[k] if seen[k] == seen[k] else math.inf)
    share = plans[i].macs_after / plans[i].macs_before
    hint = "try a larger --max-output-error, --recover, --rank full, or fewer layers (--exclude)"
    if table is not None and table.options:
        worst = sorted(table.options, key=lambda n: -min(e for _, e in table.options[n]))[:2]
        hint += f"; the most sensitive: {', '.join(worst)}"
    return (
        f"--max-output-error {max_error:g}: no conversion meets it; the best reached {seen[i]:.3g} "
        f"(at {share:.3f}× MACs, {len(plans)} candidate plans); {hint}"
    )


def _as_batch(batch: Any) -> Batch:
    args, kwargs = split_inputs(batch, "calibration batch")
    return materialize(args), materialize(kwargs)


def _batch_size(args: tuple, kwargs: dict) -> int:
    first = next((t for t in (*args, *kwargs.values()) if isinstance(t, torch.Tensor) and t.dim() >= 1), None)
    return int(first.shape[0]) if first is not None else 1
