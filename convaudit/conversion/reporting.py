"""The ConversionReport of one conversion: each layer before, predicted and measured, and the function's fate.

:func:`build_report` assembles it from the analyses before and after, the plan, the errors on the example
inputs and the :class:`Outcome` (held-out fidelity before and after recovery, the recovery stages and the
verdict). :func:`with_weights` records where the weights came from, and warns when they are untrained.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch.nn as nn

from convaudit.analysis.environment import environment
from convaudit.conversion.layers import SeparableConv
from convaudit.conversion.planning import Plan
from convaudit.conversion.verify import VerificationError
from convaudit.documents.records import Analysis, ConversionReport, ConvertedLayer, Fidelity, RecoveryStage
from convaudit.formats.conversion import untrained_warning
from convaudit.options import ConversionOptions
from convaudit.vocab import Init

__all__ = ["Outcome", "build_report", "with_weights"]


@dataclass(frozen=True)
class Outcome:
    """What the conversion did to the model's function, measured on inputs it was not fitted to."""

    fidelity: Fidelity | None = None  #: before recovery
    recovered: Fidelity | None = None  #: after recovery (None: no recovery)
    recovery: tuple[RecoveryStage, ...] = ()
    verdict: str | None = None
    notes: tuple[str, ...] = field(default=())  #: how the inputs were chosen, an interrupted recovery, ...


def build_report(
    before: Analysis,
    after: Analysis,
    plan: Plan,
    converted: nn.Module,
    replaced: dict[str, SeparableConv],
    output_error: float | None,
    layer_errors: dict[str, float | None],
    options: ConversionOptions,
    outcome: Outcome,
) -> ConversionReport:
    """The ConversionReport: each layer before, predicted and measured (``after``), with its error."""
    measured = {layer.name: layer for layer in after.layers}
    layers = []
    for choice in plan.choices:
        parts = [measured.get(f"{_module_path(converted, replaced[choice.name])}.{p}") for p in ("conv_dw", "conv_pw")]
        params_m = sum(p.params for p in parts if p) + _extra_params(replaced[choice.name])
        macs_m = sum(p.macs for p in parts if p)
        note = "; ".join(n for n in (choice.note, replaced[choice.name].note) if n) or None  # + its adapter's
        if choice.name not in layer_errors or layer_errors[choice.name] is None:
            note = (note + "; " if note else "") + "functional conv: its error shows in the final output only"
        calibrated = options.init is not Init.CALIBRATED or choice.name in layer_errors
        layers.append(
            ConvertedLayer(
                name=choice.name,
                order=choice.order,
                rank=choice.rank,
                exact_rank=choice.exact_rank,
                init=options.init if calibrated else Init.SVD,
                energy=replaced[choice.name].energy,
                params_before=choice.params_before,
                macs_before=choice.macs_before,
                params_predicted=choice.params_after,
                macs_predicted=choice.macs_after,
                params_measured=params_m,
                macs_measured=macs_m,
                relative_error=layer_errors.get(choice.name),
                note=note,
            )
        )
    costs_match = after.totals.params == plan.params_after and after.totals.macs == plan.macs_after
    costs_match = costs_match and all(
        (layer.params_measured, layer.macs_measured) == (layer.params_predicted, layer.macs_predicted)
        for layer in layers
    )
    notes = list(plan.notes) + list(outcome.notes)
    if options.sequential:
        notes.append(
            "per-layer errors are measured on the inputs each conv gets in the original model; with --sequential each "
            "layer was fitted to its inputs in the model converted so far"
        )
    if options.recover:
        notes.append("per-layer errors and the example-input error are measured after recovery")
    if not costs_match:
        notes.append("measured costs differ from the predicted ones: please report this as a bug")
    return ConversionReport(
        model=options.source or before.model_class.rsplit(".", 1)[-1],
        settings=options.settings(),
        layers=tuple(layers),
        skipped=plan.skipped,
        params_before=before.totals.params,
        macs_before=before.totals.macs,
        params_predicted=plan.params_after,
        macs_predicted=plan.macs_after,
        params_measured=after.totals.params,
        macs_measured=after.totals.macs,
        output_error=output_error,
        costs_match=costs_match,
        notes=tuple(notes),
        environment=environment(),
        verdict=outcome.verdict,
        fidelity=outcome.fidelity,
        recovered=outcome.recovered,
        recovery=outcome.recovery,
    )


def with_weights(report: ConversionReport, weights: str, source: str | None) -> ConversionReport:
    """The report with where its weights came from; freshly initialised ones add a note that its figures mean
    nothing (``formats.conversion.UNTRAINED_WARNING``: JSON readers get it too)."""
    notes, warning = report.notes, untrained_warning(weights)
    if warning and warning not in notes:
        notes = (warning, *notes)
    return dataclasses.replace(report, weights=weights, weights_source=source, notes=notes)


def _extra_params(layer: SeparableConv) -> int:
    """Parameters outside conv_dw/conv_pw (the BatchNorm of the mobilenet style)."""
    return sum(p.numel() for n, p in layer.named_parameters() if not n.startswith(("conv_dw.", "conv_pw.")))


def _module_path(root: nn.Module, module: nn.Module) -> str:
    for name, m in root.named_modules():
        if m is module:
            return name
    raise VerificationError("a replacement layer is missing from the converted model")
