"""Calibration: a micro-benchmark over a grid of conv shapes, and the roofline fit of a ``DeviceProfile``.

``calibrate`` times shapes of every kind (standard, grouped, depthwise, pointwise) in both memory formats
with ``timing.compare``: a handful of shapes at a time, interleaved with a fixed reference conv, so a
change in the machine's load between groups is divided out (each shape's time is its median ratio to the
reference times the reference's median over the whole run). A few depthwise→pointwise pairs are timed
beside their two parts for the profile's ``sequence_factor``. The shapes are drawn (seeded) from the ranges
of common CNNs (3-1024 channels, 7-224 pixels, 1×1-7×7 kernels, strides 1 and 2), kinds and formats taking
turns, so a short ``budget_seconds`` still samples every group; what is left unmeasured keeps the prior.

The fit itself is ``latency.fit`` (``fit_profile``, re-exported here), the SIMD width it pads MACs to
``simd_lanes`` (this CPU's, as torch dispatches: measured, not fitted).
"""

from __future__ import annotations

import dataclasses
import math
import random
import statistics
import time
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn as nn

from convaudit.errors import UsageError
from convaudit.latency.builtin import default_profile
from convaudit.latency.cache import cache_path, current_key, load_profile, save_profile
from convaudit.latency.clocks import LoadMeter
from convaudit.latency.fit import RESCALE_SHRINK, Sample, fit_kind, fit_profile, predict_one
from convaudit.latency.profile import MEMORY_FORMATS, ConvShape, DeviceProfile, predict_seconds, separable_parts
from convaudit.latency.timing import compare

__all__ = [
    "DEFAULT_BUDGET_SECONDS",
    "RESCALE_SHRINK",
    "Sample",
    "cache_path",
    "calibrate",
    "default_profile",
    "fit_kind",
    "fit_profile",
    "grid",
    "load_profile",
    "measure_grid",
    "predict_one",
    "save_profile",
    "simd_lanes",
    "with_lanes",
]

DEFAULT_BUDGET_SECONDS = 120.0
MAX_SHAPE_SECONDS = 0.03  #: shapes the prior predicts slower than this are left out (a budget is short)
PER_GROUP = 4  #: shapes timed together with the reference, interleaved
GROUP_SECONDS = 1.5  #: time cap of one group
TARGET_CI = 0.05  #: ``compare`` stops a group when every ratio to the reference is known within ±5%
Progress = Callable[[int, int], None]


def grid(seed: int = 0, per_kind: int = 80, sequences: int = 32) -> list[tuple[str, ConvShape]]:
    """The shapes to time, as (what, shape): kinds round-robin (then ``sequence`` pairs), both formats in turn."""
    rng = random.Random(seed)
    counts = {"standard": per_kind, "grouped": per_kind // 2, "depthwise": per_kind, "pointwise": per_kind}
    drawn = {kind: [_draw(kind, rng) for _ in range(n)] for kind, n in (*counts.items(), ("sequence", sequences))}
    order: list[tuple[str, ConvShape]] = []
    for i in range(per_kind):
        for fmt in MEMORY_FORMATS:
            for kind, shapes in drawn.items():
                if i < len(shapes):
                    s = shapes[i]
                    order.append((kind, dataclasses.replace(s, memory_format=fmt)))
    return order


#: Channels and resolutions drawn from; a CNN trades one for the other, so channels × size stays in
#: ``CHANNEL_PIXELS`` (3×224 … 512×28 or 1024×14), the region its convs live in.
CHANNELS = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
SIZES = (7, 14, 28, 56, 112, 224)
CHANNEL_PIXELS = (448, 16384)


def _channels(rng: random.Random, size: int, choices: Sequence[int] = CHANNELS) -> int:
    fits = [c for c in choices if CHANNEL_PIXELS[0] <= c * size <= CHANNEL_PIXELS[1]]
    return rng.choice(fits or [min(choices, key=lambda c: abs(c * size - CHANNEL_PIXELS[1]))])


def _draw(kind: str, rng: random.Random) -> ConvShape:
    """A random shape of ``kind`` where CNN convs are (``sequence``: a standard conv to split as dw→pw)."""
    size, stride = rng.choice(SIZES), rng.choice((1, 1, 2))
    # 3-channel stems, and the depthwise/pointwise parts of their rewrites: the shapes bench_latency.py found
    # worst predicted (version 2: a quarter of the large-map shapes, was 15%)
    stem = rng.random() < 0.25 and size >= 56
    if kind == "depthwise":
        c = 3 if stem else _channels(rng, size)
        return ConvShape.of(c, c, rng.choice((3, 3, 5, 7)), size, stride=stride, groups=c)
    if kind == "pointwise":
        g = rng.choice((1, 1, 1, 1, 1, 2, 4))
        cin, cout = (_channels(rng, size, [c for c in CHANNELS if c % g == 0]) for _ in range(2))
        cin = 3 if stem and g == 1 else cin
        return ConvShape.of(cin, cout, 1, size, stride=rng.choice((1, 1, 1, 1, 1, 2)), groups=g)
    if kind == "grouped":
        g = rng.choice((2, 4, 8, 16, 32))
        cin = _channels(rng, size, [c for c in CHANNELS if c % g == 0 and c > g])
        return ConvShape.of(cin, cin * rng.choice((1, 1, 2)), rng.choice((3, 3, 5)), size, stride=stride, groups=g)
    cin = 3 if stem else _channels(rng, size)
    cout = (
        rng.choice((16, 24, 32, 64))
        if stem
        else _channels(rng, size, [c for c in CHANNELS if cin // 2 <= c <= 2 * cin])
    )
    # NB: stems as CNNs have them: mostly 3×3 or 7×7 at stride 2 (version 3; bench_latency.py's mobilenet and vgg
    # stems, 3×3, were predicted 1.6-2.3× slow when the grid drew one 3×3 stem in 20)
    k = rng.choice((3, 3, 3, 5, 7, 7) if stem else (3, 3, 3, 3, 5, 7))
    return ConvShape.of(cin, cout, k, size, stride=rng.choice((2, 2, 1)) if stem else stride)


def _module(shape: ConvShape) -> nn.Module:
    """A fresh eval 2-d conv of ``shape`` ('same'-style padding), in its memory format."""
    (kh, kw), (sh, sw) = shape.kernel, shape.stride
    conv = nn.Conv2d(
        shape.in_channels,
        shape.out_channels,
        (kh, kw),
        stride=(sh, sw),
        padding=(kh // 2, kw // 2),
        groups=shape.groups,
        bias=shape.kind != "depthwise",
    )
    return _formatted(conv, shape.memory_format)


def _formatted(module: nn.Module, memory_format: str) -> nn.Module:
    return (module.to(memory_format=torch.channels_last) if memory_format == "channels_last" else module).eval()


def _input(shape: ConvShape) -> torch.Tensor:
    x = torch.randn(shape.batch, shape.in_channels, *shape.input_size, generator=torch.Generator().manual_seed(0))
    return x.to(memory_format=torch.channels_last) if shape.memory_format == "channels_last" else x


def _calls(what: str, shape: ConvShape) -> dict[str, Callable[[], object]]:
    """The callables to time for one grid entry (a sequence: the pair and its two parts)."""
    x = _input(shape)
    if what != "sequence":
        conv = _module(shape)
        return {"shape": lambda: conv(x)}
    dw_shape, pw_shape = separable_parts(shape, "dw_pw")
    dw, pw = _module(dw_shape), _module(pw_shape)
    pair, y = nn.Sequential(dw, pw).eval(), dw(x)
    return {"pair": lambda: pair(x), "dw": lambda: dw(x), "pw": lambda: pw(y)}


def _reference(memory_format: str) -> ConvShape:
    return ConvShape.of(64, 64, 3, 28, memory_format=memory_format)


@torch.no_grad()
def _measure_group(
    entries: Sequence[tuple[str, ConvShape]], max_seconds: float, seed: int
) -> tuple[list[tuple[str, ConvShape, dict[str, float]]], float]:
    """Time ``entries`` with the reference: per entry its callables' times over the reference's, and the reference's.

    NB: the medians of the paired per-round ratios (``timing.compare``), the figure ``--measure`` reports:
    on a shared machine the neighbours slow small memory-bound convs more than large ones (they evict
    the caches), and a calibration on minima predicted speed-ups ~1.2× above what ``compare`` measured.
    """
    ref_shape = _reference(entries[0][1].memory_format)
    ref_conv, ref_x = _module(ref_shape), _input(ref_shape)
    fns: dict[str, Callable[[], object]] = {"ref": lambda: ref_conv(ref_x)}
    for i, (what, shape) in enumerate(entries):
        fns.update({f"{i}:{name}": fn for name, fn in _calls(what, shape).items()})
    result = compare(fns, baseline="ref", target_ci=TARGET_CI, max_seconds=max_seconds, seed=seed)
    found = []
    for i, (what, shape) in enumerate(entries):
        ratios = {k.split(":", 1)[1]: r for k, r in result.ratios.items() if k.startswith(f"{i}:")}
        found.append((what, shape, ratios))
    return found, result.spreads["ref"].median_seconds


def calibrate(
    budget_seconds: float = DEFAULT_BUDGET_SECONDS,
    progress: Progress | None = None,
    *,
    threads: int | None = None,
    device: str = "cpu",
    seed: int = 0,
    record: list[Sample] | None = None,
) -> DeviceProfile:
    """Time the grid for about ``budget_seconds`` at ``threads`` (default torch's) and fit a profile.

    Only CPU is calibrated; the key names the thread count. ``progress(done, total)`` after each group;
    the measured samples are appended to ``record`` when given (to refit or pool them later).
    """
    if device != "cpu":
        raise UsageError(f"calibrate-device runs on the CPU only, not {device!r}")
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        key = current_key(threads, device)
        measured, load = measure_grid(_affordable(grid(seed)), budget_seconds, progress, seed)
    finally:
        torch.set_num_threads(previous)
    if record is not None:
        record.extend(measured)
    profile = fit_profile(measured, prior=with_lanes(default_profile(), simd_lanes()))
    return DeviceProfile(
        key[0],
        key[1],
        key[2],
        key[3],
        profile.fits,
        profile.sequence_factor,
        calibrated=True,
        budget_seconds=budget_seconds,
        load=load,
        notes=profile.notes,
    )


def simd_lanes(dtype: torch.dtype = torch.float32) -> int:
    """fp32 elements per SIMD vector of this CPU as torch dispatches (AVX-512: 16, AVX2: 8, else 4)."""
    capability = torch.backends.cpu.get_cpu_capability()
    width = {"AVX512": 64, "AVX2": 32}.get(capability, 16)
    return max(1, width // dtype.itemsize)


def with_lanes(profile: DeviceProfile, lanes: int) -> DeviceProfile:
    """``profile`` with every fit's ``lanes`` set (the fit then pads MACs to that width)."""
    fits = {
        fmt: {k: dataclasses.replace(f, lanes=lanes) for k, f in kinds.items()} for fmt, kinds in profile.fits.items()
    }
    return dataclasses.replace(profile, fits=fits)


def _affordable(entries: Iterable[tuple[str, ConvShape]]) -> list[tuple[str, ConvShape]]:
    prior = default_profile()
    return [(what, s) for what, s in entries if predict_seconds(prior, s) <= MAX_SHAPE_SECONDS]


def measure_grid(
    entries: Sequence[tuple[str, ConvShape]], budget_seconds: float, progress: Progress | None, seed: int
) -> tuple[list[Sample], float | None]:
    """Time ``entries`` in groups until the budget is spent: (samples, other processes' load in cores)."""
    meter = LoadMeter()
    meter.start()
    start = time.perf_counter()
    by_format: dict[str, list[tuple[int, tuple[str, ConvShape]]]] = {fmt: [] for fmt in MEMORY_FORMATS}
    for i, entry in enumerate(entries):
        by_format[entry[1].memory_format].append((i, entry))
    chunks = [g[i : i + PER_GROUP] for g in by_format.values() for i in range(0, len(g), PER_GROUP)]
    chunks.sort(key=lambda chunk: chunk[0][0])  # in the grid's order: every kind and format early
    groups = [[entry for _, entry in chunk] for chunk in chunks]
    ratios: list[tuple[str, ConvShape, dict[str, float]]] = []
    refs: dict[str, list[float]] = {fmt: [] for fmt in MEMORY_FORMATS}
    for done, group in enumerate(groups, 1):
        left = budget_seconds - (time.perf_counter() - start)
        if left <= 0.05 * len(group):
            break
        found, ref_seconds = _measure_group(group, min(GROUP_SECONDS, left), seed + done)
        ratios.extend(found)
        refs[group[0][1].memory_format].append(ref_seconds)
        if progress:
            progress(done, len(groups))
    samples = []
    for what, shape, r in ratios:
        ref = statistics.median(refs[shape.memory_format])
        if what == "sequence":
            dw, pw = separable_parts(shape, "dw_pw")
            samples += [Sample(dw, r["dw"] * ref), Sample(pw, r["pw"] * ref)]
            samples.append(Sample(shape, r["pair"] * ref, (r["dw"] + r["pw"]) * ref))
        else:
            samples.append(Sample(shape, r["shape"] * ref))
    return [s for s in samples if s.seconds > 0 and math.isfinite(s.seconds)], meter.stop()
