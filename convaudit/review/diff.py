"""``convaudit diff``: two analyses compared: layers added, removed, changed and renamed, totals and deltas.

:func:`diff_analyses` works on ``documents`` records alone (an Analysis made now, or read back from a saved
JSON report), so CI can compare a pull request with the report of its target branch. Layers are paired by
:mod:`convaudit.review.matching`. :func:`increase_failures` is ``--fail-on-increase``: which totals grew by more
than allowed, with the layers responsible.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from convaudit.documents.diff import Change, DiffSide, LayerDiff, MetricDelta, ModelDiff, OpDelta
from convaudit.documents.records import Analysis, ConvLayer, OpSummary
from convaudit.errors import UsageError
from convaudit.formats.common import shape, si
from convaudit.formats.diff import change_text, signed
from convaudit.review.matching import match_layers

__all__ = [
    "COMPARED_FIELDS",
    "INCREASE_METRICS",
    "IncreaseLimit",
    "advice",
    "diff_analyses",
    "increase_failures",
    "layer_changes",
    "parse_increase_limits",
]

#: The ConvLayer fields a matched pair is compared on (not its name, source line or weight energies).
COMPARED_FIELDS = (
    "type",
    "kind",
    "in_channels",
    "out_channels",
    "kernel_size",
    "stride",
    "padding",
    "dilation",
    "groups",
    "bias",
    "dtype",
    "input_shape",
    "output_shape",
    "calls",
    "params",
    "macs",
    "candidate",
    "skip_reason",
)

#: ``--fail-on-increase`` metrics → how the per-layer delta that explains them is read.
INCREASE_METRICS = {"macs": "macs", "conv_macs": "macs", "params": "params"}
_LABELS = {"macs": "MACs", "conv_macs": "conv MACs", "params": "params"}


def diff_analyses(
    base: Analysis,
    head: Analysis,
    *,
    sources: tuple[str, str] | None = None,
    from_report: tuple[bool, bool] = (False, False),
) -> ModelDiff:
    """Compare ``head`` with ``base``.

    Args:
        sources: the two command-line arguments (default: the analyses' ``model``).
        from_report: whether each side was read from a saved JSON report.
    """
    names = sources or (base.model, head.model)
    layers: list[tuple[tuple[int, int, int], LayerDiff]] = []
    unchanged = 0
    matches = match_layers(base.layers, head.layers)
    head_of = {m.base: m.head for m in matches if m.base is not None and m.head is not None}
    for m in matches:
        b = base.layers[m.base] if m.base is not None else None
        h = head.layers[m.head] if m.head is not None else None
        entry = _layer_diff(b, h, m.by)
        if entry is None:
            unchanged += 1
            continue
        layers.append((_position(m.base, m.head, head_of), entry))
    return ModelDiff(
        base=_side(base, names[0], from_report[0]),
        head=_side(head, names[1], from_report[1]),
        totals=_totals(base, head),
        layers=tuple(entry for _, entry in sorted(layers, key=lambda item: item[0])),
        unchanged=unchanged,
        ops=_ops(base.ops, head.ops),
        warnings=_warnings(base, head),
    )


def _position(b: int | None, h: int | None, head_of: dict[int, int]) -> tuple[int, int, int]:
    """Sort key: the head's order; a removed layer right after the head layer its base predecessor became."""
    if h is not None:
        return (h, 0, 0)
    assert b is not None
    before = [head_of[i] for i in range(b) if i in head_of]
    return (before[-1] if before else -1, 1, b)


def _side(a: Analysis, source: str, from_report: bool) -> DiffSide:
    return DiffSide(source, a.model, a.model_class, a.input_shapes, from_report, a.schema_version)


def advice(layer: ConvLayer) -> str | None:
    """The recommendation as compared: "convert dw_pw m=1" or "keep" (a keep's reason moves with the weights)."""
    r = layer.recommendation
    if r is None:
        return None
    return f"convert {r.order} m={r.m}" if r.action == "convert" else r.action


def layer_changes(base: ConvLayer, head: ConvLayer) -> tuple[Change, ...]:
    """The compared fields (and the recommendation) that differ, in COMPARED_FIELDS order."""
    changes = [
        Change(name, getattr(base, name), getattr(head, name))
        for name in COMPARED_FIELDS
        if getattr(base, name) != getattr(head, name)
    ]
    if advice(base) != advice(head):
        changes.append(Change("recommendation", advice(base), advice(head)))
    return tuple(changes)


def _layer_diff(b: ConvLayer | None, h: ConvLayer | None, by: str | None) -> LayerDiff | None:
    """The record of one match, or None when the pair is identical (name included)."""
    one = h if h is not None else b
    assert one is not None
    if b is not None and h is not None:
        changes = layer_changes(b, h)
        if not changes and b.name == h.name:
            return None
        status = "changed" if changes else "renamed"
    else:
        changes = ()
        status = "added" if b is None else "removed"
    return LayerDiff(
        status=status,
        base_name=b.name if b else None,
        head_name=h.name if h else None,
        matched_by=by,
        kind=one.kind,
        source=one.source,
        base_macs=b.macs if b else 0,
        head_macs=h.macs if h else 0,
        base_params=b.params if b else 0,
        head_params=h.params if h else 0,
        changes=changes,
    )


def _predicted_seconds(a: Analysis) -> float | None:
    """Predicted time of one forward through the candidates (per call × calls; None: nothing predicted).

    NB: a prediction from the device profile, of the convs a rewrite applies to only (as ``check --max-latency``).
    """
    times = [
        x.latency.predicted_seconds["original"] * x.calls
        for x in a.layers
        if x.latency and x.latency.predicted_seconds and "original" in x.latency.predicted_seconds
    ]
    return sum(times) if times else None


def _totals(base: Analysis, head: Analysis) -> tuple[MetricDelta, ...]:
    """The whole-model figures; latency rows only where both sides have them."""
    rows = [
        MetricDelta(key, label, getattr(base.totals, key), getattr(head.totals, key))
        for key, label in (
            ("params", "params"),
            ("macs", "MACs"),
            ("conv_macs", "conv MACs"),
            ("candidates", "candidates"),
            ("candidate_macs", "candidate MACs"),
            ("macs_after", "MACs if every candidate is converted (m = 1)"),
        )
    ]
    pb, ph = _predicted_seconds(base), _predicted_seconds(head)
    if pb is not None and ph is not None:
        rows.append(MetricDelta("predicted_seconds", "predicted candidate latency", pb, ph))
    if base.end_to_end and head.end_to_end:
        rows.append(
            MetricDelta(
                "measured_seconds",
                "measured time, end to end",
                base.end_to_end.original.median_seconds,
                head.end_to_end.original.median_seconds,
            )
        )
    return tuple(rows)


def _ops(base: Sequence[OpSummary], head: Sequence[OpSummary]) -> tuple[OpDelta, ...]:
    """Op types whose count, MACs or params differ, the largest MAC change first."""
    by_base, by_head = {o.op: o for o in base}, {o.op: o for o in head}
    found = []
    for op in dict.fromkeys([*by_base, *by_head]):
        b, h = by_base.get(op), by_head.get(op)
        one = h or b
        assert one is not None
        delta = OpDelta(
            op,
            one.category,
            b.count if b else 0,
            h.count if h else 0,
            b.macs if b else 0,
            h.macs if h else 0,
            b.params if b else 0,
            h.params if h else 0,
        )
        if (delta.base_count, delta.base_macs, delta.base_params) != (
            delta.head_count,
            delta.head_macs,
            delta.head_params,
        ):
            found.append(delta)
    return tuple(sorted(found, key=lambda o: (-abs(o.head_macs - o.base_macs), o.op)))


def _warnings(base: Analysis, head: Analysis) -> tuple[str, ...]:
    """What makes the two sides less comparable than they look."""
    notes = []
    if base.input_shapes != head.input_shapes:
        shown = [", ".join(shape(s) for s in a.input_shapes) for a in (base, head)]
        notes.append(f"inputs differ (base {shown[0]}, head {shown[1]}): MACs and shapes move with them")
    if base.mode != head.mode:
        notes.append(f"modes differ (base {base.mode}, head {head.mode})")
    return tuple(notes)


# ---------------------------------------------------------------- --fail-on-increase


@dataclass(frozen=True)
class IncreaseLimit:
    """The most ``metric`` may grow from base to head, in percent."""

    metric: str
    percent: float


_PERCENT = re.compile(r"(\d+(?:\.\d+)?)%")


def parse_increase_limits(text: str, flag: str = "--fail-on-increase") -> tuple[IncreaseLimit, ...]:
    """``5%`` (MACs) or ``macs=5%,params=2%``; anything else is a UsageError naming the accepted forms."""
    limits = []
    for part in text.split(","):
        metric, sep, value = part.strip().rpartition("=")
        metric = metric.strip() if sep else "macs"
        found = _PERCENT.fullmatch(value.strip())
        if metric not in INCREASE_METRICS or found is None:
            raise UsageError(
                f"{flag} {text!r}: write a percentage such as 5% or METRIC=PERCENT pairs such as macs=5%,params=2% "
                f"(metrics: {', '.join(INCREASE_METRICS)})"
            )
        limits.append(IncreaseLimit(metric, float(found.group(1))))
    return tuple(limits)


def increase_failures(diff: ModelDiff, limits: Sequence[IncreaseLimit], *, named: int = 5) -> list[str]:
    """One line per limit the head exceeds, naming the layers (or other ops) that grew most."""
    lines = []
    for limit in limits:
        row = diff.total(limit.metric)
        if row is None or row.base is None or row.head is None or row.head <= row.base:
            continue
        grew = "grew from 0" if row.base == 0 else f"grew {100 * (row.head - row.base) / row.base:.2f}%"
        if row.base and row.head <= row.base * (1 + limit.percent / 100):
            continue
        label = _LABELS[limit.metric]
        lines.append(
            f"{label} {grew} ({si(row.base)} → {si(row.head)}), more than the {limit.percent:g}% "
            f"--fail-on-increase allows; {_responsible(diff, limit.metric, named)}"
        )
    return lines


def _responsible(diff: ModelDiff, metric: str, named: int) -> str:
    """The layers whose growth makes the metric's: largest first, with what changed."""
    per_layer = INCREASE_METRICS[metric]

    def delta(layer: LayerDiff) -> int:
        return layer.macs_delta if per_layer == "macs" else layer.params_delta

    grown = sorted((x for x in diff.layers if delta(x) > 0), key=lambda x: (-delta(x), x.name))
    parts = [f"{x.name} +{si(delta(x))} {_LABELS[per_layer]} ({change_text(x)})" for x in grown[:named]]
    if len(grown) > named:
        parts.append(f"and {len(grown) - named} more")
    if metric != "conv_macs":
        ops = sorted((o for o in diff.ops if _op_delta(o, per_layer) > 0), key=lambda o: -_op_delta(o, per_layer))
        parts += [f"{o.op} {signed(_op_delta(o, per_layer))} {_LABELS[per_layer]}" for o in ops[:2]]
    return "responsible: " + ", ".join(parts) if parts else "no conv layer grew: see the diff's other ops"


def _op_delta(op: OpDelta, per_layer: str) -> int:
    return op.head_macs - op.base_macs if per_layer == "macs" else op.head_params - op.base_params
