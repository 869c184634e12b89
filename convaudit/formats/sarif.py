"""SARIF 2.1.0 for code scanning: a result per costly candidate conv and per exceeded budget.

Each result sits at the file and line that defines the layer (``ConvLayer.source``), its artifact URI
relative to the repository root (the nearest folder above the working directory holding ``.git``, else
the working directory) under ``uriBaseId`` ``%SRCROOT%``, so GitHub code scanning annotates that line of
the pull request. Files outside the root (an installed library's) get an absolute ``file:`` URI.
Rules: ``convaudit/costly-conv`` (level by the layer's share of the model's MACs) and
``convaudit/budget-exceeded`` (level error). Deterministic: no absolute path of the root in the output.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from convaudit.documents.check import BudgetResult, CheckResult, Culprit
from convaudit.documents.records import Analysis
from convaudit.formats.check import figure

__all__ = [
    "COSTLY_SHARE",
    "RULES",
    "SARIF_SCHEMA",
    "WARNING_SHARE",
    "render_check_sarif",
    "render_sarif",
    "repository_root",
]

SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
INFORMATION_URI = "https://pypi.org/project/convaudit/"
#: A candidate is reported when it holds at least this share of the model's MACs and a rewrite saves some.
COSTLY_SHARE = 0.01
#: ... as a warning from this share on, as a note below it.
WARNING_SHARE = 0.10
SRCROOT = "%SRCROOT%"

#: (id, name, short description, full description) of each rule, in ``ruleIndex`` order.
RULES: tuple[tuple[str, str, str, str], ...] = (
    (
        "convaudit/costly-conv",
        "CostlyConvolution",
        "A costly k×k convolution that a depthwise-separable rewrite applies to",
        "The convolution holds a sizeable share of the model's multiply-accumulates (MACs). Replacing it by a "
        "depthwise and a pointwise convolution (convaudit convert) would save the MACs and parameters the "
        "message gives; the message also says whether the device profile predicts the rewrite to be faster. "
        "Level: warning from 10% of the model's MACs, note from 1%.",
    ),
    (
        "convaudit/budget-exceeded",
        "BudgetExceeded",
        "The model exceeds a budget set for convaudit check",
        "A budget (--max-macs, --max-params, --max-latency, ... or [tool.convaudit] in pyproject.toml) is "
        "exceeded. The result sits at the costliest layer responsible; the message gives the figure against the "
        "limit and what converting the layers responsible would save.",
    ),
)
_COSTLY, _BUDGET = 0, 1


def repository_root(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (default the working directory) holding ``.git``, else ``start``."""
    here = (start or Path.cwd()).resolve()
    return next((folder for folder in (here, *here.parents) if (folder / ".git").exists()), here)


def render_sarif(analysis: Analysis, root: Path | None = None) -> str:
    """The report as a SARIF log: one result per costly candidate, costliest first."""
    total = analysis.totals.macs
    costly = [
        c
        for c in (Culprit.of_layer(x, total) for x in analysis.candidates if x.separable)
        if c.share >= COSTLY_SHARE and c.macs_saved > 0
    ]
    costly.sort(key=lambda c: -c.macs)
    base = root or repository_root()
    return _log([_costly_result(c, base) for c in costly], analysis.model)


def render_check_sarif(result: CheckResult, root: Path | None = None) -> str:
    """A check as a SARIF log: an error per exceeded budget, then a result per layer responsible."""
    base = root or repository_root()
    results = [_budget_result(b, base) for b in result.exceeded]
    seen: dict[str, Culprit] = {}
    for budget in result.exceeded:
        for c in budget.culprits:
            if c.form is not None and c.macs_saved > 0:
                seen.setdefault(c.name, c)
    results += [_costly_result(c, base) for c in seen.values()]
    return _log(results, result.model)


def _log(results: list[dict[str, Any]], model: str) -> str:
    from convaudit import __version__

    rules = [
        {
            "id": rule_id,
            "name": name,
            "shortDescription": {"text": short},
            "fullDescription": {"text": full},
            "helpUri": INFORMATION_URI,
            "defaultConfiguration": {"level": "error" if index == _BUDGET else "warning"},
        }
        for index, (rule_id, name, short, full) in enumerate(RULES)
    ]
    driver = {"name": "convaudit", "version": __version__, "informationUri": INFORMATION_URI, "rules": rules}
    run = {"tool": {"driver": driver}, "results": results, "properties": {"model": model}}
    log = {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}
    return json.dumps(log, indent=2, ensure_ascii=False) + "\n"


def _costly_result(c: Culprit, root: Path) -> dict[str, Any]:
    saves = f"{figure(c.macs_saved, 'count')} MACs and {figure(c.params_saved, 'count')} params"
    advice = (
        f"recommended: convert ({c.reason})"
        if c.action == "convert"
        else f"the analysis recommends keeping it: {c.reason}"
    )
    text = (
        f"{c.name}: a conv costing {figure(c.macs, 'count')} MACs ({c.share:.1%} of the model); converting it to "
        f"{c.form} would save {saves}; {advice}"
    )
    return {
        "ruleId": RULES[_COSTLY][0],
        "ruleIndex": _COSTLY,
        "level": "warning" if c.share >= WARNING_SHARE else "note",
        "message": {"text": text},
        "locations": list(_locations([c], root)),
        "partialFingerprints": {"convauditLayer/v1": c.name},
        "properties": {"macs": c.macs, "share": c.share, "macsSaved": c.macs_saved, "paramsSaved": c.params_saved},
    }


def _budget_result(b: BudgetResult, root: Path) -> dict[str, Any]:
    text = f"{b.name} exceeded: {b.metric} {figure(b.actual, b.unit)} > {figure(b.limit, b.unit)} ({b.origin})"
    if b.culprits and b.after is not None:
        names = ", ".join(c.name for c in b.culprits)
        text += f"; converting {names} brings it to {figure(b.after, b.unit)}"
    elif not b.culprits:
        text += "; no convertible conv is responsible"
    if b.note:
        text += f" ({b.note})"
    result: dict[str, Any] = {
        "ruleId": RULES[_BUDGET][0],
        "ruleIndex": _BUDGET,
        "level": "error",
        "message": {"text": text},
        "partialFingerprints": {"convauditBudget/v1": b.name},
        "properties": {"budget": b.name, "actual": b.actual, "limit": b.limit, "unit": b.unit},
    }
    located = list(_locations(b.culprits[:1], root))
    if located:
        result["locations"] = located
    related = list(_locations(b.culprits[1:], root))
    for index, location in enumerate(related):
        location["id"] = index
    if related:
        result["relatedLocations"] = related
    return result


def _locations(culprits: Iterable[Culprit], root: Path) -> Iterable[dict[str, Any]]:
    for c in culprits:
        physical = _physical(c.source, root)
        location: dict[str, Any] = {"logicalLocations": [{"fullyQualifiedName": c.name, "kind": "member"}]}
        if physical is not None:
            location["physicalLocation"] = physical
        yield location


def _physical(source: str | None, root: Path) -> dict[str, Any] | None:
    """``{"artifactLocation": ..., "region": {"startLine": n}}`` for a "file:line" source, else None."""
    if not source:
        return None
    path_text, _, line = source.rpartition(":")
    if not path_text or not line.isdigit() or int(line) < 1:
        return None
    path, region = Path(path_text), {"startLine": int(line)}
    if not path.is_absolute():
        if not (Path.cwd() / path).exists():  # relative to an installed package's folder: a URI as it is
            return {"artifactLocation": {"uri": quote(path.as_posix())}, "region": region}
        path = Path.cwd() / path
    resolved = path.resolve()
    try:
        artifact = {"uri": quote(resolved.relative_to(root.resolve()).as_posix()), "uriBaseId": SRCROOT}
    except ValueError:
        artifact = {"uri": resolved.as_uri()}
    return {"artifactLocation": artifact, "region": region}
