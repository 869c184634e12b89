"""``convaudit.convert``: plan → rewrite → verify, returning the converted model and its report.

Verification always runs: the example inputs go through both models (real compute, eval mode, on
copies) for the final-output error; every converted module conv is checked alone on the inputs it
really receives; and the converted model is costed by the same engine: measured params and MACs
must equal the predicted ones.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
from torch.utils._pytree import tree_flatten

from convaudit.analysis import analyze
from convaudit.analysis.adapters import is_conv_module
from convaudit.analysis.environment import environment
from convaudit.analysis.guard import eval_mode, untouched
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
    recalibrate_batchnorm,
    rewrite,
)
from convaudit.documents.records import Analysis, ConversionReport, ConvertedLayer
from convaudit.errors import ConvauditError, UsageError
from convaudit.options import AnalysisOptions, ConversionOptions, options_from
from convaudit.sources.inputs import materialize, normalize_inputs, split_inputs
from convaudit.vocab import Init, Style

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
    #: wall-clock seconds of each stage, in the order run: analysis (of the original, incl. separability SVDs),
    #: plan, reference (the original's outputs and conv inputs), rewrite, recalibration (with recalibrate_bn),
    #: verification (real forwards, per-layer errors), cost_check (analysis of the converted model)
    stage_seconds: dict[str, float] = field(default_factory=dict)


def convert(
    model: nn.Module,
    example_inputs: Any = None,
    example_kwargs: Mapping[str, Any] | None = None,
    *,
    options: ConversionOptions | None = None,
    calibration: Iterable[Any] | None = None,
    **keywords: Any,
) -> Conversion:
    """Rewrite the chosen convs of ``model`` as depthwise + pointwise, from their own weights.

    Args:
        example_inputs: a tensor or tuple of positional inputs (real tensors: verification runs them).
        options: a :class:`~convaudit.options.ConversionOptions`; its fields may also be given as keywords
            (they override ``options``'):
            ``rank`` channel multiplier m, "full" (exact), or None with ``energy``/``target_macs`` (default 1);
            ``order`` "dw_pw", "pw_dw" or "auto";
            ``init`` "svd" (default), "calibrated" (needs ``calibration``), or "random" (training from scratch);
            ``sequential`` calibrate each layer on the model converted so far;
            ``recalibrate_bn`` re-estimate the converted model's BatchNorm statistics on the calibration
            batches (any init; often the largest training-free gain);
            ``style`` "mobilenet" puts BN+ReLU between the parts (only with init="random");
            ``include``/``exclude``/``min_savings``/``energy``/``target_macs`` which layers, at which m;
            ``inplace`` rewrite ``model`` itself instead of a copy;
            ``train_mode`` analyse and cost the training graph (default: eval mode; verification always runs in
            eval mode); ``leaf_types`` module types the tracer must not trace into;
            ``exact`` raise :class:`VerificationError` when a layer's error exceeds ``EXACT_TOLERANCE``.
        calibration: batches of model inputs (each a tensor, a tuple, or (args, kwargs)).
    Returns:
        A :class:`Conversion` with ``.model``, ``.report`` and the ``.stage_seconds`` it took.
    """
    opts = options_from(ConversionOptions, options, keywords, "convert")
    check_model(model, need_data=True)
    args, kwargs = normalize_inputs(example_inputs, example_kwargs, None)
    real_args, real_kwargs = materialize(args), materialize(kwargs)
    if opts.init is Init.CALIBRATED and calibration is None:
        raise UsageError("init='calibrated' needs calibration batches (calibration_inputs() in model.py)")
    if opts.recalibrate_bn and calibration is None:
        raise UsageError("--recalibrate-bn needs calibration batches (calibration_inputs() in model.py)")
    stages = _Stages()
    with stages("analysis"):
        # The weight energies are read only when the policy chooses by them; each layer's kept energy is
        # reported from its own factorisation anyway.
        analysis_options = AnalysisOptions(
            graph=False,
            separability=opts.by_energy,
            source=opts.source,
            train_mode=opts.train_mode,
            leaf_types=opts.leaf_types,
        )
        before = analyze(model, real_args, real_kwargs, options=analysis_options)
    with stages("plan"):
        plan = plan_conversion(before, opts)
        if opts.style is Style.MOBILENET:
            plan = with_mobilenet_norms(plan, before)
    batches = [_as_batch(b) for b in calibration] if calibration is not None else None
    with stages("reference"):  # before the rewrite, so inplace=True is verified against the model as it was
        reference = _Reference.take(model, [c.name for c in plan.choices], real_args, real_kwargs)

    def factory(choice: Choice, conv: nn.Module, inputs: list[torch.Tensor] | None) -> SeparableConv:
        use = opts.init if (opts.init is not Init.CALIBRATED or inputs) else Init.SVD
        return SeparableConv.from_conv(
            conv, rank=choice.rank, order=choice.order, init=use, calibration=inputs, style=opts.style
        )

    with stages("rewrite"):
        converted, replaced = rewrite(
            model,
            plan.choices,
            factory,
            inplace=opts.inplace,
            calibration=batches if opts.init is Init.CALIBRATED else None,
            sequential=opts.sequential,
            leaf_types=opts.leaf_types,
            training=opts.train_mode,
        )
    if opts.recalibrate_bn and batches:
        with stages("recalibration"):
            recalibrate_batchnorm(converted, batches)
    with stages("verification"):
        output_error, layer_errors = _errors(reference, converted, replaced, real_args, real_kwargs)
    with stages("cost_check"):
        after_options = AnalysisOptions(graph=False, train_mode=opts.train_mode, leaf_types=opts.leaf_types)
        after = analyze(converted, real_args, real_kwargs, options=after_options)
    report = _report(before, after, plan, converted, replaced, output_error, layer_errors, opts)
    if opts.exact:
        _check_exact(report)
    return Conversion(converted, report, plan, before, stages.seconds)


class _Stages:
    """Times the stages of one conversion: ``with stages("plan"): ...`` adds to ``seconds["plan"]``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


def _check_exact(report: ConversionReport) -> None:
    """--exact: raise when a layer's (or the output's) relative error exceeds EXACT_TOLERANCE."""
    bad = [
        layer for layer in report.layers if layer.relative_error is not None and layer.relative_error > EXACT_TOLERANCE
    ]
    if bad or (report.output_error or 0.0) > EXACT_TOLERANCE:
        worst = max(bad, key=lambda layer: layer.relative_error or 0.0) if bad else None
        where = (
            f"layer '{worst.name}' has relative error {worst.relative_error:.2e}"
            if worst
            else f"the output error is {report.output_error:.2e}"
        )
        raise VerificationError(f"--exact: {where} > {EXACT_TOLERANCE:g}; use --rank full for an exact rewrite")


@dataclass
class _Reference:
    """The original model's behaviour on the example inputs, recorded before anything is rewritten."""

    output: Any
    convs: dict[str, nn.Module]  #: the original conv modules about to be replaced (kept alive here)
    inputs: dict[str, list[torch.Tensor]]  #: what each of them received

    @classmethod
    def take(cls, model: nn.Module, names: Sequence[str], args: tuple, kwargs: dict) -> _Reference:
        convs = {n: m for n in names if is_conv_module(m := _get(model, n))}
        outputs: list[Any] = []
        # eval mode, flags and everything the forward may change restored after: no copy of the model needed
        with torch.no_grad(), untouched(model), eval_mode(model):
            inputs = capture_conv_inputs(model, list(convs), [(args, kwargs)], outputs)
        return cls(outputs[0], convs, inputs)


def _errors(
    reference: _Reference, converted: nn.Module, replaced: dict[str, SeparableConv], args: tuple, kwargs: dict
) -> tuple[float | None, dict[str, float | None]]:
    """The final output's relative error, and each replaced conv's alone on the inputs it really received."""
    with torch.no_grad(), eval_mode(converted):
        got = converted(*args, **kwargs)
        layer_errors: dict[str, float | None] = {}
        for name, conv in reference.convs.items():
            with untouched(conv):  # the user's conv (its hooks run as in the model, their traces do not stay)
                errs = [_rel_error(replaced[name](x), conv(x)) for x in reference.inputs[name]]
            layer_errors[name] = max(errs) if errs else None
    return _output_error(got, reference.output), layer_errors


def _report(
    before: Analysis,
    after: Analysis,
    plan: Plan,
    converted: nn.Module,
    replaced: dict[str, SeparableConv],
    output_error: float | None,
    layer_errors: dict[str, float | None],
    options: ConversionOptions,
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
    notes = list(plan.notes)
    if options.sequential:
        notes.append(
            "per-layer errors are measured on the inputs each conv gets in the original model; with --sequential each "
            "layer was fitted to its inputs in the model converted so far"
        )
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
    if len(g_flat) != len(e_flat):
        return None
    pairs = [
        (g, e)
        for g, e in zip(g_flat, e_flat, strict=True)
        if isinstance(g, torch.Tensor) and isinstance(e, torch.Tensor)
    ]
    if not pairs:
        return None
    if any(g.shape != e.shape for g, e in pairs):
        raise VerificationError(
            f"output shapes changed: {[tuple(g.shape) for g, _ in pairs]} vs {[tuple(e.shape) for _, e in pairs]}"
        )
    return max(_rel_error(g, e) for g, e in pairs if g.is_floating_point())


def _as_batch(batch: Any) -> tuple[tuple, dict]:
    args, kwargs = split_inputs(batch, "calibration batch")
    return materialize(args), materialize(kwargs)
