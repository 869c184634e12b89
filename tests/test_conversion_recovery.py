"""conversion/recovery: label-free recovery lowers held-out error, within its budget, repeatably, on a copy."""

from __future__ import annotations

import copy
import time

import pytest
import torch
import torch.nn as nn

from convaudit.conversion.fidelity import compare_outputs, measure_fidelity, outputs_of
from convaudit.conversion.layers import SeparableConv, SeparableConv2d
from convaudit.conversion.objectives import SpreadLoss, find_blocks
from convaudit.conversion.recovery import recover
from convaudit.conversion.rewrite import replace_module
from convaudit.errors import UsageError


class Net(nn.Module):
    """conv+BN+ReLU blocks, pooled, with a classifier head and (``boxes``) a large-scale regression head."""

    def __init__(self, boxes: bool = False) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.conv = nn.Conv2d(8, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.head = nn.Linear(16, 5)
        self.box = nn.Linear(16, 4) if boxes else None

    def forward(self, x: torch.Tensor) -> object:
        x = torch.relu(self.bn(self.conv(self.stem(x))))
        x = x.mean((2, 3))
        if self.box is None:
            return self.head(x)
        return {"boxes": 1000.0 * self.box(x), "scores": torch.sigmoid(self.head(x))}


def _convert(model: nn.Module) -> nn.Module:
    """Every 3×3 conv at m = 1 (what ``convaudit.convert(model, x, rank=1)`` builds, without its analysis)."""
    converted = copy.deepcopy(model)
    for conv in [m for m in converted.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]:
        replace_module(converted, conv, SeparableConv2d.from_conv(conv, rank=1))
    return converted


def _trained_bn(model: nn.Module, batches: list[torch.Tensor]) -> nn.Module:
    """Running statistics that fit the data (a freshly built model's are 0/1)."""
    model.train()
    with torch.no_grad():
        for x in batches:
            model(x)
    return model.eval()


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> object:
    """Tiny convs: one thread is fastest, and much faster on a shared, busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def setup() -> tuple[nn.Module, nn.Module, list[torch.Tensor]]:
    torch.manual_seed(0)
    batches = [torch.randn(16, 3, 8, 8) for _ in range(8)]
    original = _trained_bn(Net(), batches)
    converted = _convert(original)
    return original, converted, batches


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _flags(model: nn.Module) -> list[bool]:
    return [m.training for m in model.modules()] + [p.requires_grad for p in model.parameters()]


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_recovery_lowers_the_held_out_error_and_leaves_both_models_as_found(setup: tuple) -> None:
    original, converted, batches = setup
    kept = [(m, _state(m), _flags(m)) for m in (original, converted)]
    rng = torch.get_rng_state()
    result = recover(converted, original, batches, steps=60)
    assert result.after.relative_error < 0.5 * result.before.relative_error
    assert result.after.relative_error == min(s.error_after for s in result.stages)
    assert [s.name for s in result.stages] == ["blockwise", "batchnorm", "distill"]  # ORDER
    assert result.model is not converted and not result.interrupted
    for model, state, flags in kept:
        assert _same(_state(model), state)
        assert _flags(model) == flags
        assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert torch.equal(torch.get_rng_state(), rng)  # the global RNG is restored
    assert all(p.requires_grad for p in result.model.parameters())


def test_fitting_never_sees_the_held_out_inputs(setup: tuple) -> None:
    original, converted, batches = setup
    held = torch.randn(16, 3, 8, 8)
    teacher = {id(m) for m in original.modules()}
    seen: list[torch.Tensor] = []

    def spy(module: nn.Module, args: tuple) -> None:  # what the working copy's stem receives while training
        if isinstance(module, nn.Sequential) and id(module) not in teacher and torch.is_grad_enabled():
            seen.append(args[0].detach().clone())

    handle = torch.nn.modules.module.register_module_forward_pre_hook(spy)
    try:
        result = recover(converted, original, batches, holdout=[held], steps=20, stages=("distill",), train="all")
    finally:
        handle.remove()
    assert seen and not any(torch.equal(x, held) for x in seen)
    assert all(any(torch.equal(x, b) for b in batches) for x in seen)
    expected = measure_fidelity(original, result.model, [held], inputs="--holdout inputs")
    assert result.after == expected and result.after.samples == 16


def test_the_same_seed_gives_the_same_weights(setup: tuple) -> None:
    original, converted, batches = setup
    runs = [recover(converted, original, batches, steps=12, seed=s).model for s in (3, 3, 4)]
    a, b, c = (_state(m) for m in runs)
    assert _same(a, b) and not _same(a, c)


@pytest.mark.parametrize("steps", [1, 2, 3, 10])
def test_a_step_budget_is_shared_by_the_training_stages(setup: tuple, steps: int) -> None:
    original, converted, batches = setup
    result = recover(converted, original, batches, steps=steps)
    by = {s.name: s for s in result.stages}
    assert by["blockwise"].steps + by["distill"].steps == steps
    assert by["blockwise"].steps == round(0.3 * steps)  # BLOCKWISE_SHARE
    assert by["batchnorm"].steps == 6  # the fit batches forwarded: 8 less 2 held out
    assert by["distill"].stopped == "steps"


def test_a_time_budget_is_kept(setup: tuple) -> None:
    original, converted, batches = setup
    start = time.perf_counter()
    result = recover(converted, original, batches, seconds=1.0, stages=("distill",))
    elapsed = time.perf_counter() - start
    assert result.stages[0].stopped == "time" and result.stages[0].steps > 0
    assert elapsed < 1.0 + 2.0  # the budget, plus the held-out measurements before and after


def test_ctrl_c_keeps_the_best_state_so_far(setup: tuple) -> None:
    original, converted, batches = setup

    def interrupt(stage: str, step: int, total: int | None, loss: float) -> None:
        if step == 15:
            raise KeyboardInterrupt

    # a learning rate that wrecks the model: the best state is the one recovery started from
    result = recover(converted, original, batches, stages=("distill",), lr=5.0, progress=interrupt)
    assert result.interrupted and [s.stopped for s in result.stages] == ["interrupted"]
    assert result.stages[0].steps == 15
    assert result.after.relative_error == pytest.approx(result.before.relative_error)
    assert _same(_state(result.model), _state(converted))


def test_a_huge_scale_output_does_not_dominate() -> None:
    torch.manual_seed(0)
    batches = [torch.randn(16, 3, 8, 8) for _ in range(8)]
    original = _trained_bn(Net(boxes=True), batches)
    converted = _convert(original)
    held = batches[-2:]
    result = recover(converted, original, batches[:-2], holdout=held, steps=40, stages=("distill",))
    expected = outputs_of(original, [((x,), {}) for x in held])

    def error(model: nn.Module, key: str) -> float:
        got = outputs_of(model, [((x,), {}) for x in held])
        return compare_outputs([e[key] for e in expected], [g[key] for g in got], inputs="x").relative_error

    for key in ("boxes", "scores"):  # both outputs improve, the one in [0, 1] as well as the one in pixels
        assert error(result.model, key) < 0.8 * error(converted, key), key
    # the loss is scale-free: the same relative mistake costs the same in either output
    t = {"boxes": 1000.0 * torch.randn(32, 4), "scores": torch.rand(32, 4)}
    loss = SpreadLoss([t])
    noise = torch.randn(32, 4)
    off_boxes = loss({"boxes": t["boxes"] + noise * t["boxes"].std(0), "scores": t["scores"]}, t)
    off_scores = loss({"boxes": t["boxes"], "scores": t["scores"] + noise * t["scores"].std(0)}, t)
    assert float(off_boxes) == pytest.approx(float(off_scores), rel=0.05)


def test_blocks_are_parents_of_converted_layers(setup: tuple) -> None:
    original, converted, _ = setup
    blocks = {b.path: b.layers for b in find_blocks(converted, original)}
    assert blocks == {"stem": ("stem.0",), "conv": ("conv",)}  # the stem conv with its BN+ReLU; a root-level conv alone
    assert isinstance(converted.get_submodule("conv"), SeparableConv)


@pytest.mark.parametrize(
    "keywords, match",
    [
        ({"device": "tpu"}, "unknown device"),
        ({"stages": ("finetune",)}, "unknown recovery stage"),
        ({"steps": 0}, "positive integer"),
        ({"seconds": -1.0}, "positive"),
        ({"train": "head"}, "train="),
    ],
)
def test_bad_arguments_are_usage_errors(setup: tuple, keywords: dict, match: str) -> None:
    original, converted, batches = setup
    with pytest.raises(UsageError, match=match):
        recover(converted, original, batches, **keywords)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")
def test_cuda_without_cuda_is_a_usage_error(setup: tuple) -> None:
    original, converted, batches = setup
    with pytest.raises(UsageError, match="CUDA is not available"):
        recover(converted, original, batches, device="cuda")
