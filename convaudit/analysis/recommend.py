"""Recommendations: per candidate, convert (with order and m) or keep, and why — by time, not MACs alone.

A separable form is recommended only when it is faster on this device by ``min_speedup`` (predicted
by the device profile, or measured with ``--measure`` when that figure is reliable) *and* keeps
``min_energy`` of the layer's weight energy at its m (when the weights were read) *and* costs at most
``max_macs_ratio`` of its MACs (a margin for the prediction's error). Per order the m
considered is the smallest keeping ``min_energy`` (1 without weight figures); the faster order wins.
Kept layers say why: the fastest form is slower on this device, its savings are too small, or only
forms keeping too little of the weight energy would be faster (low separability); a kept layer's
``order`` and ``m`` name the form its reason weighs. The latency figures (predicted, and measured with
``--measure``) are of both orders at the m of the form the predicted recommendation names
(``reference_m``); with reliable measurements the recommendation is decided on them.

Deterministic given the profile: no measurement, no randomness, the same records give the same answer.
Times are one call each at the layer's first-call input shape (``LayerLatency``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from convaudit.documents.latency import LayerLatency, LayerTiming, Measurement, Recommendation, Timing
from convaudit.documents.records import ConvLayer
from convaudit.latency.builtin import default_profile
from convaudit.latency.cache import load_profile
from convaudit.latency.measure import BOTH, MEMORY_FORMATS, measure_layers
from convaudit.latency.profile import ConvShape, DeviceProfile, predict_forms, predict_forms_many
from convaudit.options import AnalysisOptions
from convaudit.vocab import LAYER_ORDERS, Order

__all__ = [
    "CONVERT",
    "KEEP",
    "Form",
    "RecommendOptions",
    "decide",
    "device_profile",
    "predicted_latency",
    "recommend",
    "reference_m",
    "with_latency",
]

CONVERT, KEEP = "convert", "keep"
#: What a report says of predictions from the built-in profile.
UNCALIBRATED = "uncalibrated: the built-in default profile; convaudit calibrate-device fits one to this machine"


@dataclass(frozen=True)
class RecommendOptions:
    """The thresholds of a recommendation."""

    min_speedup: float = 1.1  #: convert only forms taking at most 1/min_speedup of the conv's time
    min_energy: float | None = 0.9  #: ... and keeping this share of the weight energy (None: ignore the energy)
    #: ... and costing at most this share of the conv's MACs (a guard against a prediction's error)
    max_macs_ratio: float = 0.8
    memory_format: str = "contiguous"  #: of the predicted times


@dataclass(frozen=True)
class Form:
    """One separable form of a layer as a recommendation weighs it."""

    order: str
    m: int
    time_ratio: float  #: seconds of the form / seconds of the conv
    energy: float | None  #: weight energy kept at m (None: not read)
    source: str  #: "predicted" or "measured"
    macs_ratio: float


def device_profile(given: Any = None) -> tuple[DeviceProfile, str]:
    """(the profile to predict with, what reports say of it): ``given``, else the calibrated one, else the default."""
    profile = given if given is not None else load_profile() or default_profile()
    return profile, "calibrated on this machine" if profile.calibrated else UNCALIBRATED


#: One profile's predictions: (shape, m) -> ``predict_forms``' times, and shape -> ``predict_seconds``.
_Memo = dict[Any, Any]


def with_latency(
    layers: Sequence[ConvLayer],
    options: AnalysisOptions,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[ConvLayer], Measurement | None, Timing | None, str]:
    """Every candidate with its predicted (and with ``options.timing`` measured) latency and recommendation.

    Returns (layers, how the measurement ran, the 1.2 ``Timing`` view of it, what the profile is).
    """
    profile, about = device_profile(options.latency_profile)
    formats = MEMORY_FORMATS if options.memory_format == BOTH else (options.memory_format,)
    opts = RecommendOptions(memory_format=formats[0])  # with both, decided on contiguous (PyTorch's default)
    # one prediction per candidate: its recommendation names the m the figures (and the measurement) are taken at
    memo: _Memo = {}  # NB: a model repeats its conv shapes (blocks)
    plans = [(x, _plan(x, opts)) for x in layers if x.candidate and x.separable]
    _predict_ahead(profile, [(shape, m) for _, (ms, shape) in plans for m in {1, *ms.values()}], memo)
    ahead = {x.name: _predicted(x, profile, opts, memo, plan) for x, plan in plans}
    m_ref = {name: rec.m or 1 for name, (rec, _, _) in ahead.items()}
    if len(formats) > 1:  # what ``_latency`` asks for
        _predict_ahead(
            profile, [(ConvShape.from_layer(x, f), m_ref[x.name]) for x, _ in plans for f in formats[1:]], memo
        )
    found: Mapping[str, LayerLatency] = {}
    measurement = timing = None
    if options.timing:
        todo = [x for x in layers if x.name in m_ref]
        run = measure_layers(
            todo,
            memory_format=options.memory_format,
            max_seconds_per_layer=options.timing_seconds,
            max_seconds=None,
            multipliers=m_ref,
            progress=progress,
        )
        found, measurement = run, run.measurement
        rounds = min((c.spreads["original"].runs for c in run.comparisons.values()), default=0)
        timing = Timing(measurement.device, measurement.threads, rounds, tuple(_timing(x, run) for x in todo))
    out = []
    for layer in layers:
        if layer.name not in m_ref:
            out.append(layer)
            continue
        got = found.get(layer.name)
        rec, chosen, times = ahead[layer.name]
        latency = _latency(layer, got, times[m_ref[layer.name]], profile, m_ref[layer.name], formats, memo)
        rec = _with_measured(layer, rec, chosen, got, opts)
        if options.timing and got is None:
            rec = _note(rec, f"not measured: {getattr(found, 'skipped', {}).get(layer.name, 'no time taken')}")
        out.append(layer.replaced(latency=latency, recommendation=rec))
    return out, measurement, timing, about


def _latency(
    layer: ConvLayer,
    got: LayerLatency | None,
    predicted: dict[str, float],
    profile: DeviceProfile,
    m: int,
    formats: Sequence[str],
    memo: _Memo,
) -> LayerLatency:
    """The layer's latency record: measured figures (if any) with the predicted ones, per format with two."""
    primary = (
        dataclasses.replace(got, predicted_seconds=predicted, by_format=None)
        if got is not None
        else LayerLatency(predicted, None, None, None, formats[0])
    )
    if len(formats) < 2:
        return primary
    by_format = {formats[0]: primary}
    for fmt in formats[1:]:
        seconds = _forms(profile, ConvShape.from_layer(layer, fmt), m, memo)
        other = (got.by_format or {}).get(fmt) if got is not None else None
        by_format[fmt] = (
            dataclasses.replace(other, predicted_seconds=seconds)
            if other is not None
            else LayerLatency(seconds, None, None, None, fmt)
        )
    return dataclasses.replace(primary, by_format=by_format)


def _timing(layer: ConvLayer, run: Any) -> LayerTiming:
    """The 1.2 record of one layer: the conv against its dw_pw form (at the latency's m)."""
    sep = layer.separable
    promised = layer.macs / sep.dw_pw.macs if sep and sep.dw_pw.macs else 0.0
    lat = run.get(layer.name)
    if lat is None or not lat.measured_seconds:
        return LayerTiming(layer.name, None, None, None, promised, skipped=run.skipped.get(layer.name, "not measured"))
    seconds, dw_pw = lat.measured_seconds["original"], lat.measured_seconds["dw_pw"]
    return LayerTiming(layer.name, seconds, dw_pw, seconds / dw_pw if dw_pw else None, promised)


def recommend(
    layer: ConvLayer,
    profile: DeviceProfile,
    measured: LayerLatency | None = None,
    options: RecommendOptions | None = None,
) -> Recommendation:
    """Convert ``layer`` (order, m) or keep it, with the reason.

    Args:
        layer: a candidate (``separable`` set); a non-candidate is kept with its skip reason.
        profile: the device profile predicting the times (the decision without ``measured``).
        measured: times measured at ``reference_m`` for both orders; used when ``reliable``.
        options: thresholds (default :class:`RecommendOptions`).
    """
    opts = options or RecommendOptions()
    if not layer.candidate or layer.separable is None:
        return Recommendation(KEEP, None, None, layer.skip_reason or "not a candidate")
    predicted, chosen, _ = _predicted(layer, profile, opts, {})
    return _with_measured(layer, predicted, chosen, measured, opts)


def _predicted(
    layer: ConvLayer,
    profile: DeviceProfile,
    opts: RecommendOptions,
    memo: _Memo,
    plan: tuple[dict[str, int], ConvShape] | None = None,
) -> tuple[Recommendation, list[Form], dict[int, dict[str, float]]]:
    """(the predicted recommendation, the forms it weighed at their m, the predicted seconds by m)."""
    ms, shape = plan or _plan(layer, opts)
    times = {m: _forms(profile, shape, m, memo) for m in {1, *ms.values()}}
    chosen = [_form(layer, o, ms[o], times[ms[o]], "predicted") for o in LAYER_ORDERS]
    at_one = [f if f.m == 1 else _form(layer, f.order, 1, times[1], "predicted") for f in chosen]  # NB: equal at m 1
    return decide(chosen, at_one, opts), chosen, times


def _plan(layer: ConvLayer, opts: RecommendOptions) -> tuple[dict[str, int], ConvShape]:
    """(the m per order ``_predicted`` weighs, the layer's shape)."""
    return {o: _energy_m(layer, o, opts) for o in LAYER_ORDERS}, ConvShape.from_layer(layer, opts.memory_format)


def _predict_ahead(profile: DeviceProfile, wanted: Sequence[tuple[ConvShape, int]], memo: _Memo) -> None:
    """Fill ``memo`` (as ``_forms`` does) for each (shape, m) at once: one array batch per fit, not one per shape."""
    todo = [key for key in dict.fromkeys(wanted) if key not in memo]
    memo.update(zip(todo, predict_forms_many(profile, todo, cache=memo), strict=True))


def _forms(profile: DeviceProfile, shape: ConvShape, m: int, memo: _Memo) -> dict[str, float]:
    """``predict_forms(profile, shape, m)``, each (shape, m) once per ``memo`` (one profile); a copy of its own."""
    key = (shape, m)
    times = memo.get(key)
    if times is None:
        times = memo[key] = predict_forms(profile, shape, m, cache=memo)
    return dict(times)  # the records hold it: none shares another's


def _with_measured(
    layer: ConvLayer,
    predicted: Recommendation,
    chosen: list[Form],
    measured: LayerLatency | None,
    opts: RecommendOptions,
) -> Recommendation:
    """The predicted recommendation, or (with a reliable measurement at its m) the one the measurement decides."""
    if measured is None or not measured.measured_seconds or measured.reliable is None:
        return predicted
    seconds = measured.measured_seconds
    m = predicted.m or 1
    if not measured.reliable or not seconds.get("original"):
        return _note(predicted, "measured figures unreliable: decided on the prediction")
    forms = [_form(layer, o, m, seconds, "measured") for o in LAYER_ORDERS if o in seconds]
    context = [f for f in chosen if all((f.order, f.m) != (g.order, g.m) for g in forms)]
    return decide(forms, context, opts) if forms else predicted


def decide(forms: Sequence[Form], context: Sequence[Form], options: RecommendOptions) -> Recommendation:
    """The recommendation from ``forms``; ``context`` (other forms, e.g. at m = 1) only explains a keep.

    Convert to the fastest form that is fast enough and keeps enough weight energy; otherwise keep: low
    separability (only forms keeping too little energy are fast enough), else slower on this device (the
    fastest form takes at least the conv's time), else savings too small.
    """
    need = 1 / options.min_speedup
    floor = options.min_energy

    def enough(f: Form) -> bool:
        return floor is None or f.energy is None or f.energy >= floor - 1e-9

    weighed = [*forms, *context]
    timely = sorted((f for f in forms if enough(f) and f.time_ratio <= need), key=_speed)
    fast = [f for f in timely if f.macs_ratio <= options.max_macs_ratio]
    if fast:
        best = fast[0]
        energy = f", keeps {best.energy:.0%} of the weight energy" if best.energy is not None else ""
        why = (
            f"{best.source} {1 / best.time_ratio:.2f}× faster ({best.time_ratio:.2f}× the time, "
            f"{best.macs_ratio:.2f}× the MACs){energy}"
        )
        return Recommendation(CONVERT, best.order, best.m, why)
    if timely:
        t = timely[0]
        why = (
            f"savings too small: {t.order} at m = {t.m} is {t.source} {t.time_ratio:.2f}× the time but costs "
            f"{t.macs_ratio:.2f}× the MACs (needs ≤ {options.max_macs_ratio:.2f}×)"
        )
        return Recommendation(KEEP, t.order, t.m, why)
    quick = sorted((f for f in forms if f.time_ratio <= need), key=_speed)
    quick = quick or sorted((f for f in context if f.time_ratio <= need), key=_speed)
    if quick:  # fast enough, but only where too little of the weight energy is kept
        q = quick[0]
        why = (
            f"low separability: {q.order} at m = {q.m} ({q.source} {q.time_ratio:.2f}× the time) keeps only "
            f"{q.energy or 0:.0%} of the weight energy (needs {floor or 0:.0%})"
        )
        ok = [f for f in weighed if enough(f)]
        if ok:
            e = min(ok, key=_speed)
            why += f"; at m = {e.m} ({e.order}) it is {e.source} {e.time_ratio:.2f}× the time"
        return Recommendation(KEEP, q.order, q.m, why)
    best = min(forms or weighed, key=_speed)
    what = f"the fastest form ({best.order}, m = {best.m}) is {best.source} to take {best.time_ratio:.2f}× the time"
    if best.time_ratio >= 1:
        return Recommendation(KEEP, best.order, best.m, f"slower on this device: {what}")
    return Recommendation(KEEP, best.order, best.m, f"savings too small: {what} (needs ≤ {need:.2f}×)")


def _speed(form: Form) -> tuple[float, str, int]:
    return form.time_ratio, form.order, form.m


def reference_m(layer: ConvLayer, profile: DeviceProfile, options: RecommendOptions | None = None) -> int:
    """The m the latency figures are taken at: that of the form the predicted recommendation names."""
    rec = recommend(layer, profile, None, options)
    return rec.m if rec.m is not None else 1


def predicted_latency(
    layer: ConvLayer, profile: DeviceProfile, m: int, memory_format: str = "contiguous"
) -> dict[str, float]:
    """Predicted seconds of one call of the conv and of both separable forms at ``m``, keyed by ``FORMS``."""
    return predict_forms(profile, ConvShape.from_layer(layer, memory_format), m)


def _form(layer: ConvLayer, order: str, m: int, seconds: dict[str, float], source: str) -> Form:
    ratio = seconds[order] / seconds["original"] if seconds.get("original", 0) > 0 else float("inf")
    return Form(order, m, ratio, _energy(layer, order, m), source, _macs_ratio(layer, order, m))


def _energy(layer: ConvLayer, order: str, m: int) -> float | None:
    shares = getattr(layer.separability, order) if layer.separability else None
    return shares[min(m, len(shares)) - 1] if shares else None


def _energy_m(layer: ConvLayer, order: str, opts: RecommendOptions) -> int:
    """The smallest m keeping ``min_energy`` of the weight energy in ``order`` (1 without weight figures)."""
    shares = getattr(layer.separability, order) if layer.separability else None
    if not shares or opts.min_energy is None:
        return 1
    return next((m for m, e in enumerate(shares, 1) if e >= opts.min_energy - 1e-9), len(shares))


def _macs_ratio(layer: ConvLayer, order: str, m: int) -> float:
    """MACs of ``order`` at ``m`` over the conv's, from the m-linear costs in ``layer.separable``."""
    sep = layer.separable
    if sep is None or not layer.macs:
        return 1.0
    cost = sep.dw_pw if order == Order.DW_PW else sep.pw_dw
    return cost.macs * m / cost.multiplier / layer.macs


def _note(rec: Recommendation, note: str) -> Recommendation:
    return Recommendation(rec.action, rec.order, rec.m, f"{rec.reason} ({note})")
