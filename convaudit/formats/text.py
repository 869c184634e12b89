"""Plain text: the summary, then one line per conv; also the short terminal summary of the CLI."""

from __future__ import annotations

from convaudit.documents.records import Analysis, ConvLayer
from convaudit.formats.common import (
    costliest,
    count,
    kernel,
    ratio,
    shape,
    summary_lines,
    where,
)
from convaudit.formats.latency import LatencyRow, latency_rows, profile_text
from convaudit.formats.signature import text_signature

__all__ = ["render_text", "terminal_summary"]

_HEADER = (
    f"{'layer':<36} {'kind':<11} {'kernel':<9} {'in → out':<28} {'params':>11} {'MACs':>15} "
    f"{'DW+PW params (m=1)':>22} {'DW→PW MACs':>15} {'ratio':>7}"
)


def _row(layer: ConvLayer) -> str:
    sep = layer.separable
    alt = count(sep.dw_pw.macs) if sep else "—"
    parts = f"{count(sep.dw_pw.dw_params)} + {count(sep.dw_pw.pw_params)} = {count(sep.dw_pw.params)}" if sep else "—"
    r = ratio(sep.dw_pw.macs_ratio) if sep else ""
    io = f"{shape(layer.input_shape)} → {shape(layer.output_shape)}"
    name = layer.name if len(layer.name) <= 36 else "…" + layer.name[-35:]
    return (
        f"{name:<36} {layer.kind:<11} {kernel(layer):<9} {io:<28} {count(layer.params):>11} "
        f"{count(layer.macs):>15} {parts:>22} {alt:>15} {r:>7}"
    )


_LATENCY_HEADER = (
    f"{'layer':<36} {'action':<7} {'form':<10} {'MACs×':>6} {'bytes×':>6} {'pred.×':>6} "
    f"{'energy':>6}  {'measured× (conv → form, ±IQR)':<44} reason"
)


def _latency_row(r: LatencyRow) -> str:
    """MAC, bytes, predicted and measured time ratios and the weight energy of the form, then the reason."""
    name = r.name if len(r.name) <= 36 else "…" + r.name[-35:]
    pred = f"{r.predicted_ratio:.2f}" if r.predicted_ratio is not None else "—"
    energy = f"{r.energy:.0%}" if r.energy is not None else "—"
    return (
        f"{name:<36} {r.action:<7} {r.form:<10} {r.macs_ratio:>6.2f} {r.bytes_ratio:>6.2f} {pred:>6} "
        f"{energy:>6}  {r.measured_text:<44} {r.reason}"
    )


def render_text(analysis: Analysis) -> str:
    """Full text report: summary, every conv, skip reasons."""
    lines = [*summary_lines(analysis), ""]
    if not analysis.layers:
        lines += ["No convolutions found.", "", text_signature()]
        return "\n".join(lines) + "\n"
    lines += [_HEADER, "-" * len(_HEADER)]
    lines += [_row(layer) for layer in analysis.layers]
    rows = latency_rows(analysis)
    if rows:
        lines += ["", f"Recommendations (predicted: {profile_text(analysis)}):", _LATENCY_HEADER]
        lines += [_latency_row(r) for r in rows]
    elif analysis.timing is not None:  # a 1.2 document: its measured times only
        lines += ["", f"{'measured time (one call)':<36} {'conv [ms]':>10} {'DW→PW [ms]':>11} {'speed-up':>9}"]
        for t in analysis.timing.layers:
            if t.seconds is None or t.seconds_dw_pw is None or t.speedup_measured is None:
                lines.append(f"{t.name:<36} not timed: {t.skipped or 'no time measured'}")
            else:
                lines.append(
                    f"{t.name:<36} {t.seconds * 1e3:>10.3f} {t.seconds_dw_pw * 1e3:>11.3f} {t.speedup_measured:>8.2f}×"
                )
    skipped = [layer for layer in analysis.layers if not layer.candidate]
    if skipped:
        lines += ["", "Not candidates:"]
        lines += [f"  {layer.name}: {layer.skip_reason}" for layer in skipped]
    lines += ["", text_signature()]  # how --force knows this file is ours
    return "\n".join(lines) + "\n"


def terminal_summary(analysis: Analysis, n: int = 5) -> str:
    """A few lines for the terminal: headline figures and the costliest candidates."""
    lines = summary_lines(analysis)
    top = costliest(analysis, n)
    if top:
        lines.append("costliest candidates (MACs saved by depthwise→pointwise, m=1):")
        for layer in top:
            sep = layer.separable
            if sep is None:
                continue
            loc = f"  [{where(layer.source)}]" if layer.source else ""
            rec = layer.recommendation
            advice = ""
            if rec is not None:  # a keep with its reason's head: "low separability", "slower on this device", ...
                keep = f" · keep ({rec.reason.split(':')[0]})"
                advice = f" · convert {rec.order} m={rec.m}" if rec.action == "convert" else keep
            lines.append(
                f"  {layer.name}: {count(layer.macs)} → {count(sep.dw_pw.macs)} MACs ({ratio(sep.dw_pw.macs_ratio)}), "
                f"params {count(layer.params)} → {count(sep.dw_pw.params)}{advice}{loc}"
            )
    return "\n".join(lines)
