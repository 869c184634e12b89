"""Choosing what to convert: which layers, at which multiplier m, in which order — from an Analysis.

Pure planning over records: no torch, no weights (the separability figures came with the Analysis).
Every candidate the plan does not convert carries its reason.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from convaudit.analysis.rules.formulas import dw_pw_cost, exact_multiplier, pw_dw_cost
from convaudit.documents.records import Analysis, ConvLayer
from convaudit.errors import UsageError
from convaudit.options import ConversionOptions, options_from
from convaudit.vocab import LAYER_ORDERS, Order, Select, TracePath

__all__ = [
    "Choice",
    "Plan",
    "assemble_plan",
    "candidate_pool",
    "make_choice",
    "plan_conversion",
    "predicted_cost",
    "with_mobilenet_norms",
]


@dataclass(frozen=True)
class Choice:
    """One layer to convert."""

    name: str
    order: str  #: "dw_pw" | "pw_dw"
    rank: int  #: channel multiplier m
    exact_rank: int  #: m at which this order is exact
    energy: float | None  #: weight energy kept (None when weights hold no data)
    params_before: int
    macs_before: int
    params_after: int  #: predicted
    macs_after: int  #: predicted
    note: str | None = None  #: e.g. "exact form costs more than the conv: converted because --rank full asks"


@dataclass(frozen=True)
class Plan:
    """What the conversion will do, with predicted totals."""

    choices: tuple[Choice, ...]
    skipped: tuple[tuple[str, str], ...]  #: (layer name, reason)
    params_before: int
    macs_before: int
    params_after: int
    macs_after: int
    notes: tuple[str, ...] = field(default=())


def predicted_cost(layer: ConvLayer, order: str, m: int) -> tuple[int, int]:
    """(params, MACs) of ``layer`` rewritten in ``order`` at multiplier ``m``, summed over its calls.

    Every rewrite's MACs are linear in the input and output pixel counts, so the layer's summed
    ``input_pixels``/``output_pixels`` give the exact total over calls of different sizes.
    """
    nd = layer.dims
    pseudo_in = (layer.input_pixels, layer.in_channels) + (1,) * nd
    pseudo_out = (layer.output_pixels, layer.out_channels) + (1,) * nd
    args = (pseudo_in, pseudo_out, layer.in_channels, layer.out_channels, layer.groups, layer.kernel_size)
    f = dw_pw_cost(*args, m, layer.bias, 4) if order == Order.DW_PW else pw_dw_cost(*args, layer.bias, 4, m)
    return f.params, f.macs


def _energy(layer: ConvLayer, order: str, m: int) -> float | None:
    if layer.separability is None:
        return None
    energies = getattr(layer.separability, order)
    return energies[min(m, len(energies)) - 1]


def plan_conversion(analysis: Analysis, options: ConversionOptions | None = None, **keywords: Any) -> Plan:
    """Pick layers, multipliers and orders, as ``options`` (or their fields as keywords) say.

    Options used: ``rank`` (m for every chosen layer, "full" = exact, None = 1 unless ``energy`` or
    ``target_macs`` choose), ``order`` ("auto": per layer, the order keeping more weight energy at its m),
    ``include``/``exclude`` (qualified-name globs; a glob that matches no conv is an error), ``min_savings``
    (skip layers whose predicted MAC saving is below this share of their MACs), ``energy`` (per layer, the
    smallest m keeping this share of the weight energy), ``target_macs`` (whole-model MAC budget as a share of
    today's MACs; layers and m are chosen greedily to meet it with the least weight energy lost), ``select``
    "recommended" (each layer's ``recommendation`` from the analysis: convert at its order and m, or keep).
    """
    opts = options_from(ConversionOptions, options, keywords, "plan_conversion")
    pool, skipped = candidate_pool(analysis, opts)
    if opts.select is Select.RECOMMENDED:
        choices, notes = _recommended(pool, opts.min_savings, skipped), list[str]()
    elif opts.target_macs is not None:
        choices, notes = _meet_budget(analysis, pool, opts.order, opts.target_macs, skipped)
    else:
        choices, notes = [], []
        for layer in pool:
            choice, reason = _choose(layer, opts.rank, opts.order, opts.energy, opts.min_savings)
            if choice is None:
                skipped.append((layer.name, reason or "no savings"))
            else:
                choices.append(choice)
    return assemble_plan(analysis, choices, skipped, notes)


def _recommended(pool: list[ConvLayer], min_savings: float, skipped: list[tuple[str, str]]) -> list[Choice]:
    """The choices the analysis recommends; every layer it recommends keeping is skipped with its reason."""
    choices = []
    for layer in pool:
        rec = layer.recommendation
        if rec is None or rec.action != "convert" or rec.order is None or rec.m is None:
            skipped.append((layer.name, f"recommended to keep: {rec.reason}" if rec else "no recommendation"))
            continue
        choice = make_choice(layer, rec.order, rec.m)
        saving = 1 - choice.macs_after / layer.macs if layer.macs else 0.0
        if saving < min_savings:
            skipped.append((layer.name, f"saves {saving:.0%} of its MACs, below --min-savings {min_savings:.0%}"))
        else:
            choices.append(choice)
    return choices


def candidate_pool(analysis: Analysis, options: ConversionOptions) -> tuple[list[ConvLayer], list[tuple[str, str]]]:
    """The layers a plan may convert (``include``/``exclude``, candidates, rewritable), and why the others may not."""
    _check_globs(analysis, options.include, options.exclude)
    skipped: list[tuple[str, str]] = []
    pool: list[ConvLayer] = []
    for layer in analysis.layers:
        if options.include and not _matches(layer.name, options.include):
            skipped.append((layer.name, "not matched by --include"))
        elif _matches(layer.name, options.exclude):
            skipped.append((layer.name, "matched by --exclude"))
        elif not layer.candidate:
            skipped.append((layer.name, layer.skip_reason or "not a candidate"))
        elif layer.type.startswith("torch.nn.functional") and analysis.trace_path != TracePath.FX:
            skipped.append((layer.name, "functional conv seen without a symbolic trace: cannot be rewritten"))
        else:
            pool.append(layer)
    skipped.extend((name, "never called in forward at these inputs") for name in analysis.uncalled_convs)
    return pool, skipped


def assemble_plan(
    analysis: Analysis, choices: Sequence[Choice], skipped: Sequence[tuple[str, str]], notes: Sequence[str] = ()
) -> Plan:
    """A Plan of ``choices``, with the model's predicted totals after them."""
    t = analysis.totals
    params_after = t.params + sum(c.params_after - c.params_before for c in choices)
    macs_after = t.macs + sum(c.macs_after - c.macs_before for c in choices)
    return Plan(tuple(choices), tuple(skipped), t.params, t.macs, params_after, macs_after, tuple(notes))


def _choose(
    layer: ConvLayer, rank: int | str | None, order: str, energy: float | None, min_savings: float
) -> tuple[Choice | None, str | None]:
    orders = LAYER_ORDERS if order is Order.AUTO else (order,)
    options = []
    for o in orders:
        exact = exact_multiplier(layer.in_channels, layer.out_channels, layer.groups, layer.kernel_size, o)
        if energy is not None:
            energies = getattr(layer.separability, o) if layer.separability else None
            if energies is None:
                return None, "--energy needs the layer's weights, which hold no data"
            m = next(i for i, e in enumerate(energies, start=1) if e >= energy - 1e-9)
        elif rank == "full":
            m = exact
        else:
            m = 1 if rank is None else int(rank)
        options.append(make_choice(layer, o, m, exact))
    # auto: keep the most energy at the chosen m; ties go to fewer MACs
    best = max(options, key=lambda c: ((c.energy if c.energy is not None else 0.0), -c.macs_after))
    saving = 1 - best.macs_after / layer.macs if layer.macs else 0.0
    if rank == "full" and energy is None:
        if best.macs_after >= layer.macs:
            note = (
                f"exact form costs {best.macs_after:,} MACs vs {layer.macs:,}: "
                "converted because --rank full asks for it"
            )
            return _replace_note(best, note), None
        return best, None
    if best.macs_after >= layer.macs:
        why = f"at m={best.rank} ({best.order}) it would cost {best.macs_after:,} MACs vs {layer.macs:,}: no savings"
        if energy is not None:
            why = f"keeping {energy:.0%} of the weight energy needs m={best.rank}, which saves nothing"
        return None, why
    if saving < min_savings:
        return None, f"saves {saving:.0%} of its MACs, below --min-savings {min_savings:.0%}"
    return best, None


def make_choice(layer: ConvLayer, order: str, m: int, exact: int | None = None) -> Choice:
    """The Choice converting ``layer`` in ``order`` at multiplier ``m``, with its predicted cost and kept energy."""
    if exact is None:
        exact = exact_multiplier(layer.in_channels, layer.out_channels, layer.groups, layer.kernel_size, order)
    params, macs = predicted_cost(layer, order, m)
    return Choice(layer.name, order, m, exact, _energy(layer, order, m), layer.params, layer.macs, params, macs)


def _replace_note(choice: Choice, note: str) -> Choice:
    from dataclasses import replace

    return replace(choice, note=note)


def _meet_budget(
    analysis: Analysis, pool: list[ConvLayer], order: str, target: float, skipped: list[tuple[str, str]]
) -> tuple[list[Choice], list[str]]:
    """Greedy: start every layer at its cheapest saving option, then buy back energy while within budget."""
    budget = target * analysis.totals.macs
    orders = LAYER_ORDERS if order is Order.AUTO else (order,)
    ladders: dict[str, list[Choice | None]] = {}
    for layer in pool:
        opts = [
            make_choice(
                layer, o, m, exact_multiplier(layer.in_channels, layer.out_channels, layer.groups, layer.kernel_size, o)
            )
            for o in orders
            for m in range(
                1, exact_multiplier(layer.in_channels, layer.out_channels, layer.groups, layer.kernel_size, o) + 1
            )
        ]
        opts = [c for c in opts if c.macs_after < layer.macs]
        if not opts:
            skipped.append((layer.name, "no multiplier saves MACs"))
            continue
        opts.sort(key=lambda c: (c.macs_after, -(c.energy or 0.0)))
        ladders[layer.name] = [*opts, None]  # None = keep the original conv
    state = dict.fromkeys(ladders, 0)
    by_name = {layer.name: layer for layer in pool}

    def macs_of(name: str, idx: int) -> int:
        c = ladders[name][idx]
        return by_name[name].macs if c is None else c.macs_after

    def loss_of(name: str, idx: int) -> float:
        c = ladders[name][idx]
        layer = by_name[name]
        kept = 1.0 if c is None else (c.energy if c.energy is not None else 0.0)
        return (1.0 - kept) * layer.macs  # energy lost, weighted by the layer's share of the work

    others = analysis.totals.macs - sum(layer.macs for layer in pool if layer.name in ladders)
    total = others + sum(macs_of(n, 0) for n in ladders)
    if total > budget:
        raise UsageError(
            f"--target-macs {target}: cannot be met; converting every candidate at its cheapest gives "
            f"{total:,} MACs ({total / analysis.totals.macs:.3f}× of {analysis.totals.macs:,})"
        )
    while True:
        best = None
        for name, idx in state.items():
            for nxt in range(idx + 1, len(ladders[name])):
                extra = macs_of(name, nxt) - macs_of(name, idx)
                gain = loss_of(name, idx) - loss_of(name, nxt)
                if gain <= 0 or total + extra > budget:
                    continue
                score = gain / max(extra, 1)
                if best is None or score > best[0]:
                    best = (score, name, nxt, extra)
        if best is None:
            break
        _, name, nxt, extra = best
        state[name], total = nxt, total + extra
    choices = []
    for name, idx in state.items():
        c = ladders[name][idx]
        if c is None:
            skipped.append((name, f"kept as is: the budget ({target:.0%} of MACs) is met without converting it"))
        else:
            choices.append(c)
    order_of = {layer.name: i for i, layer in enumerate(analysis.layers)}
    choices.sort(key=lambda c: order_of[c.name])
    return choices, [f"--target-macs {target}: {total:,} MACs predicted ({total / analysis.totals.macs:.3f}×)"]


def _matches(name: str, globs: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, g) for g in globs)


def _check_globs(analysis: Analysis, include: Sequence[str], exclude: Sequence[str]) -> None:
    names = [layer.name for layer in analysis.layers]
    for flag, globs in (("--include", include), ("--exclude", exclude)):
        for g in globs:
            if not any(fnmatch.fnmatchcase(n, g) for n in names):
                example = ", ".join(names[:3]) or "none"
                hint = ""
                if analysis.trace_path != TracePath.FX:
                    hint = (
                        "; without a symbolic trace, a functional conv (F.conv*) is named after its weight, or "
                        "the module it runs in (e.g. 'block (functional conv #1)')"
                    )
                raise UsageError(
                    f"{flag} {g!r} matches no conv; convs are named like {example} (see convaudit report){hint}"
                )


def with_mobilenet_norms(plan: Plan, analysis: Analysis) -> Plan:
    """The plan's predictions with the BatchNorm (weight + bias, 0 MACs) that style="mobilenet" adds."""
    from dataclasses import replace

    layers = {layer.name: layer for layer in analysis.layers}
    choices = tuple(
        replace(c, params_after=c.params_after + 2 * layers[c.name].in_channels * c.rank) for c in plan.choices
    )
    extra = sum(c.params_after for c in choices) - sum(c.params_after for c in plan.choices)
    return replace(plan, choices=choices, params_after=plan.params_after + extra)
