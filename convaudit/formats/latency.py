"""Latency figures shared by the renderers: per candidate the MAC, bytes, predicted and measured time ratios.

Every row is about one form: the one the recommendation names (converted to, or weighed to keep), at
the m the latency figures were taken at. Predicted times are labelled predictions (and "uncalibrated"
from the built-in profile); measured ones carry their spread (interquartile range) and "unreliable"
when the measurement was flagged. Only records are read here (no torch).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from convaudit.documents.latency import EndToEnd, Spread
from convaudit.documents.records import Analysis, ConvLayer

__all__ = [
    "COLUMNS",
    "LatencyRow",
    "cells",
    "chart_points",
    "end_to_end_line",
    "latency_lines",
    "latency_rows",
    "ms",
    "predicted_totals",
    "profile_text",
    "slower_text",
    "spread_text",
]

#: Bytes per element of a dtype name (others count as 4).
_ITEMSIZE = {"float64": 8, "float16": 2, "bfloat16": 2, "int8": 1, "uint8": 1}


@dataclass(frozen=True)
class LatencyRow:
    """One candidate's figures side by side, for one form (order at m)."""

    name: str
    action: str  #: "convert" | "keep"
    order: str
    m: int
    reason: str
    macs_ratio: float
    bytes_ratio: float
    predicted_ratio: float | None
    measured_ratio: float | None
    predicted_ms: tuple[float, float] | None  #: (conv, form) milliseconds, predicted
    measured_ms: tuple[float, float] | None  #: (conv, form) milliseconds, measured medians
    spread_ms: tuple[float, float] | None  #: their interquartile ranges
    reliable: bool | None
    energy: float | None  #: weight energy the form keeps at m
    #: the other memory formats measured: (format, predicted ratio, measured ratio, reliable)
    other_formats: tuple[tuple[str, float | None, float | None, bool | None], ...] = ()
    measured_ci: tuple[float, float] | None = None  #: 95% CI of the measured ratio

    @property
    def form(self) -> str:
        """'dw_pw m=1'."""
        return f"{self.order} m={self.m}"

    @property
    def measured_text(self) -> str:
        """'0.85× [0.80–0.91] (2.66 ±0.05 → 2.26 ±0.04 ms)' (the ratio's 95% CI), 'unreliable' when flagged; '—'."""
        if self.measured_ratio is None or self.measured_ms is None or self.spread_ms is None:
            return "—"
        (a, b), (da, db) = self.measured_ms, self.spread_ms
        ci = f" [{self.measured_ci[0]:.2f}–{self.measured_ci[1]:.2f}]" if self.measured_ci else ""
        text = f"{self.measured_ratio:.2f}×{ci} ({a:.3f} ±{da:.3f} → {b:.3f} ±{db:.3f} ms)"
        text += " unreliable" if self.reliable is False else ""
        for fmt, _, measured, reliable in self.other_formats:
            if measured is not None:
                text += f"; {fmt} {measured:.2f}×" + (" unreliable" if reliable is False else "")
        return text

    @property
    def predicted_text(self) -> str:
        """'0.85×', '—' without a prediction."""
        return "—" if self.predicted_ratio is None else f"{self.predicted_ratio:.2f}×"

    @property
    def energy_text(self) -> str:
        """'93%', '—' without weights."""
        return "—" if self.energy is None else f"{self.energy:.0%}"


#: The recommendation table's columns: (key of ``cells``, heading).
COLUMNS = (
    ("name", "layer"),
    ("action", "recommendation"),
    ("form", "form"),
    ("macs", "MACs ×"),
    ("bytes", "bytes ×"),
    ("predicted", "predicted time ×"),
    ("measured", "measured time ×"),
    ("energy", "energy"),
    ("reason", "reason"),
)


def cells(row: LatencyRow) -> dict[str, str]:
    """The display strings of one row, keyed as ``COLUMNS`` (the Markdown and HTML tables show the same)."""
    return {
        "name": row.name,
        "action": row.action,
        "form": row.form,
        "macs": f"{row.macs_ratio:.2f}×",
        "bytes": f"{row.bytes_ratio:.2f}×",
        "predicted": row.predicted_text,
        "measured": row.measured_text,
        "energy": row.energy_text,
        "reason": row.reason,
    }


def latency_rows(analysis: Analysis) -> list[LatencyRow]:
    """A row per candidate with a recommendation, in execution order."""
    return [row for layer in analysis.layers if (row := _row(layer)) is not None]


def _row(layer: ConvLayer) -> LatencyRow | None:
    rec, lat, sep = layer.recommendation, layer.latency, layer.separable
    if rec is None or sep is None or not layer.candidate:
        return None
    order, m = str(rec.order or "dw_pw"), rec.m or 1
    cost = sep.dw_pw if order == "dw_pw" else sep.pw_dw
    macs_ratio = cost.macs * m / cost.multiplier / layer.macs if layer.macs else 1.0
    pred = lat.predicted_seconds if lat else None
    meas = lat.measured_seconds if lat else None
    spread = lat.measured_spread if lat else None
    energy = None
    if layer.separability is not None:
        shares = getattr(layer.separability, order)
        energy = shares[min(m, len(shares)) - 1] if shares else None
    return LatencyRow(
        name=layer.name,
        action=rec.action,
        order=order,
        m=m,
        reason=rec.reason,
        macs_ratio=macs_ratio,
        bytes_ratio=_bytes_ratio(layer, cost.bytes, cost.multiplier, m),
        predicted_ratio=_ratio(pred, order),
        measured_ratio=_ratio(meas, order),
        predicted_ms=_pair(pred, order),
        measured_ms=_pair(meas, order),
        spread_ms=_pair(spread, order),
        reliable=lat.reliable if lat else None,
        energy=energy,
        other_formats=tuple(
            (fmt, _ratio(other.predicted_seconds, order), _ratio(other.measured_seconds, order), other.reliable)
            for fmt, other in list(((lat.by_format or {}) if lat else {}).items())[1:]  # the first: the row's own
        ),
        measured_ci=(lat.measured_ci or {}).get(order) if lat else None,
    )


def _bytes_ratio(layer: ConvLayer, bytes_at: int, m_at: int, m: int) -> float:
    """Bytes of the form at ``m`` over the conv's: the input and output are moved once, the rest scales with m.

    NB: the bias is counted as scaling with m (a few bytes); calls are summed as in the records.
    """
    if not layer.bytes:
        return 1.0
    itemsize = _ITEMSIZE.get(layer.dtype, 4)
    fixed = (layer.input_pixels * layer.in_channels + layer.output_pixels * layer.out_channels) * itemsize
    if not fixed:  # a 1.2 record without pixel counts: the figure at the records' m
        return bytes_at / layer.bytes
    return (fixed + (bytes_at - fixed) * m / m_at) / layer.bytes


def _ratio(seconds: dict[str, float] | None, order: str) -> float | None:
    if not seconds or not seconds.get("original") or order not in seconds:
        return None
    return seconds[order] / seconds["original"]


def _pair(seconds: dict[str, float] | None, order: str) -> tuple[float, float] | None:
    if not seconds or "original" not in seconds or order not in seconds:
        return None
    return seconds["original"] * 1e3, seconds[order] * 1e3


def ms(seconds: float) -> str:
    """0.0123 → '12.300 ms'."""
    return f"{seconds * 1e3:.3f} ms"


def spread_text(s: Spread) -> str:
    """'12.300 ms ±0.400 (IQR, 31 rounds)'."""
    return f"{ms(s.median_seconds)} ±{s.iqr_seconds * 1e3:.3f} (IQR, {s.runs} rounds)"


def profile_text(analysis: Analysis) -> str:
    """What the predictions come from: 'uncalibrated: ...' or 'calibrated on this machine'."""
    return analysis.environment.get("latency profile", "a device profile")


def end_to_end_line(analysis: Analysis) -> str | None:
    """The whole model before and after converting the recommended set, measured (per format); None without it."""
    e = analysis.end_to_end
    if e is None:
        return None
    lines = [
        _end_to_end_text(v, fmt if len(e.by_format or {}) > 1 else None) for fmt, v in (e.by_format or {"": e}).items()
    ]
    return f"end to end, measured: {'; '.join(lines)}"


def slower_text(e: EndToEnd) -> str | None:
    """What the never-slower guard says: the recommended set measured slower (reliably or not); None if not."""
    ratio = e.recommended.median_seconds / e.original.median_seconds if e.original.median_seconds else math.nan
    if not ratio > 1:
        return None
    where = f" in {e.memory_format}" if e.memory_format else ""
    if e.reliable:
        return (
            f"SLOWER: the recommended set takes {ratio:.2f}× the original's time end to end{where}; "
            "do not convert it on this device as recommended"
        )
    return f"measured {ratio:.2f}× the original's time end to end{where}, but the measurement is unreliable"


def _end_to_end_text(e: EndToEnd, fmt: str | None) -> str:
    ratio = e.recommended.median_seconds / e.original.median_seconds if e.original.median_seconds else math.nan
    flag = "" if e.reliable else " — unreliable (noisy measurement; not a result)"
    slower = " — SLOWER than the original" if e.reliable and ratio > 1 else ""
    head = f"{fmt}: " if fmt else ""
    return (
        f"{head}original {spread_text(e.original)}, with the {len(e.layers)} recommended "
        f"layers converted {spread_text(e.recommended)}: {ratio:.2f}× the time{slower}{flag}"
    )


def predicted_totals(analysis: Analysis, rows: Sequence[LatencyRow]) -> tuple[float, float]:
    """Predicted milliseconds of the candidates (times their calls) as they are, and with the recommended converted."""
    layers = {layer.name: layer for layer in analysis.layers}
    before = after = 0.0
    for r in rows:
        if r.predicted_ms is not None:
            calls = layers[r.name].calls
            before += r.predicted_ms[0] * calls
            after += (r.predicted_ms[1] if r.action == "convert" else r.predicted_ms[0]) * calls
    return before, after


def latency_lines(analysis: Analysis) -> list[str]:
    """The headline: predicted time of the candidates before/after the recommended set, measurement, end to end."""
    rows = latency_rows(analysis)
    if not rows:
        return []
    before, after = predicted_totals(analysis, rows)
    chosen = sum(1 for r in rows if r.action == "convert")
    share = after / before if before else 1.0
    lines = [
        f"predicted time ({profile_text(analysis)}): candidates {before:.3f} ms, with the {chosen} recommended of "
        f"{len(rows)} converted {after:.3f} ms ({share:.2f}×) — a prediction, not a measurement"
    ]
    m = analysis.measurement
    if m is not None:
        load = "not readable" if m.load is None else f"{m.load:.1f} cores"
        flagged = sum(1 for r in rows if r.reliable is False)
        lines.append(
            f"measured on {m.device} ({m.threads} threads, {m.memory_format}; other processes' load {load}): "
            f"median of interleaved rounds, ± interquartile range; {flagged} of {len(rows)} layers unreliable"
        )
        lines += [f"unreliable: {why}" for why in m.unreliable_reasons[:5]]
        if len(m.unreliable_reasons) > 5:
            lines.append(f"unreliable: … {len(m.unreliable_reasons) - 5} more (see the JSON)")
    e2e = end_to_end_line(analysis)
    if e2e:
        lines.append(e2e)
    return lines


def chart_points(analysis: Analysis) -> list[tuple[str, str, float, float, bool]]:
    """(layer, form, predicted seconds, measured seconds, reliable) of every measured form, conv included."""
    points = []
    for layer in analysis.layers:
        lat = layer.latency
        if lat is None or not lat.predicted_seconds or not lat.measured_seconds:
            continue
        for form, measured in lat.measured_seconds.items():
            predicted = lat.predicted_seconds.get(form)
            if predicted and measured and predicted > 0 and measured > 0:
                points.append((layer.name, form, predicted, measured, lat.reliable is not False))
    return points
