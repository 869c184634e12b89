"""``convaudit.convert``: plan → rewrite → verify, returning the converted model and its report.

Verification always runs: the example inputs go through both models (real compute, eval mode, on
copies) for the final-output error; every converted module conv is checked alone on the inputs it
really receives; and the converted model is costed by the same engine: measured params and MACs
must equal the predicted ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from torch.nn.modules.conv import _ConvNd
from torch.utils._pytree import tree_flatten

from convaudit.analysis import analyze
from convaudit.analysis.environment import environment
from convaudit.analysis.guard import untouched
from convaudit.analysis.modelcheck import check_model
from convaudit.conversion.layers import SeparableConv
from convaudit.conversion.planning import (
    Choice,
    Plan,
    plan_conversion,
    with_mobilenet_norms,
)
from convaudit.conversion.rewrite import (
    capture_conv_inputs,
    eval_mode,
    recalibrate_batchnorm,
    rewrite,
)
from convaudit.documents.records import Analysis, ConversionReport, ConvertedLayer
from convaudit.errors import ConvauditError, UsageError
from convaudit.sources.inputs import materialize, normalize_inputs, split_inputs

__all__ = ["EXACT_TOLERANCE", "Conversion", "VerificationError", "convert"]

#: ``--exact`` fails when a layer's relative error exceeds this.
EXACT_TOLERANCE = 1e-4


class VerificationError(ConvauditError):
    """The converted model does not do what the conversion promised."""


@dataclass
class Conversion:
    """The result of :func:`convert`: the converted module, the plan it followed, and the report."""

    model: nn.Module
    report: ConversionReport
    plan: Plan
    analysis: Analysis  #: of the original model


def convert(
    model: nn.Module,
    example_inputs: Any = None,
    example_kwargs: Mapping[str, Any] | None = None,
    *,
    rank: int | str | None = 1,
    order: str = "dw_pw",
    init: str = "svd",
    calibration: Iterable[Any] | None = None,
    sequential: bool = False,
    recalibrate_bn: bool = False,
    style: str | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    min_savings: float = 0.0,
    energy: float | None = None,
    target_macs: float | None = None,
    inplace: bool = False,
    exact: bool = False,
    source: str | None = None,
) -> Conversion:
    """Rewrite the chosen convs of ``model`` as depthwise + pointwise, from their own weights.

    Args:
        example_inputs: a tensor or tuple of positional inputs (real tensors: verification runs them).
        rank: channel multiplier m, "full" (exact), or None with ``energy``/``target_macs``.
        order: "dw_pw", "pw_dw" or "auto".
        init: "svd" (default), "calibrated" (needs ``calibration``), or "random" (training from scratch).
        calibration: batches of model inputs (each a tensor, a tuple, or (args, kwargs)).
        sequential: calibrate each layer on the model converted so far.
        recalibrate_bn: re-estimate the converted model's BatchNorm statistics on the calibration batches
            (any init; often the largest training-free gain).
        style: "mobilenet" puts BN+ReLU between the parts (only with init="random").
        inplace: rewrite ``model`` itself instead of a copy.
        exact: raise :class:`VerificationError` when a layer's error exceeds ``EXACT_TOLERANCE``.
    Returns:
        A :class:`Conversion` with ``.model`` and ``.report``.
    """
    check_model(model, need_data=True)
    args, kwargs = normalize_inputs(example_inputs, example_kwargs, None)
    real_args, real_kwargs = materialize(args), materialize(kwargs)
    if init == "calibrated" and calibration is None:
        raise UsageError("init='calibrated' needs calibration batches (calibration_inputs() in model.py)")
    if recalibrate_bn and calibration is None:
        raise UsageError("--recalibrate-bn needs calibration batches (calibration_inputs() in model.py)")
    if style is not None and init != "random":
        raise UsageError("--style mobilenet is for training from scratch: it needs --init random")
    if style is not None and order != "dw_pw":
        raise UsageError("--style mobilenet puts BN+ReLU between depthwise and pointwise: it needs --order dw_pw")
    # The weight energies are read only when the policy chooses by them; each layer's kept energy is
    # reported from its own factorisation anyway.
    by_energy = energy is not None or target_macs is not None or order == "auto"
    before = analyze(model, real_args, real_kwargs, graph=False, separability=by_energy, source=source)
    plan = plan_conversion(
        before,
        rank=rank,
        order=order,
        include=include,
        exclude=exclude,
        min_savings=min_savings,
        energy=energy,
        target_macs=target_macs,
    )
    if style == "mobilenet":
        plan = with_mobilenet_norms(plan, before)
    batches = [_as_batch(b) for b in calibration] if calibration is not None else None

    # The reference run happens before the rewrite, so inplace=True is verified against the model as it was.
    reference = _Reference.take(model, [c.name for c in plan.choices], real_args, real_kwargs)

    def factory(choice: Choice, conv: _ConvNd, inputs: list[torch.Tensor] | None) -> SeparableConv:
        use = init if (init != "calibrated" or inputs) else "svd"
        return SeparableConv.from_conv(
            conv, rank=choice.rank, order=choice.order, init=use, calibration=inputs, style=style
        )

    converted, replaced = rewrite(
        model,
        plan.choices,
        factory,
        inplace=inplace,
        calibration=batches if init == "calibrated" else None,
        sequential=sequential,
    )
    if recalibrate_bn and batches:
        recalibrate_batchnorm(converted, batches)
    settings = {
        "rank": rank,
        "order": order,
        "init": init,
        "sequential": sequential,
        "recalibrate_bn": recalibrate_bn,
        "style": style,
        "include": list(include),
        "exclude": list(exclude),
        "min_savings": min_savings,
        "energy": energy,
        "target_macs": target_macs,
    }
    report = _verify(reference, converted, replaced, before, plan, real_args, real_kwargs, init, source, settings)
    if exact:
        bad = [
            layer
            for layer in report.layers
            if layer.relative_error is not None and layer.relative_error > EXACT_TOLERANCE
        ]
        if bad or (report.output_error or 0.0) > EXACT_TOLERANCE:
            worst = max(bad, key=lambda layer: layer.relative_error or 0.0) if bad else None
            where = (
                f"layer '{worst.name}' has relative error {worst.relative_error:.2e}"
                if worst
                else f"the output error is {report.output_error:.2e}"
            )
            raise VerificationError(f"--exact: {where} > {EXACT_TOLERANCE:g}; use --rank full for an exact rewrite")
    return Conversion(converted, report, plan, before)


@dataclass
class _Reference:
    """The original model's behaviour on the example inputs, recorded before anything is rewritten."""

    output: Any
    convs: dict[str, _ConvNd]  #: the original conv modules about to be replaced (kept alive here)
    inputs: dict[str, list[torch.Tensor]]  #: what each of them received

    @classmethod
    def take(cls, model: nn.Module, names: Sequence[str], args: tuple, kwargs: dict) -> _Reference:
        convs = {n: m for n in names if isinstance(m := _get(model, n), _ConvNd)}
        outputs: list[Any] = []
        # eval mode, flags and everything the forward may change restored after: no copy of the model needed
        with torch.no_grad(), untouched(model), eval_mode(model):
            inputs = capture_conv_inputs(model, list(convs), [(args, kwargs)], outputs)
        return cls(outputs[0], convs, inputs)


def _verify(
    reference: _Reference,
    converted: nn.Module,
    replaced: dict[str, SeparableConv],
    before: Analysis,
    plan: Plan,
    args: tuple,
    kwargs: dict,
    init: str,
    source: str | None,
    settings: dict[str, Any],
) -> ConversionReport:
    with torch.no_grad(), eval_mode(converted):
        got = converted(*args, **kwargs)
        layer_errors = {}
        for name, conv in reference.convs.items():
            with untouched(conv):  # the user's conv (its hooks run as in the model, their traces do not stay)
                errs = [_rel_error(replaced[name](x), conv(x)) for x in reference.inputs[name]]
            layer_errors[name] = max(errs) if errs else None
    after = analyze(converted, args, kwargs, graph=False, separability=False)
    measured = {layer.name: layer for layer in after.layers}
    layers = []
    for choice in plan.choices:
        parts = [measured.get(f"{_module_path(converted, replaced[choice.name])}.{p}") for p in ("conv_dw", "conv_pw")]
        params_m = sum(p.params for p in parts if p) + _extra_params(replaced[choice.name])
        macs_m = sum(p.macs for p in parts if p)
        note = choice.note
        if choice.name not in layer_errors or layer_errors[choice.name] is None:
            note = (note + "; " if note else "") + "functional conv: its error shows in the final output only"
        layers.append(
            ConvertedLayer(
                name=choice.name,
                order=choice.order,
                rank=choice.rank,
                exact_rank=choice.exact_rank,
                init=init if (init != "calibrated" or choice.name in layer_errors) else "svd",
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
    notes = list(plan.notes)
    if settings.get("sequential"):
        notes.append(
            "per-layer errors are measured on the inputs each conv gets in the original model; with --sequential each "
            "layer was fitted to its inputs in the model converted so far"
        )
    if not costs_match:
        notes.append("measured costs differ from the predicted ones: please report this as a bug")
    return ConversionReport(
        model=source or before.model_class.rsplit(".", 1)[-1],
        settings=settings,
        layers=tuple(layers),
        skipped=plan.skipped,
        params_before=before.totals.params,
        macs_before=before.totals.macs,
        params_predicted=plan.params_after,
        macs_predicted=plan.macs_after,
        params_measured=after.totals.params,
        macs_measured=after.totals.macs,
        output_error=_output_error(got, reference.output),
        costs_match=costs_match,
        notes=tuple(notes),
        environment=environment(),
    )


def _extra_params(layer: SeparableConv) -> int:
    """Parameters outside conv_dw/conv_pw (the BatchNorm of the mobilenet style)."""
    return sum(p.numel() for n, p in layer.named_parameters() if not n.startswith(("conv_dw.", "conv_pw.")))


def _module_path(root: nn.Module, module: nn.Module) -> str:
    for name, m in root.named_modules():
        if m is module:
            return name
    raise VerificationError("a replacement layer is missing from the converted model")


def _get(root: nn.Module, name: str) -> nn.Module | None:
    try:
        return root.get_submodule(name)
    except AttributeError:
        return None


def _rel_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    g, e = got.detach().double(), expected.detach().double()
    denom = float(e.norm())
    return float((g - e).norm()) / denom if denom > 0 else float((g - e).norm())


def _output_error(got: Any, expected: Any) -> float | None:
    g_flat, _ = tree_flatten(got)
    e_flat, _ = tree_flatten(expected)
    pairs = [(g, e) for g, e in zip(g_flat, e_flat) if isinstance(g, torch.Tensor) and isinstance(e, torch.Tensor)]
    if not pairs or len(g_flat) != len(e_flat):
        return None
    if any(g.shape != e.shape for g, e in pairs):
        raise VerificationError(
            f"output shapes changed: {[tuple(g.shape) for g, _ in pairs]} vs {[tuple(e.shape) for _, e in pairs]}"
        )
    return max(_rel_error(g, e) for g, e in pairs if g.is_floating_point())


def _as_batch(batch: Any) -> tuple[tuple, dict]:
    args, kwargs = split_inputs(batch, "calibration batch")
    return materialize(args), materialize(kwargs)
