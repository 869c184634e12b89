"""Path selection: fx, else the forward under fake tensors (hooks), else for real; why, and where it stopped.

Oracles: per-conv MACs against FlopCounterMode on a real eval-mode forward of the same inputs (the real
path's seeded ones: ``materialize``), and the model's state bit for bit afterwards.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections import OrderedDict

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

import convaudit
from convaudit.analysis.forward import ForwardFailed, run_fake
from convaudit.analysis.paths import ACTIVATION_FACTOR, real_run_bytes
from convaudit.analysis.propagation import FakeContext
from convaudit.errors import ShapeError, TraceError, UsageError
from convaudit.sources.inputs import materialize
from tests.fixtures import forwards, nets
from tests.test_hostile import BusyNet, assert_same_state
from tests.test_hostile import state_of as hostile_state


def conv_macs_by_module(model: nn.Module, *args: object) -> dict[str, int]:
    """FlopCounterMode's convolution MACs per module name (its subtree), on an eval-mode real forward."""
    model = copy.deepcopy(model).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*args)
    root = type(model).__name__
    out = {}
    for key, counts in counter.get_flop_counts().items():
        name = "" if key == root else key.removeprefix(f"{root}.")
        if key != "Global":
            out[name] = counts.get(torch.ops.aten.convolution, 0) // 2
    return out


def state_of(model: nn.Module) -> dict:
    """What analysis must leave as it was: tensors bit for bit, and every module's attributes by identity."""
    return {
        "tensors": {k: v.clone() for k, v in model.state_dict().items()},
        "ids": {k: id(v) for k, v in model.state_dict(keep_vars=True).items()},
        "attrs": {n: {k: id(v) for k, v in vars(m).items()} for n, m in model.named_modules()},
        "training": [m.training for m in model.modules()],
    }


def assert_as_found(before: dict, model: nn.Module) -> None:
    after = state_of(model)
    assert after["ids"] == before["ids"] and after["attrs"] == before["attrs"]
    assert after["training"] == before["training"]
    changed = [k for k, v in before["tensors"].items() if not torch.equal(v, after["tensors"][k])]
    assert not changed, changed
    assert not torch.nn.modules.module._global_forward_hooks
    assert not torch.nn.modules.module._global_forward_pre_hooks


# ---------------------------------------------------------------- the real path


def test_value_dependent_branch_runs_for_real_with_exact_macs() -> None:
    model = forwards.Gate().train()  # BatchNorm in train mode would update its statistics if analysis let it
    before = state_of(model)
    a = convaudit.analyze(model, input_shape=(1, 3, 16, 16))
    assert_as_found(before, model)
    assert a.trace_path == "real"
    note = a.trace_note
    assert "symbolic tracing failed" in note and "_local_scalar_dense" in note and "the forward of Gate" in note
    assert "ran for real on seeded random inputs" in note and "under no_grad" in note

    x = materialize(torch.empty(1, 3, 16, 16, device="meta"))  # what the real path ran on
    oracle = conv_macs_by_module(model, x)
    modules = {layer.name: layer.macs for layer in a.layers if layer.op == "module"}
    branch = "body" if "body" in modules else "skip"  # whichever the seeded input took
    assert modules == {"stem": oracle["stem"], branch: oracle[branch]}
    assert a.totals.conv_macs == oracle[""] and a.totals.macs == oracle[""]
    assert a.graph is None


def test_functional_convs_on_the_real_path() -> None:
    a = convaudit.analyze(forwards.Gate(), input_shape=(1, 3, 16, 16))
    by = {layer.name: layer for layer in a.layers if layer.op == "functional"}
    assert set(by) == {"weight", "functional conv #1"}  # by its parameter; by the module it runs in (the root)
    assert by["weight"].params == 8 * 8 * 9 and by["weight"].macs == 16 * 16 * 8 * 8 * 9
    assert not by["weight"].candidate and "without a symbolic trace" in by["weight"].skip_reason
    computed = by["functional conv #1"]
    assert not computed.candidate and "computed in forward" in computed.skip_reason and computed.params == 0


@pytest.mark.parametrize("limit", [None, 200_000])
def test_the_memory_guard_refuses_before_running(limit: int | None) -> None:
    shape = (1, 3, 4096, 4096) if limit is None else (1, 3, 64, 64)
    keywords = {} if limit is None else {"real_run_max_bytes": limit}
    with pytest.raises(TraceError) as raised:
        convaudit.analyze(forwards.Gate(), input_shape=shape, **keywords)
    line = str(raised.value)
    assert "must run for real" in line and "real_run_max_bytes" in line and "\n" not in line
    assert f"give a smaller --input-shape than {','.join(map(str, shape))}" in line


def test_the_estimate_counts_weights_inputs_and_activations() -> None:
    model = nets.Seed64()
    x = torch.empty(1, 64, 8, 8, device="meta")
    weights, inputs = 64 * 64 * 9 * 4, 64 * 8 * 8 * 4
    assert real_run_bytes(model, (x,), {}, 0) == weights + inputs + ACTIVATION_FACTOR * inputs
    assert real_run_bytes(model, (x,), {}, 10**9) == weights + inputs + 10**9  # what the fake run made counts


def test_the_real_run_stops_at_the_limit() -> None:
    model = forwards.Grows()
    before = state_of(model)
    # the estimate (64 input-sized tensors) fits 8 MiB; the 1000× repeat does not, and the run stops there
    with pytest.raises(TraceError, match=r"passed the memory limit \(8 MiB.*the forward of Grows.*--input-shape"):
        convaudit.analyze(model, input_shape=(1, 3, 64, 64), real_run_max_bytes=8 * 2**20)
    assert_as_found(before, model)
    assert convaudit.analyze(model, input_shape=(1, 3, 64, 64)).trace_path == "real"  # 4 GiB: fine


def test_real_inputs_given_are_not_written() -> None:
    class Writes(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum() > -1e9:
                x.mul_(2)  # in place, on the input
            return self.conv(x)

    x = torch.randn(1, 3, 8, 8)
    kept = x.clone()
    a = convaudit.analyze(Writes(), (x,))
    assert a.trace_path == "real" and torch.equal(x, kept)
    assert "ran for real on its inputs" in a.trace_note  # real inputs were given: those ran


# ---------------------------------------------------------------- falling back from fx


def test_a_trace_that_calls_other_convs_falls_back() -> None:
    model = forwards.ProxyBranch()
    x = torch.randn(1, 3, 8, 8)
    a = convaudit.analyze(model, (x,))
    assert a.trace_path == "hooks"
    assert "conv_a: traced ×0, run ×1, conv_b: traced ×1, run ×0" in a.trace_note
    assert [layer.name for layer in a.layers] == ["conv_a"] and a.uncalled_convs == ("conv_b",)
    assert a.layers[0].macs == conv_macs_by_module(model, x)["conv_a"]


def test_a_trace_whose_shapes_disagree_falls_back() -> None:
    model = forwards.DroppedSkip()
    x = torch.randn(1, 3, 8, 8)
    a = convaudit.analyze(model, (x,))
    assert a.trace_path == "hooks"
    assert "shapes did not propagate through the symbolic trace" in a.trace_note and "'head'" in a.trace_note
    oracle = conv_macs_by_module(model, x)
    assert {layer.name: layer.macs for layer in a.layers} == {n: oracle[n] for n in ("down", "up", "head")}


def test_a_trace_that_agrees_stays_on_fx_without_a_second_run(monkeypatch: pytest.MonkeyPatch) -> None:
    import convaudit.analysis.paths as paths

    def no_forward(*args: object, **kwargs: object) -> None:
        raise AssertionError("a trace calling every conv is not cross-checked by a forward")

    monkeypatch.setattr(paths, "run_fake", no_forward)
    a = convaudit.analyze(nets.SharedConv(), input_shape=(1, 8, 10, 10))
    assert a.trace_path == "fx" and a.trace_note is None


def test_inputs_that_fit_no_path_keep_the_precise_error() -> None:
    # fx and the forward both stop at 'stem': fx's message (our shape rule's words) is the one raised
    model = nn.Sequential(OrderedDict(stem=nn.Conv2d(3, 8, 3), act=nn.ReLU()))
    with pytest.raises(ShapeError, match=r"shapes stop matching at 'stem' \(Conv2d.*expects 3 input channels, got 4"):
        convaudit.analyze(model, input_shape=(1, 4, 8, 8))
    with pytest.raises(ShapeError) as raised:
        convaudit.analyze(forwards.DroppedSkip(), input_shape=(1, 4, 8, 8))
    assert raised.value.module == "down"


# ---------------------------------------------------------------- the hook path


def test_functional_convs_on_the_hook_path() -> None:
    model = forwards.ShapeBranch()
    x = torch.randn(1, 3, 16, 16)
    a = convaudit.analyze(model, (x,))
    assert a.trace_path == "hooks" and "symbolic tracing failed" in a.trace_note
    names = [layer.name for layer in a.layers]
    assert names == ["stem", "mixer (functional conv #1)", "mixer (functional conv #2)", "head"]
    oracle = conv_macs_by_module(model, x)
    assert sum(layer.macs for layer in a.layers if layer.name.startswith("mixer")) == oracle["mixer"]
    assert a.totals.conv_macs == oracle[""]
    mixed = a.layers[1]
    assert not mixed.candidate and "computed in forward" in mixed.skip_reason
    assert mixed.source and mixed.source.endswith("forwards.py:" + mixed.source.rsplit(":", 1)[1])


def test_forcing_the_hook_path_lists_what_fx_lists() -> None:
    from tests.test_analysis_engine import load_example

    loaded = load_example("residual_net")
    fx = convaudit.analyze(loaded.model, loaded.args)
    hooks = convaudit.analyze(loaded.model, loaded.args, trace_path="hooks")
    assert (fx.trace_path, hooks.trace_path) == ("fx", "hooks") and "trace_path=hooks" in hooks.trace_note
    assert [(x.name, x.op, x.calls, x.macs) for x in hooks.layers] == [
        (x.name, x.op, x.calls, x.macs) for x in fx.layers
    ]
    assert hooks.totals.macs == fx.totals.macs
    head = next(layer for layer in hooks.layers if layer.name == "head")  # functional, on a parameter
    assert not head.candidate and "without a symbolic trace" in head.skip_reason


def test_bad_trace_path_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="trace_path 'graph'"):
        convaudit.analyze(nets.Seed64(), input_shape=(1, 64, 8, 8), trace_path="graph")
    with pytest.raises(UsageError, match="real_run_max_bytes"):
        convaudit.analyze(nets.Seed64(), input_shape=(1, 64, 8, 8), real_run_max_bytes=0)


# ---------------------------------------------------------------- where execution stopped


@pytest.mark.parametrize("reads_values,on", [(False, "under fake tensors"), (True, "on the real run")])
def test_errors_name_the_innermost_module(reads_values: bool, on: str) -> None:
    model = forwards.Breaks(reads_values)
    before = state_of(model)
    with pytest.raises(ShapeError) as raised:  # 'body.zeta' ran last-but-one and sorts last: not it
        convaudit.analyze(model, input_shape=(1, 3, 8, 8))
    assert f"the forward failed {on} in 'body.alpha' (Linear)" in str(raised.value)
    assert raised.value.module == "body.alpha"
    assert_as_found(before, model)


def test_the_stack_survives_a_module_that_raises_and_is_caught() -> None:
    class Flaky(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise ValueError("no")

    class Tolerant(nn.Module):
        def __init__(self, raise_here: bool) -> None:
            super().__init__()
            self.flaky, self.conv, self.tail = Flaky(), nn.Conv2d(3, 4, 3), nn.Linear(3, 3)
            self.raise_here = raise_here

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            with contextlib.suppress(ValueError):
                x = self.flaky(x)
            x = self.conv(x)
            if self.raise_here:  # in the root's own code, after 'flaky' raised and was caught
                raise RuntimeError("root")
            return self.tail(x)  # the Linear sees 6 features, not 3

    ctx = FakeContext()
    for raise_here, where in [(False, "tail"), (True, "")]:
        with pytest.raises(ForwardFailed) as raised:
            run_fake(Tolerant(raise_here), (ctx.empty((1, 3, 8, 8), torch.float32),), {}, ctx)
        assert raised.value.module == where
        assert raised.value.where == ("'tail' (Linear)" if where else "the forward of Tolerant")


class ValueBusy(BusyNet):
    """test_hostile's BusyNet (side effects on itself, hooks of its own) with a branch on a value."""

    def forward(self, x: torch.Tensor) -> object:
        if x.mean() > -100:  # reads a value: the real path
            x = x * 1.0
        return super().forward(x)


def test_the_real_path_leaves_a_busy_model_as_found() -> None:
    model = ValueBusy()  # side effects on itself, hooks of its own, BatchNorm in train mode
    before = hostile_state(model)
    a = convaudit.analyze(model, (torch.randn(1, 3, 8, 8),), train_mode=True)
    assert a.trace_path == "real" and [layer.name for layer in a.layers] == ["conv1", "conv2"]
    assert_same_state(before, hostile_state(model))
    torch.save(model, io.BytesIO())


# ---------------------------------------------------------------- zoo models (untrained, nothing downloads)


def assert_conv_macs_match(a: convaudit.Analysis, oracle: dict[str, int]) -> None:
    modules = {layer.name: layer.macs for layer in a.layers if layer.op == "module"}
    assert modules == {name: oracle[name] for name in modules}
    assert a.totals.conv_macs == oracle[""]


@pytest.mark.zoo
def test_torchvision_detection_runs_for_real() -> None:
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

    model = fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None)  # train mode, as built
    image = torch.rand(3, 320, 320, generator=torch.Generator().manual_seed(0))
    before = state_of(model)
    a = convaudit.analyze(model, ([image],))
    assert_as_found(before, model)
    assert a.trace_path == "real" and "nonzero" in a.trace_note and a.input_shapes == ((3, 320, 320),)
    assert_conv_macs_match(a, conv_macs_by_module(model, [image]))
    assert len(a.layers) > 60


@pytest.mark.zoo
@pytest.mark.parametrize("path", ["fx", "hooks", "real"])
def test_timm_condconv_on_every_path(path: str) -> None:
    timm = pytest.importorskip("timm")
    model = timm.create_model("tf_efficientnet_cc_b0_4e")
    before = state_of(model)
    a = convaudit.analyze(model, input_shape=(1, 3, 224, 224), trace_path=path)
    assert_as_found(before, model)
    assert a.trace_path == path
    x = materialize(torch.empty(1, 3, 224, 224, device="meta"))
    assert_conv_macs_match(a, conv_macs_by_module(model, x))  # 384,534,752: the experts' mixing is no conv MAC
    assert a.totals.conv_macs == 384_534_752
