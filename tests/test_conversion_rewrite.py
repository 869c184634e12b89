"""Rewrite mechanics: module swaps keep sharing, captures leave no hooks."""

import torch
import torch.nn as nn

from convaudit.conversion.rewrite import capture_conv_inputs, replace_module


def test_replace_module_everywhere_it_hangs() -> None:
    conv = nn.Conv2d(2, 2, 3)
    model = nn.Sequential(conv, nn.ReLU(), conv)
    model.extra = nn.ModuleDict({"again": conv})
    new = nn.Identity()
    assert replace_module(model, conv, new) == 3
    assert model[0] is model[2] is model.extra["again"] is new


def test_capture_leaves_no_hooks_and_restores_modes() -> None:
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Dropout(0.5), nn.Conv2d(3, 3, 3)).train()
    outputs: list = []
    seen = capture_conv_inputs(model, ["0", "2"], [((torch.randn(1, 2, 7, 7),), {})], outputs)
    assert [tuple(seen["0"][0].shape), tuple(seen["2"][0].shape)] == [(1, 2, 7, 7), (1, 3, 5, 5)]
    assert len(outputs) == 1 and model.training and model[1].training
    assert not torch.nn.modules.module._global_forward_pre_hooks
    assert all(not m._forward_pre_hooks for m in model.modules())
