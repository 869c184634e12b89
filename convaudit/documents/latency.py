"""Latency records: predicted and measured times of a conv and its separable forms, and what to do with it.

Plain data, no torch. Times are seconds of one call at the layer's first-call input shape (batch as
analysed). Dicts of times are keyed by the form: ``original``, ``dw_pw``, ``pw_dw`` (schema 1.3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "FORMS",
    "EndToEnd",
    "LayerLatency",
    "LayerTiming",
    "Measurement",
    "Recommendation",
    "Spread",
    "Timing",
    "end_to_end_from_dict",
    "end_to_end_to_dict",
    "latency_from_dict",
    "timing_from_dict",
]

#: The keys of every dict of times: the conv as it is, and its two separable forms.
FORMS = ("original", "dw_pw", "pw_dw")


@dataclass(frozen=True)
class Spread:
    """A measured time: the median over rounds, its interquartile range, and how many rounds."""

    median_seconds: float
    iqr_seconds: float
    runs: int


@dataclass(frozen=True)
class LayerLatency:
    """Predicted and (with ``--measure``) measured time of a candidate and its separable forms.

    Each dict is keyed by ``original``, ``dw_pw``, ``pw_dw``; a form missing from a dict was not
    predicted or measured. ``measured_spread`` holds the interquartile ranges of ``measured_seconds``.
    """

    predicted_seconds: dict[str, float] | None  #: from the device profile (a prediction, never a measurement)
    measured_seconds: dict[str, float] | None  #: medians, with --measure
    measured_spread: dict[str, float] | None  #: interquartile ranges of the medians above
    reliable: bool | None  #: False: the measurement was noisy (see Measurement.unreliable_reasons); None: not measured
    memory_format: str | None  #: "contiguous" or "channels_last" of the measured figures
    #: with both memory formats measured (1.4): format → its own figures (``by_format`` None); the fields
    #: above are those of ``memory_format``, the one the recommendation is decided on
    by_format: dict[str, LayerLatency] | None = None
    #: 95% confidence interval (low, high) of each form's measured time over the original's: the median of
    #: paired per-round ratios; a second run at the same load lands inside it 95% of the time (1.4)
    measured_ci: dict[str, tuple[float, float]] | None = None


@dataclass(frozen=True)
class Recommendation:
    """What to do with one candidate: convert it (with order and m) or keep it, and why."""

    action: str  #: "convert" or "keep"
    order: str | None  #: a vocab.Order: the form to convert to (keep: the form the reason weighs)
    m: int | None  #: its channel multiplier (None: not a candidate)
    reason: str


@dataclass(frozen=True)
class EndToEnd:
    """The whole model timed before and after converting the recommended set, interleaved."""

    original: Spread
    recommended: Spread
    reliable: bool
    layers: tuple[str, ...]  #: the layers converted for ``recommended``
    memory_format: str | None = None  #: of the figures above (None: a 1.3 document, contiguous)
    #: with both memory formats measured (1.4): format → its own figures (``by_format`` None)
    by_format: dict[str, EndToEnd] | None = None


@dataclass(frozen=True)
class Measurement:
    """How ``--measure`` ran: threads, device, memory format, the machine's load, and why figures are unreliable."""

    threads: int
    device: str
    memory_format: str  #: the memory format(s) measured, e.g. "contiguous, channels_last"
    load: float | None  #: other processes' CPU load during the run, in cores (None: not readable)
    unreliable_reasons: tuple[str, ...]


@dataclass(frozen=True)
class LayerTiming:
    """Measured wall-clock time of one candidate conv and of its depthwise→pointwise (m = 1) replacement."""

    name: str
    seconds: float | None  #: the conv as it is, one call at its first call's shape (median)
    seconds_dw_pw: float | None  #: the replacement at the same shape (median)
    speedup_measured: float | None  #: seconds / seconds_dw_pw
    speedup_predicted: float  #: MACs / MACs of the replacement: what FLOP counting promises
    skipped: str | None = None  #: why nothing was measured


@dataclass(frozen=True)
class Timing:
    """How the layer times were measured."""

    device: str
    threads: int
    repeats: int  #: timed calls per measurement (after warm-up); the median is reported
    layers: tuple[LayerTiming, ...]


def timing_from_dict(d: dict[str, Any] | None) -> Timing | None:
    """Rebuild a Timing from its JSON form."""
    if not d:
        return None
    return Timing(d["device"], d["threads"], d["repeats"], tuple(LayerTiming(**t) for t in d["layers"]))


def latency_from_dict(d: dict[str, Any] | None) -> LayerLatency | None:
    """Rebuild a LayerLatency from its JSON form (1.3 and 1.4: ``by_format`` per memory format)."""
    if not d:
        return None
    by_format, ci = d.get("by_format"), d.get("measured_ci")
    if by_format:
        d = d | {"by_format": {fmt: latency_from_dict(v) for fmt, v in by_format.items()}}
    if ci:
        d = d | {"measured_ci": {form: (low, high) for form, (low, high) in ci.items()}}
    return LayerLatency(**d)


def end_to_end_to_dict(e2e: EndToEnd) -> dict[str, Any]:
    """The JSON form: ``original`` and ``recommended`` each carry ``measured_seconds`` and its spread."""

    def side(s: Spread) -> dict[str, Any]:
        return {"measured_seconds": s.median_seconds, "measured_spread": s.iqr_seconds, "runs": s.runs}

    doc: dict[str, Any] = {
        "original": side(e2e.original),
        "recommended": side(e2e.recommended),
        "reliable": e2e.reliable,
        "layers": list(e2e.layers),
    }
    if e2e.memory_format is not None:
        doc["memory_format"] = e2e.memory_format
    if e2e.by_format:
        doc["by_format"] = {fmt: end_to_end_to_dict(v) for fmt, v in e2e.by_format.items()}
    return doc


def end_to_end_from_dict(d: dict[str, Any] | None) -> EndToEnd | None:
    """Rebuild an EndToEnd from ``end_to_end_to_dict`` output."""
    if not d:
        return None

    def side(s: dict[str, Any]) -> Spread:
        return Spread(s["measured_seconds"], s["measured_spread"], s["runs"])

    by_format = {fmt: end_to_end_from_dict(v) for fmt, v in (d.get("by_format") or {}).items()}
    return EndToEnd(
        side(d["original"]),
        side(d["recommended"]),
        d["reliable"],
        tuple(d["layers"]),
        d.get("memory_format"),
        {fmt: v for fmt, v in by_format.items() if v is not None} or None,
    )
