"""Verification on the example inputs: the output's error, detections compared as sets like fidelity."""

from __future__ import annotations

import math

import pytest
import torch

from convaudit.conversion.verify import VerificationError, output_error, relative_error

BOXES = torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 60, 70], [5, 5, 15, 25]])
SCORES = torch.tensor([0.9, 0.8, 0.7, 0.6])
LABELS = torch.tensor([1, 1, 2, 2])


def image(idx: list[int], boxes: torch.Tensor = BOXES) -> dict[str, torch.Tensor]:
    return {"boxes": boxes[idx], "scores": SCORES[idx], "labels": LABELS[idx]}


def test_relative_error_is_its_definition() -> None:
    e, g = torch.tensor([3.0, 4.0]), torch.tensor([3.0, 5.0])
    assert relative_error(g, e) == pytest.approx(1 / 5)
    assert relative_error(torch.ones(2), torch.zeros(2)) == pytest.approx(math.sqrt(2))  # absolute when 0


def test_a_detector_reordering_the_same_detections_is_exact() -> None:
    want = [image([0, 1, 2, 3]), image([2, 0])]
    assert output_error([image([3, 1, 0, 2]), image([0, 2])], want) == 0.0
    assert output_error([image([]), image([])], [image([]), image([])]) is None  # nothing detected: nothing to compare


def test_a_lost_detection_stands_against_zeros() -> None:
    lost = output_error([image([2, 0, 1])], [image([0, 1, 2, 3])])
    box_error = float(BOXES[3].norm() / BOXES.norm())
    score_error = float(SCORES[3] / SCORES.norm())
    assert lost == pytest.approx(max(box_error, score_error), rel=1e-6)
    shifted = output_error([image([1, 0, 3, 2], BOXES + torch.tensor([2.0, 0, 2, 0]))], [image([0, 1, 2, 3])])
    assert shifted == pytest.approx(math.sqrt(4 * 2 * 2**2) / float(BOXES.norm()), rel=1e-6)


def test_other_outputs_are_compared_leaf_by_leaf() -> None:
    want = (torch.tensor([[1.0, 2.0]]), torch.tensor([3.0, 4.0]))
    assert output_error((want[0], torch.tensor([3.0, 5.0])), want) == pytest.approx(1 / 5)
    assert output_error(torch.zeros(3, 4), torch.zeros(5, 4)) == 1.0  # only the count differs
    with pytest.raises(VerificationError, match="output shapes changed"):
        output_error(torch.zeros(3, 4), torch.zeros(3, 5))
