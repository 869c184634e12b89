"""The device profile: shapes and their costs, the roofline fit, the cache, and ``convaudit calibrate-device``."""

from __future__ import annotations

import dataclasses
import json
import math
import random
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from convaudit.cli.app import main
from convaudit.errors import EXIT_OK, EXIT_USAGE
from convaudit.latency import calibrate as cal
from convaudit.latency import profile as prof
from convaudit.latency.profile import ConvShape, DeviceProfile, RooflineFit

CONFIGS = [  # (cin, cout, kernel, stride, groups, size)
    (3, 64, 7, 2, 1, 32),
    (64, 64, 3, 1, 1, 14),
    (32, 64, 3, 2, 4, 15),
    (32, 32, 5, 1, 32, 16),
    (16, 48, 3, 1, 16, 9),
    (24, 40, 1, 1, 1, 12),
    (24, 40, 1, 1, 2, 12),
]


@pytest.fixture(autouse=True)
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test caches under its own XDG_CACHE_HOME."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize("cin,cout,k,s,g,size", CONFIGS)
def test_shape_macs_and_output_size_match_a_real_conv(cin: int, cout: int, k: int, s: int, g: int, size: int) -> None:
    shape = ConvShape.of(cin, cout, k, size, stride=s, groups=g)
    conv = nn.Conv2d(cin, cout, k, stride=s, padding=k // 2, groups=g)
    with FlopCounterMode(display=False) as counter:
        out = conv(torch.randn(1, cin, size, size))
    assert shape.output_size == tuple(out.shape[2:])
    assert 2 * shape.macs == counter.get_total_flops()  # FLOPs = 2·MACs
    weight = conv.weight.numel()
    assert shape.bytes == 4 * (cin * size * size + out.numel() + weight)


@pytest.mark.parametrize("cin,cout,k,s,g,size", CONFIGS)
def test_kind_is_the_inventorys(cin: int, cout: int, k: int, s: int, g: int, size: int) -> None:
    from convaudit.analysis.inventory import conv_kind

    spec = type(
        "Spec",
        (),
        {
            "custom": False,
            "transposed": False,
            "groups": g,
            "in_channels": cin,
            "out_channels": cout,
            "kernel_size": (k, k),
        },
    )()
    assert ConvShape.of(cin, cout, k, size, stride=s, groups=g).kind == str(conv_kind(spec))


def test_from_layer_and_separable_parts_cost_what_the_analysis_says() -> None:
    import convaudit

    model = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.Conv2d(16, 32, 5, padding=2, groups=2))
    for layer in convaudit.analyze(model, input_shape=(1, 8, 20, 20)).layers:
        shape = ConvShape.from_layer(layer, "channels_last")
        assert (shape.macs, shape.memory_format, shape.kind) == (layer.macs, "channels_last", layer.kind)
        for order in ("dw_pw", "pw_dw"):
            parts = prof.separable_parts(shape, order)
            assert sum(p.macs for p in parts) == getattr(layer.separable, order).macs
            assert [p.kind for p in parts] == (
                ["depthwise", "pointwise"] if order == "dw_pw" else ["pointwise", "depthwise"]
            )


# ---------------------------------------------------------------- the fit

TRUE = {  # 16 SIMD lanes, as the default profile's (the lanes are the CPU's, not fitted)
    "standard": RooflineFit(3e-5, 4e10, 8e9, 4.0, 4.0, 40.0, 3e6, 1.0, lanes=16),
    "grouped": RooflineFit(5e-5, 2e10, 3e9, 3.0, 8.0, 30.0, 3e6, 2.0, lanes=16),
    "depthwise": RooflineFit(2e-5, 1e10, 6e9, 3.0, 6.0, 80.0, 2e6, 1.5, lanes=16),
    "pointwise": RooflineFit(1e-5, 3e10, 5e9, 4.0, 10.0, 30.0, 8e6, 0.5, lanes=16),
}


def synthetic(noise: float = 0.0) -> list[cal.Sample]:
    """The calibration grid timed by known fits (contiguous only), with a deterministic ±noise wobble."""
    samples = []
    for i, (_, shape) in enumerate(cal.grid(seed=1, per_kind=50, sequences=0)):
        if shape.memory_format == "contiguous":
            wobble = math.exp(noise * math.sin(7.0 * i))
            samples.append(cal.Sample(shape, cal.predict_one(TRUE[shape.kind], shape) * wobble))
    return samples


@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_fit_on_synthetic_timings_recovers_the_rates(noise: float) -> None:
    fitted = cal.fit_profile(synthetic(noise), prior=prof.default_profile())
    for kind, truth in TRUE.items():
        fit = fitted.fits["contiguous"][kind]
        rates, overhead = (0.03, 1.1) if noise == 0 else (0.1, 2.0)  # NB: only small shapes see the overhead
        assert fit.macs_per_second == pytest.approx(truth.macs_per_second, rel=rates), kind
        if kind in ("depthwise", "pointwise"):  # memory-bound on part of the grid: the byte rate is seen
            assert fit.bytes_per_second == pytest.approx(truth.bytes_per_second, rel=rates), kind
        assert truth.overhead_seconds / overhead <= fit.overhead_seconds <= truth.overhead_seconds * overhead, kind
        assert fit.points >= 20 and fit.rms_log_error <= noise + 0.005
    assert fitted.fits["channels_last"] == prof.default_profile().fits["channels_last"]  # nothing measured: the prior
    assert any("channels_last" in note and "prior kept" in note for note in fitted.notes)


def test_a_near_hard_roofline_is_fitted_not_lost_to_underflow() -> None:
    """A machine whose time is the max of compute and memory (blend ~200, as fitted on this CPU's channels_last
    standard convs): compute**p underflows in float64, and the fit once gave NaN from every start and kept the prior."""
    truth = RooflineFit(5e-5, 2e11, 1e11, 200.0, 0.1, 40.0, 1e7, 5.0, lanes=16)
    compute, memory = 2e-4, 1e-5
    assert truth.seconds(compute * truth.macs_per_second, memory * truth.bytes_per_second, 1e9, 1e9) == (
        pytest.approx(5e-5 + compute, rel=0.02)
    )
    samples = [
        cal.Sample(shape, cal.predict_one(truth, shape))
        for _, shape in cal.grid(seed=1, per_kind=50, sequences=0)
        if shape.memory_format == "channels_last" and shape.kind == "standard"
    ]
    prior = cal.with_lanes(prof.default_profile(), 16)
    fit = cal.fit_profile(samples, prior=prior).fits["channels_last"]["standard"]
    assert fit != prior.fits["channels_last"]["standard"]
    assert fit.points == len(samples) >= 24 and fit.rms_log_error <= 0.02
    assert fit.macs_per_second == pytest.approx(truth.macs_per_second, rel=0.05)


@pytest.mark.parametrize(
    "cin,cout,g,lanes,factor",
    [
        (3, 3, 3, 16, 16 / 3),  # a 3-channel depthwise conv pays for a whole vector
        (3, 6, 3, 16, 16 / 3),  # ... per channel multiplier
        (32, 32, 32, 16, 1.0),
        (24, 24, 24, 8, 1.0),
        (3, 64, 1, 16, 1.0),  # a dense stem vectorises over its 64 output channels
        (3, 24, 1, 16, 32 / 24),
        (32, 64, 4, 16, 1.0),  # grouped: not padded
        (3, 3, 3, 1, 1.0),  # lanes 1: the plain MACs (a version-1 fit)
    ],
)
def test_vector_macs_pad_the_vectorised_channels(cin: int, cout: int, g: int, lanes: int, factor: float) -> None:
    shape = ConvShape.of(cin, cout, 3, 56, groups=g)
    assert shape.vector_macs(lanes) == pytest.approx(shape.macs * factor)
    if g == 1:  # a dense 1×1 conv is padded as a dense 3×3 is
        pointwise = ConvShape.of(cin, cout, 1, 56)
        assert pointwise.vector_macs(lanes) == pytest.approx(pointwise.macs * factor)


def test_the_stem_term_is_recovered_and_matters_on_stems() -> None:
    """Timings made with 16 padded lanes: a fit knowing the lanes recovers the rates; one without misses stems."""
    truth = TRUE
    samples = [
        cal.Sample(shape, cal.predict_one(truth[shape.kind], shape))
        for _, shape in cal.grid(seed=1, per_kind=50, sequences=0)
        if shape.memory_format == "contiguous"
    ]
    stems = [s for s in samples if s.shape.kind == "depthwise" and s.shape.in_channels == 3]
    assert len(stems) >= 3  # the grid samples the 3-channel depthwise convs of stem rewrites
    knows = cal.fit_profile(samples, prior=cal.with_lanes(prof.default_profile(), 16)).fits["contiguous"]
    blind = cal.fit_profile(samples, prior=cal.with_lanes(prof.default_profile(), 1)).fits["contiguous"]
    for kind, fit in knows.items():
        assert fit.lanes == 16 and fit.macs_per_second == pytest.approx(truth[kind].macs_per_second, rel=0.03), kind
        assert fit.rms_log_error <= 0.005, kind

    def stem_error(fit: RooflineFit) -> float:
        return max(abs(math.log(cal.predict_one(fit, s.shape) / s.seconds)) for s in stems)

    assert stem_error(knows["depthwise"]) < 0.01 < 0.2 < stem_error(blind["depthwise"])


def test_few_shapes_only_rescale_the_prior() -> None:
    prior = prof.default_profile().fits["contiguous"]["pointwise"]
    shapes = [ConvShape.of(c, 2 * c, 1, 28) for c in (8, 16, 32, 64, 128)]
    fit = cal.fit_kind([cal.Sample(s, 2 * cal.predict_one(prior, s)) for s in shapes], prior)
    scale = 2 ** (5 / (5 + cal.RESCALE_SHRINK))  # 2×, shrunk toward the prior: five shapes are few
    assert (fit.macs_per_second, fit.overhead_seconds) == pytest.approx(
        (prior.macs_per_second / scale, prior.overhead_seconds * scale)
    )
    assert (fit.blend, fit.points) == (prior.blend, 5)
    assert fit.rms_log_error == pytest.approx(math.log(2 / scale), abs=1e-4)  # what the shrinkage leaves


def test_sequence_factor_is_the_median_pair_over_parts() -> None:
    shape = ConvShape.of(32, 64, 3, 28)
    pairs = [cal.Sample(shape, 1.1 * t, t) for t in (1e-4, 2e-4, 3e-4)] + [cal.Sample(shape, 5e-4, 1e-4)]
    fitted = cal.fit_profile(pairs, prior=prof.default_profile())
    assert fitted.sequence_factor["contiguous"] == pytest.approx(1.1)
    assert fitted.sequence_factor["channels_last"] == prof.default_profile().sequence_factor["channels_last"]


def test_prediction_follows_the_regimes() -> None:
    fit = TRUE["standard"]
    tiny, big = ConvShape.of(8, 8, 3, 4), ConvShape.of(256, 256, 3, 56)
    assert cal.predict_one(fit, tiny) == pytest.approx(fit.overhead_seconds, rel=0.5)  # overhead-bound
    compute = big.macs / (fit.macs_per_second * 256 / 260 * big.pixels / (big.pixels + 40))
    assert cal.predict_one(fit, big) == pytest.approx(fit.overhead_seconds + compute, rel=0.02)  # compute-bound


def test_residuals_correct_the_shapes_near_them_only() -> None:
    near, far = ConvShape.of(64, 64, 3, 28), ConvShape.of(512, 512, 3, 7, stride=2)
    fit = dataclasses.replace(TRUE["standard"], residuals=((*prof.features(near), 0.5),))
    shrunk = 0.5 / (1 + prof.RESIDUAL_SHRINK)  # one residual right there, pulled toward 0 by the shrinkage
    assert fit.predict(near) == pytest.approx(cal.predict_one(fit, near) * math.exp(shrunk))
    assert fit.predict(far) == pytest.approx(cal.predict_one(fit, far), rel=1e-3)
    fitted = cal.fit_profile(synthetic(0.05), prior=prof.default_profile()).fits["contiguous"]["depthwise"]
    assert len(fitted.residuals) == fitted.points and all(
        len(r) == len(prof.features(near)) + 1 for r in fitted.residuals
    )


def _with_random_residuals(kind: str, seed: int, rows: int, points: int) -> tuple[prof.RooflineFit, list[tuple]]:
    """TRUE[kind] with random residual rows, and random feature points to correct at."""
    rng = random.Random(seed)
    width = len(prof.features(ConvShape.of(8, 8, 3, 4)))
    table = tuple(tuple(rng.uniform(-2, 9) for _ in range(width + 1)) for _ in range(rows))
    at = [tuple(rng.uniform(-3, 10) for _ in range(width)) for _ in range(points)]
    return dataclasses.replace(TRUE[kind], residuals=table), at


def test_the_batched_correction_is_the_kernel_mean_of_its_definition() -> None:
    """Oracle: the Gaussian-kernel mean written out as a Python loop, at random points, in one batch and alone."""
    fit, points = _with_random_residuals("depthwise", seed=7, rows=40, points=50)
    rows, width = fit.residuals, len(points[0])

    def oracle(at: tuple[float, ...]) -> float:
        weights = [
            math.exp(-sum((a - r) ** 2 for a, r in zip(at, row[:width], strict=True)) / (2 * prof.RESIDUAL_WIDTH**2))
            for row in rows
        ]
        return sum(w * row[width] for w, row in zip(weights, rows, strict=True)) / (sum(weights) + prof.RESIDUAL_SHRINK)

    batched = fit.corrections(points)
    for at, got in zip(points, batched, strict=True):
        assert got == pytest.approx(oracle(at), rel=1e-12, abs=1e-15)
        assert fit.correction(at) == pytest.approx(got, rel=1e-12, abs=1e-15)
    shapes = [ConvShape.of(c, c, 3, px, groups=c) for c, px in ((32, 56), (64, 28), (96, 14), (32, 56))]
    assert prof.predict_many(
        dataclasses.replace(prof.default_profile(), fits={"contiguous": {"depthwise": fit}}), shapes
    ) == {s: pytest.approx(fit.predict(s), rel=1e-12) for s in shapes}


def test_a_shapes_correction_does_not_depend_on_the_batch_it_is_in() -> None:
    """Exactly (==): records predicted in one analysis's batch must equal ``predict_forms`` of the shape alone."""
    fit, points = _with_random_residuals("pointwise", seed=11, rows=77, points=120)
    rng = random.Random(11)
    alone = [fit.correction(at) for at in points]
    for size in (2, 7, 8, 9, 33, 120):
        start = rng.randrange(len(points) - size + 1)
        assert fit.corrections(points[start : start + size]) == alone[start : start + size], size
    assert fit.corrections([]) == [] and TRUE["pointwise"].corrections(points[:3]) == [0.0] * 3


# ---------------------------------------------------------------- the profile: JSON, cache, staleness


def a_profile(**changes: object) -> DeviceProfile:
    key = prof.current_key()
    base = DeviceProfile(*key, {f: dict(TRUE) for f in prof.MEMORY_FORMATS}, {"contiguous": 1.05}, budget_seconds=5.0)
    return dataclasses.replace(base, **changes)


def test_json_round_trip() -> None:
    fits = {
        f: {**TRUE, "depthwise": dataclasses.replace(TRUE["depthwise"], residuals=((1.0, 2.0, 3.0, 1.5, 0.0, 0.1),))}
        for f in prof.MEMORY_FORMATS
    }
    profile = a_profile(notes=("a note",), load=0.25, fits=fits)
    text = profile.to_json()
    assert DeviceProfile.from_json(text) == profile
    assert json.loads(text)["version"] == prof.PROFILE_VERSION
    shape = ConvShape.of(64, 128, 3, 28, stride=2, memory_format="channels_last")
    assert prof.predict_forms(DeviceProfile.from_json(text), shape) == prof.predict_forms(profile, shape)


def test_save_then_load_from_the_user_cache(cache_home: Path) -> None:
    profile = a_profile()
    path = prof.save_profile(profile)
    assert path.parent == cache_home / "convaudit" and path == prof.cache_path()
    assert prof.load_profile() == profile
    prof.save_profile(dataclasses.replace(profile, load=1.5))  # replaced atomically, no temporary left
    assert prof.load_profile().load == 1.5
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_a_loaded_profile_is_parsed_once_until_its_file_changes(cache_home: Path) -> None:
    profile = dataclasses.replace(prof.default_profile(), calibrated=True)
    key = prof.current_key()
    profile = dataclasses.replace(profile, cpu=key[0], torch_version=key[1], threads=key[2], device=key[3])
    path = prof.save_profile(profile)
    first = prof.load_profile()
    assert first == profile and prof.load_profile() is first  # not parsed again
    prof.save_profile(dataclasses.replace(profile, budget_seconds=7.0))  # rewritten: read again
    again = prof.load_profile()
    assert again is not None and again.budget_seconds == 7.0 and path.exists()


def test_cache_falls_back_to_home_without_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert prof.cache_path().parent == tmp_path / ".cache" / "convaudit"


@pytest.mark.parametrize(
    "change",
    [{"torch_version": "1.0.0"}, {"cpu": "another CPU"}, {"version": prof.PROFILE_VERSION - 1}, {"device": "cuda:0"}],
)
def test_a_stale_profile_is_not_loaded(change: dict) -> None:
    prof.save_profile(a_profile(**change), path=prof.cache_path())  # where this machine's profile would be
    assert prof.load_profile() is None


def test_threads_are_part_of_the_key() -> None:
    threads = torch.get_num_threads()
    prof.save_profile(a_profile())
    assert prof.cache_path(prof.current_key(threads + 1)) != prof.cache_path()
    assert prof.load_profile(threads=threads + 1) is None
    assert prof.load_profile(threads=threads) is not None


def test_a_version_bump_makes_the_cache_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    prof.save_profile(a_profile())
    monkeypatch.setattr(prof, "PROFILE_VERSION", prof.PROFILE_VERSION + 1)
    assert prof.load_profile() is None


@pytest.mark.parametrize("text", ["", "{", '{"fits": 3}', "[]"])
def test_an_unreadable_cache_file_is_no_profile(text: str) -> None:
    path = prof.cache_path()
    path.parent.mkdir(parents=True)
    path.write_text(text)
    assert prof.load_profile() is None


def test_default_profile_is_uncalibrated_and_conservative() -> None:
    default = prof.default_profile()
    assert not default.calibrated and default.notes
    shape = ConvShape.of(128, 128, 3, 28)
    for part in prof.separable_parts(shape):
        built_in = RooflineFit(*prof.BUILT_IN["contiguous"][part.kind], lanes=prof.LANES)
        assert prof.predict_seconds(default, part) == pytest.approx(
            prof.DEFAULT_MARGIN * cal.predict_one(built_in, part)
        )
    assert prof.predict_forms(default, shape) == prof.predict_forms(prof.default_profile(), shape)  # deterministic


def test_default_profile_prediction_is_pinned() -> None:
    # What the built-in constants predict for one shape. Refitting BUILT_IN changes these figures (update
    # them then); the golden files do not move with it (tests/fixtures/profiles.py freezes their profile).
    forms = prof.predict_forms(prof.default_profile(), ConvShape.of(128, 128, 3, 28))
    assert forms == pytest.approx({"original": 3.257e-3, "dw_pw": 8.531e-4, "pw_dw": 8.531e-4}, rel=1e-3)


# ---------------------------------------------------------------- convaudit calibrate-device


def test_calibrate_device_writes_the_cache(cache_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calibrate-device", "--budget", "5s", "--threads", "1"]) == EXIT_OK
    out = capsys.readouterr().out
    profile = prof.load_profile(threads=1)
    assert profile is not None and profile.calibrated and profile.threads == 1
    assert f"wrote {prof.cache_path(prof.current_key(1))}" in out and "1 threads" in out
    assert sum(f.points for kinds in profile.fits.values() for f in kinds.values()) >= 8  # every group sampled early
    assert torch.get_num_threads() == prof.current_key()[2]  # the thread count is restored


@pytest.mark.parametrize(
    "args,message",
    [
        (["--budget", "5x"], "--budget '5x': give a positive duration with its unit, like 90s or 2m"),
        (["--budget", "0s"], "--budget '0s': give a positive duration"),
        (["--budget", "10"], "--budget '10': give a positive duration"),
        (["--threads", "0"], "--threads 0: give a positive number of threads"),
    ],
)
def test_calibrate_device_bad_options_are_one_line(
    args: list[str], message: str, cache_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["calibrate-device", *args]) == EXIT_USAGE
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("convaudit: error: ") and message in lines[0]
    assert not cache_home.exists()
