"""The timing harness on a fake clock: interleaving, the stopping rule, spread, the unreliable flag; one real run."""

from __future__ import annotations

import itertools
import math
import random
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import scipy.stats as scipy_stats
import torch
import torch.nn as nn

from convaudit.errors import UsageError
from convaudit.latency.timing import (
    Comparison,
    compare,
    median_ci,
    pool,
    quantum_clusters,
    spread_of,
    sweep_ci,
)


class FakeClock:
    """Time advances only when a fake callable runs."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t


class FakeLoad:
    def __init__(self, cores: float | None) -> None:
        self.cores, self.started = cores, False

    def start(self) -> None:
        self.started = True

    def stop(self) -> float | None:
        assert self.started
        return self.cores


def fake(
    clock: FakeClock, durations: Iterator[float], log: list[str] | None = None, name: str = ""
) -> Callable[[], None]:
    def call() -> None:
        clock.t += next(durations)
        if log is not None:
            log.append(name)

    return call


def constant(seconds: float) -> Iterator[float]:
    return itertools.repeat(seconds)


def test_rounds_are_interleaved_in_a_seeded_shuffled_order() -> None:
    def run(seed: int) -> list[tuple[str, ...]]:
        clock, log = FakeClock(), []
        fns = {n: fake(clock, constant(s), log, n) for n, s in (("a", 2e-3), ("b", 1e-3), ("c", 4e-3))}
        c = compare(fns, baseline="a", clock=clock, load=FakeLoad(0.0), min_rounds=30, seed=seed)
        timed = log[-3 * c.spreads["a"].runs :]  # the rounds, after the warm-up's calls (one call per batch here)
        rounds = [tuple(timed[i : i + 3]) for i in range(0, len(timed), 3)]
        assert all(sorted(r) == ["a", "b", "c"] for r in rounds)  # every round runs each callable once
        return rounds

    rounds = run(0)
    assert len(rounds) == 30 and len(set(rounds)) > 3  # shuffled, not one fixed order
    assert run(0) == rounds and run(1) != rounds  # seeded


def test_batches_last_at_least_the_minimum_batch_time() -> None:
    class MarkingClock(FakeClock):
        def now(self) -> float:
            log.append("|")  # timeit reads the clock before and after each batch
            return self.t

    clock, log = MarkingClock(), []
    seconds = {"a": 10e-6, "b": 40e-6}
    fns = {name: fake(clock, constant(s), log, name) for name, s in seconds.items()}
    c = compare(fns, baseline="a", clock=clock, load=FakeLoad(0.0))
    batches = [list(g) for marker, g in itertools.groupby(log, key=lambda x: x == "|") if not marker]
    rounds = batches[-2 * c.spreads["a"].runs :]
    for batch in rounds:
        assert len(set(batch)) == 1 and 1e-3 <= len(batch) * seconds[batch[0]] <= 1.5e-3  # >= 1 ms, not much more
    assert c.ratios["b"] == pytest.approx(4.0) and c.spreads["a"].median_seconds == pytest.approx(10e-6)


@pytest.mark.parametrize("min_rounds, expected", [(1, 6), (5, 6), (9, 9)])
def test_a_steady_ratio_stops_as_soon_as_the_interval_exists(min_rounds: int, expected: int) -> None:
    # constant times: the order-statistic CI is exact from its first possible size (n = 6 at 95%)
    clock = FakeClock()
    fns = {"original": fake(clock, constant(4e-3)), "dw_pw": fake(clock, constant(1e-3))}
    c = compare(fns, baseline="original", clock=clock, load=FakeLoad(0.1), min_rounds=min_rounds)
    assert c.spreads["original"].runs == expected and c.reliable and c.reasons == ()
    assert c.ratios == {"dw_pw": pytest.approx(0.25)} and c.ci["dw_pw"] == pytest.approx((0.25, 0.25)) and c.load == 0.1


def test_the_stopping_rule_is_the_ci_of_the_median_ratio() -> None:
    # baseline 10 ms; the other's ratio drawn from a seeded lognormal (σ = 0.15): the run stops at the
    # first n >= 6 whose order-statistic CI is within ±10%, computed here independently with numpy
    rng = random.Random(3)
    ratios = [math.exp(rng.gauss(math.log(0.5), 0.15)) for _ in range(400)]
    clock = FakeClock()
    fns = {
        "base": fake(clock, constant(10e-3)),
        "new": fake(clock, iter([0.5e-2, 0.5e-2] + [r * 1e-2 for r in ratios])),
    }
    c = compare(fns, baseline="base", clock=clock, load=FakeLoad(0.0), max_seconds=100)

    def within(n: int) -> bool:
        xs = np.sort(ratios[:n])
        k = max(j for j in range(n // 2 + 1) if j == 0 or 1 - 2 * sum(math.comb(n, i) for i in range(j)) / 2**n >= 0.95)
        med = float(np.median(xs))
        return k > 0 and xs[n - k] <= 1.1 * med and xs[k - 1] >= 0.9 * med

    n = next(n for n in range(5, 400) if within(n))
    assert c.spreads["new"].runs == n and c.reliable
    assert c.ratios["new"] == pytest.approx(float(np.median(ratios[:n])))
    lo, hi = c.ci["new"]
    assert lo <= c.ratios["new"] <= hi and hi / lo < 1.25


@pytest.mark.parametrize(
    "n, ranks",
    [(5, None), (6, (1, 6)), (10, (2, 9)), (20, (6, 15)), (50, (18, 33))],  # published tables (95%, two-sided)
)
def test_median_ci_uses_the_binomial_order_statistics(n: int, ranks: tuple[int, int] | None) -> None:
    xs = [float(i) for i in range(1, n + 1)]
    random.Random(n).shuffle(xs)
    assert median_ci(xs) == (None if ranks is None else (float(ranks[0]), float(ranks[1])))


def test_median_ci_covers_the_true_median_at_least_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(0)
    samples = rng.exponential(size=(2000, 15))  # true median ln 2
    covered = [lo <= math.log(2) <= hi for lo, hi in (median_ci(list(s)) for s in samples)]  # type: ignore[misc]
    assert 0.95 <= sum(covered) / len(covered) <= 0.99


def test_spread_is_median_and_interquartile_range_per_call() -> None:
    # every call >= the batch size, so one call per batch; readings cycle through known values
    clock = FakeClock()
    base = [3e-3, 1e-3, 2e-3, 6e-3, 4e-3, 5e-3]
    fns = {"a": fake(clock, itertools.cycle(base)), "b": fake(clock, constant(2e-3))}
    c = compare(fns, baseline="a", clock=clock, load=FakeLoad(0.0), max_seconds=0.5, target_ci=0.01)
    seen = list(itertools.islice(itertools.cycle(base), 2, 2 + c.spreads["a"].runs))  # after 2 warm-up calls
    q1, q3 = np.percentile(seen, [25, 75])
    assert c.spreads["a"].median_seconds == pytest.approx(float(np.median(seen)))
    assert c.spreads["a"].iqr_seconds == pytest.approx(q3 - q1)
    assert c.spreads["b"].iqr_seconds == 0 and spread_of([2.0]).runs == 1


def test_noise_that_never_settles_hits_the_cap_and_is_unreliable() -> None:
    clock = FakeClock()
    fns = {"a": fake(clock, constant(5e-3)), "b": fake(clock, itertools.cycle([2e-3, 9e-3]))}
    c = compare(fns, baseline="a", clock=clock, load=FakeLoad(0.0), max_seconds=1.0)
    assert not c.reliable and "not within ±10%" in c.reasons[0] and "cap 1 s" in c.reasons[0]
    assert 1.0 <= clock.t <= 1.0 + 15e-3  # stopped at the cap, within one round


@pytest.mark.parametrize("cores, reliable", [(0.3, True), (1.2, False), (None, True)])
def test_other_processes_load_flags_the_comparison(cores: float | None, reliable: bool) -> None:
    clock = FakeClock()
    fns = {"a": fake(clock, constant(2e-3)), "b": fake(clock, constant(1e-3))}
    c = compare(fns, baseline="a", clock=clock, load=FakeLoad(cores))
    assert c.reliable is reliable and c.load == cores
    assert reliable or c.reasons == ("other processes used 1.2 CPU cores during the run",)


def test_readings_at_scheduler_quanta_are_flagged() -> None:
    clock = FakeClock()
    stuck = itertools.cycle([32e-3, 1.5e-3, 1.5e-3, 96e-3])  # half the readings sit at 32 ms multiples
    c = compare(
        {"a": fake(clock, constant(1.5e-3)), "b": fake(clock, stuck)}, baseline="a", clock=clock, load=FakeLoad(0)
    )
    assert not c.reliable and any("b: readings cluster at multiples of 32 ms" in r for r in c.reasons)


def test_quantum_clusters_on_synthetic_readings() -> None:
    rng = random.Random(0)
    assert quantum_clusters([rng.uniform(1e-3, 50e-3) for _ in range(200)]) is None  # by chance ~4% sit at a multiple
    assert quantum_clusters([rng.uniform(1e-3, 3.5e-3) for _ in range(200)]) is None  # below every quantum
    at_10 = [rng.uniform(1e-3, 3e-3) for _ in range(20)] + [0.01, 0.0201, 0.0299, 0.00995, 0.04, 0.0202, 0.0101, 0.03]
    assert quantum_clusters(at_10) == 0.010
    assert quantum_clusters([0.032, 0.064, 0.0321] + [2e-3] * 20) is None  # 3 of 23: not many
    assert quantum_clusters([0.0319, 0.064, 0.0644, 0.0965] + [2e-3] * 8) == 0.032
    assert quantum_clusters([0.010] * 20) is None  # a call that simply takes 10 ms
    assert quantum_clusters([0.010] * 12 + [0.020] * 8) == 0.010  # ... and is delayed by whole quanta
    assert quantum_clusters([0.00405, 0.00798, 0.01205] + [2e-3] * 5) == 0.004


def test_pooled_sweeps_are_the_figures_of_all_their_rounds() -> None:
    """Two comparisons of a/b taken when the machine ran b at 2x and later at 4x the baseline's time: pooled,
    the median and CI come from all the rounds together (the oracle: statistics on the concatenation)."""
    clock = FakeClock()
    early = compare(
        {"a": fake(clock, constant(1e-3)), "b": fake(clock, constant(2e-3))},
        baseline="a",
        clock=clock,
        load=FakeLoad(0.2),
    )
    late = compare(
        {"a": fake(clock, constant(1e-3)), "b": fake(clock, cycle_of([4e-3, 4.4e-3]))},
        baseline="a",
        clock=clock,
        load=FakeLoad(0.4),
        min_rounds=9,
    )
    assert early.reliable and late.reliable and early.ratios["b"] == pytest.approx(2.0)
    both = pool([early, late])
    assert early.rounds is not None and late.rounds is not None and both.rounds is not None
    ratios = [b / a for a, b in zip(both.rounds.per_call["a"], both.rounds.per_call["b"], strict=True)]
    n_early, n_late = early.spreads["b"].runs, late.spreads["b"].runs
    assert len(ratios) == both.spreads["b"].runs == n_early + n_late
    assert both.ratios["b"] == pytest.approx(sorted(ratios)[len(ratios) // 2] if len(ratios) % 2 else np.median(ratios))
    # the wider of the pooled rounds' interval and the sweeps' own (a t-interval of their log medians)
    logs = [math.log(early.ratios["b"]), math.log(late.ratios["b"])]
    half = scipy_stats.t.ppf(0.975, 1) * np.std(logs, ddof=1) / math.sqrt(2)
    rounds_ci = median_ci(ratios)
    assert rounds_ci is not None
    assert both.ci["b"] == pytest.approx(
        (min(rounds_ci[0], math.exp(np.mean(logs) - half)), max(rounds_ci[1], math.exp(np.mean(logs) + half))),
        rel=1e-3,
    )
    assert both.spreads["b"] == spread_of(list(both.rounds.per_call["b"]))
    assert both.load == pytest.approx(0.3)  # the sweeps' mean
    # the drift between the sweeps is no longer hidden: the pooled interval spans it and is flagged
    assert both.ci["b"][0] < 2.5 < 3.5 < both.ci["b"][1] and not both.reliable
    assert "not within ±10%" in both.reasons[0] and f"after {n_early + n_late} rounds" in both.reasons[0]
    assert "the 2 sweeps' median ratios disagree" in both.reasons[-1] and not both.settled
    assert pool([early]) is early
    same = pool([early, early])
    assert same.ratios["b"] == pytest.approx(2.0) and same.reliable and same.settled


@pytest.mark.parametrize("seed", range(6))
def test_the_sweeps_interval_is_students_t_on_their_log_medians(seed: int) -> None:
    """Oracle: scipy's t quantile (the table's values, and its last beyond it)."""
    rng = random.Random(seed)
    k = [2, 3, 5, 9, 16, 30][seed]
    logs = [rng.gauss(0.7, 0.1) for _ in range(k)]
    got = sweep_ci([Comparison({}, {"b": math.exp(v)}, {}, True, (), None) for v in logs])["b"]
    t = scipy_stats.t.ppf(0.975, min(k - 1, 15))
    half = t * np.std(logs, ddof=1) / math.sqrt(k)
    assert got == pytest.approx((math.exp(np.mean(logs) - half), math.exp(np.mean(logs) + half)), rel=1e-4)
    assert sweep_ci([Comparison({}, {"b": 2.0}, {}, True, (), None)]) == {}


def cycle_of(values: list[float]) -> Iterator[float]:
    return itertools.cycle(values)


def test_compare_needs_its_baseline() -> None:
    with pytest.raises(UsageError, match="baseline"):
        compare({"a": lambda: None}, baseline="b")


def test_a_real_quick_run_on_a_tiny_conv() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 16, 3, padding=1).eval()
    twin = nn.Conv2d(16, 16, 3, padding=1).eval()
    x = torch.randn(1, 16, 32, 32)
    start = time.perf_counter()
    with torch.no_grad():
        c = compare(
            {"conv": lambda: conv(x), "twin": lambda: twin(x), "copy": lambda: x.clone()},
            baseline="conv",
            max_seconds=0.5,
        )
    assert time.perf_counter() - start < 1.5  # the cap holds (one round of overshoot at most)
    assert 0.5 < c.ratios["twin"] < 2.0 and c.ratios["copy"] < 0.5  # the same conv vs an almost free call
    assert all(s.median_seconds > 0 and s.runs >= 1 for s in c.spreads.values())
    assert c.reliable == (c.reasons == ())
