"""The budgets a model is checked against: what each one measures, how its limit is read, where it came from.

A budget is a name (``max-macs``, as the flag and ``[tool.convaudit]`` spell it), a limit and its origin.
Its figure is read from an Analysis record alone (no torch), so a saved JSON report can be checked too.
Flags override the file; a setting the file names that is not a budget is a UsageError naming the file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from convaudit.documents.records import Analysis
from convaudit.errors import UsageError
from convaudit.review.units import format_count, format_seconds, format_share, parse_count, parse_seconds, parse_share

__all__ = ["BUDGETS", "Budget", "BudgetSpec", "candidate_seconds", "resolve_budgets"]


@dataclass(frozen=True)
class BudgetSpec:
    """What one kind of budget measures and how its limit is written."""

    name: str  #: "max-macs": the flag without dashes, the key in [tool.convaudit]
    metric: str  #: what the figure is, for the reader
    unit: str  #: "count", "seconds" or "share"
    example: str  #: a limit as a user writes it, for --help
    measure: Callable[[Analysis], float]
    help: str

    def parse(self, value: object, where: str) -> float:
        """The limit ``value`` written at ``where`` (a flag or a file and key), read strictly."""
        if self.unit == "count":
            return parse_count(value, where)
        if self.unit == "seconds":
            return parse_seconds(value, where)
        return parse_share(value, where)

    def format(self, value: float) -> str:
        """A limit or figure as the user would write it back (``4.2G``, ``30ms``, ``25%``)."""
        if self.unit == "count":
            return format_count(round(value))
        if self.unit == "seconds":
            return format_seconds(value)
        return format_share(value)

    @property
    def attribute(self) -> str:
        """The name as a Python keyword (``max_macs``), for the pytest helper."""
        return self.name.replace("-", "_")


@dataclass(frozen=True)
class Budget:
    """A limit in force: the spec's name, the limit (counts, seconds or a share), and where it was set."""

    name: str
    limit: float
    origin: str  #: "--max-macs", "max_macs=", or "pyproject.toml [tool.convaudit]"

    @property
    def spec(self) -> BudgetSpec:
        """What this budget measures."""
        return BUDGETS[self.name]


def candidate_seconds(analysis: Analysis) -> float:
    """Predicted seconds of one forward through the candidate convs (per-call prediction × calls).

    NB: a prediction from the device profile of the convs a rewrite applies to, not a measurement and not
    the whole model: other ops are not predicted.
    """
    total = 0.0
    for layer in analysis.candidates:
        predicted = layer.latency.predicted_seconds if layer.latency else None
        if predicted and "original" in predicted:
            total += predicted["original"] * layer.calls
    return total


def _candidate_share(analysis: Analysis) -> float:
    t = analysis.totals
    return t.candidate_macs / t.macs if t.macs else 0.0


def _largest_layer(analysis: Analysis) -> float:
    return float(max((layer.macs for layer in analysis.layers), default=0))


_SPECS = (
    BudgetSpec("max-macs", "MACs", "count", "4.2G", lambda a: float(a.totals.macs), "multiply-accumulates, all ops"),
    BudgetSpec("max-params", "params", "count", "26M", lambda a: float(a.totals.params), "parameters of the model"),
    BudgetSpec(
        "max-conv-macs", "conv MACs", "count", "3G", lambda a: float(a.totals.conv_macs), "MACs of the convs alone"
    ),
    BudgetSpec("max-layer-macs", "MACs of the costliest conv", "count", "500M", _largest_layer, "MACs of any one conv"),
    BudgetSpec(
        "max-candidate-share",
        "candidate share of MACs",
        "share",
        "25%",
        _candidate_share,
        "share of the model's MACs in convs a separable rewrite applies to",
    ),
    BudgetSpec(
        "max-latency",
        "predicted candidate latency",
        "seconds",
        "30ms",
        candidate_seconds,
        "predicted time of one forward through the candidate convs (device profile; a prediction)",
    ),
)

#: The budgets, by name, in the order reports list them.
BUDGETS: dict[str, BudgetSpec] = {spec.name: spec for spec in _SPECS}


def resolve_budgets(
    flags: Mapping[str, object | None],
    file_settings: Mapping[str, object] | None = None,
    file_label: str = "pyproject.toml [tool.convaudit]",
    flag_style: Callable[[str], str] = lambda name: f"--{name}",
) -> tuple[Budget, ...]:
    """The budgets in force: ``flags`` (None = not given) override ``file_settings``; at least one is needed.

    Args:
        flags: budget name → the value as given (a string like ``"4.2G"``, or a number).
        file_settings: budget name → value, from ``[tool.convaudit]`` (already merged with a per-model section).
        file_label: how messages name the file's settings.
        flag_style: how messages name a flag (``--max-macs``; the pytest helper says ``max_macs=``).
    """
    settings = dict(file_settings or {})
    unknown = sorted(set(settings) - set(BUDGETS))
    if unknown:
        raise UsageError(
            f"{file_label}: unknown setting {unknown[0]!r}; the budgets are {', '.join(BUDGETS)} "
            f'(e.g. max-macs = "4.2G")'
        )
    out = []
    for name, spec in BUDGETS.items():
        given = flags.get(name)
        if given is not None:
            where = flag_style(name)
            out.append(Budget(name, spec.parse(given, where), where))
        elif name in settings:
            out.append(Budget(name, spec.parse(settings[name], f"{file_label} {name}"), file_label))
    if not out:
        examples = " ".join(f"{flag_style(s.name)} {s.example}" for s in _SPECS[:2])
        raise UsageError(
            f"no budget to check: give one (e.g. {examples}) or set them in pyproject.toml [tool.convaudit]"
        )
    return tuple(out)
