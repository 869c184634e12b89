"""Renderers for a ConversionReport: terminal text and a self-contained HTML page.

Both open with what happened to the model's function: the verdict (kept / degraded / broken), the
agreement with the original before and after recovery and on which inputs, the next step when it is not
kept, and a warning when the weights are untrained; what it costs ("measured = predicted") comes after.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from convaudit.documents.records import MODE_AS_FOUND, ConversionReport, ConvertedLayer, Fidelity, RecoveryStage
from convaudit.formats.common import count, mode_text, plural, ratio, weights_text
from convaudit.vocab import WeightsOrigin

__all__ = [
    "UNTRAINED_WARNING",
    "VERDICT_MEANING",
    "conversion_view",
    "costlier_text",
    "fidelity_text",
    "inputs_text",
    "next_step",
    "recovery_text",
    "render_conversion_html",
    "render_conversion_text",
    "untrained_warning",
    "verdict_lines",
]

#: One line per verdict (thresholds: convaudit/conversion/fidelity.py, docs/schema.md).
VERDICT_MEANING = {
    "kept": "the converted model computes what the original did",
    "degraded": "the converted model departs from the original: check it on your task",
    "broken": "the converted model no longer computes what the original did",
}
#: What a report of freshly initialised weights (a zoo build without --weights) says about its fidelity.
UNTRAINED_WARNING = (
    "the weights are freshly initialised (untrained): the fidelity figures and the verdict describe random "
    "weights and mean nothing for a trained model; pass --weights"
)


def _err(e: float | None) -> str:
    return "—" if e is None else f"{e:.2e}"


def _energy(e: float | None) -> str:
    return "—" if e is None else f"{e:.1%}"


def untrained_warning(weights: str) -> str | None:
    """:data:`UNTRAINED_WARNING` for freshly initialised weights, else None."""
    return UNTRAINED_WARNING if weights == WeightsOrigin.INITIALISED else None


def fidelity_text(fidelity: Fidelity) -> str:
    """'top-1 agreement 97.0% · relative error 0.121 · cosine 0.993' (agreement for classifiers only)."""
    parts = [] if fidelity.top1_agreement is None else [f"top-1 agreement {fidelity.top1_agreement:.1%}"]
    parts += [f"relative error {fidelity.relative_error:.3g}", f"cosine {fidelity.cosine:.3f}"]
    if fidelity.detections_kept is not None:
        parts.append(f"detections kept {fidelity.detections_kept:.1%}")
    return " · ".join(parts)


def inputs_text(fidelity: Fidelity) -> str:
    """'on the held-out calibration batches (64 samples)', saying so when they are the example inputs."""
    n = f"{fidelity.samples} sample{'s' if fidelity.samples != 1 else ''}"
    if fidelity.inputs == "example inputs":
        return f"on the example inputs ({n}; not held out: give calibration inputs for held-out figures)"
    return f"on the {fidelity.inputs} ({n}, never fitted to)"


def recovery_text(stage: RecoveryStage) -> str:
    """'distill 35 steps 2.0 s: 0.41 → 0.198 (steps)' (the held-out relative error before → after)."""
    unit = "batch(es)" if stage.name == "batchnorm" else "steps"
    why = "" if stage.stopped == "done" else f" (stopped: {stage.stopped})"
    errors = f"{stage.error_before:.3g} → {stage.error_after:.3g}"
    return f"{stage.name} {stage.steps} {unit} {stage.seconds:.1f} s: {errors}{why}"


def next_step(report: ConversionReport) -> str | None:
    """What to try when the function is not kept (None when it is, or nothing was measured)."""
    if report.verdict not in ("degraded", "broken"):
        return None
    s, steps = report.settings, []
    if not report.recovery:
        no_inputs = report.fidelity is not None and report.fidelity.inputs == "example inputs"
        steps.append(
            "--recover" + (" with calibration inputs (calibration_inputs() or --images DIR)" if no_inputs else "")
        )
    else:
        steps.append("a larger recovery budget (--recover-steps, --recover-time)")
    rank = s.get("rank")
    if isinstance(rank, int):
        steps.append(f"a higher --rank (e.g. --rank {rank + 1})")
    elif s.get("target_macs") is not None:
        steps.append(
            "a larger --target-macs" + ("" if s.get("select") == "sensitivity" else " or --select sensitivity")
        )
    elif s.get("energy") is not None:
        steps.append("a larger --energy")
    held_out = report.fidelity is not None and report.fidelity.inputs != "example inputs"
    if s.get("max_output_error") is None and held_out:
        steps.append("--max-output-error E (the cheapest conversion keeping the held-out error under E)")
    return "next: try " + (", ".join(steps[:-1]) + " or " + steps[-1] if len(steps) > 1 else steps[0])


def verdict_lines(report: ConversionReport) -> list[str]:
    """The text report's opening: the verdict, the figures before/after recovery, the next step, warnings."""
    r = report
    if r.verdict is None or r.fidelity is None:
        why = "no held-out figures in this report" if r.fidelity is None else "nothing comparable"
        lines = [f"verdict: not measured ({why})"]
    else:
        lines = [f"verdict: {r.verdict}: {VERDICT_MEANING.get(r.verdict, r.verdict)}"]
        where = f"  {inputs_text(r.fidelity)}:"
        if r.recovered is None:
            lines.append(f"{where} {fidelity_text(r.fidelity)}")
        else:
            lines += [
                where,
                f"    before recovery: {fidelity_text(r.fidelity)}",
                f"    after recovery:  {fidelity_text(r.recovered)}",
            ]
    if r.recovery:
        lines.append("  recovery: " + " · ".join(recovery_text(stage) for stage in r.recovery))
    step = next_step(r)
    if step:
        lines.append(f"  {step}")
    warning = untrained_warning(r.weights)
    if warning:
        lines.append(f"warning: {warning}")
    return lines


def costlier_text(report: ConversionReport) -> str | None:
    """A caution when the converted model costs more than the original (e.g. --rank full): never a saving."""
    r = report
    more = [
        what
        for what, after, before in (
            ("params", r.params_measured, r.params_before),
            ("MACs", r.macs_measured, r.macs_before),
        )
        if after > before
    ]
    if not more:
        return None
    return f"the converted model has more {' and '.join(more)} than the original: a cost, not a saving"


def render_conversion_text(report: ConversionReport) -> str:
    """The verdict first, then the summary, one line per converted layer, skip reasons counted."""
    r = report
    check = "measured = predicted" if r.costs_match else "MEASURED ≠ PREDICTED"
    lines = [
        *verdict_lines(r),
        f"converted {plural(len(r.layers), 'conv')} of {r.model}",
        f"weights: {weights_text(r.weights, r.weights_source)}",
        f"mode: {mode_text(str(r.settings.get('mode', MODE_AS_FOUND)))}; verified in eval mode",
        f"costs: params {count(r.params_before)} → {count(r.params_measured)} "
        f"({ratio(r.params_measured / r.params_before if r.params_before else 1)}) · "
        f"MACs: {count(r.macs_before)} → {count(r.macs_measured)} "
        f"({ratio(r.macs_measured / r.macs_before if r.macs_before else 1)}) · {check}",
        *([f"  ! {bigger}"] if (bigger := costlier_text(r)) else []),
        f"final output relative error on the example inputs: {_err(r.output_error)}"
        + (f" · worst layer: {_err(r.max_layer_error)}" if r.max_layer_error is not None else ""),
    ]
    if r.layers:
        head = f"{'layer':<32} {'order':<6} {'m':>3} {'energy':>7} {'params':>21} {'MACs':>27} {'rel. error':>10}"
        lines += ["", head, "-" * len(head)]
        for layer in r.layers:
            name = layer.name if len(layer.name) <= 32 else "…" + layer.name[-31:]
            lines.append(
                f"{name:<32} {layer.order:<6} {layer.rank:>3} {_energy(layer.energy):>7} "
                f"{count(layer.params_before) + ' → ' + count(layer.params_measured):>21} "
                f"{count(layer.macs_before) + ' → ' + count(layer.macs_measured):>27} {_err(layer.relative_error):>10}"
            )
            if layer.note:
                lines.append(f"  note: {layer.note}")
    reasons = Counter(reason for _, reason in r.skipped)
    if reasons:
        lines += ["", "not converted:"] + [f"  {n} × {reason}" for reason, n in reasons.most_common()]
    lines += [f"note: {n}" for n in r.notes if n != untrained_warning(r.weights)]
    return "\n".join(lines)


def conversion_view(report: ConversionReport) -> dict[str, Any]:
    """Display strings for the HTML template (names are escaped by the template)."""
    r = report

    def row(layer: ConvertedLayer) -> dict[str, Any]:
        return {
            "name": layer.name,
            "order": layer.order,
            "rank": layer.rank,
            "exact_rank": layer.exact_rank,
            "init": layer.init,
            "energy": _energy(layer.energy),
            "energy_sort": layer.energy or 0.0,
            "params_before": count(layer.params_before),
            "params_after": count(layer.params_measured),
            "macs_before": count(layer.macs_before),
            "macs_after": count(layer.macs_measured),
            "macs_sort": layer.macs_before,
            "saving": ratio(layer.macs_measured / layer.macs_before if layer.macs_before else 1),
            "costlier": layer.macs_measured > layer.macs_before or layer.params_measured > layer.params_before,
            "match": (layer.params_measured, layer.macs_measured) == (layer.params_predicted, layer.macs_predicted),
            "error": _err(layer.relative_error),
            "error_sort": layer.relative_error if layer.relative_error is not None else -1,
            "note": layer.note or "",
        }

    stages = [("before recovery" if r.recovered else "measured", r.fidelity), ("after recovery", r.recovered)]
    return {
        "title": f"convaudit conversion — {r.model}",
        "model": r.model,
        "verdict": r.verdict or "not measured",
        "verdict_class": {"kept": "kept", "degraded": "degraded", "broken": "broken"}.get(r.verdict or "", "unknown"),
        "verdict_meaning": VERDICT_MEANING.get(r.verdict or "", "no held-out figures in this report"),
        "fidelity_inputs": inputs_text(r.fidelity) if r.fidelity else "",
        "fidelity": [
            {
                "stage": stage,
                "agreement": "—" if f.top1_agreement is None else f"{f.top1_agreement:.1%}",
                "error": f"{f.relative_error:.3g}",
                "cosine": f"{f.cosine:.3f}",
            }
            for stage, f in stages
            if f is not None
        ],
        "recovery": [recovery_text(stage) for stage in r.recovery],
        "next_step": next_step(r) or "",
        "untrained": untrained_warning(r.weights) or "",
        "settings": [(k, str(v)) for k, v in r.settings.items() if v not in (None, [], 0.0, False)],
        "params": (count(r.params_before), count(r.params_predicted), count(r.params_measured)),
        "macs": (count(r.macs_before), count(r.macs_predicted), count(r.macs_measured)),
        "params_ratio": ratio(r.params_measured / r.params_before if r.params_before else 1),
        "macs_ratio": ratio(r.macs_measured / r.macs_before if r.macs_before else 1),
        "costs_match": r.costs_match,
        "costlier": costlier_text(r) or "",
        "params_more": r.params_measured > r.params_before,
        "macs_more": r.macs_measured > r.macs_before,
        "output_error": _err(r.output_error),
        "max_layer_error": _err(r.max_layer_error),
        "layers": [row(layer) for layer in r.layers],
        "skipped": [{"name": n, "reason": why} for n, why in r.skipped],
        "notes": [n for n in r.notes if n != untrained_warning(r.weights)],
        "environment": sorted(r.environment.items()),
        "schema_version": r.schema_version,
    }


def render_conversion_html(report: ConversionReport) -> str:
    """One self-contained HTML page (the report's stylesheet inlined, no network)."""
    from convaudit.formats.templating import jinja_environment, template_root

    env = jinja_environment(template_root())
    return env.get_template("conversion.html.j2").render(conversion_view(report))
