"""conversion/fidelity: held-out splits, output comparison (any output structure), the verdict."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from convaudit.conversion.detections import detections_kept
from convaudit.conversion.fidelity import (
    DEGRADED_AGREEMENT,
    DEGRADED_ERROR,
    KEPT_AGREEMENT,
    KEPT_ERROR,
    compare_outputs,
    judge,
    measure_fidelity,
    split_holdout,
)
from convaudit.documents.records import Fidelity
from convaudit.errors import UsageError


def _ids(batches: list) -> set[int]:
    return {id(args[0]) for args, _ in batches}


@pytest.mark.parametrize("n, fraction", [(2, 0.25), (4, 0.25), (8, 0.5), (9, 0.1), (40, 0.25)])
def test_whole_batches_are_held_out_disjoint_and_fit_is_never_empty(n: int, fraction: float) -> None:
    batches = [torch.randn(2, 3) for _ in range(n)]
    fit, held = split_holdout(batches, fraction=fraction)
    assert fit and held and not (_ids(fit) & _ids(held))
    assert len(fit) + len(held) == n
    assert len(held) == min(n - 1, max(1, round(n * fraction)))


def test_a_single_batch_is_split_along_its_samples() -> None:
    x, mask = torch.arange(16.0).reshape(8, 2), torch.ones(3)  # mask: not batch-sized, kept whole
    fit, held = split_holdout([((x,), {"mask": mask})])
    (fx,), fkw = fit[0]
    (hx,), hkw = held[0]
    assert len(fx) == 6 and len(hx) == 2
    rows = {tuple(r.tolist()) for r in fx} | {tuple(r.tolist()) for r in hx}
    assert len(rows) == 8  # disjoint, nothing lost
    assert fkw["mask"] is mask and hkw["mask"] is mask


def test_given_holdout_is_used_as_is_and_must_not_overlap() -> None:
    batches = [torch.randn(2, 3) for _ in range(3)]
    extra = [torch.randn(2, 3)]
    fit, held = split_holdout(batches, extra)
    assert len(fit) == 3 and _ids(held) == {id(extra[0])}
    with pytest.raises(UsageError, match="disjoint"):
        split_holdout(batches, [batches[1]])
    mask = torch.ones(3)  # shared by every batch: the samples differ, they do not overlap
    fit, held = split_holdout([((torch.randn(8, 3),), {"mask": mask})])
    again_fit, again_held = split_holdout(fit, held)
    assert again_fit[0][0][0] is fit[0][0][0] and again_held[0][0][0] is held[0][0][0]


@pytest.mark.parametrize(
    "batches, holdout, fraction",
    [
        ([], None, 0.25),
        ([torch.randn(1, 3)], None, 0.25),
        ([torch.randn(4, 3)] * 2, None, 1.0),
        ([torch.ones(2)], [], 0.25),
    ],
    ids=["no batches", "one sample", "fraction 1", "empty holdout"],
)
def test_nothing_to_hold_out_is_a_usage_error(batches: list, holdout: list | None, fraction: float) -> None:
    with pytest.raises(UsageError):
        split_holdout(batches, holdout, fraction)


def test_identical_models_agree_perfectly_and_are_left_in_their_mode() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.5), nn.Linear(8, 4)).train()
    fid = measure_fidelity(model, model, [torch.randn(16, 3)], inputs="example inputs")
    assert (fid.relative_error, fid.cosine, fid.top1_agreement, fid.samples) == (0.0, 1.0, 1.0, 16)
    assert model.training and judge(fid) == "kept"


def test_figures_match_their_definitions() -> None:
    torch.manual_seed(0)
    e = torch.randn(2, 5, 6)
    g = e + 0.1 * torch.randn(2, 5, 6)
    fid = compare_outputs([e], [g], inputs="x")
    assert fid.relative_error == pytest.approx(float((g - e).norm() / e.norm()), rel=1e-6)
    cos = nn.functional.cosine_similarity(g.flatten(1), e.flatten(1)).mean()
    assert fid.cosine == pytest.approx(float(cos), rel=1e-6)
    assert fid.top1_agreement is None  # not [N, C]


def test_the_worst_output_tensor_counts_whatever_its_scale() -> None:
    boxes = torch.randn(4, 4) * 1000.0  # pixels: exact
    scores = torch.rand(4, 1)  # [0, 1]: wrong
    fid = compare_outputs([{"boxes": boxes, "scores": scores}], [{"boxes": boxes, "scores": 1 - scores}], inputs="x")
    assert fid.relative_error == pytest.approx(float((1 - 2 * scores).norm() / scores.norm()), rel=1e-6)
    assert fid.top1_agreement is None  # several outputs: not a classifier
    assert judge(fid) == "broken"


def test_non_float_leaves_are_ignored_and_changed_sizes_count_as_total_disagreement() -> None:
    x = torch.randn(3, 4)
    same = compare_outputs([(x, torch.tensor([1, 2]))], [(x, torch.tensor([7]))], inputs="x")
    assert same.relative_error == 0.0 and same.cosine == 1.0
    fewer_boxes = compare_outputs([[torch.ones(3, 4)], [x]], [[torch.ones(2, 4)], [x]], inputs="x")
    # batch 1 is not comparable: its whole reference norm counts as error, its samples as cosine 0
    assert fewer_boxes.relative_error == pytest.approx(math.sqrt(12 / (12 + float(x.square().sum()))), rel=1e-6)
    assert fewer_boxes.cosine == pytest.approx(0.5)
    with pytest.raises(UsageError, match="floating-point"):
        compare_outputs([torch.tensor([1])], [torch.tensor([1])], inputs="x")


def _fid(error: float = 0.0, cosine: float = 1.0, top1: float | None = None) -> Fidelity:
    return Fidelity(relative_error=error, cosine=cosine, top1_agreement=top1, samples=10, inputs="x")


@pytest.mark.parametrize(
    "fidelity, verdict",
    [
        (_fid(top1=KEPT_AGREEMENT), "kept"),
        (_fid(error=5.0, cosine=0.0, top1=1.0), "kept"),  # classifiers: decisions count, not logits
        (_fid(top1=KEPT_AGREEMENT - 1e-9), "degraded"),
        (_fid(top1=DEGRADED_AGREEMENT), "degraded"),
        (_fid(top1=DEGRADED_AGREEMENT - 1e-9), "broken"),
        (_fid(error=KEPT_ERROR, cosine=0.995), "kept"),
        (_fid(error=KEPT_ERROR + 1e-9), "degraded"),
        (_fid(error=0.01, cosine=0.95), "degraded"),  # a sample badly off shows in the cosine
        (_fid(error=DEGRADED_ERROR), "degraded"),
        (_fid(error=DEGRADED_ERROR + 1e-9), "broken"),
        (_fid(error=0.01, cosine=0.5), "broken"),
        (_fid(error=float("nan")), "broken"),
    ],
)
def test_judge_thresholds(fidelity: Fidelity, verdict: str) -> None:
    assert judge(fidelity) == verdict


# ---------------------------------------------------------------- detections, compared as sets

BOXES = torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 60, 70], [5, 5, 15, 25]])


def _image(boxes: torch.Tensor, scores: list[float], labels: list[int] | None = None) -> dict:
    d = {"boxes": boxes, "scores": torch.tensor(scores)}
    return d if labels is None else {**d, "labels": torch.tensor(labels, dtype=torch.int64)}


def _detections(idx: list[int], boxes: torch.Tensor = BOXES, scores: tuple = (0.9, 0.8, 0.7, 0.6)) -> dict:
    return _image(boxes[idx], [scores[i] for i in idx], [[1, 1, 2, 2][i] for i in idx])


def test_the_same_detections_in_another_order_agree_perfectly() -> None:
    want = [_detections([0, 1, 2, 3]), _detections([2, 0])]
    got = [_detections([3, 1, 0, 2]), _detections([0, 2])]
    fid = compare_outputs([want], [got], inputs="x")
    assert (fid.relative_error, fid.cosine, fid.top1_agreement, fid.samples) == (0.0, 1.0, None, 2)  # 2 images
    assert judge(fid) == "kept" and detections_kept(want, got) == 1.0


def test_a_lost_detection_costs_its_whole_norm() -> None:
    want, got = [_detections([0, 1, 2, 3])], [_detections([2, 0, 1])]
    fid = compare_outputs([want], [got], inputs="x")
    box_error = math.sqrt(5**2 + 5**2 + 15**2 + 25**2) / float(BOXES.norm())
    score_error = 0.6 / math.sqrt(0.9**2 + 0.8**2 + 0.7**2 + 0.6**2)
    assert fid.relative_error == pytest.approx(max(box_error, score_error), rel=1e-6)
    assert detections_kept(want, got) == 0.75 and judge(fid) == "broken"


def test_moved_boxes_cost_their_shift_and_labels_must_agree() -> None:
    shifted = BOXES + torch.tensor([2.0, 0, 2, 0])  # IoU ≥ 0.5 still: matched, by 2 px in x
    fid = compare_outputs([[_detections([0, 1, 2, 3])]], [[_detections([1, 0, 3, 2], shifted)]], inputs="x")
    assert fid.relative_error == pytest.approx(math.sqrt(4 * 2 * 2**2) / float(BOXES.norm()), rel=1e-6)
    relabelled = {**_detections([0, 1, 2, 3]), "labels": torch.tensor([3, 1, 2, 2])}
    assert detections_kept([_detections([0, 1, 2, 3])], [relabelled]) == 3 / 5  # one lost, one extra


TIED = (0.5, 0.5, 0.5, 0.5)


def test_differences_ties_explain_are_left_out_only_when_everything_else_is_exact() -> None:
    far = torch.cat([BOXES[:3], torch.tensor([[80.0, 80, 90, 90]])])  # box 3 replaced by one elsewhere
    want = [_detections([0, 1, 2, 3], scores=TIED)]
    swapped = [_detections([0, 1, 2, 3], far, TIED)]  # another tied candidate made the top K
    assert compare_outputs([want], [swapped], inputs="x").relative_error == 0.0
    flipped = BOXES.clone()
    flipped[1] = torch.tensor([22.0, 20, 42, 40])  # NMS kept the other of two tied overlapping boxes
    assert detections_kept(want, [_detections([0, 1, 2, 3], flipped, TIED)]) == 1.0
    rescored = [_detections([0, 1, 2, 3], far, (0.5, 0.49, 0.5, 0.5))]  # a kept one's score moved: no excuse
    assert detections_kept(want, rescored) == 3 / 5
    untied = [_detections([0, 1, 2, 3], far, (0.5, 0.5, 0.5, 0.9))]  # the lost one scored above the cut
    assert judge(compare_outputs([want], [untied], inputs="x")) == "broken"
    three_of_four = far.clone()
    three_of_four[1:3] = torch.tensor([[0.0, 70, 10, 80], [70, 0, 80, 10]])
    assert detections_kept(want, [_detections([0, 1, 2, 3], three_of_four, TIED)]) == 1 / 7  # more than the exact


def test_empty_images_agree_but_nothing_detected_anywhere_is_nothing_to_compare() -> None:
    none = _detections([])
    fid = compare_outputs([[none, _detections([0, 1])]], [[none, _detections([1, 0])]], inputs="x")
    assert (fid.relative_error, fid.cosine, fid.samples) == (0.0, 1.0, 2)
    with pytest.raises(UsageError, match="neither model detects anything"):
        compare_outputs([[none, none]], [[none, none]], inputs="x")
    fid = compare_outputs([[none]], [[_detections([0])]], inputs="x")  # a detection out of nothing
    assert fid.cosine == 0.0 and judge(fid) == "broken"


def test_other_structures_are_total_disagreement_and_unlabelled_dicts_stay_positional() -> None:
    want = [_detections([0, 1]), _detections([2])]
    fid = compare_outputs([want], [[_detections([0, 1])]], inputs="x")  # one image fewer
    assert (fid.relative_error, fid.cosine) == (1.0, 0.0)
    batch = {"boxes": BOXES, "scores": torch.tensor([0.9, 0.8, 0.7, 0.6])}  # one prediction per sample, no labels
    permuted = {k: v[[1, 0, 2, 3]] for k, v in batch.items()}
    assert compare_outputs([batch], [permuted], inputs="x").relative_error > 0.1
    one_image = {**batch, "labels": torch.tensor([1, 1, 2, 2])}
    assert compare_outputs([one_image], [{k: v[[1, 0, 2, 3]] for k, v in one_image.items()}], inputs="x").cosine == 1


@pytest.mark.zoo
def test_an_exact_conversion_of_an_untrained_detector_is_kept_whatever_order_its_tied_boxes_take() -> None:
    import convaudit
    from convaudit.conversion.verify import relative_error
    from convaudit.sources.loader import load

    model = load("torchvision:fasterrcnn_mobilenet_v3_large_320_fpn").model.eval()
    model.roi_heads.score_thresh = 0.0  # random weights score every box ≈ 1/91, below the default 0.05
    gen = torch.Generator().manual_seed(0)
    held = ([torch.randn(3, 320, 320, generator=gen) for _ in range(2)],)
    c = convaudit.convert(model, held, rank="full", holdout=[held])
    with torch.no_grad():
        want, got = model(*held), c.model.eval()(*held)
    assert [len(d["boxes"]) for d in want] == [100, 100]
    # element by element, in list order, the tied scores reorder the boxes
    assert max(relative_error(g["boxes"], w["boxes"]) for g, w in zip(got, want, strict=True)) > 0.5
    fid = c.report.fidelity
    assert fid.samples == 2 and fid.relative_error < 1e-6 and fid.detections_kept == 1.0
    assert c.report.verdict == "kept" and c.report.output_error is not None and c.report.output_error < 1e-6
    lossy = convaudit.convert(model, held, rank=1, holdout=[held])
    assert lossy.report.verdict == "broken" and detections_kept(want, lossy.model.eval()(*held)) < 0.5
