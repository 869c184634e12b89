"""Label-free recovery: train a converted model back towards the original's function, from inputs alone.

``recover(converted, original, inputs)`` works on a copy of ``converted``; the original is the teacher
(eval mode, no_grad, left as found: analysis/guard.py ``untouched``). The inputs are split
(:func:`~convaudit.conversion.fidelity.split_holdout`): the fit part trains, the held-out part only
measures. Stages, each optional, run in this order:

1. ``blockwise``: each converted layer, or the small block around it (a residual block, a conv+BN+act
   module; :func:`~convaudit.conversion.objectives.find_blocks`), one after another in forward order, is
   trained to reproduce the original's module at the same path on the inputs the *converted* model feeds
   it (as post-training quantization does: AdaRound, BRECQ);
2. ``batchnorm``: BatchNorm statistics re-estimated on the fit batches (training-free);
3. ``distill``: end-to-end, on every output tensor (:class:`~convaudit.conversion.objectives.SpreadLoss`:
   MSE over the teacher's per-channel spread, KL with temperature on classifier-shaped logits).

The held-out relative error is measured after every stage and periodically during training; the best
state seen is kept, so no stage leaves the model worse on held-out inputs than it found it (the held-out
inputs select among states; they are never fitted). Ctrl-C stops, keeps that best state and returns
``interrupted=True``. Budget: ``steps`` and ``seconds`` (whichever ends first) shared by the training
stages; Adam with cosine decay over the budget. Repeatable with ``seed`` (the global RNG is restored).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from torch.utils._pytree import tree_map

from convaudit.analysis.guard import eval_mode, untouched
from convaudit.conversion.fidelity import Batch, compare_outputs, split_holdout
from convaudit.conversion.layers import SeparableConv
from convaudit.conversion.objectives import Block, SpreadLoss, capture_calls, clone, find_blocks, forward_order
from convaudit.conversion.rewrite import recalibrate_batchnorm
from convaudit.documents.records import Fidelity, RecoveryStage
from convaudit.errors import UsageError

__all__ = [
    "BLOCKWISE_SHARE",
    "DEFAULT_STEPS",
    "LEARNING_RATE",
    "ORDER",
    "STAGES",
    "TRAINABLE",
    "Recovery",
    "recover",
]

STAGES = ("batchnorm", "blockwise", "distill")
#: The order the chosen stages run in: BatchNorm statistics are re-estimated after the block-wise
#: reconstruction, which changes what they see (before it, they would be fitted to activations about to change).
ORDER = ("blockwise", "batchnorm", "distill")
TRAINABLE = ("converted", "all")  #: which parameters train: the converted layers' only, or every parameter
#: Steps when neither ``steps`` nor ``seconds`` is given (the digits benchmark: see benchmarks/README.md).
DEFAULT_STEPS = 1000
#: Share of the step and time budget that block-wise reconstruction gets when distillation runs too.
BLOCKWISE_SHARE = 0.3
LEARNING_RATE = 3e-3
MAX_CAPTURE_BYTES = 512 * 2**20  #: NB: a block's captured inputs stop growing here (big inputs: fewer batches)

Progress = Callable[[str, int, "int | None", float], None]


@dataclass
class Recovery:
    """The result of :func:`recover`: the recovered copy, each stage's record, held-out fidelity before and after."""

    model: nn.Module
    stages: tuple[RecoveryStage, ...]
    before: Fidelity
    after: Fidelity
    interrupted: bool


def recover(
    converted: nn.Module,
    original: nn.Module,
    inputs: Iterable[Any],
    *,
    holdout: Iterable[Any] | None = None,
    steps: int | None = None,
    seconds: float | None = None,
    stages: Sequence[str] = STAGES,
    seed: int = 0,
    device: str = "cpu",
    progress: Progress | None = None,
    train: str = "converted",
    lr: float = LEARNING_RATE,
) -> Recovery:
    """Train a copy of ``converted`` to reproduce ``original`` on unlabeled ``inputs``; neither model is changed.

    Args:
        inputs: calibration batches (each a tensor, a tuple of inputs, or ``(args, kwargs)``).
        holdout: held-out batches; default: a quarter of ``inputs`` (whole batches, or samples of a single one).
        steps, seconds: the budget (default ``DEFAULT_STEPS`` steps), split across the training stages.
        stages: any of ``STAGES``; they run in the order of ``ORDER``.
        seed: fixes the batch order: the same seed gives the same weights.
        device: "cpu" or "cuda" (the result is moved back to ``converted``'s device).
        progress: called after every step as ``progress(stage, step, total or None, loss)`` (batchnorm: the
            held-out error as loss); a KeyboardInterrupt it raises stops recovery like Ctrl-C.
        train: "converted" (the converted layers only) or "all" (every parameter of the model, or of the block).
    """
    _check(stages, steps, seconds, train, lr)
    target = _device(device)
    fit, held = split_holdout(inputs, holdout)
    label = "--holdout inputs" if holdout is not None else "held-out calibration batches"
    budget = _Budget(DEFAULT_STEPS if steps is None and seconds is None else steps, seconds, steps is not None)
    cuda = [target.index or 0] if target.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), untouched(original), eval_mode(original):
        torch.manual_seed(seed)
        teacher = original if _device_of(original) == target else copy.deepcopy(original).to(target)
        student = copy.deepcopy(converted).to(target)
        run = _Run(teacher, student, _to(fit, target), _to(held, target), label, progress, train, lr, seed)
        with eval_mode(student):
            before = run.fidelity()
            records, interrupted = run.run_stages([s for s in ORDER if s in stages], budget)
            after = run.fidelity()
    model = student.to(_device_of(converted))
    return Recovery(model, tuple(records), before, after, interrupted)


# ------------------------------------------------------------------------------------------ the budget


class _Budget:
    """Steps and seconds for the whole recovery; ``user_steps``: asked for (stopping there is "steps", not "done")."""

    def __init__(self, steps: int | None, seconds: float | None, user_steps: bool) -> None:
        self.steps, self.seconds, self.user_steps = steps, seconds, user_steps
        self.start = time.perf_counter()
        self.used = 0  #: steps the training stages took so far

    def deadline(self, share: float) -> float | None:
        """A stage's deadline: ``share`` of the time that is left."""
        if self.seconds is None:
            return None
        now = time.perf_counter()
        return now + share * max(0.0, self.start + self.seconds - now)


# ------------------------------------------------------------------------------------------- the run


class _Run:
    """The working copy, the teacher, the data, and the best state seen on the held-out batches."""

    def __init__(
        self,
        teacher: nn.Module,
        student: nn.Module,
        fit: list[Batch],
        held: list[Batch],
        label: str,
        progress: Progress | None,
        train: str,
        lr: float,
        seed: int,
    ) -> None:
        self.teacher, self.student, self.fit, self.held, self.label = teacher, student, fit, held, label
        self.progress, self.train, self.lr = progress, train, lr
        self.gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.held_targets = [teacher(*a, **k) for a, k in held]
        self.best_error = self.error = math.inf
        self.best_state: dict[str, torch.Tensor] = {}
        self.steps_done = 0

    def fidelity(self) -> Fidelity:
        with torch.no_grad():
            got = [self.student(*a, **k) for a, k in self.held]
        return compare_outputs(self.held_targets, got, inputs=self.label)

    def consider(self) -> float:
        """Measure the held-out error; remember the state when it is the best so far."""
        error = self.error = self.fidelity().relative_error
        if error < self.best_error or not self.best_state:
            self.best_error = error
            self.best_state = {k: v.detach().clone() for k, v in self.student.state_dict().items()}
        return error

    def restore_best(self) -> None:
        if self.best_state and self.error > self.best_error:
            self.student.load_state_dict(self.best_state)
            self.error = self.best_error

    def run_stages(self, stages: Sequence[str], budget: _Budget) -> tuple[list[RecoveryStage], bool]:
        """Each stage in turn, the best state restored after each; (records, interrupted)."""
        flags = [(p, p.requires_grad) for p in self.student.parameters()]
        records: list[RecoveryStage] = []
        try:
            self.consider()
            for k, name in enumerate(stages):
                start, before, self.steps_done = time.perf_counter(), self.error, 0
                # this stage's part of what is left: by weight among the training stages still to run
                weights = [_WEIGHTS.get(s, 0.0) for s in stages[k:]]
                share = weights[0] / sum(weights) if weights[0] else 0.0
                try:
                    if name == "batchnorm":
                        stopped = self.batchnorm()
                    else:
                        steps = None if budget.steps is None else round(share * (budget.steps - budget.used))
                        method = self.blockwise if name == "blockwise" else self.distill
                        stopped = method(steps, budget.deadline(share), budget.user_steps)
                except KeyboardInterrupt:
                    stopped = "interrupted"
                budget.used += self.steps_done if name != "batchnorm" else 0
                self.consider()
                # blocks reconstructed towards the teacher's activations are judged after the BatchNorm
                # statistics have followed them: the pair is one step, the best state is restored after both
                if not (name == "blockwise" and stages[k + 1 : k + 2] == ["batchnorm"] and stopped != "interrupted"):
                    self.restore_best()
                seconds = time.perf_counter() - start
                records.append(RecoveryStage(name, self.steps_done, seconds, before, self.error, stopped))
                if stopped == "interrupted":
                    return records, True
            return records, False
        finally:
            for p, flag in flags:
                p.requires_grad_(flag)

    # ---------------------------------------------------------------------------------------- stages

    def batchnorm(self) -> str:
        self.steps_done = len(self.fit) if recalibrate_batchnorm(self.student, self.fit) else 0
        if self.progress:
            self.progress("batchnorm", self.steps_done, len(self.fit), self.consider())
        return "done"

    def blockwise(self, steps: int | None, deadline: float | None, user_steps: bool) -> str:
        blocks = forward_order(self.student, find_blocks(self.student, self.teacher), self.fit[0])
        stopped = "done"
        for i, block in enumerate(blocks):
            left = len(blocks) - i
            block_steps = None if steps is None else -(-(steps - self.steps_done) // left)  # ceil: sums to steps
            if block_steps == 0:
                return "steps" if user_steps else "done"
            now = time.perf_counter()
            block_deadline = None if deadline is None else now + (deadline - now) / left
            stopped = self.reconstruct(block, block_steps, block_deadline, user_steps, steps)
            if stopped == "time" and deadline is not None and time.perf_counter() >= deadline:
                break
        return stopped

    def reconstruct(
        self, block: Block, steps: int | None, deadline: float | None, user_steps: bool, total: int | None
    ) -> str:
        module, reference = self.student.get_submodule(block.path), self.teacher.get_submodule(block.path)
        calls = capture_calls(self.student, module, self.fit, MAX_CAPTURE_BYTES)
        if not calls:
            return "done"
        with torch.no_grad():
            targets = [reference(*a, **k) for a, k in calls]
        loss_of = SpreadLoss(targets, kl_weight=0.0)
        params = self.parameters(module, block.layers)

        def step() -> torch.Tensor:
            i = int(torch.randint(len(calls), (1,), generator=self.gen))
            args, kwargs = tree_map(clone, calls[i])
            return loss_of(module(*args, **kwargs), targets[i])

        return self.optimise("blockwise", params, step, steps, deadline, user_steps, total)

    def distill(self, steps: int | None, deadline: float | None, user_steps: bool) -> str:
        if steps == 0:
            return "steps" if user_steps else "done"
        # NB: the teacher's outputs on every fit batch are kept (for detectors with large outputs: memory)
        with torch.no_grad():
            targets = [self.teacher(*a, **k) for a, k in self.fit]
        loss_of = SpreadLoss(targets)
        params = self.parameters(self.student, None)

        def step() -> torch.Tensor:
            i = int(torch.randint(len(self.fit), (1,), generator=self.gen))
            args, kwargs = self.fit[i]
            return loss_of(self.student(*args, **kwargs), targets[i])

        return self.optimise("distill", params, step, steps, deadline, user_steps, steps)

    # ------------------------------------------------------------------------------------- machinery

    def optimise(
        self,
        stage: str,
        params: list[nn.Parameter],
        step: Callable[[], torch.Tensor],
        steps: int | None,
        deadline: float | None,
        user_steps: bool,
        total: int | None,
    ) -> str:
        """Adam with cosine decay until ``steps`` or ``deadline``; held-out evaluation every so often."""
        if not params:
            return "done"
        opt = torch.optim.Adam(params, lr=self.lr)
        every = max(1, min(50, (total or 250) // 10))
        start, done = time.perf_counter(), 0
        while True:
            now = time.perf_counter()
            if steps is not None and done >= steps:
                return "steps" if user_steps else "done"
            if deadline is not None and now >= deadline:
                return "time"
            frac = max(
                done / steps if steps else 0.0,
                (now - start) / (deadline - start) if deadline is not None and deadline > start else 0.0,
            )
            for group in opt.param_groups:
                group["lr"] = self.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, frac)))
            loss = step()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            self.steps_done += 1
            if self.progress:
                self.progress(stage, self.steps_done, total, float(loss.detach()))
            if self.steps_done % every == 0:
                self.consider()

    def parameters(self, module: nn.Module, layers: Sequence[str] | None) -> list[nn.Parameter]:
        """What trains: every float parameter of ``module`` ("all"), or those of its converted layers."""
        if self.train == "all":
            chosen = list(module.parameters())
        elif layers is None:
            chosen = [p for m in module.modules() if isinstance(m, SeparableConv) for p in m.parameters()]
        else:
            chosen = [p for path in layers for p in self.student.get_submodule(path).parameters()]
        unique = {id(p): p for p in chosen if p.is_floating_point()}
        for p in self.student.parameters():
            p.requires_grad_(id(p) in unique)
        return list(unique.values())


# ------------------------------------------------------------------------------------------- helpers


_WEIGHTS = {"blockwise": BLOCKWISE_SHARE, "distill": 1.0 - BLOCKWISE_SHARE}


def _to(batches: list[Batch], device: torch.device) -> list[Batch]:
    return [tree_map(lambda t: t.to(device) if isinstance(t, torch.Tensor) else t, b) for b in batches]


def _device_of(model: nn.Module) -> torch.device:
    for t in (*model.parameters(), *model.buffers()):
        return _canonical(t.device)
    return torch.device("cpu")


def _canonical(device: torch.device) -> torch.device:
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def _device(name: str) -> torch.device:
    if name == "cpu":
        return torch.device("cpu")
    if isinstance(name, str) and (name == "cuda" or name.startswith("cuda:")):
        if not torch.cuda.is_available():
            raise UsageError(f"device {name!r}: CUDA is not available on this machine; use device 'cpu'")
        return _canonical(torch.device(name))
    raise UsageError(f"unknown device {name!r}; use 'cpu' or 'cuda'")


def _check(stages: Sequence[str], steps: int | None, seconds: float | None, train: str, lr: float) -> None:
    unknown = [s for s in stages if s not in STAGES]
    if unknown or isinstance(stages, str):
        raise UsageError(f"unknown recovery stage(s) {unknown or stages!r}; choose from {', '.join(STAGES)}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise UsageError(f"recovery steps must be a positive integer, got {steps!r}")
    if seconds is not None and not seconds > 0:
        raise UsageError(f"recovery time must be positive, got {seconds!r} seconds")
    if train not in TRAINABLE:
        raise UsageError(f"train={train!r}: choose from {', '.join(TRAINABLE)}")
    if not lr > 0:
        raise UsageError(f"learning rate must be positive, got {lr!r}")
