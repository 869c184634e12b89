"""Replacement layers: exact at full rank over random conv configurations, best fits below it."""

import pytest
import torch
import torch.nn as nn
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from convaudit.conversion.layers import SeparableConv, SeparableConv2d
from convaudit.errors import UsageError

configs = st.fixed_dictionaries(
    {
        "dims": st.sampled_from([1, 2, 3]),
        "groups": st.sampled_from([1, 2, 3]),
        "cin_g": st.integers(1, 4),
        "cout_g": st.integers(1, 5),
        "k": st.integers(1, 4),
        "stride": st.integers(1, 2),
        "dilation": st.integers(1, 2),
        "padding": st.one_of(st.integers(0, 2), st.sampled_from(["same", "valid"])),
        "padding_mode": st.sampled_from(["zeros", "reflect", "replicate", "circular"]),
        "bias": st.booleans(),
        "order": st.sampled_from(["dw_pw", "pw_dw"]),
        "dtype": st.sampled_from([torch.float32, torch.float64]),
    }
)


def build(c: dict, dtype=torch.float32) -> tuple[nn.Module, torch.Tensor]:
    conv = getattr(nn, f"Conv{c['dims']}d")(
        c["cin_g"] * c["groups"],
        c["cout_g"] * c["groups"],
        c["k"],
        stride=c["stride"],
        padding=c["padding"],
        dilation=c["dilation"],
        groups=c["groups"],
        bias=c["bias"],
        padding_mode=c["padding_mode"],
        dtype=dtype,
    )
    size = 7 if c["dims"] < 3 else 5
    x = torch.randn((2, conv.in_channels) + (size,) * c["dims"], dtype=dtype)
    return conv, x


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


@settings(max_examples=120, deadline=None)
@given(configs)
def test_full_rank_is_exact(c: dict) -> None:
    assume(c["padding"] != "same" or c["stride"] == 1)
    assume(c["padding_mode"] == "zeros" or c["padding"] != "valid")
    conv, x = build(c, c["dtype"])
    try:
        expected = conv(x)
    except RuntimeError:  # e.g. reflect padding wider than the input
        assume(False)
    layer = SeparableConv.from_conv(conv, rank="full", order=c["order"])
    assert layer.conv_dw.weight.dtype == layer.conv_pw.weight.dtype == c["dtype"]
    assert layer(x).shape == expected.shape
    assert rel_err(layer(x), expected) < 1e-5
    assert layer.energy == pytest.approx(1.0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_dtypes_are_kept(dtype: torch.dtype) -> None:
    conv = nn.Conv2d(4, 6, 3, padding=1, dtype=dtype)
    layer = SeparableConv.from_conv(conv, rank="full")
    assert layer.conv_dw.weight.dtype == layer.conv_pw.weight.dtype == dtype
    x = torch.randn(1, 4, 8, 8, dtype=torch.float64)
    ref = nn.Conv2d(4, 6, 3, padding=1, dtype=torch.float64)
    ref.load_state_dict({k: v.double() for k, v in conv.state_dict().items()})
    got = layer.double()(x)
    tol = {torch.float64: 1e-10, torch.float16: 2e-3, torch.bfloat16: 2e-2}[dtype]
    assert rel_err(got, ref(x)) < tol


def test_channels_last_is_kept() -> None:
    conv = nn.Conv2d(4, 6, 3).to(memory_format=torch.channels_last)
    layer = SeparableConv.from_conv(conv, rank="full")
    assert layer.conv_pw.weight.is_contiguous(memory_format=torch.channels_last)


def test_rank_one_is_the_best_weight_space_fit() -> None:
    """m=1 error equals the discarded singular values (Eckart–Young), per input channel."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3, bias=False)
    layer = SeparableConv.from_conv(conv, rank=1)
    s = torch.linalg.svdvals(conv.weight.detach().double().permute(1, 0, 2, 3).reshape(3, 5, 9))
    assert layer.energy == pytest.approx(float((s[:, 0] ** 2).sum() / (s**2).sum()))
    rebuilt = torch.einsum(
        "oi,ikl->oikl", layer.conv_pw.weight[:, :, 0, 0].double(), layer.conv_dw.weight[:, 0].double()
    )
    err = (rebuilt - conv.weight.double()).pow(2).sum()
    assert float(err) == pytest.approx(float((s[:, 1:] ** 2).sum()), rel=1e-6)


def test_separable_weight_is_recovered_exactly_at_rank_one() -> None:
    pw = torch.randn(8, 4)
    dw = torch.randn(4, 3, 3)
    conv = nn.Conv2d(4, 8, 3, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.einsum("oi,ikl->oikl", pw, dw))
    layer = SeparableConv.from_conv(conv, rank=1)
    x = torch.randn(2, 4, 9, 9)
    assert layer.energy == pytest.approx(1.0) and rel_err(layer(x), conv(x)) < 1e-5


def smooth_inputs(n: int, c: int = 8, size: int = 12) -> torch.Tensor:
    """Independent channels with strong spatial correlation (blurred noise), like real feature maps."""
    noise = torch.randn(n, c, size + 4, size + 4)
    return torch.nn.functional.avg_pool2d(noise, 5, stride=1)


def test_calibrated_fit_beats_weight_space_fit_on_its_data() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, 3, padding=1)
    x, test = smooth_inputs(64), smooth_inputs(16)
    svd = SeparableConv.from_conv(conv, rank=1)
    cal = SeparableConv.from_conv(conv, rank=1, init="calibrated", calibration=[x[:32], x[32:]])
    assert rel_err(cal(test), conv(test)) < 0.8 * rel_err(svd(test), conv(test))
    full = SeparableConv.from_conv(conv, rank="full", init="calibrated", calibration=[x])
    assert rel_err(full(test), conv(test)) < 1e-4


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 8), st.integers(0, 10_000))
def test_calibrated_minimises_each_channels_output_error(m: int, seed: int) -> None:
    """Per input channel, E‖(M_i − P_i D_i) p‖² on the calibration data is at most the SVD fit's."""
    from convaudit.conversion.layers import conv_input_covariance

    torch.manual_seed(seed)
    conv = nn.Conv2d(3, 6, 3, padding=1, bias=False)
    x = smooth_inputs(8, c=3)
    cov = conv_input_covariance(conv, [x])

    def per_channel_error(layer: SeparableConv) -> torch.Tensor:
        w = conv.weight.detach().double().permute(1, 0, 2, 3).reshape(3, 6, 9)
        dw = layer.conv_dw.weight.detach().double().reshape(3, m, 9)
        pw = layer.conv_pw.weight.detach().double().reshape(6, 3, m).permute(1, 0, 2)
        diff = w - pw @ dw
        return torch.einsum("iok,ikl,iol->i", diff, cov, diff)

    svd = per_channel_error(SeparableConv.from_conv(conv, rank=m))
    cal = per_channel_error(SeparableConv.from_conv(conv, rank=m, init="calibrated", calibration=[x]))
    assert torch.all(cal <= svd * (1 + 1e-6) + 1e-9)


def test_mobilenet_style_is_random_only() -> None:
    conv = nn.Conv2d(4, 8, 3)
    layer = SeparableConv.from_conv(conv, init="random", style="mobilenet")
    assert isinstance(layer.bn_dw, nn.BatchNorm2d) and layer(torch.randn(2, 4, 6, 6)).shape == (2, 8, 4, 4)
    with pytest.raises(UsageError, match="not function-preserving"):
        SeparableConv.from_conv(conv, style="mobilenet")


def test_children_and_types() -> None:
    layer = SeparableConv.from_conv(nn.Conv2d(4, 8, 3, stride=2))
    assert isinstance(layer, SeparableConv2d)
    assert layer.conv_dw.groups == 4 and layer.conv_dw.stride == (2, 2) and layer.conv_pw.kernel_size == (1, 1)
    with pytest.raises(UsageError):
        SeparableConv.from_conv(nn.ConvTranspose2d(4, 8, 3))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(1, 40), st.integers(1, 12), st.booleans())
def test_thin_svd_matches_lapack(batch: int, rows: int, cols: int, low_rank: bool) -> None:
    from convaudit.conversion.factorize import thin_svd

    a = torch.randn(batch, rows, cols, dtype=torch.float64)
    if low_rank:
        a = a[..., :1] @ torch.randn(batch, 1, cols, dtype=torch.float64)
    u, s, vh = thin_svd(a)
    scale = float(torch.linalg.svdvals(a).max()) + 1e-300
    assert torch.allclose(s, torch.linalg.svdvals(a), atol=2e-7 * scale, rtol=0)
    assert torch.allclose(u @ torch.diag_embed(s) @ vh, a, atol=1e-6 * scale, rtol=0)


def test_subclasses_without_their_own_forward_are_rewritten() -> None:
    class Conv3DSimple(nn.Conv3d):  # like torchvision's video resnet: only __init__ differs
        def __init__(self) -> None:
            super().__init__(4, 6, 3, padding=1, bias=False)

    class SameConv(nn.Conv2d):
        def forward(self, x):  # pragma: no cover - never run
            return super().forward(x)

    conv = Conv3DSimple()
    x = torch.randn(1, 4, 5, 6, 7)
    assert rel_err(SeparableConv.from_conv(conv, rank="full")(x), conv(x)) < 1e-5
    with pytest.raises(UsageError, match="SameConv is not a Conv1d/2d/3d computing what its base computes"):
        SeparableConv.from_conv(SameConv(4, 6, 3))


def test_calibration_with_a_silent_channel_stays_sane() -> None:
    """A channel that is zero on the calibration data falls back to the weight-space fit."""
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 8, 3, padding=1, bias=False)
    x = smooth_inputs(16, c=4)
    x[:, 2] = 0.0
    cal = SeparableConv.from_conv(conv, rank=1, init="calibrated", calibration=[x])
    svd = SeparableConv.from_conv(conv, rank=1)
    dw_norms = cal.conv_dw.weight.detach().flatten(1).norm(dim=1)
    assert torch.allclose(dw_norms, torch.ones_like(dw_norms), atol=1e-5)  # scale lives in the pointwise part
    # the silent channel's factors equal the weight-space fit's (up to the sign of the singular vectors)
    a, b = cal.conv_dw.weight[2].flatten(), svd.conv_dw.weight[2].flatten()
    assert torch.allclose(a.abs(), b.abs(), atol=1e-5)
    awake = x.clone()
    awake[:, 2] = smooth_inputs(16, c=1)[:, 0]
    assert rel_err(cal(awake), conv(awake)) < 2 * rel_err(svd(awake), conv(awake))
