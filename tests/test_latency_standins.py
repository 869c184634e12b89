"""Stand-ins: the conv and its separable forms built from a layer's record, with its shapes and MACs."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from convaudit.analysis.rules.formulas import dw_pw_cost, pw_dw_cost
from convaudit.latency.standins import stand_in_input, stand_ins
from tests.test_latency_measure import CASES, candidates


def flops(module: nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(x)
    return counter.get_total_flops()


@pytest.mark.parametrize("model, shape", CASES)
@pytest.mark.parametrize("m", [None, 3])
def test_stand_ins_have_the_layers_shapes_and_macs(model: nn.Module, shape: tuple[int, ...], m: int | None) -> None:
    for layer in candidates(model, shape):
        modules, x = stand_ins(layer, m=m), stand_in_input(layer)
        assert tuple(x.shape) == tuple(layer.input_shape)
        outputs = {name: module(x) for name, module in modules.items()}
        assert all(tuple(y.shape) == tuple(layer.output_shape) for y in outputs.values())
        args = (layer.input_shape, layer.output_shape, layer.in_channels, layer.out_channels, layer.groups)
        dw_pw = dw_pw_cost(*args, layer.kernel_size, m or 1, layer.bias, 4)
        pw_dw = pw_dw_cost(*args, layer.kernel_size, layer.bias, 4, m or 1)
        assert flops(modules["original"], x) == 2 * layer.macs  # FlopCounterMode: FLOPs = 2·MACs
        assert flops(modules["dw_pw"], x) == 2 * dw_pw.macs
        assert flops(modules["pw_dw"], x) == 2 * pw_dw.macs
        if m is None:
            assert dw_pw.macs == layer.separable.dw_pw.macs and pw_dw.macs == layer.separable.pw_dw.macs


def test_stand_ins_are_fresh_in_eval_mode_and_channels_last() -> None:
    model = nn.Sequential(nn.Conv2d(8, 16, 3)).train()
    (layer,) = candidates(model, (1, 8, 12, 12))
    modules = stand_ins(layer, memory_format="channels_last")
    x = stand_in_input(layer, memory_format="channels_last")
    assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    ours = {p.data_ptr() for p in model.parameters()}
    for module in modules.values():
        assert not module.training and not any(p.data_ptr() in ours for p in module.parameters())
        assert all(p.is_contiguous(memory_format=torch.channels_last) for p in module.parameters() if p.dim() == 4)
    assert torch.equal(stand_in_input(layer), stand_in_input(layer))  # seeded
