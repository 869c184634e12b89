"""Conv adapters: the registry, and every adapter against oracles that are not convaudit.

For each conv-like module (timm's ``Conv2dSame``, ``StdConv2d``, ``StdConv2dSame``, ``ScaledStdConv2d``,
``ScaledStdConv2dSame``, ``CondConv2d``, and a user's own class registered with ``register_conv``):

* the report's MACs equal ``FlopCounterMode``'s (FLOPs = 2·MACs) on an eval-mode real forward;
* the report's padding is the one the real forward applies (its ``aten.constant_pad_nd`` plus the conv's own);
* the weight convaudit factorises is the one the real forward convolves with, bit for bit;
* full-rank conversion is exact (relative error < 1e-4), at the analysed input and, for the run-time 'SAME'
  padding, at an input size never analysed; the written artifact (generated or replayed) reproduces it.

Single layers here; the timm models that use them are tested under ``-m zoo`` at the end.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

import convaudit
from convaudit.analysis.adapters import ConvAdapter, TFSameConv, conv_adapter, register_conv
from convaudit.analysis.separability import weight_of
from convaudit.conversion.artifact.writer import load_converted, write_artifact
from convaudit.errors import UsageError

timm_layers = pytest.importorskip("timm.layers")
aten = torch.ops.aten

EXACT = 1e-4  # convaudit.conversion.EXACT_TOLERANCE


# ---------------------------------------------------------------- oracles


class _Ops(TorchDispatchMode):
    """Every aten op of a real forward, with the innermost module it ran in (global module hooks)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.names = {id(m): n for n, m in model.named_modules()}
        self.stack: list[str] = []
        self.ops: dict[str, list[tuple[Any, tuple]]] = defaultdict(list)

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        if self.stack:
            self.ops[self.stack[-1]].append((func.overloadpacket, args))
        return func(*args, **(kwargs or {}))

    def run(self, model: nn.Module, *inputs: Any) -> Any:
        def enter(module: nn.Module, _: Any) -> None:
            self.stack.append(self.names.get(id(module), "?"))

        def leave(module: nn.Module, _: Any, __: Any) -> None:
            self.stack.pop()

        handles = [
            nn.modules.module.register_module_forward_pre_hook(enter),
            nn.modules.module.register_module_forward_hook(leave),
        ]
        try:
            with torch.no_grad(), self:
                return model(*inputs)
        finally:
            for h in handles:
                h.remove()


def real_padding(ops: list[tuple[Any, tuple]], nd: int) -> tuple[int, ...]:
    """The padding a module's real forward applied: its F.pad plus its conv's own, in the report's form."""
    pads = [0] * (2 * nd)
    conv_pad = [0] * nd
    for op, args in ops:
        if op is aten.constant_pad_nd:
            for i, p in enumerate(args[1]):
                pads[i] += int(p)
        elif op is aten.convolution:
            conv_pad = [int(p) for p in args[4]]
    # F.pad lists the last dimension first
    pairs = [(conv_pad[i] + pads[2 * (nd - 1 - i)], conv_pad[i] + pads[2 * (nd - 1 - i) + 1]) for i in range(nd)]
    return tuple(b for b, _ in pairs) if all(b == a for b, a in pairs) else tuple(v for p in pairs for v in p)


def real_weight(ops: list[tuple[Any, tuple]]) -> torch.Tensor:
    (weight,) = [args[1] for op, args in ops if op is aten.convolution]
    return weight


def flop_counts(model: nn.Module, *inputs: Any) -> dict[str, dict[Any, int]]:
    """FlopCounterMode's FLOPs per module and aten op on a real eval forward (module names without the root's)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*inputs)
    prefix = type(model).__name__ + "."
    return {k.removeprefix(prefix): dict(v) for k, v in counter.get_flop_counts().items()}


def rel(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.double() - want.double()).norm() / want.double().norm())


# ---------------------------------------------------------------- the layers


def _randomised(layer: nn.Module) -> nn.Module:
    """Seeded weights, and gains/biases away from their init (a gain of 1 would hide a wrong scale)."""
    with torch.no_grad():
        for name, p in layer.named_parameters():
            last = name.rsplit(".", 1)[-1]
            p.copy_(
                torch.rand_like(p) + 0.5 if last == "gain" else torch.randn_like(p) * (0.1 if last == "bias" else 1)
            )
    return layer


def same_conv(**kw: Any) -> Callable[[], nn.Module]:
    return lambda: timm_layers.Conv2dSame(8, 16, **kw)


#: name → (layer factory, kind). Inputs: 15×18 (odd and even: asymmetric 'SAME' in one dimension only).
LAYERS: dict[str, tuple[Callable[[], nn.Module], str]] = {
    "Conv2dSame-3x3/2": (same_conv(kernel_size=3, stride=2), "standard"),
    "Conv2dSame-5x5-dilated": (same_conv(kernel_size=5, dilation=2), "standard"),
    "Conv2dSame-1x3/2": (same_conv(kernel_size=(1, 3), stride=2), "standard"),  # k < stride: padding clamps at 0
    "Conv2dSame-grouped": (same_conv(kernel_size=3, stride=2, groups=2), "grouped"),
    "StdConv2d": (lambda: timm_layers.StdConv2d(8, 16, 3), "standard"),
    "StdConv2dSame-3x3/2": (lambda: timm_layers.StdConv2dSame(8, 16, 3, stride=2, bias=True), "standard"),
    "StdConv2dSame-static": (lambda: timm_layers.StdConv2dSame(8, 16, 3), "standard"),  # stride 1: static padding
    "ScaledStdConv2d-3x3/2": (lambda: timm_layers.ScaledStdConv2d(8, 16, 3, stride=2), "standard"),
    "ScaledStdConv2dSame-7x7/2": (lambda: timm_layers.ScaledStdConv2dSame(8, 16, 7, stride=2), "standard"),
}
#: the layers that pad 'SAME' at run time (the others pad statically, in the conv)
RUN_TIME_PADDING = {n for n in LAYERS if n.startswith("Conv2dSame")} | {
    "StdConv2dSame-3x3/2",
    "ScaledStdConv2dSame-7x7/2",
}
SHAPE = (2, 8, 15, 18)
OTHER_SHAPE = (1, 8, 20, 13)  # never analysed: the run-time padding must follow it


def build(name: str) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(_randomised(LAYERS[name][0]())).eval()


@pytest.mark.parametrize("name", list(LAYERS))
def test_report_padding_macs_and_weight_are_the_real_forwards(name: str) -> None:
    model = build(name)
    x = torch.randn(SHAPE)
    (layer,) = convaudit.analyze(model, (x,)).layers
    ops = _Ops(model)
    ops.run(model, x)
    assert layer.type.endswith(type(model[0]).__name__) and layer.kind == LAYERS[name][1]
    assert layer.candidate and layer.skip_reason is None, layer.skip_reason
    assert layer.padding == real_padding(ops.ops["0"], 2), (layer.padding, real_padding(ops.ops["0"], 2))
    assert 2 * layer.macs == flop_counts(model, x)["0"][aten.convolution]
    weight = weight_of(model, layer)
    assert weight is not None and torch.equal(weight, real_weight(ops.ops["0"]))


def test_the_padding_follows_each_input_and_is_asymmetric_only_where_tf_pads_so() -> None:
    model = build("Conv2dSame-3x3/2")
    for shape, padding in [((1, 8, 16, 16), (0, 1, 0, 1)), ((1, 8, 15, 15), (1, 1)), ((1, 8, 15, 16), (1, 1, 0, 1))]:
        (layer,) = convaudit.analyze(model, input_shape=shape).layers
        assert layer.padding == padding, shape
    assert model[0].padding == (0, 0)  # what the module's attribute says (the report said this before adapters)


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("order", ["dw_pw", "pw_dw"])
def test_full_rank_conversion_is_exact_at_any_input_size(name: str, order: str) -> None:
    model = build(name)
    x = torch.randn(SHAPE)
    c = convaudit.convert(model, (x,), rank="full", order=order)
    (converted,) = c.report.layers
    assert converted.relative_error is not None and converted.relative_error < EXACT
    assert c.report.output_error is not None and c.report.output_error < EXACT
    assert c.report.costs_match
    assert type(c.model[0]).__name__ == "SeparableConv2d"
    assert ("pad" in c.model[0]._modules) == (name in RUN_TIME_PADDING)
    x2 = torch.randn(OTHER_SHAPE)
    with torch.no_grad():
        assert rel(c.model(x2), model(x2)) < EXACT
    if "Std" in name:
        assert "inference-equivalent" in (converted.note or "")


def test_calibrated_init_sees_the_padded_inputs() -> None:
    model = build("Conv2dSame-3x3/2")
    x = torch.randn(SHAPE)
    svd = convaudit.convert(model, (x,), rank=1)
    # held-out inputs apart, so that the calibration fits all of x (a share of it would be held out otherwise)
    cal = convaudit.convert(model, (x,), rank=1, init="calibrated", calibration=[x], holdout=[torch.randn(SHAPE)])
    # fitted to the inputs the conv really sees, the calibrated layer is at least as good on them
    assert cal.report.layers[0].relative_error <= svd.report.layers[0].relative_error + 1e-9
    full = convaudit.convert(model, (x,), rank="full", init="calibrated", calibration=[x])
    assert full.report.layers[0].relative_error < EXACT


def test_depthwise_same_conv_is_listed_with_its_reason_and_padding() -> None:
    model = nn.Sequential(timm_layers.Conv2dSame(8, 8, 3, stride=2, groups=8)).eval()
    (layer,) = convaudit.analyze(model, input_shape=SHAPE).layers
    assert layer.kind == "depthwise" and not layer.candidate and layer.skip_reason.startswith("already depthwise")
    assert layer.padding == (1, 1, 0, 1)


# ---------------------------------------------------------------- CondConv: per-sample experts


class CondNet(nn.Module):
    def __init__(self, padding: str) -> None:
        super().__init__()
        self.route = nn.Linear(8, 4)
        self.conv = timm_layers.CondConv2d(8, 16, 3, stride=2, padding=padding, num_experts=4, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x, torch.sigmoid(self.route(x.mean((2, 3)))))


@pytest.mark.parametrize("padding", ["", "same"])
def test_condconv_is_a_conv_but_never_a_candidate(padding: str) -> None:
    torch.manual_seed(0)
    model = CondNet(padding).eval()
    x = torch.randn(SHAPE)
    a = convaudit.analyze(model, (x,))
    assert a.trace_path == "fx"  # a tracer leaf: its shape unpacking no longer defeats the trace
    (layer,) = a.layers
    assert layer.name == "conv" and layer.kind == "custom" and not layer.candidate
    assert layer.skip_reason.startswith("per-sample expert kernels (CondConv)")
    counts = flop_counts(model, x)
    assert 2 * layer.macs == counts["conv"][aten.convolution]  # the batched grouped conv
    assert 2 * a.totals.macs == sum(counts["Global"].values())  # and the expert mixing, in the totals
    ops = _Ops(model)
    ops.run(model, x)
    assert layer.padding == real_padding(ops.ops["conv"], 2)
    assert layer.params == sum(p.numel() for p in model.conv.parameters())
    c = convaudit.convert(model, (x,), rank="full")
    assert not c.report.layers and dict(c.report.skipped)["conv"] == layer.skip_reason


# ---------------------------------------------------------------- the registry


class UserSameConv(nn.Conv2d):
    """examples/residual_net.py's SameConv2d: TF 'SAME' padding from the input size, then a conv without padding."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.kernel_size
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class UserSameChild(UserSameConv):  # computes what its registered base computes
    pass


class UserSameOverride(UserSameConv):  # its own forward: not its base
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * 2


def test_a_users_conv_registered_once_is_a_candidate_and_converts_exactly() -> None:
    model = nn.Sequential(UserSameConv(8, 16, 3, stride=2)).eval()
    before = convaudit.analyze(model, input_shape=SHAPE).layers[0]
    assert before.kind == "custom" and before.skip_reason.startswith("custom subclass with its own forward")
    register_conv(UserSameConv, TFSameConv())
    with pytest.raises(UsageError, match="already has a conv adapter"):
        convaudit.register_conv(UserSameConv, TFSameConv())
    x = torch.randn(SHAPE)
    (layer,) = convaudit.analyze(model, (x,)).layers
    ops = _Ops(model)
    ops.run(model, x)
    assert layer.candidate and layer.kind == "standard" and layer.padding == real_padding(ops.ops["0"], 2)
    c = convaudit.convert(model, (x,), rank="full")
    assert c.report.output_error < EXACT
    assert isinstance(conv_adapter(UserSameChild(8, 16, 3)), TFSameConv)
    assert conv_adapter(UserSameOverride(8, 16, 3)) is None
    (override,) = convaudit.analyze(nn.Sequential(UserSameOverride(8, 16, 3)), input_shape=SHAPE).layers
    assert override.kind == "custom" and not override.candidate


class AttributeConv(nn.Module):
    """No nn.Conv2d at all: a conv by its attributes, which a ConvAdapter reads."""

    def __init__(self) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.groups = 8, 16, 1
        self.kernel_size, self.stride, self.padding, self.dilation = (3, 3), (2, 2), (1, 1), (1, 1)
        self.weight = nn.Parameter(torch.randn(16, 8, 3, 3))
        self.bias = nn.Parameter(torch.randn(16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


def test_a_conv_like_module_that_is_no_conv_subclass_is_listed_and_rewritten_in_place() -> None:
    register_conv(AttributeConv, ConvAdapter())
    torch.manual_seed(0)
    model = nn.Sequential(AttributeConv(), nn.ReLU()).eval()
    x = torch.randn(SHAPE)
    (layer,) = convaudit.analyze(model, (x,)).layers
    assert (layer.name, layer.op, layer.kind, layer.candidate) == ("0", "module", "standard", True)
    assert 2 * layer.macs == flop_counts(model, x)["0"][aten.convolution]
    c = convaudit.convert(model, (x,), rank="full")
    assert type(c.model[0]).__name__ == "SeparableConv2d"
    assert c.report.layers[0].relative_error < EXACT  # checked alone on its own inputs, as a module
    assert c.report.output_error < EXACT and c.report.costs_match


@pytest.mark.parametrize(
    "cls,adapter,message",
    [
        (nn.Conv2d, ConvAdapter(), "already has a conv adapter"),
        (timm_layers.Conv2dSame, TFSameConv(), "already has a conv adapter"),
        (object, ConvAdapter(), "is not an nn.Module class"),
        (UserSameChild, "same", "must be a convaudit.ConvAdapter"),
    ],
)
def test_register_conv_refuses(cls: Any, adapter: Any, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        convaudit.register_conv(cls, adapter)


def test_timm_is_never_imported_for_the_adapters() -> None:
    code = textwrap.dedent(
        """
        import sys, torch, torch.nn as nn, convaudit
        m = nn.Sequential(nn.Conv2d(3, 8, 3))
        convaudit.analyze(m, input_shape=(1, 3, 8, 8))
        convaudit.convert(m, torch.randn(1, 3, 8, 8), rank="full")
        assert "timm" not in sys.modules, "timm was imported"
        import timm.layers
        from convaudit.analysis.adapters import conv_adapter
        assert type(conv_adapter(timm.layers.ScaledStdConv2dSame(3, 8, 3))).__name__ == "StandardizedConv"
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


# ---------------------------------------------------------------- the artifact


#: model sources for the artifact's replay; "generated": every conv is rewritten, so model.py writes it all;
#: "replay": a depthwise Conv2dSame stays, which model.py cannot write, so it rebuilds from this source.
NETS = {
    "generated": """
import torch.nn as nn
from timm import layers


def build_model():
    return nn.Sequential(
        layers.Conv2dSame(3, 8, 3, stride=2),
        nn.ReLU(),
        layers.ScaledStdConv2dSame(8, 16, 3, stride=2),
        nn.ReLU(),
        layers.StdConv2d(16, 16, 3),
    )
""",
    "replay": """
import torch.nn as nn
from timm import layers


def build_model():
    return nn.Sequential(
        layers.Conv2dSame(3, 8, 3, stride=2),
        layers.Conv2dSame(8, 8, 3, stride=2, groups=8),
        layers.ScaledStdConv2d(8, 16, 3),
    )
""",
}


@pytest.mark.parametrize("mode", list(NETS))
def test_the_artifact_reproduces_the_conversion(mode: str, tmp_path: Path) -> None:
    from convaudit.sources import load

    source = tmp_path / "net.py"
    source.write_text(NETS[mode])
    torch.manual_seed(0)
    model = _randomised(load(str(source)).model).eval()
    x = torch.randn(1, 3, 32, 40)
    c = convaudit.convert(model, (x,), rank="full")
    assert c.report.output_error < EXACT
    out = write_artifact(tmp_path / "out", c.model, c.report, c.plan, ((x,), {}), source=str(source))
    text = (out / "model.py").read_text()
    assert ("class ConvertedModel" in text) == (mode == "generated"), text[-600:]
    if mode == "generated":
        assert "same_pad=((3, 3), (2, 2), (1, 1))" in text
    loaded = load_converted(out)
    for shape in [(1, 3, 32, 40), (2, 3, 27, 33)]:
        x2 = torch.randn(shape)
        with torch.no_grad():
            want = c.model.eval()(x2)
            assert torch.allclose(loaded(x2), want, rtol=1e-5, atol=1e-6)
            assert rel(want, model(x2)) < EXACT


# ---------------------------------------------------------------- the timm models that use them (zoo)

#: the smallest timm model using each class: name → (class it is here for, input shape, create_model kwargs)
ZOO: dict[str, tuple[str, tuple[int, ...], dict[str, Any]]] = {
    "tf_mobilenetv3_small_minimal_100": ("Conv2dSame", (1, 3, 96, 112), {}),
    "tf_mixnet_s": ("MixedConv2d", (1, 3, 96, 112), {}),
    "tf_efficientnet_cc_b0_4e": ("CondConv2d", (2, 3, 64, 80), {}),
    "resnetv2_50x1_bit": ("StdConv2d", (1, 3, 64, 80), {}),
    "vit_tiny_r_s16_p8_224": ("StdConv2dSame", (1, 3, 96, 96), {"img_size": 96}),
    "nf_resnet26": ("ScaledStdConv2d", (1, 3, 64, 80), {}),
    "dm_nfnet_f0": ("ScaledStdConv2dSame", (1, 3, 64, 80), {}),
}
ADAPTED = {"Conv2dSame", "StdConv2d", "StdConv2dSame", "ScaledStdConv2d", "ScaledStdConv2dSame", "CondConv2d"}


def build_timm(name: str) -> nn.Module:
    import timm

    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, **ZOO[name][2]).eval()


def conv_like(model: nn.Module) -> dict[str, nn.Module]:
    """The modules a conv list must hold: every torch conv module, and timm's CondConv2d."""
    from torch.nn.modules.conv import _ConvNd

    return {n: m for n, m in model.named_modules() if isinstance(m, _ConvNd) or type(m).__name__ == "CondConv2d"}


@pytest.fixture(scope="module", params=list(ZOO))
def zoo_case(request: pytest.FixtureRequest) -> tuple[str, nn.Module, torch.Tensor, Any]:
    name = request.param
    model = build_timm(name)
    x = torch.randn(ZOO[name][1], generator=torch.Generator().manual_seed(1))
    return name, model, x, convaudit.analyze(model, (x,), graph=False)


@pytest.mark.zoo
def test_timm_models_list_their_adapted_convs_with_real_macs_and_padding(zoo_case: Any) -> None:
    name, model, x, a = zoo_case
    kind = ZOO[name][0]
    layers = {layer.name: layer for layer in a.layers if layer.op == "module"}
    convs = conv_like(model)
    assert set(layers) == set(convs), (
        f"{name}: only ours {set(layers) - set(convs)}, only the model's {set(convs) - set(layers)}"
    )
    counts = flop_counts(model, x)
    wrong = {
        n: (layer.macs, counts[n][aten.convolution] // 2)
        for n, layer in layers.items()
        if 2 * layer.macs != counts[n][aten.convolution]
    }
    assert not wrong, f"{name}: per-conv MACs (ours, FlopCounterMode/2) differ: {list(wrong.items())[:5]}"
    ops = _Ops(model)
    ops.run(model, x)
    adapted = {n: layer for n, layer in layers.items() if type(convs[n]).__name__ in ADAPTED}
    assert adapted, f"{name} has no conv of timm's adapted classes"
    wrong_pad = {
        n: (layer.padding, real_padding(ops.ops[n], 2))
        for n, layer in adapted.items()
        if layer.padding != real_padding(ops.ops[n], 2)
    }
    assert not wrong_pad, f"{name}: padding (ours, the real forward's) differs: {list(wrong_pad.items())[:5]}"
    if kind == "MixedConv2d":
        mixed = [n for n, m in model.named_modules() if type(m).__name__ == "MixedConv2d"]
        assert mixed and all(f"{n}.{child}" in layers for n in mixed for child in model.get_submodule(n)._modules)
        assert not any(n in layers for n in mixed)  # the container is not itself a conv
    elif kind == "CondConv2d":
        cond = [layer for n, layer in adapted.items() if type(convs[n]).__name__ == "CondConv2d"]
        assert len(cond) == 24 and all(not c.candidate and c.skip_reason.startswith("per-sample") for c in cond)
    else:  # its class's convs are candidates now (before adapters: none of them was)
        assert any(layer.candidate for n, layer in adapted.items() if type(convs[n]).__name__ == kind), name


@pytest.mark.zoo
def test_timm_models_convert_exactly_at_full_rank(zoo_case: Any) -> None:
    name, model, x, a = zoo_case
    c = convaudit.convert(model, (x,), rank="full")
    r = c.report
    assert r.costs_match and r.output_error is not None and r.output_error < EXACT, (name, r.output_error)
    worst = max(layer.relative_error or 0.0 for layer in r.layers)
    assert worst < EXACT, (name, worst)
    assert len(r.layers) == len(a.candidates) > 0
    if name != "vit_tiny_r_s16_p8_224":  # its position embedding fixes the input size
        shape = (1, 3, ZOO[name][1][2] + 7, ZOO[name][1][3] - 5)  # never analysed: 'SAME' padding follows it
        x2 = torch.randn(shape, generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            assert rel(c.model.eval()(x2), model(x2)) < EXACT, name


@pytest.mark.zoo
@pytest.mark.parametrize("name", ["tf_mobilenetv3_small_minimal_100"])
def test_timm_artifact_reloads_to_the_conversion(name: str, tmp_path: Path) -> None:
    source = tmp_path / "net.py"
    source.write_text(
        f"import timm\n\n\ndef build_model():\n    return timm.create_model({name!r}, pretrained=False)\n"
    )
    model, x = build_timm(name), torch.randn(ZOO[name][1])
    c = convaudit.convert(model, (x,), rank="full")
    out = write_artifact(tmp_path / "out", c.model, c.report, c.plan, ((x,), {}), source=str(source))
    loaded = load_converted(out)
    x2 = torch.randn(1, 3, 75, 61)
    with torch.no_grad():
        assert torch.allclose(loaded(x2), c.model.eval()(x2), rtol=1e-5, atol=1e-6)
