"""Cautions: what a report must warn about, each with a marker its legend explains, never as a saving.

``!`` a form (or option) costing more than the original: larger m = 1 forms, predicted or measured
slowdowns, ``--rank full`` making the candidates bigger; ``~`` a form keeping little weight energy;
``?`` untrained weights. :func:`layer_marks` gives each candidate its markers for the per-layer lists.
Only records are read here (no torch).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from convaudit.documents.records import Analysis, ConvLayer
from convaudit.formats.common import plural
from convaudit.formats.latency import LatencyRow, latency_rows
from convaudit.vocab import WeightsOrigin

__all__ = ["COSTLIER", "LEGEND", "LOW", "LOW_ENERGY", "UNTRAINED", "Caution", "cautions", "layer_marks", "m1_energy"]

#: Below this share of weight energy kept at m = 1, a candidate is marked "~" (expect accuracy loss).
LOW_ENERGY = 0.5

COSTLIER, LOW, UNTRAINED = "!", "~", "?"
#: What each marker means; a legend lists only the markers a report uses.
LEGEND = {
    COSTLIER: "costs more than the original: the form (or option) makes the model bigger or slower",
    LOW: f"low weight energy: the m = 1 form keeps under {LOW_ENERGY:.0%} of it; expect accuracy loss without recovery",
    UNTRAINED: "untrained weights: energy figures describe random weights, not a trained model",
}


@dataclass(frozen=True)
class Caution:
    """One warning: its marker (a key of :data:`LEGEND`) and the sentence."""

    marker: str
    text: str


def m1_energy(layer: ConvLayer) -> float | None:
    """Weight energy the m = 1 depthwise→pointwise form keeps (None: no weights read)."""
    s = layer.separability
    return s.dw_pw[0] if s is not None and s.dw_pw else None


def layer_marks(analysis: Analysis) -> dict[str, str]:
    """Per candidate the markers it carries ('!', '~', '!~'); candidates without a caution are absent."""
    rows = {r.name: r for r in latency_rows(analysis)}
    marks = {}
    for layer in analysis.candidates:
        text = COSTLIER if _costlier(layer, rows.get(layer.name)) else ""
        if (e := m1_energy(layer)) is not None and e < LOW_ENERGY:
            text += LOW
        if text:
            marks[layer.name] = text
    return marks


def _costlier(layer: ConvLayer, row: LatencyRow | None) -> bool:
    """The m = 1 form has more MACs or params than the conv, or the weighed form is predicted/measured slower."""
    sep = layer.separable
    if sep is not None and (sep.dw_pw.macs > layer.macs or sep.dw_pw.params > layer.params):
        return True
    return row is not None and any((x or 0) > 1 for x in (row.predicted_ratio, row.measured_ratio))


def _some_of(k: int, n: int) -> str:
    """'3 of 17 candidates keep', 'all 17 candidates keep', 'the candidate keeps'."""
    if k == n:
        return "the candidate keeps" if n == 1 else f"all {plural(n, 'candidate')} keep"
    return f"{k} of {plural(n, 'candidate')} {'keeps' if k == 1 else 'keep'}"


def _names(items: Iterable[str], most: int = 3) -> str:
    items = list(items)
    return ", ".join(items[:most]) + (", …" if len(items) > most else "")


def cautions(a: Analysis) -> list[Caution]:
    """Every warning the figures carry, each with its marker: none of them is a saving."""
    out = []
    if a.weights == WeightsOrigin.INITIALISED:
        out.append(
            Caution(
                UNTRAINED,
                "freshly initialised weights: the energy figures describe random weights; "
                "pass --weights with the trained state_dict",
            )
        )
    cands = sorted(a.candidates, key=lambda x: -x.macs)
    low = [(x, e) for x in cands if (e := m1_energy(x)) is not None and e < LOW_ENERGY]
    if low:
        out.append(
            Caution(
                LOW,
                (
                    f"{_some_of(len(low), len(cands))} under {LOW_ENERGY:.0%} of the weight energy "
                    f"at m = 1 ({_names(f'{x.name} {e:.0%}' for x, e in low)}): converted as they are, expect accuracy "
                    "loss; recover (--recover) or let --energy 0.9 choose m"
                ),
            )
        )
    bigger = [
        x for x in cands if x.separable and (x.separable.dw_pw.macs > x.macs or x.separable.dw_pw.params > x.params)
    ]
    if bigger:
        out.append(Caution(COSTLIER, f"m = 1 forms larger than the conv itself: {_names(x.name for x in bigger)}"))
    out += _time_cautions(latency_rows(a))
    out += _exact_cautions(a)
    e2e = a.end_to_end
    if e2e is not None and e2e.recommended.median_seconds > e2e.original.median_seconds:
        slow = e2e.recommended.median_seconds / e2e.original.median_seconds
        out.append(Caution(COSTLIER, f"end to end, the recommended set measured {slow:.2f}× the original's time"))
    return out


def _time_cautions(rows: list[LatencyRow]) -> list[Caution]:
    """Forms predicted or measured slower than the conv they would replace (kept or not)."""
    out = []
    for how, key in (("predicted", "predicted_ratio"), ("measured", "measured_ratio")):
        slower = [(r, getattr(r, key)) for r in rows if (getattr(r, key) or 0) > 1]
        if slower:
            shown = _names(
                f"{r.name} ({r.form} {x:.2f}× the time{', kept' if r.action == 'keep' else ''})" for r, x in slower
            )
            out.append(Caution(COSTLIER, f"{how} slower than the conv: {shown}"))
    return out


def _exact_cautions(a: Analysis) -> list[Caution]:
    """--rank full (the exact forms) making the candidates bigger than they are."""
    cands = [x for x in a.candidates if x.separable is not None]
    macs, params = sum(x.macs for x in cands), sum(x.params for x in cands)
    exact_macs = sum(x.separable.dw_pw_exact.macs for x in cands if x.separable)
    exact_params = sum(x.separable.dw_pw_exact.params for x in cands if x.separable)
    worse = [f"{exact_macs / macs:.2f}× their MACs"] if macs and exact_macs > macs else []
    worse += [f"{exact_params / params:.2f}× their params"] if params and exact_params > params else []
    if not worse:
        return []
    return [
        Caution(
            COSTLIER,
            f"--rank full (the exact forms) costs {' and '.join(worse)} for the "
            f"{plural(len(cands), 'candidate')}: exact, but a bigger model, not a saving",
        )
    ]
