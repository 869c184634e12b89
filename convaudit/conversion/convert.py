"""``convaudit.convert``: plan → rewrite → (recover) → verify, returning the converted model and its report.

The pipeline: the calibration batches are split (:func:`~convaudit.conversion.fidelity.split_holdout`) into
fit batches and held-out ones, which are never fitted to (not by ``init="calibrated"``, BatchNorm
re-estimation, sensitivity or recovery); the plan chooses layers and m (by weight energy, by output
sensitivity on the fit batches, or the cheapest plan meeting ``max_output_error`` on the held-out ones);
the rewrite builds the separable layers; ``recover`` trains them back towards the original on the fit
batches (the held-out ones choose among its states); the held-out fidelity, before and after recovery,
gives the verdict (kept / degraded / broken). Without calibration batches, fidelity is measured on the
example inputs, and labelled so.

Verification always runs too: the example inputs go through both models (real compute, eval mode) for
the final-output error; every converted module conv is checked alone on the inputs it really receives;
and the converted model is costed by the same engine: measured params and MACs must equal the predicted.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from convaudit.analysis import analyze
from convaudit.analysis.modelcheck import check_model
from convaudit.conversion.fidelity import Batch, compare_outputs, judge, outputs_of, split_holdout
from convaudit.conversion.layers import SeparableConv
from convaudit.conversion.planning import Choice, Plan, plan_conversion, with_mobilenet_norms
from convaudit.conversion.recovery import Recovery, recover
from convaudit.conversion.reporting import Outcome, build_report
from convaudit.conversion.rewrite import recalibrate_batchnorm, rewrite
from convaudit.conversion.sensitivity import cheapest_plan, sensitivity_plan
from convaudit.conversion.verify import EXACT_TOLERANCE, Reference, VerificationError, check_exact, conversion_errors
from convaudit.documents.records import Analysis, ConversionReport, Fidelity
from convaudit.errors import UsageError
from convaudit.options import AnalysisOptions, ConversionOptions, options_from
from convaudit.sources.inputs import materialize, normalize_inputs, split_inputs
from convaudit.vocab import Init, Select, Style

__all__ = ["EXACT_TOLERANCE", "HELD_OUT", "Conversion", "Inputs", "VerificationError", "convert", "fidelity_inputs"]

#: How a report names the inputs its fidelity figures were measured on.
HELD_OUT = {"split": "held-out calibration batches", "holdout": "--holdout inputs", "example": "example inputs"}

Progress = Callable[[str, int, "int | None", float], None]


@dataclass
class Conversion:
    """The result of :func:`convert`: the converted module, the plan it followed, and the report."""

    model: nn.Module
    report: ConversionReport
    plan: Plan
    analysis: Analysis  #: of the original model
    #: wall-clock seconds of each stage, in the order run: analysis (of the original, incl. separability SVDs),
    #: plan (with --max-output-error: every candidate built and measured), reference (the original's outputs and
    #: conv inputs), rewrite, recalibration (with recalibrate_bn), fidelity (held-out, both models), recovery,
    #: verification (real forwards, per-layer errors), cost_check (analysis of the converted model)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    recovery: Recovery | None = None  #: with ``recover=True``: the stages and the held-out fidelity before/after


@dataclass(frozen=True)
class Inputs:
    """The batches a conversion fits to and those its fidelity is measured on (disjoint)."""

    fit: list[Batch] | None  #: calibration batches for fitting (None: no calibration batches)
    held: list[Batch]  #: held-out batches, or the example inputs when nothing could be held out
    label: str  #: a :data:`HELD_OUT` value, what ``held`` is
    note: str | None = None  #: why fidelity falls back to the example inputs


def convert(
    model: nn.Module,
    example_inputs: Any = None,
    example_kwargs: Mapping[str, Any] | None = None,
    *,
    options: ConversionOptions | None = None,
    calibration: Iterable[Any] | None = None,
    holdout: Iterable[Any] | None = None,
    progress: Progress | None = None,
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
            ``recalibrate_bn`` re-estimate the converted model's BatchNorm statistics on the fit batches;
            ``style`` "mobilenet" puts BN+ReLU between the parts (only with init="random");
            ``include``/``exclude``/``min_savings``/``energy``/``target_macs`` which layers, at which m;
            ``select`` "sensitivity": choose layers and m under ``target_macs`` by their effect on the output;
            ``max_output_error`` the cheapest plan whose held-out error (after recovery, if asked) meets it;
            ``recover`` label-free recovery on the fit batches (``recover_steps``, ``recover_seconds``,
            ``seed``, ``device``); ``inplace`` rewrite ``model`` itself instead of a copy;
            ``train_mode`` analyse and cost the training graph (default: eval mode; verification always runs in
            eval mode); ``leaf_types`` module types the tracer must not trace into;
            ``exact`` raise :class:`VerificationError` when a layer's error exceeds ``EXACT_TOLERANCE``.
        calibration: batches of model inputs (each a tensor, a tuple, or (args, kwargs)); a quarter is held out.
        holdout: batches to measure fidelity on instead of a share of ``calibration`` (never fitted to).
        progress: recovery's ``progress(stage, step, total, loss)`` callback (the CLI's progress bar).
    Returns:
        A :class:`Conversion` with ``.model``, ``.report`` and the ``.stage_seconds`` it took.
    Raises:
        UnmeetableError: no plan meets ``max_output_error`` (exit 1).
    """
    opts = options_from(ConversionOptions, options, keywords, "convert")
    check_model(model, need_data=True)
    args, kwargs = normalize_inputs(example_inputs, example_kwargs, None)
    example = (materialize(args), materialize(kwargs))
    _check_needs(opts, calibration)
    inputs = fidelity_inputs(calibration, holdout, example, opts)
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
        before = analyze(model, *example, options=analysis_options)
    # the teacher is the model as it was: a copy only when the rewrite replaces the model itself
    teacher = copy.deepcopy(model) if opts.inplace else model
    builder = _Builder(model, teacher, before, opts, inputs, progress)
    with stages("plan"):
        plan = _plan(builder, model, before, opts, inputs)
    with stages("reference"):  # before the rewrite, so inplace=True is verified against the model as it was
        reference = Reference.take(model, [c.name for c in plan.choices], *example)
    # on the example inputs, fidelity reads the outputs verification computes anyway (no forwards twice)
    on_examples = inputs.label == HELD_OUT["example"]
    built = builder.cached(plan) or builder.build(plan, inplace=opts.inplace, stages=stages, measure=not on_examples)
    with stages("verification"):
        output_error, layer_errors, got = conversion_errors(reference, built.model, built.replaced, *example)
        if on_examples and built.recovery is None:
            built.fidelity, built.notes = builder.compare([reference.output], [got])
    with stages("cost_check"):
        after_options = AnalysisOptions(graph=False, train_mode=opts.train_mode, leaf_types=opts.leaf_types)
        after = analyze(built.model, *example, options=after_options)
    report = build_report(
        before, after, plan, built.model, built.replaced, output_error, layer_errors, opts, built.outcome(inputs)
    )
    if opts.exact:
        check_exact(report)
    return Conversion(built.model, report, plan, before, stages.seconds, built.recovery)


def fidelity_inputs(
    calibration: Iterable[Any] | None, holdout: Iterable[Any] | None, example: Batch, options: ConversionOptions
) -> Inputs:
    """Fit and held-out batches: a share of ``calibration`` held out (or ``holdout``), else the example inputs."""
    if calibration is None:
        if holdout is None:
            return Inputs(None, [example], HELD_OUT["example"])
        held = [_as_batch(b) for b in holdout]
        if not held:
            raise UsageError("the held-out inputs are empty; pass at least one batch or leave --holdout out")
        return Inputs(None, held, HELD_OUT["holdout"])
    batches = list(calibration)
    if holdout is not None:
        fit, held = split_holdout(batches, holdout)
        return Inputs(fit, held, HELD_OUT["holdout"])
    try:
        fit, held = split_holdout(batches)
    except UsageError as exc:  # one batch of one sample: fidelity on the example inputs, unless it must be held out
        if options.recover or options.max_output_error is not None:
            raise
        every = [_as_batch(b) for b in batches] or None
        return Inputs(every, [example], HELD_OUT["example"], f"fidelity is measured on the example inputs: {exc}")
    return Inputs(fit, held, HELD_OUT["split"])


def _check_needs(opts: ConversionOptions, calibration: Iterable[Any] | None) -> None:
    """What needs calibration batches, said before any work."""
    if calibration is None:
        where = "calibration_inputs() in model.py, or --images DIR"
        if opts.init is Init.CALIBRATED:
            raise UsageError("init='calibrated' needs calibration batches (calibration_inputs() in model.py)")
        if opts.recalibrate_bn:
            raise UsageError("--recalibrate-bn needs calibration batches (calibration_inputs() in model.py)")
        if opts.recover:
            raise UsageError(f"--recover needs calibration inputs to learn from: {where}")
        if opts.select is Select.SENSITIVITY:
            raise UsageError(f"--select sensitivity measures each layer's effect on calibration inputs: {where}")
    if opts.recover and opts.device != "cpu" and not torch.cuda.is_available():
        raise UsageError(f"--device {opts.device}: no CUDA device is available here; use --device cpu")


def _plan(builder: _Builder, model: nn.Module, before: Analysis, opts: ConversionOptions, inputs: Inputs) -> Plan:
    """Layers and m: by weight energy, by output sensitivity, or the cheapest plan meeting max_output_error."""
    if opts.max_output_error is not None:
        return _styled(
            cheapest_plan(model, before, opts, inputs.fit, builder.error, opts.max_output_error), before, opts
        )
    if opts.select is Select.SENSITIVITY:
        return _styled(sensitivity_plan(model, before, opts, inputs.fit), before, opts)
    return _styled(plan_conversion(before, opts), before, opts)


def _styled(plan: Plan, before: Analysis, opts: ConversionOptions) -> Plan:
    return with_mobilenet_norms(plan, before) if opts.style is Style.MOBILENET else plan


@dataclass
class _Built:
    """One plan built: the converted model, its replacements, and what happened to its function."""

    model: nn.Module
    replaced: dict[str, SeparableConv]
    fidelity: Fidelity | None
    recovery: Recovery | None = None
    recovered: Fidelity | None = None
    notes: tuple[str, ...] = ()
    cost: int = 0  #: the plan's predicted MACs (to keep the cheapest of max_output_error's trials)

    def outcome(self, inputs: Inputs) -> Outcome:
        final = self.recovered or self.fidelity
        notes = tuple(n for n in (inputs.note, *self.notes) if n)
        stages = self.recovery.stages if self.recovery else ()
        return Outcome(self.fidelity, self.recovered, stages, judge(final) if final else None, notes)

    @property
    def error(self) -> float:
        final = self.recovered or self.fidelity
        return final.relative_error if final else float("nan")


class _Builder:
    """Builds a plan (rewrite, BatchNorm re-estimation, recovery) and measures it on the held-out inputs.

    ``max_output_error`` evaluates many plans: the cheapest that met the bound is kept, so the chosen one is
    not built (and recovered) twice.
    """

    def __init__(
        self,
        model: nn.Module,
        teacher: nn.Module,
        before: Analysis,
        opts: ConversionOptions,
        inputs: Inputs,
        progress: Progress | None,
    ) -> None:
        self.model, self.teacher, self.before, self.opts, self.inputs = model, teacher, before, opts, inputs
        self.progress = progress
        self.kept: tuple[tuple, _Built] | None = None

    def error(self, plan: Plan) -> float:
        """``evaluate`` of cheapest_plan: the held-out relative error of ``plan`` built (and recovered)."""
        built = self.build(_styled(plan, self.before, self.opts), inplace=False, stages=_Stages())
        bound = self.opts.max_output_error
        if bound is not None and built.error <= bound and (self.kept is None or plan.macs_after < self.kept[1].cost):
            built.cost = plan.macs_after
            self.kept = (_key(plan), built)
        return built.error

    def cached(self, plan: Plan) -> _Built | None:
        """The plan as :meth:`error` built it (never for ``inplace``: that rewrite must be of the model itself)."""
        if self.kept is not None and self.kept[0] == _key(plan) and not self.opts.inplace:
            return self.kept[1]
        return None

    def build(self, plan: Plan, *, inplace: bool, stages: _Stages, measure: bool = True) -> _Built:
        """Rewrite (a copy, unless ``inplace``), re-estimate BatchNorm, recover, as asked; the held-out fidelity
        unless not ``measure`` (the caller compares outputs it has)."""
        opts, fit = self.opts, self.inputs.fit

        def factory(choice: Choice, conv: nn.Module, inputs: list[torch.Tensor] | None) -> SeparableConv:
            use = opts.init if (opts.init is not Init.CALIBRATED or inputs) else Init.SVD
            return SeparableConv.from_conv(
                conv, rank=choice.rank, order=choice.order, init=use, calibration=inputs, style=opts.style
            )

        with stages("rewrite"):
            converted, replaced = rewrite(
                self.model,
                plan.choices,
                factory,
                inplace=inplace,
                calibration=fit if opts.init is Init.CALIBRATED else None,
                sequential=opts.sequential,
                leaf_types=opts.leaf_types,
                training=opts.train_mode,
            )
        if opts.recalibrate_bn and fit:
            with stages("recalibration"):
                recalibrate_batchnorm(converted, fit)
        if not opts.recover:
            if not measure:
                return _Built(converted, replaced, None)
            with stages("fidelity"):
                fidelity, notes = self.measure(converted)
            return _Built(converted, replaced, fidelity, notes=notes)
        assert fit is not None  # _check_needs: recover needs calibration, and then fit is never empty
        paths = {name: _module_path(converted, layer) for name, layer in replaced.items()}
        with stages("recovery"):
            rec = recover(
                converted,
                self.teacher,
                fit,
                holdout=self.inputs.held,
                steps=opts.recover_steps,
                seconds=opts.recover_seconds,
                seed=opts.seed,
                device=opts.device,
                progress=self.progress,
            )
        relabel = self.inputs.label
        notes = ("recovery was interrupted (Ctrl-C): the best state seen so far was kept",) if rec.interrupted else ()
        moved = {name: _separable(rec.model, path) for name, path in paths.items()}
        if inplace:  # the user asked for their own model rewritten: the recovered weights go into it
            converted.load_state_dict(rec.model.state_dict())
            rec = dataclasses.replace(rec, model=converted)
            moved = dict(replaced)
        before = dataclasses.replace(rec.before, inputs=relabel)
        after = dataclasses.replace(rec.after, inputs=relabel)
        return _Built(rec.model, moved, before, rec, after, notes)

    def measure(self, converted: nn.Module) -> tuple[Fidelity | None, tuple[str, ...]]:
        """Held-out fidelity of ``converted`` against the teacher (None when the outputs hold nothing to compare)."""
        return self.compare(outputs_of(self.teacher, self.inputs.held), outputs_of(converted, self.inputs.held))

    def compare(self, expected: list[Any], got: list[Any]) -> tuple[Fidelity | None, tuple[str, ...]]:
        """The Fidelity of outputs ``got`` against the teacher's ``expected`` on the inputs ``self.inputs`` names."""
        try:
            return compare_outputs(expected, got, inputs=self.inputs.label), ()
        except UsageError as exc:
            return None, (f"fidelity not measured: {exc}",)


def _key(plan: Plan) -> tuple:
    return tuple((c.name, c.order, c.rank) for c in plan.choices)


def _separable(root: nn.Module, path: str) -> SeparableConv:
    """The replacement layer at ``path`` of the recovered copy."""
    layer = root.get_submodule(path)
    if not isinstance(layer, SeparableConv):
        raise VerificationError(f"recovery lost the replacement layer at '{path}'")
    return layer


def _module_path(root: nn.Module, module: nn.Module) -> str:
    for name, m in root.named_modules():
        if m is module:
            return name
    raise VerificationError("a replacement layer is missing from the converted model")


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


def _as_batch(batch: Any) -> Batch:
    args, kwargs = split_inputs(batch, "calibration batch")
    return materialize(args), materialize(kwargs)
