"""Cost formulas against oracles: the seed lesson's worked numbers and PyTorch's FlopCounterMode."""

import math

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode

from convaudit.analysis.rules.costs import MAC_RULES
from convaudit.analysis.rules.formulas import (
    conv_macs,
    conv_params,
    dw_pw_cost,
    exact_multiplier,
    matmul_macs,
    pw_dw_cost,
)
from convaudit.analysis.rules.registry import Registry


def measured_macs(module: nn.Module, shape: tuple[int, ...]) -> int:
    """FlopCounterMode's FLOPs / 2 for one forward, under fake tensors (no real compute)."""
    with FakeTensorMode(allow_non_fake_inputs=True):
        x = torch.empty(shape)
        with FlopCounterMode(display=False) as counter:
            module(x)
    return counter.get_total_flops() // 2


# ---------------------------------------------------------------- the seed lesson, verbatim


def test_seed_64_layer() -> None:
    assert conv_params(64, 64, 1, (3, 3), bias=False) == 36_864
    f = dw_pw_cost((1, 64, 56, 56), (1, 64, 56, 56), 64, 64, 1, (3, 3), 1, False, 4)
    assert (f.dw_params, f.pw_params, f.params) == (576, 4_096, 4_672)
    assert f"{f.params / 36_864:.3f}" == "0.127"


def test_seed_256_layer() -> None:
    assert conv_params(256, 256, 1, (3, 3), bias=False) == 589_824
    f = dw_pw_cost((1, 256, 14, 14), (1, 256, 14, 14), 256, 256, 1, (3, 3), 1, False, 4)
    assert (f.dw_params, f.pw_params, f.params) == (2_304, 65_536, 67_840)
    assert f.params / 589_824 == pytest.approx(1 / 256 + 1 / 9)
    assert f"{f.params / 589_824:.3f}" == "0.115"


@given(cout=st.integers(1, 512), cin=st.integers(1, 64), k=st.integers(2, 7), m=st.integers(1, 4))
def test_dw_pw_ratio_formula(cout: int, cin: int, k: int, m: int) -> None:
    """ratio to standard = m·(1/Cout + 1/k²) for params and for MACs (stride 1, no bias)."""
    shape = (1, cin, 9, 9)
    f = dw_pw_cost(shape, (1, cout, 9, 9), cin, cout, 1, (k, k), m, False, 4)
    std_macs = conv_macs((1, cout, 9, 9), shape, cin, cout, 1, (k, k), False)
    assert f.params / conv_params(cin, cout, 1, (k, k), False) == pytest.approx(m * (1 / cout + 1 / k**2))
    assert f.macs / std_macs == pytest.approx(m * (1 / cout + 1 / k**2))


# ---------------------------------------------------------------- against FlopCounterMode

conv_configs = st.fixed_dictionaries(
    {
        "dims": st.sampled_from([1, 2, 3]),
        "groups": st.sampled_from([1, 2, 4]),
        "cin_per_group": st.integers(1, 4),
        "cout_per_group": st.integers(1, 4),
        "k": st.integers(1, 4),
        "stride": st.integers(1, 3),
        "dilation": st.integers(1, 2),
        "padding": st.integers(0, 2),
        "transposed": st.booleans(),
        "batch": st.integers(1, 3),
        "size": st.integers(8, 13),
    }
)


def _conv(c: dict) -> tuple[nn.Module, tuple[int, ...]]:
    cin, cout = c["cin_per_group"] * c["groups"], c["cout_per_group"] * c["groups"]
    nd = c["dims"]
    name = f"ConvTranspose{nd}d" if c["transposed"] else f"Conv{nd}d"
    module = getattr(nn, name)(
        cin, cout, c["k"], stride=c["stride"], padding=c["padding"], dilation=c["dilation"], groups=c["groups"]
    )
    return module, (c["batch"], cin) + (c["size"],) * nd


@settings(max_examples=60, deadline=None)
@given(conv_configs)
def test_conv_macs_equal_flop_counter(c: dict) -> None:
    module, shape = _conv(c)
    with FakeTensorMode(allow_non_fake_inputs=True):
        out = module(torch.empty(shape))
    m = module
    ours = conv_macs(tuple(out.shape), shape, m.in_channels, m.out_channels, m.groups, m.kernel_size, m.transposed)
    assert ours == measured_macs(module, shape)


@settings(max_examples=40, deadline=None)
@given(conv_configs.filter(lambda c: not c["transposed"]), st.integers(1, 3))
def test_separable_costs_equal_built_modules(c: dict, m: int) -> None:
    """dw_pw_cost/pw_dw_cost equal params and FlopCounterMode MACs of the modules they describe."""
    conv, shape = _conv(c)
    nd, g, k = c["dims"], conv.groups, conv.kernel_size
    Conv = getattr(nn, f"Conv{nd}d")
    kw = {"stride": conv.stride, "padding": conv.padding, "dilation": conv.dilation}
    dw = Conv(conv.in_channels, conv.in_channels * m, k, groups=conv.in_channels, bias=False, **kw)
    pw = Conv(conv.in_channels * m, conv.out_channels, 1, groups=g, bias=True)
    dwpw = nn.Sequential(dw, pw)
    pw_first = nn.Sequential(
        Conv(conv.in_channels, conv.out_channels, 1, groups=g, bias=False),
        Conv(conv.out_channels, conv.out_channels, k, groups=conv.out_channels, bias=True, **kw),
    )
    with FakeTensorMode(allow_non_fake_inputs=True):
        out_shape = tuple(conv(torch.empty(shape)).shape)
    args = (shape, out_shape, conv.in_channels, conv.out_channels, g, k)
    f = dw_pw_cost(*args, m, True, 4)
    assert f.params == sum(p.numel() for p in dwpw.parameters())
    assert f.macs == measured_macs(dwpw, shape)
    p = pw_dw_cost(*args, True, 4)
    assert p.params == sum(p_.numel() for p_ in pw_first.parameters())
    assert p.macs == measured_macs(pw_first, shape)


def test_exact_multiplier() -> None:
    assert exact_multiplier(64, 64, 1, (3, 3)) == 9
    assert exact_multiplier(64, 4, 1, (3, 3)) == 4
    assert exact_multiplier(8, 8, 4, (5,)) == 2
    assert exact_multiplier(4, 64, 1, (3, 3), "pw_dw") == 4  # pw_dw: bounded by Cin/g
    assert exact_multiplier(64, 4, 1, (3, 3), "pw_dw") == 9


@pytest.mark.parametrize("a,b", [((3, 4), (4, 5)), ((2, 3, 4), (2, 4, 5)), ((7, 1, 3, 4), (6, 4, 2)), ((4,), (4, 3))])
def test_matmul_macs(a: tuple, b: tuple) -> None:
    with FakeTensorMode(), FlopCounterMode(display=False) as counter:
        torch.matmul(torch.empty(a), torch.empty(b))
    assert matmul_macs(a, b) == counter.get_total_flops() // 2


# ---------------------------------------------------------------- the registry


def test_duplicate_registration_raises() -> None:
    reg: Registry = Registry("test")
    reg.register(nn.ReLU)(lambda call: 0)
    with pytest.raises(ValueError, match="already registered"):
        reg.register(nn.ReLU)(lambda call: 1)


def test_subclass_with_own_forward_is_not_its_base() -> None:
    class Plain(nn.Conv2d):
        pass

    class Same(nn.Conv2d):
        def forward(self, x):  # pragma: no cover - never run
            return x

    assert MAC_RULES.lookup(Plain(1, 1, 3)) is MAC_RULES.lookup(nn.Conv2d(1, 1, 3)) is not None
    assert MAC_RULES.lookup(Same(1, 1, 3)) is None


def test_a_remembered_lookup_follows_registrations_and_patched_forwards(monkeypatch: pytest.MonkeyPatch) -> None:
    """Oracle: each answer is what a fresh registry with the same rules gives (a walk of the MRO)."""
    from convaudit.analysis.rules import registry as registry_module

    class Plain(nn.Conv2d):
        pass

    def fresh(rules: dict, module: nn.Module) -> object:
        reg: Registry = Registry("fresh")
        for key, rule in rules.items():
            reg.register(key)(rule)
        return reg.lookup_or_missing(module)

    def conv_rule(call: object) -> int:
        return 1

    def plain_rule(call: object) -> int:
        return 2

    rules: dict = {nn.Conv2d: conv_rule}
    reg: Registry = Registry("test")
    reg.register(nn.Conv2d)(conv_rule)
    plain = Plain(1, 1, 3)
    assert reg.lookup_or_missing(plain) is fresh(rules, plain) is conv_rule
    monkeypatch.setattr(Plain, "forward", lambda self, x: x)  # now its own forward: not its base
    assert reg.lookup_or_missing(plain) is fresh(rules, plain) is registry_module.MISSING
    reg.register(Plain)(plain_rule)
    rules[Plain] = plain_rule
    assert reg.lookup_or_missing(plain) is fresh(rules, plain) is plain_rule
    monkeypatch.setattr(registry_module, "_MEMO_TYPES", 3)  # types come and go: the memo starts over
    kinds = [type(f"Conv{i}", (nn.Conv2d,), {}) for i in range(7)]
    for kind in kinds * 2:
        assert reg.lookup_or_missing(kind(1, 1, 1)) is conv_rule
    assert len(reg._by_type) <= 3


def test_override_none_means_ignore() -> None:
    overrides = {nn.Linear: None}
    assert MAC_RULES.lookup(nn.Linear(2, 2), overrides) is None
    assert MAC_RULES.lookup(nn.Linear(2, 2)) is not None


def test_prod_is_exact_for_large_counts() -> None:
    big = conv_macs((1, 512, 4096, 4096), (1, 512, 4096, 4096), 512, 512, 1, (3, 3), False)
    assert big == 4096 * 4096 * 512 * 512 * 9 and isinstance(big, int) and big > 2**40
    assert math.prod((4096, 4096)) == 4096**2


class ZeroMacOps(nn.Module):
    """Ops the zoo runs that do no multiply-accumulate but carry no pointwise tag in aten (or are in place)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.act = nn.Hardswish(inplace=True)  # aten.hardswish_ (efficientvit_b0)
        self.prelu = nn.PReLU(4)  # aten._prelu_kernel (monai's UNet)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.act(self.conv(x)))
        return x.clone().as_strided_(x.shape, x.stride())  # aten.as_strided_ (efficientvit_m0, smp's UPerNet)


@pytest.mark.parametrize("path", ["fx", "hooks"])
def test_zero_mac_ops_and_their_in_place_forms_are_costed(path: str) -> None:
    import convaudit

    a = convaudit.analyze(ZeroMacOps(), input_shape=(1, 3, 8, 8), trace_path=path)
    assert a.uncosted_ops == ()
    assert a.totals.macs == measured_macs(ZeroMacOps(), (1, 3, 8, 8))


class ValueGatedAttention(nn.Module):
    """Self-attention behind a branch on a value: the real path, where eval + no_grad take its fused op."""

    def __init__(self, heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(16, heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.mean() > -100:
            x = x * 1.0
        return self.attn(x, x, x, need_weights=False)[0]


@pytest.mark.parametrize("heads", [2, 4])  # the fused op needs an even number of heads
def test_fused_multihead_attention_costs_what_the_unfused_path_does(heads: int) -> None:
    from torch.utils.flop_counter import sdpa_flop_count

    import convaudit

    def cpu_sdpa(q: tuple, k: tuple, v: tuple, *args: object, out_shape: object = None, **kwargs: object) -> int:
        return sdpa_flop_count(q, k, v)  # FlopCounterMode counts the CUDA attention kernels only

    model = ValueGatedAttention(heads).eval()
    x = torch.randn(2, 20, 16)
    with torch.no_grad(), FlopCounterMode(display=False) as fused:
        model(x)
    assert fused.get_total_flops() == 0  # the fused op: FlopCounterMode sees no matmul
    a = convaudit.analyze(model, (x,))
    assert a.trace_path == "real" and a.uncosted_ops == ()
    unfused = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_sdpa}
    with FlopCounterMode(display=False, custom_mapping=unfused) as counter:  # with grad: the unfused path
        model(x)
    assert a.totals.macs == counter.get_total_flops() // 2 > 0
