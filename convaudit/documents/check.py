"""The record of ``convaudit check``: each budget against the model's figure, and the layers responsible.

Plain data, no torch: the text, JSON and SARIF renderers read it, and ``from_dict`` reads its JSON back.
Units are in the names: MACs and params are counts, times are ``seconds`` (predicted: never measured here),
shares are fractions of the model's MACs. ``CHECK_SCHEMA_VERSION`` versions the JSON form on its own.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from convaudit.documents.records import ConvLayer
from convaudit.documents.schema import plain

__all__ = ["CHECK_SCHEMA_VERSION", "BudgetResult", "CheckResult", "Culprit"]

#: Bumped on any change a JSON consumer could notice: major for removals/renames, minor for additions.
CHECK_SCHEMA_VERSION = "1.0"


@dataclass(frozen=True)
class Culprit:
    """One layer behind an exceeded budget, and what converting it (as recommended) would save."""

    name: str
    source: str | None  #: "file:line" where the layer is defined, when known
    macs: int  #: summed over calls
    params: int
    share: float  #: macs / the model's MACs
    predicted_seconds: float | None  #: one forward's worth (per-call prediction × calls)
    action: str  #: "convert" (recommended) or "keep" (with ``reason``)
    form: str | None  #: the separable form the savings are of, e.g. "dw_pw m=1"
    macs_saved: int
    params_saved: int
    seconds_saved: float | None  #: predicted; 0 for a layer the analysis recommends keeping
    reason: str  #: the recommendation's reason

    @classmethod
    def of_layer(cls, layer: ConvLayer, total_macs: int) -> Culprit:
        """The layer with what converting it to its recommended (or weighed) separable form saves."""
        rec, sep, lat = layer.recommendation, layer.separable, layer.latency
        predicted = lat.predicted_seconds if lat else None
        seconds = predicted["original"] * layer.calls if predicted and "original" in predicted else None
        share = layer.macs / total_macs if total_macs else 0.0
        if not layer.candidate or sep is None:
            why = layer.skip_reason or "not a candidate"
            return cls(layer.name, layer.source, layer.macs, layer.params, share, seconds, "keep", None, 0, 0, 0.0, why)
        order = str(rec.order) if rec and rec.order else "dw_pw"
        m = rec.m if rec and rec.m else 1
        cost = sep.dw_pw if order == "dw_pw" else sep.pw_dw
        # NB: MACs and weights scale with m; the bias (out_channels values) does not
        bias = layer.out_channels if layer.bias else 0
        macs_after = cost.macs * m // cost.multiplier
        params_after = bias + (cost.params - bias) * m // cost.multiplier
        action = rec.action if rec else "convert"
        saved_s = 0.0
        if action == "convert" and predicted and order in predicted and seconds is not None:
            saved_s = (predicted["original"] - predicted[order]) * layer.calls
        return cls(
            name=layer.name,
            source=layer.source,
            macs=layer.macs,
            params=layer.params,
            share=share,
            predicted_seconds=seconds,
            action=action,
            form=f"{order} m={m}",
            macs_saved=layer.macs - macs_after,
            params_saved=layer.params - params_after,
            seconds_saved=saved_s,
            reason=rec.reason if rec else "",
        )


@dataclass(frozen=True)
class BudgetResult:
    """One budget: the model's figure against the limit, and (when exceeded) the layers and their savings."""

    name: str  #: the setting, as flags and pyproject.toml name it: "max-macs", "max-latency", ...
    metric: str  #: what is measured, for the reader: "MACs", "predicted candidate latency", ...
    unit: str  #: "count", "seconds" or "share"
    actual: float
    limit: float
    exceeded: bool
    origin: str  #: where the limit came from: "--max-macs" or "pyproject.toml [tool.convaudit]"
    culprits: tuple[Culprit, ...] = ()  #: costliest first; those whose conversion brings it within budget
    after: float | None = None  #: the figure once the culprits are converted (None: not a prediction we make)
    note: str | None = None  #: e.g. what a latency prediction is based on


@dataclass(frozen=True)
class CheckResult:
    """What ``convaudit check`` found for one model."""

    model: str  #: the source as given
    model_class: str
    input_shapes: tuple[tuple[int, ...], ...]
    budgets: tuple[BudgetResult, ...]
    macs: int
    params: int
    next_command: str | None  #: what to run next (None when every budget holds)
    config: str | None = None  #: the pyproject.toml the budgets were read from, if any
    warnings: tuple[str, ...] = ()
    schema_version: str = CHECK_SCHEMA_VERSION

    @property
    def passed(self) -> bool:
        """True when no budget is exceeded."""
        return not any(b.exceeded for b in self.budgets)

    @property
    def exceeded(self) -> tuple[BudgetResult, ...]:
        """The budgets over their limit."""
        return tuple(b for b in self.budgets if b.exceeded)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document: plain dicts, lists, numbers and strings; ``passed`` for readers, and the
        ``generator``/``document`` mark by which ``--force`` knows the file as convaudit's."""
        doc = plain(dataclasses.asdict(self))
        head = {"schema_version": doc.pop("schema_version"), "generator": "convaudit", "document": "check"}
        return head | {"passed": self.passed} | doc

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckResult:
        """Rebuild from ``to_dict()`` output."""
        major = str(data.get("schema_version", "")).split(".")[0]
        if major != CHECK_SCHEMA_VERSION.split(".")[0]:
            raise ValueError(
                f"check schema {data.get('schema_version')!r}: this convaudit reads {CHECK_SCHEMA_VERSION}"
            )
        budgets = tuple(
            BudgetResult(**(b | {"culprits": tuple(Culprit(**c) for c in b["culprits"])})) for b in data["budgets"]
        )
        names = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in data.items() if k in names}
        d["input_shapes"] = tuple(tuple(s) for s in d["input_shapes"])
        d["warnings"] = tuple(d.get("warnings", ()))
        return cls(**(d | {"budgets": budgets}))
