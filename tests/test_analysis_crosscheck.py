"""The fvcore cross-check: same numbers as ours, and the model left as found."""

import torch
import torch.nn as nn

from convaudit.analysis.crosscheck import MAX_FORWARD_BYTES, fvcore_count


def test_counts_and_restores_batchnorm_statistics() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8 * 6 * 6, 4)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    check = fvcore_count(model, (torch.randn(2, 3, 8, 8),), {}, ["0"], activation_bytes=0)
    assert check.skipped is None and check.conv_macs == 2 * 6 * 6 * 8 * 3 * 9
    assert check.macs_same_ops == check.conv_macs + 2 * 8 * 6 * 6 * 4
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_skips_with_reasons() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3))
    big = fvcore_count(model, (torch.randn(1, 3, 8, 8),), {}, ["0"], activation_bytes=MAX_FORWARD_BYTES + 1)
    assert big.macs is None and "GiB" in big.skipped


def test_keyword_inputs_are_bound() -> None:
    class Gate(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x, scale=None):
            return self.conv(x) * scale

    check = fvcore_count(Gate(), (torch.randn(1, 3, 5, 5),), {"scale": torch.tensor(2.0)}, ["conv"], 0)
    assert check.skipped is None and check.conv_macs == 3 * 3 * 4 * 3 * 9
