"""The record of ``convaudit diff BASE HEAD``: two analyses compared layer by layer, and their totals.

Plain data, no torch; the renderers in ``formats/diff*.py`` read it. Layers are the convolutions of the two
analyses, matched by name, then by structure (:mod:`convaudit.review.matching`); only layers that differ are
kept (``unchanged`` counts the rest). ``to_dict`` is the JSON form (``DIFF_SCHEMA_VERSION``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from convaudit.documents.schema import plain

__all__ = [
    "DIFF_SCHEMA_VERSION",
    "STATUSES",
    "Change",
    "DiffSide",
    "LayerDiff",
    "MetricDelta",
    "ModelDiff",
    "OpDelta",
    "relative_change",
]

#: Bumped on any change a JSON consumer could notice: major for removals/renames, minor for additions.
DIFF_SCHEMA_VERSION = "1.0"

#: What happened to a layer between base and head. ``renamed``: matched by structure, nothing else differs;
#: a layer renamed *and* changed is ``changed`` with two names.
STATUSES = ("added", "removed", "changed", "renamed")

Value = int | float | str | bool | tuple[Any, ...] | None


def relative_change(base: float | None, head: float | None) -> float | None:
    """(head − base) / base; None when either is missing or base is 0 (a growth from nothing has no ratio)."""
    if base is None or head is None or base == 0:
        return None
    return (head - base) / base


@dataclass(frozen=True)
class DiffSide:
    """What one side was: the spec as given, and the analysis it stands for."""

    source: str  #: the command-line argument (a model spec or a saved report's path)
    model: str  #: the analysed model as its Analysis names it
    model_class: str
    input_shapes: tuple[tuple[int, ...], ...]
    from_report: bool  #: read from a saved JSON report (not analysed now)
    schema_version: str  #: of that Analysis


@dataclass(frozen=True)
class Change:
    """One property of a matched layer that differs (``field`` as in ConvLayer, or ``recommendation``)."""

    field: str
    base: Value
    head: Value


@dataclass(frozen=True)
class LayerDiff:
    """One convolution added, removed, changed or renamed between base and head."""

    status: str  #: one of STATUSES
    base_name: str | None  #: None: added
    head_name: str | None  #: None: removed
    matched_by: str | None  #: "name" or "structure"; None for added/removed
    kind: str  #: a vocab.Kind, the head's (the base's when removed)
    source: str | None  #: "file:line" where the head's layer is defined (the base's when removed)
    base_macs: int
    head_macs: int
    base_params: int
    head_params: int
    changes: tuple[Change, ...] = ()

    @property
    def name(self) -> str:
        """The name to show: the head's, ``base → head`` when renamed, the base's when removed."""
        if self.base_name and self.head_name and self.base_name != self.head_name:
            return f"{self.base_name} → {self.head_name}"
        return self.head_name or self.base_name or ""

    @property
    def macs_delta(self) -> int:
        """head − base MACs (a removed layer: −its MACs)."""
        return self.head_macs - self.base_macs

    @property
    def params_delta(self) -> int:
        """head − base params."""
        return self.head_params - self.base_params


@dataclass(frozen=True)
class MetricDelta:
    """One whole-model figure on both sides (None: that side does not have it)."""

    metric: str  #: "params", "macs", "conv_macs", "candidates", "candidate_macs", "predicted_seconds", ...
    label: str  #: how reports name it
    base: float | None
    head: float | None

    @property
    def delta(self) -> float | None:
        """head − base, when both have it."""
        return None if self.base is None or self.head is None else self.head - self.base

    @property
    def relative(self) -> float | None:
        """(head − base) / base (None: missing, or base 0)."""
        return relative_change(self.base, self.head)


@dataclass(frozen=True)
class OpDelta:
    """Non-conv ops of one type whose count, MACs or params differ."""

    op: str
    category: str
    base_count: int
    head_count: int
    base_macs: int
    head_macs: int
    base_params: int
    head_params: int


@dataclass(frozen=True)
class ModelDiff:
    """Everything ``convaudit diff`` knows: both sides, totals with deltas, and the layers that differ."""

    base: DiffSide
    head: DiffSide
    totals: tuple[MetricDelta, ...]
    layers: tuple[LayerDiff, ...]  #: in the head's execution order, removed layers where they stood
    unchanged: int  #: matched layers with no difference
    ops: tuple[OpDelta, ...] = ()
    warnings: tuple[str, ...] = ()  #: e.g. the two sides were analysed at different input shapes
    schema_version: str = DIFF_SCHEMA_VERSION
    generator: str = "convaudit"  #: marks the JSON as ours: ``--force`` replaces only such files
    document: str = "diff"

    def total(self, metric: str) -> MetricDelta | None:
        """The totals row of ``metric``, if present."""
        return next((t for t in self.totals if t.metric == metric), None)

    def count(self, status: str) -> int:
        """How many layers have ``status``."""
        return sum(1 for layer in self.layers if layer.status == status)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document: plain dicts, lists, numbers and strings."""
        return plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelDiff:
        """Rebuild from ``to_dict()`` output."""
        major = str(data.get("schema_version", "")).split(".")[0]
        if data.get("document") != "diff" or major != DIFF_SCHEMA_VERSION.split(".")[0]:
            raise ValueError(f"not a convaudit diff of schema {DIFF_SCHEMA_VERSION.split('.')[0]}.x")
        return cls(
            base=_side(data["base"]),
            head=_side(data["head"]),
            totals=tuple(MetricDelta(**t) for t in data["totals"]),
            layers=tuple(
                LayerDiff(**(d | {"changes": tuple(_change(c) for c in d["changes"])})) for d in data["layers"]
            ),
            unchanged=data["unchanged"],
            ops=tuple(OpDelta(**o) for o in data.get("ops", ())),
            warnings=tuple(data.get("warnings", ())),
            schema_version=data["schema_version"],
            generator=data.get("generator", "convaudit"),
        )


def _side(d: dict[str, Any]) -> DiffSide:
    return DiffSide(**(d | {"input_shapes": tuple(tuple(s) for s in d["input_shapes"])}))


def _change(d: dict[str, Any]) -> Change:
    return Change(d["field"], _tuples(d["base"]), _tuples(d["head"]))


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value
