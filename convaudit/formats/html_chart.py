"""The HTML report's MACs-per-convolution chart: bar geometry, labelled by layer name (inline SVG).

The SVG is drawn at a natural width of at least ``_SLOT`` user units per bar and is never shrunk below
95% of it (``min_width``), so its text stays readable on a narrow page: the chart scrolls inside its
own container instead.
"""

from __future__ import annotations

import math
from typing import Any

from convaudit.documents.records import ConvLayer
from convaudit.formats.common import count, cut_left, si

__all__ = ["chart_view"]

# Geometry in SVG user units: plot width per bar (at least), margins; labels need the bottom margin.
_SLOT, _MIN_W, _H, _LEFT, _TOP, _BOTTOM, _RIGHT = 13, 720, 320, 64, 14, 104, 10
#: Characters of a layer name shown under its bar (the full name is in the tooltip).
_LABEL_CHARS = 17


def chart_view(layers: tuple[ConvLayer, ...]) -> dict[str, Any]:
    """Bar geometry for MACs per conv before and after DW→PW (m = 1), in execution order."""
    n = len(layers)
    width = max(_MIN_W, _LEFT + _RIGHT + _SLOT * n)
    plot_w, plot_h = width - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    top = max(layer.macs for layer in layers) or 1
    step = _nice_step(top)
    ymax = step * math.ceil(top / step)
    y = lambda v: _TOP + plot_h * (1 - v / ymax)  # noqa: E731
    slot = plot_w / n
    base = _TOP + plot_h
    bars = []
    for i, layer in enumerate(layers):
        after = layer.separable.dw_pw.macs if layer.separable else layer.macs
        w = min(slot * 0.76, 56)
        x = _LEFT + i * slot + (slot - w) / 2
        tip = f"#{i + 1} {layer.name}: {count(layer.macs)} MACs"
        tip += (
            f" → {count(after)} predicted (DW→PW, m = 1)"
            if layer.separable
            else f" (not a candidate: {layer.skip_reason})"
        )
        cx = round(_LEFT + (i + 0.5) * slot, 2)
        bars.append(
            {
                "x": round(x, 2),
                "w": round(max(w, 0.8), 2),
                "href": f"#layer-{i + 1}",
                "title": tip,
                "y0": round(y(layer.macs), 2),
                "h0": round(base - y(layer.macs), 2),
                "y1": round(y(after), 2),
                "h1": round(base - y(after), 2),
                "candidate": layer.separable is not None,
                "label": cut_left(layer.name, _LABEL_CHARS),
                "label_x": cx,
                "label_y": round(base + 8, 2),
                "label_transform": f"rotate(-65 {cx} {round(base + 8, 2)})",
            }
        )
    return {
        "width": width,
        "min_width": round(width * 0.95),
        "max_width": round(width * 1.2),
        "height": _H,
        "left": _LEFT,
        "right": width - _RIGHT,
        "base": base,
        "bars": bars,
        "yticks": [{"y": round(y(v), 2), "label": si(v).replace(".00 ", " ")} for v in _frange(0, ymax, step)],
    }


def _nice_step(top: float, ticks: int = 4) -> float:
    """A 1/2/5×10^k step giving about ``ticks`` gridlines up to ``top``."""
    raw = top / ticks
    mag = 10 ** math.floor(math.log10(raw))
    return next(s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw)


def _frange(start: float, stop: float, step: float) -> list[float]:
    """start, start + step, … stop (inclusive), without float drift in the count."""
    return [start + k * step for k in range(round((stop - start) / step) + 1)]
