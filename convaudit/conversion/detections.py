"""Detection-shaped outputs compared as sets: each original detection matched to a converted one.

A detector's output is a set per image, in score order: tiny float differences between two models that agree
reorder near-tied scores, so comparing element by element in list order measures the order, not the function.
:func:`match_detections` pairs the original's detections with the converted model's (same label, IoU ≥
:data:`MATCH_IOU`, greedily by the original's score), :func:`aligned` lines both up in that order for the
fidelity figures, with a missing detection on either side as zeros, and :func:`detections_kept` is the share
of detections the converted model reproduces.

What is detection-shaped (:func:`is_detection_output`): a list or tuple of dicts, one per image, as torchvision's
detectors return in eval mode, each with float ``boxes`` [K, 4] (x1, y1, x2, y2) and float ``scores`` [K]; an
integer ``labels`` [K] is optional, as is any other tensor with K rows (``masks`` [K, 1, H, W], ``keypoints``
[K, P, 3], ``keypoints_scores``). A bare dict of that shape counts only with its ``labels`` (one image's
detections): without them it may as well be one prediction per sample of a batch (examples/detector_example.py
returns boxes [N, 4] and scores [N] so, in (cx, cy, w, h)), which stays compared by position.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

import torch

__all__ = [
    "MATCH_IOU",
    "TIE_TOLERANCE",
    "Match",
    "aligned",
    "comparable",
    "detection_images",
    "detections_kept",
    "iou",
    "is_detection_output",
    "match_detections",
]

MATCH_IOU = 0.5  #: the IoU at which a converted detection stands for an original one (COCO's AP50, VOC)
#: Relative difference within which two scores tie and a matched pair is reproduced exactly: convaudit.convert's
#: EXACT_TOLERANCE (a full-rank conversion is ~1e-6 per conv).
TIE_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Match:
    """One image's detections paired: indices into the original's (``expected``) and the converted's (``got``)."""

    pairs: tuple[tuple[int, int], ...]  #: (original, converted), in the original's score order
    lost: tuple[int, ...]  #: original detections nothing matched
    extra: tuple[int, ...]  #: converted detections that match no original one
    excused: int = 0  #: differences ties explain, left out (:func:`match_detections`): flipped pairs and swaps


def is_detection_output(output: Any) -> bool:
    """A list/tuple of per-image detection dicts, or one image's dict with integer ``labels`` (module docstring)."""
    if isinstance(output, Mapping):
        return _is_image(output) and "labels" in output
    return isinstance(output, (list, tuple)) and len(output) > 0 and all(_is_image(d) for d in output)


def detection_images(output: Any) -> list[Mapping[str, Any]]:
    """The per-image dicts of a detection-shaped output (:func:`is_detection_output`)."""
    return [output] if isinstance(output, Mapping) else list(output)


def match_detections(expected: Mapping[str, Any], got: Mapping[str, Any]) -> Match:
    """Greedy matching, the original's most confident detection first: each takes the unmatched converted one of
    the same label (when both have labels) with the highest IoU, if that IoU is at least :data:`MATCH_IOU`.

    Then the differences ties explain are left out (counted in ``excused``): *flips*, matched pairs whose
    scores tie (within :data:`TIE_TOLERANCE`) but whose boxes differ (NMS kept the other of two overlapping
    tied boxes), and *swaps at the cut*, a lost detection scoring as the converted model's lowest with an
    extra one scoring as the original's lowest (which tied candidates filled the top K). Only when ties explain
    every difference, every other pair is reproduced exactly (each float field within :data:`TIE_TOLERANCE`)
    and there are no more flips and swaps than exact pairs: otherwise nothing is excused, as the conversion
    may have caused them.
    """
    e_boxes, g_boxes = expected["boxes"].detach().double().cpu(), got["boxes"].detach().double().cpu()
    overlap = iou(e_boxes, g_boxes)
    if "labels" in expected and "labels" in got:
        overlap = torch.where(expected["labels"].cpu()[:, None] == got["labels"].cpu()[None, :], overlap, -1.0)
    order = torch.argsort(expected["scores"].detach().cpu(), descending=True, stable=True)
    free = torch.ones(len(g_boxes), dtype=torch.bool)
    pairs, lost = [], []
    for i in order.tolist():
        row = torch.where(free, overlap[i], -1.0)
        j = int(row.argmax()) if len(row) else -1
        if j >= 0 and float(row[j]) >= MATCH_IOU:
            pairs.append((i, j))
            free[j] = False
        else:
            lost.append(i)
    return _excuse_ties(
        expected, got, Match(tuple(pairs), tuple(lost), tuple(int(j) for j in free.nonzero().flatten()))
    )


def aligned(
    expected: Mapping[str, Any], got: Mapping[str, Any], match: Match
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Each float field as (original, converted) rows in the same order, float64: the matched pairs, then the lost
    detections against zeros, then the extra ones against zeros (a missing detection answers nothing)."""
    e_idx = [i for i, _ in match.pairs] + list(match.lost)
    g_idx = [j for _, j in match.pairs] + list(match.extra)
    n_pairs, n_lost, n_extra = len(match.pairs), len(match.lost), len(match.extra)
    fields = {}
    for key, value in expected.items():
        if not (isinstance(value, torch.Tensor) and value.is_floating_point()):
            continue
        e, g = value.detach().double().cpu(), got[key].detach().double().cpu()
        for_extra, for_lost = e.new_zeros((n_extra, *e.shape[1:])), e.new_zeros((n_lost, *e.shape[1:]))
        ref = torch.cat([e[e_idx], for_extra])
        out = torch.cat([g[g_idx[:n_pairs]], for_lost, g[g_idx[n_pairs:]]])
        fields[key] = (ref, out)
    return fields


def detections_kept(expected: Any, got: Any) -> float:
    """Share of detections the converted model reproduces, pooled over images: matched / (matched + lost +
    extra), swaps at the cut left out (:func:`match_detections`).

    An image count or structure that differs keeps nothing (0); no detection on either side is agreement (1).
    """
    if not (is_detection_output(expected) and comparable(expected, got)):
        return 0.0
    matched = total = 0
    for e, g in zip(detection_images(expected), detection_images(got), strict=True):
        m = match_detections(e, g)
        matched += len(m.pairs)
        total += len(m.pairs) + len(m.lost) + len(m.extra)
    return matched / total if total else 1.0


def comparable(expected: Any, got: Any) -> bool:
    """``got`` is detection-shaped like ``expected``: as many images, the same fields, float where it is."""
    if not is_detection_output(got) or isinstance(expected, Mapping) != isinstance(got, Mapping):
        return False
    e_images, g_images = detection_images(expected), detection_images(got)
    return len(e_images) == len(g_images) and all(
        e.keys() == g.keys() and all(_is_float(g[k]) == _is_float(v) for k, v in e.items())
        for e, g in zip(e_images, g_images, strict=True)
    )


def iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[len(a), len(b)] IoU of (x1, y1, x2, y2) boxes; two identical empty boxes overlap fully (1)."""
    lo = torch.maximum(a[:, None, :2], b[None, :, :2])
    hi = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (hi - lo).clamp_min(0).prod(-1)
    area_a, area_b = (a[:, 2:] - a[:, :2]).clamp_min(0).prod(-1), (b[:, 2:] - b[:, :2]).clamp_min(0).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    same = (a[:, None, :] == b[None, :, :]).all(-1)
    return torch.where(union > 0, inter / union.clamp_min(torch.finfo(a.dtype).tiny), same.to(a.dtype))


# --------------------------------------------------------------------------------------------- internals


def _is_float(x: Any) -> TypeGuard[torch.Tensor]:
    return isinstance(x, torch.Tensor) and x.is_floating_point()


def _is_image(d: Any) -> bool:
    """One image's detections: float boxes [K, 4], float scores [K], integer labels [K] if any, all tensors K rows."""
    if not isinstance(d, Mapping):
        return False
    boxes, scores, labels = d.get("boxes"), d.get("scores"), d.get("labels")
    if not (_is_float(boxes) and _is_float(scores) and boxes.dim() == 2 and boxes.shape[1] == 4):
        return False
    k = boxes.shape[0]
    if scores.shape != (k,) or (labels is not None and not _is_labels(labels, k)):
        return False
    return all(isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == k for v in d.values())


def _excuse_ties(expected: Mapping[str, Any], got: Mapping[str, Any], match: Match) -> Match:
    """``match`` without the differences ties explain (:func:`match_detections`)."""
    e_scores, g_scores = expected["scores"].detach().double().cpu(), got["scores"].detach().double().cpu()
    exact: list[tuple[int, int]] = []
    flips: list[tuple[int, int]] = []
    for i, j in match.pairs:
        if _close(e_scores[i], g_scores[j]):
            (exact if all(_close(v[i], got[k][j]) for k, v in expected.items() if _is_float(v)) else flips).append(
                (i, j)
            )
        else:
            return match  # a kept detection's score moved: the conversion changed it
    lost = _at(e_scores, match.lost, float(g_scores.min())) if len(g_scores) else []
    extra = _at(g_scores, match.extra, float(e_scores.min())) if len(e_scores) else []
    swaps = len(lost)
    if len(lost) != len(match.lost) or len(extra) != len(match.extra) or len(lost) != len(extra):
        return match  # a difference no tie explains: the conversion changed something, its ties may be its own
    if not (flips or swaps) or len(flips) + swaps > len(exact):
        return match
    return Match(tuple(exact), (), (), excused=len(flips) + swaps)


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal within TIE_TOLERANCE of ``a``'s norm."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).norm()) <= TIE_TOLERANCE * float(a.norm())


def _at(scores: torch.Tensor, indices: tuple[int, ...], cut: float) -> list[int]:
    """Of ``indices``, those scoring ``cut`` within TIE_TOLERANCE, lowest score first."""
    tied = [i for i in indices if abs(float(scores[i]) - cut) <= TIE_TOLERANCE * abs(cut)]
    return sorted(tied, key=lambda i: float(scores[i]))


def _is_labels(labels: Any, k: int) -> bool:
    return isinstance(labels, torch.Tensor) and not labels.is_floating_point() and labels.shape == (k,)
