"""The meta-tensor census of conv module calls: the fx trace's cheap cross-check.

Oracle: the conv module calls of a real forward (global hooks), and the model's state afterwards.
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import convaudit
from convaudit.analysis.census import conv_census
from tests.fixtures import forwards
from tests.test_analysis_paths import assert_as_found, conv_macs_by_module, state_of


class AuxHead(nn.Module):
    """GoogLeNet's pattern: an auxiliary head called in training mode only (its convs unused in eval)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.aux = nn.Sequential(nn.Conv2d(8, 4, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.scale = nn.Parameter(torch.ones(1, 8, 1, 1))
        self.head = nn.Conv2d(8, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem(x) * self.scale
        y = torch.cat([F.relu(y), y + 1.0], 1)[:, :8]
        out = self.head(y)
        if self.aux is not None and self.training:
            out = out + self.aux(y).mean()
        return out


def real_conv_calls(model: nn.Module, x: torch.Tensor) -> Counter[str]:
    names = {id(m): n for n, m in model.named_modules() if isinstance(m, nn.modules.conv._ConvNd)}
    calls: Counter[str] = Counter()

    def hook(module: nn.Module, inputs: object) -> None:
        if id(module) in names:
            calls[names[id(module)]] += 1

    handle = nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return calls


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("build", [AuxHead, forwards.ProxyBranch, forwards.DroppedSkip])
def test_counts_are_a_real_forwards(build: type[nn.Module], training: bool) -> None:
    torch.manual_seed(0)
    model = build().train(training)
    x = torch.randn(2, 3, 9, 9)
    before = state_of(model)
    census = conv_census(model, (x,), {})
    assert_as_found(before, model)
    assert nn.Module.__call__ is nn.modules.module.Module._wrapped_call_impl  # put back
    assert census == real_conv_calls(model, x)


def test_a_forward_that_reads_values_cannot_be_counted() -> None:
    assert conv_census(forwards.Gate(), (torch.randn(1, 3, 8, 8),), {}) is None


def test_a_head_unused_in_eval_stays_on_fx_without_a_fake_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    import convaudit.analysis.paths as paths

    def no_forward(*args: object, **kwargs: object) -> None:
        raise AssertionError("the census agreed with the trace: no fake forward")

    monkeypatch.setattr(paths, "run_fake", no_forward)
    model = AuxHead().eval()
    x = torch.randn(1, 3, 9, 9)
    a = convaudit.analyze(model, (x,))
    assert a.trace_path == "fx" and a.trace_note is None and a.uncalled_convs == ("aux.0",)
    oracle = conv_macs_by_module(model, x)
    assert {layer.name: layer.macs for layer in a.layers} == {n: oracle[n] for n in ("stem.0", "head")}


def test_when_the_census_disagrees_the_fake_forward_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    import convaudit.analysis.paths as paths

    ran = []
    real = paths.run_fake
    monkeypatch.setattr(paths, "run_fake", lambda *a, **k: ran.append(1) or real(*a, **k))
    a = convaudit.analyze(forwards.ProxyBranch(), input_shape=(1, 3, 8, 8))
    assert a.trace_path == "hooks" and ran == [1]


class Keywords(nn.Module):
    """Submodules called with keywords named like the census's own arguments, and one the user compiled."""

    class Scaled(nn.Conv2d):
        def forward(self, x: torch.Tensor, module: float = 1.0, original: float = 1.0, name: str = "") -> torch.Tensor:
            return super().forward(x) * module * original

    def __init__(self) -> None:
        super().__init__()
        self.conv = self.Scaled(3, 4, 3)
        self.compiled = nn.Conv2d(4, 4, 1)
        self.compiled_calls = 0

        def compiled(*args: object, **kwargs: object) -> object:  # what Module.compile leaves on the instance
            self.compiled_calls += 1
            return self.compiled._call_impl(*args, **kwargs)

        self.compiled._compiled_call_impl = compiled
        self.register_buffer("bias", torch.zeros(1, 4, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x, module=2.0, original=0.5, name="n")
        return self.compiled(y) + self.bias  # broadcast: the census's own shape rule


def test_keywords_and_a_compiled_module_are_counted_and_left_as_found() -> None:
    model = Keywords().eval()
    x = torch.randn(1, 3, 8, 8)
    prior = model.compiled._compiled_call_impl
    before = state_of(model)
    census = conv_census(model, (x,), {})
    assert_as_found(before, model)
    assert model.compiled._compiled_call_impl is prior and "_compiled_call_impl" not in vars(model.conv)
    assert census == real_conv_calls(model, x) == Counter({"conv": 1, "compiled": 1})


@pytest.mark.parametrize(
    "a,b", [((2, 3), (2, 3)), ((2, 1), (1, 3)), ((4, 1, 3), (3,)), ((), (2, 2)), ((0, 1), (1, 5)), ((2, 3), (3, 2))]
)
def test_broadcasting_is_torchs(a: tuple, b: tuple) -> None:
    from convaudit.analysis.census import _broadcast

    try:
        expected: object = tuple(torch.broadcast_shapes(a, b))
    except RuntimeError:
        expected = RuntimeError
    try:
        got: object = _broadcast(a, b)
    except RuntimeError:
        got = RuntimeError
    assert got == expected
