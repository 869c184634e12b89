"""What label-free recovery fits to: the teacher's outputs, each tensor normalised by its own spread.

:class:`SpreadLoss` is the task-agnostic loss of recovery, for the model's outputs (distillation) and for
one block's outputs (block-wise reconstruction): every float tensor of the output structure (tuples,
dicts, lists via ``torch.utils._pytree``) contributes a mean squared error divided by the teacher's
variance per channel (dim 1), so outputs of different scales, boxes in pixels and scores in [0, 1],
weigh alike; the tensors' losses are averaged. A classifier-shaped output (one float [N, C] tensor) adds
the temperature-scaled KL divergence of the softened distributions (Hinton et al.), times T².
:func:`find_blocks` picks the modules block-wise reconstruction trains, one after another.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils._pytree import tree_flatten, tree_map

from convaudit.analysis.adapters import is_conv_module
from convaudit.conversion.fidelity import is_classifier_output
from convaudit.conversion.layers import SeparableConv

__all__ = [
    "MAX_BLOCK_LAYERS",
    "TEMPERATURE",
    "Block",
    "SpreadLoss",
    "capture_calls",
    "clone",
    "find_blocks",
    "forward_order",
]

#: Softening temperature of the KL term on classifier-shaped logits.
TEMPERATURE = 4.0
#: A converted layer is reconstructed together with its parent module (a residual block, a conv+BN+act
#: module) when the parent holds at most this many converted layers; else alone (a VGG ``features``
#: Sequential is not a block).
MAX_BLOCK_LAYERS = 4
#: Channels whose teacher variance is below this share of the tensor's mean variance are weighed as if
#: they had it (a dead ReLU channel would otherwise dominate the loss).
VARIANCE_FLOOR = 1e-3


class SpreadLoss:
    """MSE of every float output tensor over the teacher's per-channel variance (+ KL on classifier logits)."""

    def __init__(self, targets: Sequence[Any], kl_weight: float = 1.0) -> None:
        """``targets``: the teacher's outputs on the fit batches, from which each tensor's spread is taken."""
        self.variances: dict[int, torch.Tensor] = {}
        sums: dict[int, tuple[torch.Tensor, torch.Tensor, int]] = {}
        for target in targets:
            for i, t in _float_leaves(target):
                s, s2, n = _channel_sums(t.detach())
                if i in sums and sums[i][0].shape == s.shape:
                    a, a2, m = sums[i]
                    sums[i] = (a + s, a2 + s2, m + n)
                elif i not in sums:
                    sums[i] = (s, s2, n)
        for i, (s, s2, n) in sums.items():
            var = (s2 / n - (s / n).square()).clamp_min(0.0)
            self.variances[i] = var.clamp_min(VARIANCE_FLOOR * float(var.mean()) + 1e-12)
        self.classifier = bool(targets) and all(is_classifier_output(t) for t in targets)
        self.kl_weight = kl_weight

    def __call__(self, output: Any, target: Any) -> torch.Tensor:
        """The loss of ``output`` against the teacher's ``target`` (same structure and shapes)."""
        pairs = list(zip(_float_leaves(output), _float_leaves(target), strict=True))
        terms = []
        for (i, out), (_, tgt) in pairs:
            var = self.variances.get(i)
            if var is None or (out.dim() >= 2 and out.shape[1] != var.numel()):
                var = tgt.detach().var().clamp_min(1e-12).reshape(1)
            terms.append(((out - tgt).square() / _as_channels(var, out)).mean())
        loss = torch.stack(terms).mean()
        if self.classifier and self.kl_weight:
            t = TEMPERATURE
            kl = F.kl_div(
                F.log_softmax(output / t, 1), F.log_softmax(target / t, 1), log_target=True, reduction="batchmean"
            )
            loss = loss + self.kl_weight * kl * t * t
        return loss


@dataclass(frozen=True)
class Block:
    """A module of the working copy trained to reproduce the teacher's module at the same path."""

    path: str
    layers: tuple[str, ...]  #: the converted layers (SeparableConv paths) inside it


def find_blocks(student: nn.Module, teacher: nn.Module) -> list[Block]:
    """The blocks to reconstruct: each converted layer's parent when it is a small block of the same class in both
    models, else the layer itself (whose teacher is the conv it replaced); outermost blocks only.

    Layers the teacher has no module for (functional convs, rewritten through fx) are left to distillation.
    """
    layers = [
        path
        for path, m in student.named_modules()
        if isinstance(m, SeparableConv) and is_conv_module(_get(teacher, path))
    ]
    chosen: dict[str, list[str]] = {}
    for path in layers:
        parent = path.rpartition(".")[0]
        s_parent, t_parent = _get(student, parent), _get(teacher, parent)
        inside = [p for p in layers if p.startswith(parent + ".")]
        is_block = (
            parent != ""
            and s_parent is not None
            and t_parent is not None
            and type(s_parent) is type(t_parent)
            and not isinstance(s_parent, (nn.ModuleList, nn.ModuleDict))
            and len(inside) <= MAX_BLOCK_LAYERS
        )
        chosen.setdefault(parent if is_block else path, []).append(path)
    outer = [p for p in chosen if not any(p.startswith(q + ".") for q in chosen if q != p)]
    return [
        Block(p, tuple(sorted({x for q in chosen if q == p or q.startswith(p + ".") for x in chosen[q]})))
        for p in outer
    ]


def forward_order(model: nn.Module, blocks: Sequence[Block], batch: tuple[tuple, dict]) -> list[Block]:
    """``blocks`` sorted by their first call in one forward of ``model`` on ``batch`` (blocks never called: dropped)."""
    order: dict[int, int] = {}
    wanted = {id(model.get_submodule(b.path)) for b in blocks}

    def hook(module: nn.Module, _: tuple) -> None:
        if id(module) in wanted:
            order.setdefault(id(module), len(order))

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        with torch.no_grad():
            model(*batch[0], **batch[1])
    finally:
        handle.remove()
    called = [b for b in blocks if id(model.get_submodule(b.path)) in order]
    return sorted(called, key=lambda b: order[id(model.get_submodule(b.path))])


def capture_calls(
    model: nn.Module, module: nn.Module, batches: Sequence[tuple[tuple, dict]], max_bytes: int
) -> list[tuple[tuple, dict]]:
    """(args, kwargs) of every call of ``module`` over forwards of ``model`` on ``batches``, copied.

    A hook on ``module`` (removed after); capture stops once ``max_bytes`` of tensors are held.
    """
    calls: list[tuple[tuple, dict]] = []
    size = [0]

    def hook(_: nn.Module, args: tuple, kwargs: dict) -> None:
        if size[0] < max_bytes:
            call = tree_map(clone, (args, kwargs))
            calls.append(call)
            size[0] += sum(t.numel() * t.element_size() for t in tree_flatten(call)[0] if isinstance(t, torch.Tensor))

    handle = module.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            for args, kwargs in batches:
                model(*args, **kwargs)
                if size[0] >= max_bytes:
                    break
    finally:
        handle.remove()
    return calls


def clone(t: Any) -> Any:
    """A detached copy of a tensor (anything else as is): captured inputs a forward may not change in place."""
    return t.detach().clone() if isinstance(t, torch.Tensor) else t


def _get(root: nn.Module, path: str) -> nn.Module | None:
    try:
        return root.get_submodule(path)
    except AttributeError:
        return None


def _float_leaves(value: Any) -> list[tuple[int, torch.Tensor]]:
    return [
        (i, t) for i, t in enumerate(tree_flatten(value)[0]) if isinstance(t, torch.Tensor) and t.is_floating_point()
    ]


def _channel_sums(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per-channel (dim 1) sum, sum of squares and count; one channel for tensors under 2 dims."""
    x = t.double()
    flat = x.reshape(1, -1) if x.dim() < 2 else x.transpose(0, 1).reshape(x.shape[1], -1)
    return flat.sum(1), flat.square().sum(1), flat.shape[1]


def _as_channels(var: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    v = var.to(device=out.device, dtype=out.dtype)
    if out.dim() < 2 or v.numel() == 1:
        return v.reshape(()) if v.numel() == 1 else v
    return v.reshape(1, -1, *([1] * (out.dim() - 2)))
