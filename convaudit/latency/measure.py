"""Measured time: each candidate conv against its separable forms, and a model before and after conversion.

Depthwise convs are memory-bound, so a MAC ratio is a promise, not a speed-up (PyTorch #1708,
#18631; ShuffleNetV2's guidelines). ``measure_layers`` checks the promise: for every candidate it
builds stand-ins from the layer's configuration alone (the conv, its depthwise→pointwise and its
pointwise→depthwise form at the given m, fresh weights: time does not depend on weight values, and
the user's model is never run or touched) and times them against each other with ``timing.compare``
at the layer's first-call input shape, in eval mode under no_grad, in the memory format asked for,
the thread count stated. Layers whose tensors would not fit ``standins.MAX_INPUT_BYTES`` are skipped with the
reason. ``measure_end_to_end`` times two whole models the same way; ``measure`` is the 1.2 report's
``Timing`` (original vs dw_pw only), kept for ``AnalysisOptions.timing``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from convaudit.documents.latency import FORMS, LayerLatency, LayerTiming, Measurement, Spread, Timing
from convaudit.documents.records import ConvLayer
from convaudit.errors import UsageError
from convaudit.latency.clocks import Clock, LoadMeter, LoadProbe, PerfClock
from convaudit.latency.standins import CHANNELS_LAST, largest_tensor, stand_in_input, stand_ins
from convaudit.latency.timing import MAX_LOAD_CORES, Comparison, compare, pool

__all__ = [
    "BOTH",
    "MAX_SWEEPS",
    "MEMORY_FORMATS",
    "SWEEPS",
    "MeasuredLayers",
    "measure",
    "measure_end_to_end",
    "measure_layers",
]

MEMORY_FORMATS = ("contiguous", "channels_last")
BOTH = "both"  #: ``measure_layers(memory_format=BOTH)``: each layer in both formats, in turn
#: Sweeps over all the layers, each timing every layer once (its share of the per-layer cap), pooled after.
#: NB: one comparison per layer agreed with itself run to run within ±15% on 70-91% of bench_latency.py's
#: shapes on a quiet machine: the machine's speed drifts over seconds, and one comparison sees one moment.
SWEEPS = 3
#: After ``SWEEPS``, a layer whose sweeps disagree (``timing.pool``: their own interval wider than the
#: target) gets more, while its per-layer cap lasts, up to this many in all.
MAX_SWEEPS = 12

Progress = Callable[[int, int], None]


class MeasuredLayers(dict[str, LayerLatency]):
    """``measure_layers``' result: layer name → LayerLatency for every layer timed, plus how the run went.

    Attributes: ``measurement`` (threads, device, memory format(s), load, unreliable reasons),
    ``skipped`` (name → why it was not timed; those names are not keys), ``comparisons`` (name →
    the ``Comparison`` of the first memory format, with its ratios and confidence intervals),
    ``by_format`` (memory format → name → its ``Comparison``).
    """

    def __init__(
        self,
        layers: Mapping[str, LayerLatency],
        measurement: Measurement,
        skipped: Mapping[str, str],
        comparisons: Mapping[str, Comparison],
        by_format: Mapping[str, Mapping[str, Comparison]] | None = None,
    ) -> None:
        super().__init__(layers)
        self.measurement, self.skipped, self.comparisons = measurement, dict(skipped), dict(comparisons)
        self.by_format = {fmt: dict(c) for fmt, c in (by_format or {measurement.memory_format: comparisons}).items()}


def measure_layers(
    layers: Iterable[ConvLayer],
    *,
    memory_format: str = "contiguous",
    device: str = "cpu",
    max_seconds_per_layer: float = 2.0,
    max_seconds: float | None = 120.0,
    target_ci: float = 0.10,
    sweeps: int = SWEEPS,
    max_sweeps: int = MAX_SWEEPS,
    multipliers: Mapping[str, int] | None = None,
    forms: Sequence[str] = FORMS,
    threads: int | None = None,
    progress: Progress | None = None,
    clock: Clock | None = None,
    load_meter: Callable[[], LoadProbe] = LoadMeter,
) -> MeasuredLayers:
    """Time every candidate (``layer.separable`` set) as it is, as dw_pw and as pw_dw, interleaved.

    Each candidate gets stand-ins built from its configuration (``stand_ins``), timed at its
    first-call input shape by ``timing.compare`` (baseline ``original``) until the 95% CI of every
    median time ratio is within ±``target_ci`` or its share of ``max_seconds_per_layer``, once in each
    of ``sweeps`` passes over all the layers (fresh stand-ins each time); a layer's figures pool the
    rounds of its sweeps (``timing.pool``), so they average over the whole run rather than one moment
    of it. The whole run is capped by ``max_seconds`` (shared fairly among the comparisons still to
    come; a layer cut from a later sweep keeps the sweeps it had). ``LayerLatency`` carries the
    per-call medians and IQRs keyed by form, ``reliable`` and the memory format used (1-d convs have
    no channels_last: they are timed contiguous). ``predicted_seconds`` is left None for the caller.

    Args:
        layers: the analysis' ConvLayer records; non-candidates are ignored.
        memory_format: "contiguous" or "channels_last" (stand-ins and input converted to it), or
            "both": each layer in both in turn (contiguous first: the figures of ``LayerLatency``,
            channels_last in its ``by_format``); the caps hold per layer and format.
        multipliers: layer name → channel multiplier m for both separable forms (default: the m of
            ``layer.separable``'s costs, 1).
        forms: which of ``FORMS`` to time (``original`` always is).
        sweeps: passes over all the layers (``SWEEPS``); 1 times each layer in one go.
        max_sweeps: then more passes over the layers whose sweeps still disagree (``timing.pool``), each
            while its ``max_seconds_per_layer`` lasts, up to this many passes in all (``MAX_SWEEPS``).
        threads: torch threads for the run (restored after); default: as set.
        progress: called as ``progress(done, total)`` after each layer of each sweep (total: layers × sweeps).
        clock, load_meter: injectable for tests.
    """
    if memory_format not in (*MEMORY_FORMATS, BOTH):
        choices = ", ".join((*MEMORY_FORMATS, BOTH))
        raise UsageError(f"memory_format must be one of {choices}, not {memory_format!r}")
    formats = MEMORY_FORMATS if memory_format == BOTH else (memory_format,)
    forms = ("original", *(f for f in FORMS if f in forms and f != "original"))
    todo = [layer for layer in layers if layer.candidate and layer.separable]
    clock = clock or PerfClock(device)
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    run_meter = load_meter()
    run_meter.start()
    start, skipped = clock.now(), {}
    taken: dict[tuple[str, str], list[Comparison]] = {}
    used_format: dict[tuple[str, str], str] = {}
    slots = len(todo) * len(formats) * sweeps
    spent: dict[tuple[str, str], float] = {}
    share = max_seconds_per_layer / sweeps
    steps, total = 0, len(todo) * sweeps  #: for ``progress``: extra sweeps add their layers to the total
    try:
        for sweep in range(max(sweeps, max_sweeps)):  # every layer once per sweep: each figure pools the run's rounds
            extra = sweep >= sweeps  # only the (layer, format)s whose sweeps disagree, while their cap lasts
            again = {
                key
                for key, got in taken.items()
                if extra and max_seconds_per_layer - spent[key] >= share / 2 and not pool(got).settled
            }
            if extra and not again:
                break
            total += len({name for name, _ in again})
            for done, layer in enumerate(todo, 1):
                if layer.name in skipped or (extra and all((layer.name, fmt) not in again for fmt in formats)):
                    continue
                m = (multipliers or {}).get(layer.name)
                for i, fmt in enumerate(formats):  # per layer both formats in turn: a drift in load hits both alike
                    key = (layer.name, fmt)
                    left = math.inf if max_seconds is None else max_seconds - (clock.now() - start)
                    if extra:
                        budget = min(share, max_seconds_per_layer - spent[key], left) if key in again else 0.0
                        if budget < share / 2:  # settled, or its cap or the run's used up
                            continue
                    else:
                        slot = (sweep * len(todo) + done - 1) * len(formats) + i
                        budget = min(share, left / (slots - slot))
                    try:
                        if budget <= 0:
                            raise _Skip(f"the whole-run cap of {max_seconds:g} s was used up")
                        comparison, used = _time_layer(
                            layer, m, forms, fmt, device, budget, target_ci, clock, load_meter, seed=sweep
                        )
                    except _Skip as skip:
                        if i == 0 and not taken.get(key):
                            skipped[layer.name] = str(skip)
                            break
                        continue
                    taken.setdefault(key, []).append(comparison)
                    used_format[key] = used
                    spent[key] = spent.get(key, 0.0) + _timed_seconds(comparison)
                steps = steps + 1 if extra else sweep * len(todo) + done  # NB: a skipped layer counts as done
                if progress:
                    progress(steps, total)
        run_threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(previous_threads)
    found, comparisons = {}, {}
    by_format: dict[str, dict[str, Comparison]] = {fmt: {} for fmt in formats}
    for layer in todo:
        per_format: dict[str, LayerLatency] = {}
        for fmt in formats:
            if taken.get((layer.name, fmt)):
                by_format[fmt][layer.name] = pooled = pool(taken[(layer.name, fmt)])
                per_format[fmt] = _latency(pooled, forms, used_format[(layer.name, fmt)])
        if per_format:  # a layer skipped in its first sweep has none
            first = next(fmt for fmt in formats if fmt in per_format)
            comparisons[layer.name] = by_format[first][layer.name]
            primary = per_format[first]
            found[layer.name] = dataclasses.replace(primary, by_format=per_format) if len(formats) > 1 else primary
    cores = run_meter.stop()
    reasons = [
        f"{name}{'' if len(formats) == 1 else f' ({fmt})'}: {reason}"
        for fmt in formats
        for name, c in by_format[fmt].items()
        for reason in c.reasons
    ]
    reasons += [f"{name}: not measured: {why}" for name, why in skipped.items()]
    if cores is not None and cores > MAX_LOAD_CORES:
        # with threads > 1 one descheduled thread stalls every parallel op for a scheduler slice
        hint = f"; with {run_threads} threads, times are more repeatable with 1" if run_threads > 1 else ""
        reasons.insert(0, f"other processes used {cores:.1f} CPU cores during the run{hint}")
    measurement = Measurement(run_threads, str(device), ", ".join(formats), cores, tuple(reasons))
    return MeasuredLayers(found, measurement, skipped, comparisons, by_format)


def _latency(comparison: Comparison, forms: Sequence[str], memory_format: str) -> LayerLatency:
    """The measured figures of one comparison (``predicted_seconds`` left to the caller)."""
    return LayerLatency(
        predicted_seconds=None,
        measured_seconds={f: comparison.spreads[f].median_seconds for f in forms},
        measured_spread={f: comparison.spreads[f].iqr_seconds for f in forms},
        reliable=comparison.reliable,
        memory_format=memory_format,
        measured_ci={f: ci for f in forms if (ci := comparison.ci.get(f)) and all(map(math.isfinite, ci))} or None,
    )


def _timed_seconds(comparison: Comparison) -> float:
    """The seconds its timed batches took (its warm-up and stand-ins left out: a lower bound of its cost)."""
    return sum(map(sum, comparison.rounds.batches.values())) if comparison.rounds is not None else 0.0


class _Skip(Exception):
    """A layer not timed, with the reason."""


@torch.no_grad()
def _time_layer(
    layer: ConvLayer,
    m: int | None,
    forms: Sequence[str],
    memory_format: str,
    device: str,
    budget: float,
    target_ci: float,
    clock: Clock,
    load_meter: Callable[[], LoadProbe],
    seed: int = 0,
) -> tuple[Comparison, str]:
    """(the comparison of ``layer``'s stand-ins, the memory format used); raises _Skip with the reason."""
    dtype = getattr(torch, layer.dtype, torch.float32)
    if not isinstance(dtype, torch.dtype):
        dtype = torch.float32
    too_big = largest_tensor(layer, m, dtype)
    if too_big:
        raise _Skip(too_big)
    used = memory_format if layer.dims in CHANNELS_LAST else "contiguous"
    try:
        modules = stand_ins(layer, m=m, device=device, dtype=dtype, memory_format=used)
        x = stand_in_input(layer, device=device, dtype=dtype, memory_format=used)
        fns = {form: _call(modules[form], x) for form in forms}
        return compare(
            fns, baseline="original", target_ci=target_ci, max_seconds=budget, clock=clock, load=load_meter(), seed=seed
        ), used
    except RuntimeError as exc:  # e.g. a dtype this device has no kernel for
        line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _Skip(f"could not run: {line[:120]}") from exc


def _call(module: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    return lambda: module(x)


def measure_end_to_end(
    original: nn.Module,
    converted: nn.Module,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    max_seconds: float = 30.0,
    target_ci: float = 0.10,
    device: str = "cpu",
    progress: Progress | None = None,
    clock: Clock | None = None,
    load: LoadProbe | None = None,
) -> tuple[Spread, Spread, bool]:
    """Time ``original(*args, **kwargs)`` against ``converted(...)`` interleaved: (original, converted, reliable).

    Both run in eval mode under no_grad; every module's training flag is restored afterwards, and
    nothing else about the models or inputs is changed (they are timed in the layout given).
    """
    kwargs = dict(kwargs or {})
    modes = [(m, m.training) for model in (original, converted) for m in model.modules()]
    try:
        original.eval()
        converted.eval()
        if progress:
            progress(0, 1)
        with torch.no_grad():
            c = compare(
                {"original": lambda: original(*args, **kwargs), "converted": lambda: converted(*args, **kwargs)},
                baseline="original",
                target_ci=target_ci,
                max_seconds=max_seconds,
                clock=clock or PerfClock(device),
                load=load,
            )
        if progress:
            progress(1, 1)
    finally:
        for module, training in modes:
            module.training = training
    return c.spreads["original"], c.spreads["converted"], c.reliable


def measure(layers: Iterable[ConvLayer], repeats: int | None = None, device: str = "cpu") -> Timing:
    """The 1.2 ``Timing``: every candidate against its m = 1 depthwise→pointwise form (``measure_layers``).

    ``repeats`` is ignored (the stopping rule decides; kept for 1.2 callers); ``Timing.repeats`` is the
    fewest rounds any layer took.
    """
    candidates = [layer for layer in layers if layer.candidate and layer.separable]
    found = measure_layers(candidates, device=device, forms=("original", "dw_pw"), max_seconds_per_layer=0.3, sweeps=1)
    timed = []
    for layer in candidates:
        sep = layer.separable
        predicted = layer.macs / sep.dw_pw.macs if sep and sep.dw_pw.macs else 0.0
        lat = found.get(layer.name)
        if lat is None or lat.measured_seconds is None:
            why = found.skipped.get(layer.name, "not measured")
            timed.append(LayerTiming(layer.name, None, None, None, predicted, skipped=why))
            continue
        seconds, seconds_dw_pw = lat.measured_seconds["original"], lat.measured_seconds["dw_pw"]
        speedup = seconds / seconds_dw_pw if seconds_dw_pw else None
        timed.append(LayerTiming(layer.name, seconds, seconds_dw_pw, speedup, predicted))
    rounds = min((c.spreads["original"].runs for c in found.comparisons.values()), default=0)
    return Timing(device=str(device), threads=found.measurement.threads, repeats=rounds, layers=tuple(timed))
