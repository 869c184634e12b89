"""The HTML report's latency section: the recommendation table and the predicted-vs-measured chart (inline SVG).

Display strings and chart geometry only; the figures come from :mod:`convaudit.formats.latency`.
"""

from __future__ import annotations

import math
from typing import Any

from convaudit.documents.records import Analysis
from convaudit.formats.latency import (
    cells,
    chart_points,
    end_to_end_line,
    latency_lines,
    latency_rows,
    profile_text,
)

__all__ = ["latency_view"]

# Chart geometry (SVG user units; it scales to the page width).
_W, _H, _LEFT, _TOP, _BOTTOM, _RIGHT = 560, 360, 64, 12, 40, 16
#: CSS class of each form's points.
_FORM_CLASS = {"original": "p-orig", "dw_pw": "p-dwpw", "pw_dw": "p-pwdw"}


def latency_view(a: Analysis) -> dict[str, Any] | None:
    """The section's view, or None when no candidate has a recommendation (a 1.2 document, no candidates)."""
    rows = latency_rows(a)
    if not rows:
        return None
    out = []
    for r in rows:
        out.append(
            {
                **cells(r),
                "cls": "yes" if r.action == "convert" else "no",
                "macs_sort": round(r.macs_ratio, 6),
                "bytes_sort": round(r.bytes_ratio, 6),
                "predicted_sort": round(r.predicted_ratio, 6) if r.predicted_ratio is not None else "",
                "predicted_title": (
                    f"predicted {r.predicted_ms[0]:.3f} ms → {r.predicted_ms[1]:.3f} ms" if r.predicted_ms else None
                ),
                "measured_sort": round(r.measured_ratio, 6) if r.measured_ratio is not None else "",
                "unreliable": r.reliable is False,
                "energy_sort": round(r.energy, 4) if r.energy is not None else "",
            }
        )
    m = a.measurement
    return {
        "profile": profile_text(a),
        "uncalibrated": profile_text(a).startswith("uncalibrated"),
        "headline": latency_lines(a),
        "measured": m is not None,
        "how": f"{m.device} · {m.threads} threads · {m.memory_format}" if m else None,
        "end_to_end": end_to_end_line(a),
        "rows": out,
        "chart": _chart(a),
    }


def _chart(a: Analysis) -> dict[str, Any] | None:
    """Log-log scatter of measured against predicted seconds per form, with the diagonal; None unmeasured."""
    points = chart_points(a)
    if not points:
        return None
    values = [v for _, _, p, q, _ in points for v in (p, q)]
    lo = 10 ** math.floor(math.log10(min(values)))
    hi = 10 ** math.ceil(math.log10(max(values)))
    if hi <= lo:
        hi = lo * 10
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    span = math.log10(hi / lo)

    def x(v: float) -> float:
        return round(_LEFT + plot_w * math.log10(v / lo) / span, 2)

    def y(v: float) -> float:
        return round(_TOP + plot_h * (1 - math.log10(v / lo) / span), 2)

    decades = [lo * 10**k for k in range(round(span) + 1)]
    return {
        "width": _W,
        "height": _H,
        "left": _LEFT,
        "right": _W - _RIGHT,
        "top": _TOP,
        "base": _TOP + plot_h,
        "diagonal": {"x1": x(lo), "y1": y(lo), "x2": x(hi), "y2": y(hi)},
        "ticks": [{"x": x(v), "y": y(v), "label": _seconds_label(v)} for v in decades],
        "points": [
            {
                "x": x(p),
                "y": y(q),
                "cls": _FORM_CLASS.get(form, "p-orig") + ("" if reliable else " unrel"),
                "title": f"{name} {form}: predicted {p * 1e3:.3f} ms, measured {q * 1e3:.3f} ms"
                + ("" if reliable else " (unreliable)"),
            }
            for name, form, p, q, reliable in points
        ],
    }


def _seconds_label(v: float) -> str:
    """1e-4 → '100 µs', 0.01 → '10 ms', 1 → '1 s'."""
    for factor, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if v >= factor * 0.999:
            return f"{v / factor:g} {unit}"
    return f"{v / 1e-9:g} ns"
