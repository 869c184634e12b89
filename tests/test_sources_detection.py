"""torchvision's detection and keypoint models from ``torchvision:NAME``, with their list-of-images inputs.

A detector takes a list of ``[C, H, W]`` images; by default one, at the size its own transform resizes
to (SSD's ``fixed_size``, else the eval-mode ``min_size``), and ``--input-shape`` gives one image per shape.
Oracles: the documented sizes (written out below), per-conv MACs against FlopCounterMode on the same real
eval-mode forward (seeded inputs, conv FLOPs = 2·MACs), and the model's full state bit for bit afterwards.
The zoo-marked runs shrink each model's transform and proposal counts (its own attributes, before the
state is taken) so that every detector runs in seconds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torchvision.models as tvm

import convaudit
from convaudit.cli.app import main
from convaudit.conversion.verify import VerificationError, output_error
from convaudit.errors import EXIT_OK, UsageError
from convaudit.sources import load
from convaudit.sources.inputs import materialize
from tests.test_analysis_paths import assert_as_found, assert_conv_macs_match, conv_macs_by_module, state_of

#: Every detector torchvision lists, with the square image its transform keeps as it is (documented sizes).
DETECTORS = {
    "fasterrcnn_mobilenet_v3_large_320_fpn": 320,
    "fasterrcnn_mobilenet_v3_large_fpn": 800,
    "fasterrcnn_resnet50_fpn": 800,
    "fasterrcnn_resnet50_fpn_v2": 800,
    "fcos_resnet50_fpn": 800,
    "keypointrcnn_resnet50_fpn": 800,  # min_size (640, ..., 800): eval mode uses the last
    "maskrcnn_resnet50_fpn": 800,
    "maskrcnn_resnet50_fpn_v2": 800,
    "retinanet_resnet50_fpn": 800,
    "retinanet_resnet50_fpn_v2": 800,
    "ssd300_vgg16": 300,
    "ssdlite320_mobilenet_v3_large": 320,
}


def images(args: tuple) -> list[tuple[int, ...]]:
    """The image shapes of a detector's inputs: one positional list of meta [C, H, W] tensors."""
    assert len(args) == 1 and isinstance(args[0], list), args
    assert all(isinstance(t, torch.Tensor) and t.is_meta and t.dim() == 3 for t in args[0])
    return [tuple(t.shape) for t in args[0]]


def test_every_torchvision_detector_is_covered() -> None:
    assert sorted(DETECTORS) == sorted(tvm.list_models(module=tvm.detection))


@pytest.mark.parametrize(
    "name,where,resize",
    [
        (
            "ssdlite320_mobilenet_v3_large",
            "SSD.transform.fixed_size",
            "SSD's transform resizes every image to 320×320",
        ),
        (
            "fasterrcnn_mobilenet_v3_large_320_fpn",
            "FasterRCNN.transform.min_size (eval)",
            "FasterRCNN's transform resizes every image to shorter side 320, longer side at most 640",
        ),
    ],
    ids=["ssdlite", "fasterrcnn_320"],
)
def test_a_detector_takes_one_image_at_its_transforms_size(name: str, where: str, resize: str) -> None:
    loaded = load(f"torchvision:{name}")
    assert images(loaded.args) == [(3, 320, 320)] and loaded.kwargs == {}
    assert loaded.notes == [
        f"input shape 3,320,320 (one image) from {where}; pass --input-shape C,H,W per image",
        f"{resize} before its backbone: the costs are at that size",
    ]
    assert loaded.weights_source == f"torchvision.models.{name}(weights=None) under seed 0"


def test_input_shape_gives_the_images() -> None:
    name = "torchvision:fasterrcnn_mobilenet_v3_large_320_fpn"
    loaded = load(name, input_shapes=[(3, 240, 320), (2, 3, 64, 80)])
    assert images(loaded.args) == [(3, 240, 320), (3, 64, 80), (3, 64, 80)]  # N,C,H,W is N images
    assert loaded.notes == [  # the size note goes with the size; the resize stays true
        "FasterRCNN's transform resizes every image to shorter side 320, longer side at most 640 before its "
        "backbone: the costs are at that size"
    ]
    with pytest.raises(UsageError, match=r"--input-shape 1,224: .* takes a list of images; give C,H,W per image"):
        load(name, input_shapes=[(1, 224)])


def test_output_error_of_value_dependent_outputs() -> None:
    boxes = [{"boxes": torch.ones(3, 4), "scores": torch.ones(3), "labels": torch.ones(3, dtype=torch.int64)}]
    same = [{k: v.clone() for k, v in boxes[0].items()}]
    assert output_error(same, boxes) == 0.0
    fewer = [{"boxes": torch.ones(2, 4), "scores": torch.ones(2), "labels": torch.ones(2, dtype=torch.int64)}]
    # one of three equal detections lost, matched as sets: it stands against zeros (1/3 of the energy), not a crash
    assert output_error(fewer, boxes) == pytest.approx(math.sqrt(1 / 3))
    none = [{"boxes": torch.ones(0, 4), "scores": torch.ones(0), "labels": torch.ones(0, dtype=torch.int64)}]
    assert output_error(none, none) is None  # nothing to compare is not "error 0"
    assert output_error(torch.ones(2, dtype=torch.int64), torch.ones(2, dtype=torch.int64)) is None
    with pytest.raises(VerificationError, match="output shapes changed"):
        output_error(torch.ones(1, 3, 8, 8), torch.ones(1, 3, 8, 9))  # not a count: a real change of shape


# ---------------------------------------------------------------- every detector, analysed for real


def shrink(model: nn.Module, side: int) -> None:
    """Keep the forward small: the transform's size and the proposals (the model's own settings)."""
    transform = model.transform
    if transform.fixed_size is None:
        transform.min_size, transform.max_size = (side,), side
    rpn = getattr(model, "rpn", None)
    if rpn is not None:
        rpn._pre_nms_top_n = {"training": 40, "testing": 40}
        rpn._post_nms_top_n = {"training": 20, "testing": 20}
    if hasattr(model, "topk_candidates"):  # SSD: random scores pass its low threshold for every class
        model.score_thresh = 0.5


@pytest.mark.zoo
@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_every_detector_is_costed_as_flopcounter_counts_and_left_as_found(name: str) -> None:
    loaded = load(f"torchvision:{name}")
    side = DETECTORS[name]
    assert images(loaded.args) == [(3, side, side)]
    model = loaded.model
    side = side if model.transform.fixed_size is not None else 96  # SSD: its fixed size; the rest 96²
    shrink(model, side)
    x = ([torch.empty(3, side, side + 16, device="meta")],)
    before = state_of(model)
    a = convaudit.analyze(model, x)
    assert_as_found(before, model)
    assert a.trace_path == "real" and a.mode == "eval" and a.input_shapes == ((3, side, side + 16),)
    assert_conv_macs_match(a, conv_macs_by_module(model, *materialize(x)))  # the real path's seeded inputs
    assert len(a.layers) > 30


@pytest.mark.zoo
def test_report_cli_on_two_images(tmp_path: Path) -> None:
    name = "torchvision:fasterrcnn_mobilenet_v3_large_320_fpn"
    out = tmp_path / "r.json"
    argv = ["report", name, "--input-shape", "3,160,200", "--input-shape", "3,200,160", "--no-cross-check", "-q"]
    assert main([*argv, "-o", str(out)]) == EXIT_OK
    doc = json.loads(out.read_text())
    assert doc["input_shapes"] == [[3, 160, 200], [3, 200, 160]] and doc["trace_path"] == "real"
    assert any("resizes every image to shorter side 320" in w for w in doc["warnings"])
    loaded = load(name, input_shapes=[(3, 160, 200), (3, 200, 160)])  # seeded: the same weights as the CLI's
    oracle = conv_macs_by_module(loaded.model, *materialize(loaded.args))
    assert doc["totals"]["conv_macs"] == oracle[""]
    by_name = {layer["name"]: layer["macs"] for layer in doc["layers"] if layer["op"] == "module"}
    assert by_name == {n: oracle[n] for n in by_name}


@pytest.mark.zoo
def test_convert_full_rank_on_a_detector_compares_its_boxes() -> None:
    model = load("torchvision:fasterrcnn_mobilenet_v3_large_320_fpn").model
    shrink(model, 96)
    model.roi_heads.score_thresh = 0.0  # random weights score ~1/91: keep boxes, so there are outputs to compare
    x = materialize(([torch.empty(3, 96, 112, device="meta")],))
    before = state_of(model)
    c = convaudit.convert(model, x, rank="full")
    assert_as_found(before, model)
    r = c.report
    assert len(r.layers) == 4 and all(layer.relative_error < 1e-5 for layer in r.layers) and r.costs_match
    with torch.no_grad():
        got, want = c.model.eval()(*x), model.eval()(*x)
    assert want[0]["boxes"].shape == (100, 4)
    # exact convs, yet the random scores tie (all ≈ 1/91) and the kept boxes come out in another order: the error
    # is what the outputs, compared element by element, differ by
    assert r.output_error is not None and r.output_error == output_error(got, want)
