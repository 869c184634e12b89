"""The timing harness: A/B(/C) comparisons that hold on a busy machine, with their confidence and load.

``compare`` times a few callables against a baseline. After a warm-up (a first untimed call, then
growing batches until one batch takes ``min_batch_seconds``) it runs rounds: each round calls every
callable once as a batch, in a freshly shuffled order (seeded), so slow drifts in the machine's load
hit every callable alike. Per round and callable the reading is the batch's time divided by its
calls; the figure compared is the per-round *paired* ratio callable / baseline.

Stopping rule: after each round (from ``min_rounds`` on) the distribution-free 95% confidence
interval of the median of the paired ratios is taken from the order statistics (the interval
``[r_(k), r_(n-k+1)]`` with ``k`` the largest index for which ``1 - 2 P(Binom(n, 1/2) < k) >= 0.95``;
no resampling, so it is deterministic). It needs at least 6 rounds. The run stops when, for every
callable, both ends are within ``±target_ci`` of the median ratio, or when ``max_seconds`` (on the
clock, warm-up included) is spent. NB: checking after every round is optional stopping, so the true
coverage is a little below 95%; ``min_rounds`` limits it.

A machine's speed also drifts on a scale of seconds (a shared host's neighbours: measured here, the same
layer's speed-up moved ±8% between comparisons a few seconds apart, and comparisons back to back agreed),
which no within-comparison interval can see. ``pool`` merges comparisons of the same callables taken at
different times into one, from all their rounds (``Comparison.rounds``): ``measure_layers`` times each
layer in several sweeps over all the layers and pools them, so each figure averages over the run. The
pooled rounds' interval assumes independent rounds, which drift breaks; ``sweep_ci`` is the interval the
sweeps themselves give (a t-interval of the mean log median ratio, one value per sweep: measured here,
one layer's speed-up 4.66 (CI 4.55–4.74) in one comparison and 3.30 (3.17–3.47) seven seconds later).
A pooled comparison states the wider of the two, and is unreliable where the sweeps' own interval is
wider than ``±target_ci``: ``measure_layers`` adds sweeps until it is not, within its caps.

A comparison is flagged unreliable when the interval was not reached, when other processes used more
than ``MAX_LOAD_CORES`` of CPU during it (``LoadMeter``: /proc/stat minus our /proc/self/stat), or when
batch readings cluster at multiples of a scheduler quantum (``quantum_clusters``).

The batches are timed by the standard library's ``timeit.Timer`` (the loop ``torch.utils.benchmark``'s
``Timer`` wraps: compiled, garbage collection off) on an injectable ``Clock``; torch's ``Timer.timeit``
itself is not used because it re-warms on every call (tripling the cost of a slow layer) and its
``blocked_autorange`` times one statement alone, not interleaved.
"""

from __future__ import annotations

import dataclasses
import math
import random
import statistics
import timeit
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from convaudit.documents.latency import Spread
from convaudit.errors import UsageError
from convaudit.latency.clocks import Clock, LoadMeter, LoadProbe, PerfClock

__all__ = [
    "CONFIDENCE",
    "MAX_LOAD_CORES",
    "QUANTA_SECONDS",
    "Comparison",
    "Rounds",
    "compare",
    "median_ci",
    "pool",
    "quantum_clusters",
    "spread_of",
    "summarize",
    "sweep_ci",
]

CONFIDENCE = 0.95  #: of the median ratio's interval
MAX_LOAD_CORES = 0.5  #: other processes' CPU use above which a comparison is unreliable
QUANTA_SECONDS = (0.004, 0.010, 0.032, 0.064)  #: scheduler quanta (CONFIG_HZ 250/100, CFS slices) readings stick to
QUANTUM_TOLERANCE = 0.02  #: a reading within 2% of a quantum of one of its multiples "sits at" it
QUANTUM_SHARE = 0.25  #: ... and when this share of the readings do (chance: ~4%), they cluster
MAX_ROUNDS = 100_000  #: a guard for clocks that do not advance


@dataclass(frozen=True)
class Rounds:
    """The raw readings of a comparison, per callable, one entry per round (what ``pool`` merges)."""

    baseline: str
    per_call: dict[str, tuple[float, ...]]  #: seconds per call
    batches: dict[str, tuple[float, ...]]  #: seconds of the round's batch (for the scheduler-quanta check)
    target_ci: float
    max_seconds: float  #: the time cap the rounds were taken under (summed when pooled)
    reached: bool = False  #: the stopping rule was met while timing (``compare``; recomputed when pooled)
    estimates: dict[str, float] = dataclasses.field(default_factory=dict)  #: the warm-up's seconds per call

    def ratios(self) -> dict[str, list[float]]:
        """The paired per-round ratios callable / baseline (baseline not a key)."""
        base = self.per_call[self.baseline]
        return {
            name: [a / b for a, b in zip(values, base, strict=True)]
            for name, values in self.per_call.items()
            if name != self.baseline
        }


@dataclass(frozen=True)
class Comparison:
    """What ``compare`` measured: per callable its spread, per non-baseline callable its ratio and CI."""

    spreads: dict[str, Spread]  #: per-call seconds over rounds: median, IQR, rounds
    ratios: dict[str, float]  #: median of the paired per-round ratios callable / baseline (baseline not a key)
    ci: dict[str, tuple[float, float]]  #: their 95% order-statistic confidence intervals
    reliable: bool
    reasons: tuple[str, ...]  #: why not reliable, one line each
    load: float | None  #: other processes' CPU use during the comparison, in cores
    rounds: Rounds | None = None  #: the readings behind the figures
    settled: bool = True  #: pooled: False while its sweeps' own interval is wider than ±target_ci (``pool``)


def median_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """The distribution-free CI of the median: order statistics ``k`` and ``n-k+1``, None if n is too small.

    Coverage of ``[x_(k), x_(n-k+1)]`` is ``1 - 2 P(Binom(n, 1/2) <= k-1)``; ``k`` is the largest with
    coverage >= ``confidence`` (at 95%: n >= 6).
    """
    xs, n = sorted(values), len(values)
    tail, k = 0.0, 0
    while k < n // 2:
        tail += math.comb(n, k) / 2**n  # P(B <= k)
        if 1 - 2 * tail < confidence:
            break
        k += 1
    return (xs[k - 1], xs[n - k]) if k else None


def spread_of(values: Sequence[float]) -> Spread:
    """Median and interquartile range of ``values`` (inclusive quartiles; IQR 0 below two values)."""
    if len(values) < 2:
        return Spread(values[0] if values else math.nan, 0.0, len(values))
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return Spread(statistics.median(values), q3 - q1, len(values))


def quantum_clusters(readings: Sequence[float]) -> float | None:
    """The (largest) scheduler quantum the readings cluster at, or None.

    A reading sits at quantum q when it is at least ~q and within ``QUANTUM_TOLERANCE``·q of a multiple
    of q (by chance ~4% of readings do). The readings cluster when at least 3 and ``QUANTUM_SHARE`` of
    them sit at q, and they are not simply the call's own time: they sit at two or more multiples, or
    the median reading sits at none. NB: a call whose true time is a quantum multiple and is sometimes
    delayed by exactly a quantum is flagged too (conservatively).
    """
    median = statistics.median(readings) if readings else 0.0
    for q in sorted(QUANTA_SECONDS, reverse=True):
        tol = QUANTUM_TOLERANCE * q
        hits = [round(t / q) for t in readings if t >= q - tol and abs(t - round(t / q) * q) <= tol]
        at_median = median >= q - tol and abs(median - round(median / q) * q) <= tol
        if len(hits) >= max(3, QUANTUM_SHARE * len(readings)) and (len(set(hits)) > 1 or not at_median):
            return q
    return None


def compare(
    fns: Mapping[str, Callable[[], object]],
    *,
    baseline: str,
    target_ci: float = 0.10,
    max_seconds: float = 10.0,
    min_rounds: int = 5,
    clock: Clock | None = None,
    load: LoadProbe | None = None,
    min_batch_seconds: float = 1e-3,
    seed: int = 0,
) -> Comparison:
    """Time ``fns`` interleaved until every median ratio vs ``baseline`` is known within ±``target_ci``.

    Args:
        fns: name → a call to time (already in eval/no_grad as the caller wants; its result is dropped).
        baseline: the name the ratios are taken against.
        target_ci: relative half-width the 95% CI of each median ratio must reach.
        max_seconds: time cap on ``clock``, warm-up included, checked between rounds; reached, the
            result is flagged unreliable.
        min_rounds: rounds before the stopping rule is checked (the CI needs 6 anyway).
        clock, load: injectable for tests (default ``PerfClock()``, ``LoadMeter()``).
        min_batch_seconds: a round's batch of calls lasts at least this long (timer resolution, overheads).
        seed: of the shuffled order within rounds.
    """
    if baseline not in fns or len(fns) < 2:
        raise UsageError(f"compare needs the baseline {baseline!r} and at least one other callable")
    clock = clock or PerfClock()
    load = load if load is not None else LoadMeter()
    order, rng = list(fns), random.Random(seed)
    timers = {name: timeit.Timer("fn()", timer=clock.now, globals={"fn": fn}) for name, fn in fns.items()}
    load.start()
    start = clock.now()
    calls, estimates = _warm_up(timers, clock, start + max_seconds, min_batch_seconds)
    readings: dict[str, list[float]] = {name: [] for name in fns}  # batch totals, for the quanta check
    per_call: dict[str, list[float]] = {name: [] for name in fns}
    ratios: dict[str, list[float]] = {name: [] for name in fns if name != baseline}
    reached = False
    for rounds in range(1, MAX_ROUNDS + 1):
        if clock.now() - start >= max_seconds:
            break
        rng.shuffle(order)
        for name in order:
            seconds = timers[name].timeit(calls[name])
            readings[name].append(seconds)
            per_call[name].append(seconds / calls[name])
        for name in ratios:
            ratios[name].append(per_call[name][-1] / per_call[baseline][-1])
        if rounds >= min_rounds:
            reached = _reached(ratios, target_ci)
            if reached:
                break
    cores = load.stop()
    raw = Rounds(
        baseline,
        {name: tuple(v) for name, v in per_call.items()},
        {name: tuple(v) for name, v in readings.items()},
        target_ci,
        max_seconds,
        reached,
        estimates,
    )
    return summarize(raw, cores)


def pool(comparisons: Sequence[Comparison]) -> Comparison:
    """One comparison from several of the same callables taken at different times (``measure_layers``' sweeps).

    The rounds are pooled: medians, spreads and the CI are those of all rounds together, so a machine
    whose speed drifts between the sweeps widens the interval instead of deciding the figure; the load is
    the sweeps' mean (None if any was unreadable), the cap their sum. A single comparison comes back as is.
    """
    if len(comparisons) == 1:
        return comparisons[0]
    parts = [c.rounds for c in comparisons if c.rounds is not None]
    if not parts or len(parts) != len(comparisons):
        raise UsageError("pool needs comparisons that kept their rounds (from compare)")
    first, names = parts[0], list(parts[0].per_call)
    rounds = Rounds(
        first.baseline,
        {n: tuple(v for r in parts for v in r.per_call[n]) for n in names},
        {n: tuple(v for r in parts for v in r.batches[n]) for n in names},
        first.target_ci,
        sum(r.max_seconds for r in parts),
        estimates={n: statistics.median(r.estimates[n] for r in parts) for n in first.estimates},
    )
    rounds = dataclasses.replace(rounds, reached=_reached(rounds.ratios(), rounds.target_ci))
    loads = [c.load for c in comparisons]
    cores = None if any(x is None for x in loads) else statistics.fmean(x for x in loads if x is not None)
    pooled, between = summarize(rounds, cores), sweep_ci(comparisons)
    ci = {n: (min(c[0], between[n][0]), max(c[1], between[n][1])) if n in between else c for n, c in pooled.ci.items()}
    wide = {n: c for n, c in between.items() if not _within(c, pooled.ratios[n], rounds.target_ci)}
    if not wide:
        return dataclasses.replace(pooled, ci=ci)
    shown = ", ".join(f"{n} {c[0] / pooled.ratios[n]:.2f}–{c[1] / pooled.ratios[n]:.2f}×" for n, c in wide.items())
    reason = (
        f"the {len(comparisons)} sweeps' median ratios disagree (95% interval of their mean: {shown}, "
        f"not within ±{rounds.target_ci:.0%}): the machine's speed changed during the run"
    )
    return dataclasses.replace(pooled, ci=ci, reliable=False, reasons=(*pooled.reasons, reason), settled=False)


#: Two-sided 95% quantiles of Student's t by degrees of freedom 1-15 (``sweep_ci``); beyond, the last (wider).
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131)


def sweep_ci(comparisons: Sequence[Comparison]) -> dict[str, tuple[float, float]]:
    """Per non-baseline callable, the 95% interval of the comparisons' median ratios, as one value each.

    A t-interval of the mean of their logs (geometric): ``exp(mean ± t·sd/√k)`` over ``k`` comparisons;
    empty below two. Unlike the pooled rounds' interval it sees a drift between the comparisons.
    """
    if len(comparisons) < 2:
        return {}
    out = {}
    for name in comparisons[0].ratios:
        logs = [math.log(c.ratios[name]) for c in comparisons if c.ratios.get(name, 0) > 0]
        if len(logs) < 2:
            continue
        mean, sd = statistics.fmean(logs), statistics.stdev(logs)
        half = _T95[min(len(logs) - 2, len(_T95) - 1)] * sd / math.sqrt(len(logs))
        out[name] = (math.exp(mean - half), math.exp(mean + half))
    return out


def summarize(rounds: Rounds, cores: float | None) -> Comparison:
    """The figures of ``rounds``: spreads, median ratios, their CIs, and whether (and why not) they are reliable."""
    ratios = rounds.ratios()
    ci = {name: median_ci(r) for name, r in ratios.items()}
    medians = {name: statistics.median(r) if r else math.nan for name, r in ratios.items()}
    n = len(rounds.per_call[rounds.baseline])
    reasons = _reasons(rounds.reached, ci, medians, rounds.target_ci, rounds.max_seconds, n, cores, rounds.batches)
    return Comparison(
        spreads={
            name: spread_of(values or [rounds.estimates.get(name, math.nan)])
            for name, values in rounds.per_call.items()
        },
        ratios=medians,
        ci={
            name: c or (min(ratios[name], default=math.nan), max(ratios[name], default=math.nan))
            for name, c in ci.items()
        },
        reliable=not reasons,
        reasons=reasons,
        load=cores,
        rounds=rounds,
    )


def _reached(ratios: Mapping[str, Sequence[float]], target_ci: float) -> bool:
    """The stopping rule: every median ratio's 95% CI within ±``target_ci`` of it."""
    return all(r and _within(median_ci(r), statistics.median(r), target_ci) for r in ratios.values())


def _warm_up(
    timers: Mapping[str, timeit.Timer], clock: Clock, deadline: float, min_batch_seconds: float
) -> tuple[dict[str, int], dict[str, float]]:
    """(calls per batch, per-call estimate) of each callable: one untimed call, then batches growing to size."""
    calls: dict[str, int] = {}
    estimates: dict[str, float] = {}
    for name, timer in timers.items():
        timer.timeit(1)  # first call: kernel choice, allocations, lazy init
        n, seconds = 1, timer.timeit(1)
        while seconds < min_batch_seconds and n < 1_000_000 and clock.now() < deadline:
            n = min(n * 10, math.ceil(1.2 * n * min_batch_seconds / max(seconds, 1e-9)))
            seconds = timer.timeit(n)
        calls[name], estimates[name] = n, seconds / n
    return calls, estimates


def _within(ci: tuple[float, float] | None, median: float, target: float) -> bool:
    return ci is not None and median > 0 and ci[1] <= median * (1 + target) and ci[0] >= median * (1 - target)


def _reasons(
    reached: bool,
    ci: Mapping[str, tuple[float, float] | None],
    medians: Mapping[str, float],
    target_ci: float,
    max_seconds: float,
    rounds: int,
    cores: float | None,
    readings: Mapping[str, Sequence[float]],
) -> tuple[str, ...]:
    reasons = []
    if not reached:
        widths = [
            f"{name} {c[0] / medians[name]:.2f}–{c[1] / medians[name]:.2f}×" if c else f"{name} (too few rounds)"
            for name, c in ci.items()
        ]
        reasons.append(
            f"95% CI of the median ratio not within ±{target_ci:.0%} after {rounds} rounds "
            f"(cap {max_seconds:g} s): {', '.join(widths)}"
        )
    if cores is not None and cores > MAX_LOAD_CORES:
        reasons.append(f"other processes used {cores:.1f} CPU cores during the run")
    for name, values in readings.items():
        q = quantum_clusters(values)
        if q is not None:
            reasons.append(f"{name}: readings cluster at multiples of {q * 1e3:g} ms (scheduler quanta)")
    return tuple(reasons)
