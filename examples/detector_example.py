"""Label-free recovery of a multi-output, detector-shaped model: boxes in pixels and scores in [0, 1].

A tiny single-object detector (conv stem, two conv+BN+ReLU blocks, a box head in pixels and a score head
in [0, 1]) is trained in a few seconds on synthetic 32×32 images (a bright rectangle on noise, or nothing),
converted at m = 1 (stem kept standard), then recovered with ``convaudit.recover`` from the training images
alone, without their boxes or labels. It prints, on held-out test images: the fidelity figures, the verdict,
and how many of the original's detections the converted model keeps (same decision, and IoU ≥ 0.5 with
the original's box when it detects), before and after recovery.

    python examples/detector_example.py            # ~20 s on one CPU core
    python examples/detector_example.py --quick    # fewer steps, for a smoke test

Importing this file only defines the model: ``convaudit report examples/detector_example.py`` works on the
(untrained) model from ``build_model()`` and ``example_inputs()``.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

SEED = 0
SIZE = 32  #: image side in pixels
BATCH = 64


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class TinyDetector(nn.Module):
    """stem 1→16 /2, block 16→32 /2, block 32→32 /2, then ``boxes`` (cx, cy, w, h in pixels) and ``scores``."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = _block(1, 16, 2)
        self.block1 = _block(16, 32, 2)
        self.block2 = _block(32, 32, 2)
        self.box = nn.Linear(32 * 16, 4)
        self.score = nn.Linear(32 * 16, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = torch.flatten(self.block2(self.block1(self.stem(x))), 1)
        return {"boxes": SIZE * torch.sigmoid(self.box(f)), "scores": torch.sigmoid(self.score(f)).squeeze(1)}


def build_model() -> nn.Module:
    """The (untrained) model, for ``convaudit report`` / ``convaudit convert``."""
    torch.manual_seed(SEED)
    return TinyDetector()


def example_inputs() -> tuple[torch.Tensor]:
    return (torch.randn(1, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(SEED)),)


def make_images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images, boxes (cx, cy, w, h) in pixels, present): a rectangle in 3 of 4 images, on Gaussian noise."""
    gen = torch.Generator().manual_seed(seed)
    images = 0.2 * torch.randn(n, 1, SIZE, SIZE, generator=gen)
    wh = torch.randint(6, 15, (n, 2), generator=gen)
    corner = (torch.rand(n, 2, generator=gen) * (SIZE - wh)).long()
    present = torch.rand(n, generator=gen) < 0.75
    for i in range(n):
        if present[i]:
            (x0, y0), (w, h) = corner[i].tolist(), wh[i].tolist()
            images[i, 0, y0 : y0 + h, x0 : x0 + w] += 1.0
    boxes = torch.cat([corner + wh / 2, wh], 1).float()
    return images, boxes, present


def train(model: nn.Module, images: torch.Tensor, boxes: torch.Tensor, present: torch.Tensor, steps: int) -> None:
    """Adam 3e-3 with cosine decay; smooth-L1 on the boxes of images with an object, BCE on the scores."""
    gen = torch.Generator().manual_seed(SEED)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    model.train()
    for _ in range(steps):
        idx = torch.randint(len(images), (BATCH,), generator=gen)
        out = model(images[idx])
        mask = present[idx]
        box_loss = F.smooth_l1_loss(out["boxes"][mask] / SIZE * 10, boxes[idx][mask] / SIZE * 10)
        loss = box_loss + F.binary_cross_entropy(out["scores"], present[idx].float())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.eval()


def iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of (cx, cy, w, h) boxes, row by row."""
    lo = torch.maximum(a[:, :2] - a[:, 2:] / 2, b[:, :2] - b[:, 2:] / 2)
    hi = torch.minimum(a[:, :2] + a[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2)
    inter = (hi - lo).clamp_min(0).prod(1)
    return inter / (a[:, 2:].prod(1) + b[:, 2:].prod(1) - inter)


@torch.no_grad()
def detections_kept(reference: nn.Module, model: nn.Module, images: torch.Tensor) -> float:
    """Share of images where ``model`` decides as ``reference`` (score ≥ 0.5) and, if it detects, with IoU ≥ 0.5."""
    ref, out = reference(images), model(images)
    same = (ref["scores"] >= 0.5) == (out["scores"] >= 0.5)
    overlap = (iou(ref["boxes"], out["boxes"]) >= 0.5) | (ref["scores"] < 0.5)
    return float((same & overlap).float().mean())


@dataclass
class Row:
    name: str
    relative_error: float
    cosine: float
    verdict: str
    kept: float
    seconds: float


def main(argv: list[str] | None = None, *, verbose: bool = True) -> list[Row]:
    """Train, convert, recover; print and return one row per state (converted, recovered)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="recovery steps (default 400)")
    parser.add_argument("--quick", action="store_true", help="shorter training and recovery (a smoke test)")
    opts = parser.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(opts, print if verbose else (lambda *a, **k: None))
    finally:
        torch.set_num_threads(threads)


def _run(opts: argparse.Namespace, say: Any) -> list[Row]:
    import convaudit
    from convaudit.conversion.fidelity import judge, measure_fidelity

    train_steps, steps = (150, 100) if opts.quick else (600, opts.steps)
    images, boxes, present = make_images(2048, SEED)
    test, test_boxes, test_present = make_images(512, SEED + 1)
    model = build_model()
    t = time.perf_counter()
    train(model, images, boxes, present, train_steps)
    with torch.no_grad():
        out = model(test)
    correct = float(((out["scores"] >= 0.5) == test_present).float().mean())
    mean_iou = float(iou(out["boxes"][test_present], test_boxes[test_present]).mean())
    say(
        f"trained TinyDetector: {train_steps} steps in {time.perf_counter() - t:.1f} s; on 512 test images: "
        f"object present/absent right {correct:.3f}, mean IoU with the true boxes {mean_iou:.3f}"
    )

    t = time.perf_counter()
    conversion = convaudit.convert(model, example_inputs(), rank=1, exclude=["stem.0"])
    converted, report = conversion.model, conversion.report
    say(
        f"converted at m = 1 (stem kept standard) in {time.perf_counter() - t:.1f} s: MACs "
        f"{report.macs_before:,} → {report.macs_measured:,} ({report.macs_measured / report.macs_before:.3f}×)"
    )
    unlabeled = [images[i : i + BATCH] for i in range(0, len(images), BATCH)]  # no boxes, no labels
    t = time.perf_counter()
    result = convaudit.recover(converted, model, unlabeled, steps=steps)
    seconds = time.perf_counter() - t
    rows = []
    for name, m, s in (("converted", converted, 0.0), ("recovered", result.model, seconds)):
        fid = measure_fidelity(model, m, [test], inputs="test images")
        rows.append(Row(name, fid.relative_error, fid.cosine, judge(fid), detections_kept(model, m, test), s))
    say(f"\nlabel-free recovery ({steps} steps): " + ", ".join(f"{s.name} {s.error_after:.3f}" for s in result.stages))
    header = ("rel. error", 10), ("cosine", 8), ("verdict", 9), ("detections kept", 16), ("time", 7)
    say(f"\n{'on 512 test images':<20} " + " ".join(f"{h:>{w}}" for h, w in header))
    for r in rows:
        say(
            f"{r.name:<20} {r.relative_error:>10.3f} {r.cosine:>8.3f} {r.verdict:>9} {r.kept:>16.3f} {r.seconds:>6.1f}s"
        )
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
