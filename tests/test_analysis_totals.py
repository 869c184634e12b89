"""Totals: one ConvLayer per conv from the calls, the per-op summaries, and the whole model's figures."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn as nn

import convaudit
from convaudit.analysis import totals
from convaudit.analysis.inventory import build_layer


class Repeated(nn.Module):
    """Blocks with the same conv configurations at the same shapes, one called twice, and one that differs."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(8, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.c = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.d = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.d(self.c(self.b(self.a(x)))) + self.a(x).to(torch.float64).float()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_repeated_configuration_gives_the_layer_build_layer_gives(
    monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype
) -> None:
    """Oracle: every layer built on its own (build_layer per conv, nothing shared)."""
    built: list[str] = []

    def each(name: str, *args: object) -> object:
        built.append(name)
        return build_layer(name, *args)  # type: ignore[arg-type]

    model = Repeated().to(dtype)
    monkeypatch.setattr(totals, "build_layer", each)
    shared = convaudit.analyze(model, input_shape=(1, 8, 10, 10)).layers
    assert built == ["a", "b", "c"]  # d is b's configuration at b's shapes (a runs twice: its shapes differ)
    built.clear()
    monkeypatch.setattr(totals, "_configuration", lambda *args: object())  # nothing equal: each built
    alone = convaudit.analyze(model, input_shape=(1, 8, 10, 10)).layers
    assert built == ["a", "b", "c", "d"]
    assert [dataclasses.asdict(x) for x in shared] == [dataclasses.asdict(x) for x in alone]
    assert [x.name for x in shared] == ["a", "b", "c", "d"] and shared[0].calls == 2 and shared[1].calls == 1
    assert len({x.source for x in shared}) == 4  # each its own line
