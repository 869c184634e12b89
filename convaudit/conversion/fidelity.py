"""Fidelity: how closely a converted model reproduces the original's function, on inputs it was not fitted to.

:func:`split_holdout` keeps some calibration batches apart, :func:`measure_fidelity` compares both models'
outputs on them (a :class:`~convaudit.documents.records.Fidelity`), :func:`judge` turns that into one verdict.

How outputs are compared: every output is flattened with ``torch.utils._pytree`` (tuples, lists, dicts,
nested); non-float leaves (indices, masks, counts) are ignored. Each float leaf is compared on its own,
pooled over samples, and the *worst* leaf is reported, so a small-scale output (scores in [0, 1]) is not
hidden by a large-scale one (boxes in pixels). A batch whose outputs cannot be compared (a different
structure, or a float leaf of another shape) counts as total disagreement: relative error 1, cosine 0 and
no top-1 agreement for its samples. Such a change of function is never skipped silently.

Detections are compared as sets, not in list order (:mod:`convaudit.conversion.detections` says what is
detection-shaped: torchvision's list of per-image dicts of ``boxes``, ``scores``, ``labels``, ...). In each
image, every original detection is matched to a converted one of the same label with IoU ≥ 0.5 (greedily,
most confident first); both are lined up in that order, and a detection missing on either side stands
against zeros, as a whole batch does above. Each float field (``boxes``, ``scores``, ``masks``, ...) is then
one output tensor: its relative error pooled over the images, its cosine per image (samples are images), and
the worst field is reported. So a reordering of the same detections is exact; a moved box costs its shift; a
lost or an extra detection costs its whole norm (one of K equal ones: relative error √(1/K)), and the verdict
follows from the thresholds below as for any output. Differences ties explain are left out: when scores tie
(within 1e-4; an untrained head scores every box ≈ 1/classes), an exact conversion may keep the other of two
overlapping tied boxes or other tied candidates in the top K. Only when ties explain every difference of the
image, every other detection is reproduced exactly and they are no more than those
(:func:`~convaudit.conversion.detections.match_detections`); otherwise every difference counts.
An image where neither model detects anything agrees (cosine 1, no error);
if no image has a detection there is nothing to compare (:class:`~convaudit.errors.UsageError`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from torch.utils._pytree import tree_flatten

from convaudit.analysis.guard import eval_mode, untouched
from convaudit.conversion.detections import aligned, comparable, detection_images, is_detection_output, match_detections
from convaudit.documents.records import Fidelity
from convaudit.errors import UsageError
from convaudit.sources.inputs import materialize, split_inputs

__all__ = [
    "DEGRADED_AGREEMENT",
    "DEGRADED_COSINE",
    "DEGRADED_ERROR",
    "KEPT_AGREEMENT",
    "KEPT_COSINE",
    "KEPT_ERROR",
    "VERDICTS",
    "Batch",
    "compare_outputs",
    "is_classifier_output",
    "judge",
    "measure_fidelity",
    "outputs_of",
    "split_holdout",
]

Batch = tuple[tuple, dict]  #: one model call: (positional inputs, keyword inputs)

VERDICTS = ("kept", "degraded", "broken")

#: Verdict thresholds (:func:`judge`). A classifier-shaped output (one float [N, C] tensor, C ≥ 2) is judged
#: by top-1 agreement alone: its logits may move a lot while every decision stays. Any other output by the
#: relative error and the mean per-sample cosine of its worst output tensor, both of which must hold:
#:
#: ==========  ===================  ======================  ===================
#: verdict     top-1 agreement      relative error          cosine
#: ==========  ===================  ======================  ===================
#: kept        ≥ 0.99               ≤ 0.05                  ≥ 0.99
#: degraded    ≥ 0.90               ≤ 0.25                  ≥ 0.90
#: broken      below                above                   below (or NaN)
#: ==========  ===================  ======================  ===================
KEPT_AGREEMENT = 0.99
DEGRADED_AGREEMENT = 0.90
KEPT_ERROR = 0.05
DEGRADED_ERROR = 0.25
KEPT_COSINE = 0.99
DEGRADED_COSINE = 0.90


def split_holdout(
    batches: Iterable[Any], holdout: Iterable[Any] | None = None, fraction: float = 0.25
) -> tuple[list[Batch], list[Batch]]:
    """(fit, held-out) batches: disjoint, the fit part never empty.

    Args:
        batches: calibration batches (each a tensor, a tuple of inputs, or ``(args, kwargs)``).
        holdout: batches to hold out instead (``--holdout``); then every calibration batch is for fitting.
        fraction: share held out when ``holdout`` is None: whole batches spread over the list, or, with a
            single batch, its samples along dim 0.
    Raises:
        UsageError: nothing can be held out (no batch, one batch of one sample), or ``holdout`` shares a
            tensor with ``batches``.
    """
    fit = [_as_batch(b) for b in batches]
    if not fit:
        raise UsageError("no calibration batches: recovery and fidelity need inputs (calibration_inputs() or --images)")
    if holdout is not None:
        held = [_as_batch(b) for b in holdout]
        if not held:
            raise UsageError("the held-out inputs are empty; pass at least one batch or leave --holdout out")
        seen = _tensor_keys(fit)  # a held-out batch all of whose tensors are fit ones is fit data
        if any((keys := _tensor_keys([b])) and keys <= seen for b in held):
            raise UsageError("the held-out inputs are among the calibration batches; they must be disjoint")
        return fit, held
    if not 0.0 < fraction < 1.0:
        raise UsageError(f"holdout fraction must be between 0 and 1 (exclusive), got {fraction}")
    if len(fit) == 1:
        return _split_samples(fit[0], fraction)
    k = min(len(fit) - 1, max(1, round(len(fit) * fraction)))
    chosen = {int((i + 0.5) * len(fit) / k) for i in range(k)}  # spread over the list, not its tail
    return [b for i, b in enumerate(fit) if i not in chosen], [b for i, b in enumerate(fit) if i in chosen]


def measure_fidelity(original: nn.Module, converted: nn.Module, batches: Sequence[Any], *, inputs: str) -> Fidelity:
    """Both models on ``batches`` (eval mode, no_grad, each left as found): the converted one against the original."""
    normal = [_as_batch(b) for b in batches]
    if not normal:
        raise UsageError(f"no {inputs} to measure fidelity on")
    return compare_outputs(outputs_of(original, normal), outputs_of(converted, normal), inputs=inputs)


def outputs_of(model: nn.Module, batches: Sequence[Batch]) -> list[Any]:
    """The model's output for each batch: eval mode, no_grad, the model left as found."""
    with torch.no_grad(), untouched(model), eval_mode(model):
        return [model(*args, **kwargs) for args, kwargs in batches]


def compare_outputs(expected: Sequence[Any], got: Sequence[Any], *, inputs: str) -> Fidelity:
    """The Fidelity of outputs ``got`` against ``expected`` (one output per batch, as :func:`outputs_of` gives)."""
    tally = _Tally()
    for e, g in zip(expected, got, strict=True):
        tally.add(e, g)
    if not tally.leaves:
        raise UsageError("the model's outputs hold no floating-point tensor to compare")
    if tally.detector and not tally.considered:
        raise UsageError(
            f"neither model detects anything on the {inputs}: no boxes to compare (untrained weights score "
            "below a detector's threshold; for torchvision's, lower model.roi_heads.score_thresh)"
        )
    return Fidelity(
        relative_error=max(leaf.relative_error for leaf in tally.leaves.values()),
        cosine=min(leaf.cosine for leaf in tally.leaves.values()),
        top1_agreement=tally.agree / tally.samples if tally.classifier and tally.samples else None,
        samples=tally.samples,
        inputs=inputs,
        detections_kept=tally.matched / tally.considered if tally.detector and tally.considered else None,
    )


def judge(fidelity: Fidelity) -> str:
    """ "kept", "degraded" or "broken", by the thresholds in this module's constants (NaN figures: broken)."""
    if fidelity.top1_agreement is not None:
        agreement = fidelity.top1_agreement
        if agreement >= KEPT_AGREEMENT:
            return "kept"
        return "degraded" if agreement >= DEGRADED_AGREEMENT else "broken"
    error, cosine = fidelity.relative_error, fidelity.cosine
    if math.isnan(error) or math.isnan(cosine):
        return "broken"
    if error <= KEPT_ERROR and cosine >= KEPT_COSINE:
        return "kept"
    if error <= DEGRADED_ERROR and cosine >= DEGRADED_COSINE:
        return "degraded"
    return "broken"


def is_classifier_output(output: Any) -> bool:
    """One float tensor [N, C] with C ≥ 2 (logits or probabilities): judged by top-1 agreement."""
    return (
        isinstance(output, torch.Tensor) and output.is_floating_point() and output.dim() == 2 and output.shape[1] >= 2
    )


# --------------------------------------------------------------------------------------------- internals


@dataclass
class _Leaf:
    """One output tensor's running sums over the batches."""

    sq_diff: float = 0.0
    sq_ref: float = 0.0
    cos_sum: float = 0.0
    cos_count: int = 0

    @property
    def relative_error(self) -> float:
        return math.sqrt(self.sq_diff / self.sq_ref) if self.sq_ref > 0 else math.sqrt(self.sq_diff)

    @property
    def cosine(self) -> float:
        return self.cos_sum / self.cos_count if self.cos_count else 1.0


class _Tally:
    def __init__(self) -> None:
        self.leaves: dict[int | str, _Leaf] = {}  #: by flat leaf index, or by field for detections
        self.samples = 0
        self.agree = 0
        self.classifier = True
        self.detector = False  #: a detection-shaped output was seen (compared as sets)
        #: detections matched; matched + lost + extra (``detections_kept``; 0: nothing detected anywhere), images
        #: whose outputs cannot be compared counting at least one
        self.matched = self.considered = 0

    def add(self, expected: Any, got: Any) -> None:
        if is_detection_output(expected):
            self.classifier, self.detector = False, True
            self.add_detections(expected, got)
            return
        e_flat, e_spec = tree_flatten(expected)
        g_flat, g_spec = tree_flatten(got)
        floats = [(i, e) for i, e in enumerate(e_flat) if _is_float(e)]
        self.samples += _batch_size(floats)
        self.classifier = self.classifier and is_classifier_output(expected)
        same = e_spec == g_spec and all(_is_float(g_flat[i]) and g_flat[i].shape == e.shape for i, e in floats)
        for i, e in floats:
            leaf = self.leaves.setdefault(i, _Leaf())
            ref = e.detach().double().cpu()
            leaf.sq_ref += float(ref.square().sum())
            per_sample = ref.flatten(1) if ref.dim() >= 2 else ref.reshape(1, -1)  # flatten: K may be 0
            leaf.cos_count += per_sample.shape[0]
            if not same:  # total disagreement: as if the converted model had answered zero
                leaf.sq_diff += float(ref.square().sum())
                continue
            out = g_flat[i].detach().double().cpu()
            leaf.sq_diff += float((out - ref).square().sum())
            leaf.cos_sum += float(_cosines(out.reshape(per_sample.shape), per_sample).sum())
        if same and self.classifier:
            self.agree += int((got.argmax(1) == expected.argmax(1)).sum())

    def add_detections(self, expected: Any, got: Any) -> None:
        """Each image's detections matched as sets, each float field one leaf (module docstring)."""
        images = detection_images(expected)
        self.samples += len(images)
        same = comparable(expected, got)
        for n, e in enumerate(images):
            fields: dict[str, tuple[torch.Tensor, torch.Tensor | None]]
            if same:
                g = detection_images(got)[n]
                match = match_detections(e, g)
                fields = dict(aligned(e, g, match))
                self.matched += len(match.pairs)
                self.considered += len(match.pairs) + len(match.lost) + len(match.extra)
            else:  # total disagreement, cosine 0 even where the original detects nothing
                self.considered += max(len(e["boxes"]), 1)
                fields = {k: (v.detach().double().cpu(), None) for k, v in e.items() if _is_float(v)}
            for key, (ref, out) in fields.items():
                leaf = self.leaves.setdefault(key, _Leaf())
                leaf.sq_ref += float(ref.square().sum())
                leaf.cos_count += 1
                if out is None:
                    leaf.sq_diff += float(ref.square().sum())
                    continue
                leaf.sq_diff += float((out - ref).square().sum())
                leaf.cos_sum += float(_cosines(out.reshape(1, -1), ref.reshape(1, -1)).sum())


def _cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine; two zero rows agree (1), one zero row does not (0)."""
    dot = (a * b).sum(1)
    na, nb = a.norm(dim=1), b.norm(dim=1)
    both_zero = (na == 0) & (nb == 0)
    cos = dot / (na * nb).clamp_min(torch.finfo(torch.float64).tiny)
    return torch.where(both_zero, torch.ones_like(cos), cos)


def _is_float(x: Any) -> bool:
    return isinstance(x, torch.Tensor) and x.is_floating_point()


def _batch_size(floats: list[tuple[int, torch.Tensor]]) -> int:
    return next((int(e.shape[0]) for _, e in floats if e.dim() >= 1), 1)


def _as_batch(batch: Any) -> Batch:
    args, kwargs = split_inputs(batch, "calibration batch")
    return materialize(args), materialize(kwargs)


def _tensor_keys(batches: list[Batch]) -> set[tuple]:
    keys = set()
    for batch in batches:
        for t in tree_flatten(batch)[0]:
            if isinstance(t, torch.Tensor) and not t.is_meta and t.numel():
                keys.add((t.data_ptr(), tuple(t.shape), tuple(t.stride())))
    return keys


def _split_samples(batch: Batch, fraction: float) -> tuple[list[Batch], list[Batch]]:
    """One batch → (fit, held-out) along dim 0 of every tensor that has the batch's size there."""
    leaves, spec = tree_flatten(batch)
    sizes = [t.shape[0] for t in leaves if isinstance(t, torch.Tensor) and t.dim() >= 1]
    n = int(sizes[0]) if sizes else 0
    if n < 2:
        raise UsageError(
            "cannot hold inputs out: a single calibration batch of one sample; give more batches or --holdout inputs"
        )
    k = min(n - 1, max(1, round(n * fraction)))
    held = torch.zeros(n, dtype=torch.bool)
    held[torch.linspace(0, n - 1, k).round().long()] = True

    def part(mask: torch.Tensor) -> Batch:
        picked = [t[mask] if isinstance(t, torch.Tensor) and t.dim() >= 1 and t.shape[0] == n else t for t in leaves]
        args, kwargs = spec.unflatten(picked)
        return tuple(args), dict(kwargs)

    return [part(~held)], [part(held)]
