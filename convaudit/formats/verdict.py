"""The verdict a report opens with: what its numbers mean for this model, the next command, and cautions.

:func:`verdict` is a pure function of the :class:`~convaudit.documents.records.Analysis` record (no torch):
a headline, the next command to run (a real ``convaudit`` command line, the model spec shell-quoted) and
the cautions. A caution carries a marker the legend explains; it is a warning, never a saving: a form
that costs more than the original (``!``), a form keeping little weight energy (``~``), weights that were
never trained (``?``). Text, Markdown and HTML all render the same record.
"""

from __future__ import annotations

import functools
import math
import re
import shlex
import textwrap
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from convaudit.documents.records import Analysis, ConvLayer
from convaudit.formats.cautions import LEGEND, LOW_ENERGY, Caution, cautions, m1_energy
from convaudit.formats.common import describe_layers, kept_energy, percent, plural, ratio, si
from convaudit.formats.latency import LatencyRow, latency_rows, predicted_totals
from convaudit.vocab import Kind, WeightsOrigin

__all__ = [
    "GOOD_ENERGY",
    "LITTLE_GAIN",
    "Verdict",
    "budget_count",
    "legend_lines",
    "verdict",
    "verdict_lines",
]

#: From this share up, the m = 1 forms are faithful enough to convert without recovery (recommend's default).
GOOD_ENERGY = 0.9
#: A rewrite of every candidate saving less than this share of the model's MACs: little to gain.
LITTLE_GAIN = 0.10


@dataclass(frozen=True)
class Verdict:
    """What the numbers mean for this model, what to run next, and what to be careful about."""

    case: str  #: "no convs" | "little to gain" | "untrained" | "needs recovery" | "keep" | "convert"
    tone: str  #: "good" (convert as recommended) | "neutral" | "warn"
    headline: str
    command: str | None  #: the next command line; None when there is nothing worth running
    command_note: str  #: what the command does, or why there is none
    cautions: tuple[Caution, ...]

    @property
    def markers(self) -> tuple[str, ...]:
        """The markers used, in legend order."""
        used = {c.marker for c in self.cautions}
        return tuple(m for m in LEGEND if m in used)


def verdict(analysis: Analysis) -> Verdict:
    """The verdict on ``analysis``: the first case that applies.

    In order: no convolutions; little to gain (no candidates, or all of them at m = 1 save under
    :data:`LITTLE_GAIN`); untrained weights; a recommended set to convert; low weight energy (recovery);
    every candidate kept (time); else, without recommendations, by the weight energy alone.
    """
    a, t = analysis, analysis.totals
    notes = tuple(cautions(a))
    if not a.layers:
        return Verdict(
            "no convs",
            "neutral",
            f"no convolutions: nothing to rewrite as depthwise-separable ({si(t.macs)} MACs in other ops)",
            _guard_command(a),
            _GUARD_NOTE,
            notes,
        )
    if not a.candidates or 1 - t.macs_after_ratio < LITTLE_GAIN:
        return Verdict("little to gain", "neutral", _little_to_gain(a), _guard_command(a), _GUARD_NOTE, notes)
    rows = latency_rows(a)
    chosen = [r for r in rows if r.action == "convert"]
    where = f"{describe_layers(a.candidates)} {_hold(a.candidates)} {_share(a.candidates, a)} of MACs"
    if a.weights == WeightsOrigin.INITIALISED:
        headline = (
            f"{where}; by shapes, depthwise→pointwise (m = 1) would take the model to {ratio(t.macs_after_ratio)} "
            "its MACs, but the weights are freshly initialised: energy figures (and the convert/keep advice) "
            "say nothing about a trained model"
        )
        note = "analyse the trained weights, a state_dict file"
        return Verdict("untrained", "warn", headline, _command(a, "report", "--weights", "STATE_DICT.pt"), note, notes)
    kept = kept_energy(a)
    if chosen:
        return Verdict("convert", "good", _convert(a, rows, chosen), _command(a, "convert"), _convert_note(), notes)
    if kept is not None and kept < LOW_ENERGY:
        low = [x for x in a.candidates if (e := m1_energy(x)) is not None and e < LOW_ENERGY]
        headline = (
            f"{describe_layers(low)} {_hold(low)} {_share(low, a)} of MACs; their m = 1 forms keep "
            f"{percent(_weighted_energy(low))} of weight energy: expect to need recovery"
        )
        return Verdict("needs recovery", "warn", headline, _recover_command(a), _recover_note(a), notes)
    if rows:
        return _keep(a, rows, notes)
    # no recommendations (a schema 1.2 document, or no weights read): judge by the energy alone
    headline = f"convert: predicted {percent(1 - t.macs_after_ratio)} fewer MACs ({where})"
    if kept is None:
        return Verdict(
            "convert",
            "neutral",
            headline + "; no weights were read: fidelity unknown",
            _command(a, "convert", "--rank", "1"),
            "convert at m = 1 and read its fidelity verdict",
            notes,
        )
    if kept < GOOD_ENERGY:
        headline += f"; the m = 1 forms keep {percent(kept)} of weight energy: check fidelity, recover if degraded"
        return Verdict("convert", "neutral", headline, _recover_command(a), _recover_note(a), notes)
    return Verdict(
        "convert",
        "good",
        headline + f"; the m = 1 forms keep {percent(kept)} of weight energy",
        _command(a, "convert", "--rank", "1"),
        "convert every candidate at m = 1",
        notes,
    )


def _little_to_gain(a: Analysis) -> str:
    """Why converting would not pay: convs already separable, MACs outside convs, or savings too small."""
    t = a.totals
    them = "it" if len(a.candidates) == 1 else "them"
    at_most = f"converting {them} would save at most {percent(1 - t.macs_after_ratio)} of MACs"
    cands = (
        f"{plural(len(a.candidates), 'candidate')} ({describe_layers(a.candidates)}) {_hold(a.candidates)} "
        f"{percent(t.candidate_macs / t.macs) if t.macs else '—'} of MACs; {at_most}"
        if a.candidates
        else "no candidates"
    )
    separable = sum(x.macs for x in a.layers if x.kind in (Kind.DEPTHWISE, Kind.POINTWISE))
    if t.conv_macs and separable / t.conv_macs >= 0.5:
        already = percent(separable / t.conv_macs)
        head = f"already separable, little to gain: {already} of conv MACs already depthwise/pointwise"
    elif t.conv_macs_share < 0.5:
        head = f"little to gain: convolutions hold only {percent(t.conv_macs_share)} of MACs"
    else:
        reasons = Counter(x.skip_reason or "not a candidate" for x in a.layers if not x.candidate)
        why = f" (most: {reasons.most_common(1)[0][0]})" if reasons else ""
        head = f"little to gain: most conv MACs are in convs that are not candidates{why}"
    return f"{head}; {cands}"


def _convert(a: Analysis, rows: Sequence[LatencyRow], chosen: Sequence[LatencyRow]) -> str:
    """'convert: predicted 45% fewer MACs, 0.62× predicted time (the recommended 12 of 17 candidates)'."""
    t, layers = a.totals, {x.name: x for x in a.layers}
    saved = sum(layers[r.name].macs * (1 - r.macs_ratio) for r in chosen)
    before, after = predicted_totals(a, rows)
    time = f", {after / before:.2f}× the candidates' predicted time" if before else ""
    e2e = a.end_to_end
    if e2e is not None and e2e.original.median_seconds:
        measured = e2e.recommended.median_seconds / e2e.original.median_seconds
        time += f" (measured end to end: {measured:.2f}×{'' if e2e.reliable else ', unreliable'})"
    which = [layers[r.name] for r in chosen]
    return (
        f"convert: predicted {percent(saved / t.macs) if t.macs else '—'} fewer MACs{time} — the recommended "
        f"{len(chosen)} of {plural(len(rows), 'candidate')} ({describe_layers(which)})"
    )


def _convert_note() -> str:
    return "convert the recommended set; its conversion report says whether the outputs kept"


def _keep(a: Analysis, rows: Sequence[LatencyRow], notes: tuple[Caution, ...]) -> Verdict:
    """Every candidate is kept: the MACs would fall, the time would not (or the energy is too low)."""
    reasons = Counter(r.reason.split(":")[0] for r in rows)
    why = ", ".join(f"{reason} ×{n}" for reason, n in reasons.most_common())
    measured = a.measurement is not None
    which = "the candidate" if len(rows) == 1 else f"all {plural(len(rows), 'candidate')}"
    head, _ = reasons.most_common(1)[0]
    but = (
        f"the {'measured' if measured else 'predicted'} time would not"
        if head.startswith("slower")
        else "the forms that would be faster keep too little weight energy"
        if head.startswith("low separability")
        else "the savings would not pay"
    )
    headline = (
        f"keep: MACs would fall to {ratio(a.totals.macs_after_ratio)}, but {but}: "
        f"the recommendations keep {which} ({why})"
    )
    if measured:
        return Verdict("keep", "neutral", headline, _guard_command(a), _GUARD_NOTE, notes)
    note = "measure the candidates and their forms on this machine: predictions can be wrong"
    return Verdict("keep", "neutral", headline, _command(a, "report", "--measure"), note, notes)


def _recover_command(a: Analysis) -> str:
    """convert at m = 1 with label-free recovery; calibration from model.py or --images."""
    extra = () if a.model.endswith(".py") else ("--images", "IMAGE_DIR")
    return _command(a, "convert", "--rank", "1", "--recover", *extra)


def _recover_note(a: Analysis) -> str:
    if a.model.endswith(".py"):
        return "convert at m = 1, then recover (calibration_inputs() in the model file, or --images DIR)"
    return "convert at m = 1, then recover on a directory of your images (IMAGE_DIR)"


_GUARD_NOTE = "nothing to convert; keep today's cost as a budget in CI (exit 3 when the MACs grow past it)"


def _guard_command(a: Analysis) -> str:
    """``convaudit check MODEL --max-macs B``, B today's MACs rounded up to three significant figures."""
    return _command(a, "check", "--max-macs", budget_count(a.totals.macs))


def budget_count(n: int) -> str:
    """1,814,073,344 → '1.82G', 385,814,752 → '386M': rounded up, so today's model is within it."""
    factor, suffix = next(((f, u) for f, u in _UNITS if n >= f), (1, ""))
    value = n / factor
    digits = max(0, 3 - len(str(int(value))))  # three significant figures
    up = math.ceil(round(value * 10**digits, 6)) / 10**digits
    text = f"{up:.{digits}f}"
    return (text.rstrip("0").rstrip(".") if "." in text else text) + suffix


_UNITS = ((10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "k"))


def _command(a: Analysis, verb: str, *flags: str) -> str:
    """A command line on the analysed model, its --weights file kept, every argument shell-quoted."""
    spec = a.model
    if a.weights == WeightsOrigin.AS_GIVEN and not re.search(r"(\.py|\.pth?|\.onnx)$|^\w+:", spec):
        spec = "model.py"  # the model was given to analyze(): its file is not known
    words = ["convaudit", verb, spec]
    weights = _weights_file(a)
    if weights and "--weights" not in flags:
        words += ["--weights", weights]
    if verb == "convert":
        words += ["-o", "converted"]
    return " ".join(shlex.quote(w) for w in [*words, *flags])


def _weights_file(a: Analysis) -> str | None:
    """The --weights file the analysis loaded (not the checkpoint the model itself came from).

    NB: read back from ``weights_source`` ("sd.pt['model']", "sd.pt (a whole module: ...)").
    """
    if a.weights != WeightsOrigin.LOADED or not a.weights_source:
        return None
    path = re.split(r"\[| \(", a.weights_source, maxsplit=1)[0]
    return None if path == a.model else path


def _weighted_energy(layers: Sequence[ConvLayer]) -> float:
    pairs = [(x.macs, e) for x in layers if (e := m1_energy(x)) is not None]
    total = sum(m for m, _ in pairs)
    return sum(m * e for m, e in pairs) / total if total else 0.0


def _share(layers: Sequence[ConvLayer], a: Analysis) -> str:
    return percent(sum(x.macs for x in layers) / a.totals.macs) if a.totals.macs else "—"


def _hold(layers: Sequence[ConvLayer]) -> str:
    return "holds" if len(layers) == 1 else "hold"


# ---------------------------------------------------------------- plain-text lines


def legend_lines(v: Verdict) -> list[str]:
    """'! = costs more …' for each marker the verdict uses."""
    return [f"{m} = {LEGEND[m]}" for m in v.markers]


def verdict_lines(analysis: Analysis, width: int = 100) -> list[str]:
    """The verdict as plain text within ``width`` columns: headline, next command (never wrapped), cautions, legend."""
    v = verdict(analysis)
    wrap = functools.partial(textwrap.wrap, width=width, break_on_hyphens=False, break_long_words=False)
    lines = wrap(v.headline, initial_indent="verdict: ", subsequent_indent=" " * 9)
    lines.append(f"next:    {v.command}" if v.command else "next:    nothing to run")
    lines += wrap(v.command_note, initial_indent=" " * 9, subsequent_indent=" " * 9)
    for c in v.cautions:
        lines += wrap(c.text, initial_indent=f"  {c.marker} ", subsequent_indent="    ")
    for i, line in enumerate(legend_lines(v)):
        lines += wrap(line, initial_indent="legend: " if i == 0 else " " * 8, subsequent_indent=" " * 12)
    return lines
