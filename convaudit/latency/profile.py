"""Predicted latency: a conv's shape, a per-device roofline profile, and the time it predicts.

Depthwise convs are memory-bound, dense convs compute-bound, pointwise convs in between (PyTorch
#1708, #18631), so a MAC ratio is no speed-up. A :class:`DeviceProfile` holds, per conv kind
(standard, grouped, depthwise, pointwise) and memory format, a :class:`RooflineFit`::

    seconds = overhead + ((vector_macs / (mac_rate · eff))^p + (bytes / byte_rate · cache)^p)^(1/p)
    eff     = c / (c + channel_half) · P / (P + pixel_half)
    cache   = 1 + cache_slowdown · bytes / (bytes + cache_bytes)

a soft maximum of the compute-bound and the memory-bound time (``p`` = ``blend``; p → ∞ is the
roofline's max). ``vector_macs`` are the MACs as the SIMD units execute them: the channels a kernel
vectorises over (a depthwise conv's channels, a dense conv's output channels) rounded up to a
multiple of the profile's ``lanes`` (16 fp32 lanes with AVX-512), so a 3-channel depthwise conv
pays for 16 (version 2; measured: the smooth channel term alone left 3-channel depthwise convs at
large maps +0.14 to +0.43 in log time and 16-32-channel ones -0.25). The MAC rate is further lowered
for a short reduction ``c`` (channels per group: the 3-channel stems) and few output pixels ``P``
(N·∏output; too little work to split), and the byte rate for tensors that outgrow the caches.
``bytes`` = input + output + weight bytes. What the roofline misses (a kernel library's choice of
algorithm for one region of shapes: NCHW 3-channel convs, channels_last convs on 7×7 maps) is corrected
from the residuals of the measured shapes nearby (``RooflineFit.correction``, one array batch per fit).
``calibrate.calibrate`` fits it on this machine; without that, :func:`default_profile` is a conservative
built-in one (see there). A separable form is predicted as its two convs, times the profile's
``sequence_factor`` (measured: two convs in a row take longer than the two alone, by ~1.2× at 0.1-0.5 ms:
the intermediate tensor, the module call).

The profile is keyed by CPU model, torch version, thread count and device, and versioned
(``PROFILE_VERSION``); ``load_profile`` returns None for a missing or stale cache file.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from convaudit.documents.records import ConvLayer

__all__ = [
    "KINDS",
    "MEMORY_FORMATS",
    "PROFILE_VERSION",
    "ConvShape",
    "DeviceProfile",
    "RooflineFit",
    "features",
    "kind_of",
    "predict_forms",
    "predict_forms_many",
    "predict_many",
    "predict_seconds",
    "separable_parts",
]

#: Bumped whenever the model form or the calibration changes: older cache files are stale.
#: 2: MACs padded to the SIMD lanes (``ConvShape.vector_macs``); 3: the soft maximum scaled by its larger term
#: (version 2 fits of near-hard rooflines underflowed to NaN and kept the prior)
PROFILE_VERSION = 3
KINDS = ("standard", "grouped", "depthwise", "pointwise")
MEMORY_FORMATS = ("contiguous", "channels_last")
#: Bytes per element by dtype name (``ConvLayer.dtype`` spells them so); others count as 4.
ITEMSIZE = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "int8": 1, "uint8": 1}


@dataclass(frozen=True)
class ConvShape:
    """A conv's configuration, as its time depends on it (weights do not matter).

    ``input_size`` and ``output_size`` are spatial (H, W for a 2-d conv); ``output_size`` defaults to
    'same'-style padding (k // 2 per side): ``(size + 2·(k // 2) - k) // stride + 1``.
    """

    kind: str  #: standard | grouped | depthwise | pointwise (see ``kind_of``)
    in_channels: int
    out_channels: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    groups: int
    input_size: tuple[int, ...]
    batch: int = 1
    dtype: str = "float32"
    memory_format: str = "contiguous"
    output_size: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.output_size:
            out = tuple(
                (s + 2 * (k // 2) - k) // t + 1
                for s, k, t in zip(self.input_size, self.kernel, self.stride, strict=True)
            )
            object.__setattr__(self, "output_size", out)

    @classmethod
    def of(
        cls,
        in_channels: int,
        out_channels: int,
        kernel: int | tuple[int, ...],
        input_size: int | tuple[int, ...],
        *,
        stride: int | tuple[int, ...] = 1,
        groups: int = 1,
        batch: int = 1,
        dtype: str = "float32",
        memory_format: str = "contiguous",
        output_size: tuple[int, ...] = (),
    ) -> ConvShape:
        """A 2-d shape from a conv's configuration (ints mean square); the kind follows from it."""
        k, s, n = (v if isinstance(v, tuple) else (v, v) for v in (kernel, stride, input_size))
        kind = kind_of(in_channels, out_channels, k, groups)
        return cls(kind, in_channels, out_channels, k, s, groups, n, batch, dtype, memory_format, output_size)

    @classmethod
    def from_layer(cls, layer: ConvLayer, memory_format: str = "contiguous") -> ConvShape:
        """The shape of a ``ConvLayer`` record at its first-call input (its own output size)."""
        nd = layer.dims
        batch = math.prod(layer.input_shape[: len(layer.input_shape) - nd - 1]) or 1
        kind = kind_of(layer.in_channels, layer.out_channels, layer.kernel_size, layer.groups)
        return cls(
            kind,
            layer.in_channels,
            layer.out_channels,
            tuple(layer.kernel_size),
            tuple(layer.stride),
            layer.groups,
            tuple(layer.input_shape[-nd:]),
            batch,
            layer.dtype,
            memory_format,
            tuple(layer.output_shape[-nd:]),
        )

    @property
    def pixels(self) -> int:
        """Output positions over the batch: N·∏output."""
        return self.batch * math.prod(self.output_size)

    @property
    def macs(self) -> int:
        """N·∏out·Cout·(Cin/g)·∏k."""
        return self.pixels * self.out_channels * (self.in_channels // self.groups) * math.prod(self.kernel)

    @property
    def bytes(self) -> int:
        """Input + output + weight, each read or written once, at the dtype's size."""
        weight = self.out_channels * (self.in_channels // self.groups) * math.prod(self.kernel)
        numel = self.batch * (
            self.in_channels * math.prod(self.input_size) + self.out_channels * math.prod(self.output_size)
        )
        return (numel + weight) * ITEMSIZE.get(self.dtype, 4)

    def vector_macs(self, lanes: int = 1) -> int:
        """MACs with the vectorised channels padded to a multiple of ``lanes`` (idle SIMD lanes count).

        Vectorised: a depthwise conv's channels, a dense (groups 1) conv's output channels; grouped convs
        are not padded (their kernels vectorise across groups).
        """
        if lanes <= 1 or self.kind == "grouped":
            return self.macs
        c = self.in_channels if self.kind == "depthwise" else self.out_channels
        return self.macs * (-(-c // lanes) * lanes) // c

    @property
    def channels_per_group(self) -> int:
        """What one output sums over: Cin/g (a depthwise conv's channels instead: its parallel work)."""
        return self.in_channels if self.kind == "depthwise" else self.in_channels // self.groups


def kind_of(in_channels: int, out_channels: int, kernel: tuple[int, ...], groups: int) -> str:
    """The kind as ``analysis.inventory.conv_kind`` defines it (transposed and custom convs are not predicted)."""
    if groups == in_channels > 1 and out_channels % in_channels == 0:
        return "depthwise"
    if all(k == 1 for k in kernel):
        return "pointwise"
    return "grouped" if groups > 1 else "standard"


@dataclass(frozen=True)
class RooflineFit:
    """One kind's time model on one memory format (see the module docstring for the formula)."""

    overhead_seconds: float
    macs_per_second: float
    bytes_per_second: float  #: while the tensors fit ``cache_bytes``
    blend: float = 4.0  #: p of the soft maximum
    channel_half: float = 0.0  #: channels per group at which the MAC rate is halved
    pixel_half: float = 0.0  #: output pixels at which the MAC rate is halved
    cache_bytes: float = 4e6  #: tensors of this size move at a rate halfway to the slower one
    cache_slowdown: float = 0.0  #: far beyond ``cache_bytes`` bytes move (1 + this) times slower
    lanes: int = 1  #: SIMD width (elements) the vectorised channels are padded to; measured, not fitted
    points: int = 0  #: measured shapes it was fitted on (0: built in)
    rms_log_error: float | None = None  #: of the fit on those shapes (after the residual correction)
    #: per measured shape (``features``..., log(measured / roofline)): what the roofline missed, nearby
    residuals: tuple[tuple[float, ...], ...] = ()

    def seconds(self, macs: Any, nbytes: Any, channels: Any, pixels: Any) -> Any:
        """The roofline's time; plain arithmetic, so tensors pass through too (the fit differentiates it)."""
        eff = channels / (channels + self.channel_half) * pixels / (pixels + self.pixel_half)
        compute = macs / (self.macs_per_second * eff)
        memory = nbytes / self.bytes_per_second * (1 + self.cache_slowdown * nbytes / (nbytes + self.cache_bytes))
        # NB: scaled by the larger term (max written as arithmetic, for floats and tensors alike): a large blend
        # would underflow compute**p to 0 (and the fit's gradient to NaN)
        top = (compute + memory + abs(compute - memory)) / 2
        return self.overhead_seconds + top * ((compute / top) ** self.blend + (memory / top) ** self.blend) ** (
            1 / self.blend
        )

    def predict(self, shape: ConvShape) -> float:
        """The roofline's time for ``shape``, corrected by the residuals of the measured shapes near it."""
        return self.predict_all([shape])[0]

    def predict_all(self, shapes: Sequence[ConvShape]) -> list[float]:
        """``predict`` of each shape: the rooflines one by one (exact floats), the corrections in one batch."""
        lanes, seconds = self.lanes, self.seconds
        roofline = [float(seconds(s.vector_macs(lanes), s.bytes, s.channels_per_group, s.pixels)) for s in shapes]
        if not self.residuals:
            return roofline
        corrections = self.corrections([features(s) for s in shapes])
        return [r * math.exp(c) for r, c in zip(roofline, corrections, strict=True)]

    def correction(self, at: tuple[float, ...]) -> float:
        """Kernel-weighted mean of the residuals near ``at``, shrunk toward 0 where few are near.

        NB: a Gaussian kernel of width ``RESIDUAL_WIDTH`` in ``features`` space (a factor of 2 in
        channels or pixels is one unit), plus a pseudo-residual 0 of weight ``RESIDUAL_SHRINK``.
        """
        return self.corrections([at])[0]

    def corrections(self, ats: Sequence[Sequence[float]]) -> list[float]:
        """``correction`` at each of ``ats`` (of one length), in arrays: a Python loop took 22 us per shape."""
        if not ats or not self.residuals:
            return [0.0] * len(ats)
        import numpy as np  # NB: here, not at the top: an uncalibrated profile (no residuals) never needs it

        at, columns = np.array(ats, dtype=np.float64).T, self._residual_columns
        # NB: a 2-d array per feature (3x faster than a 3-d sum); no w @ residuals: BLAS may sum in another order
        w = np.exp(-sum((at[j, :, None] - columns[j]) ** 2 for j in range(len(at))) / (2 * RESIDUAL_WIDTH**2))
        return ((w * columns[len(at)]).sum(axis=1) / (w.sum(axis=1) + RESIDUAL_SHRINK)).tolist()

    @functools.cached_property
    def _residual_columns(self) -> Any:
        """``residuals`` as float64 columns, built once per fit (it is frozen; ``cached_property`` bypasses that)."""
        import numpy as np

        return np.array(self.residuals, dtype=np.float64).T.copy()


#: The residual correction's kernel width and shrinkage (``RooflineFit.correction``).
RESIDUAL_WIDTH, RESIDUAL_SHRINK = 1.0, 0.3


def features(shape: ConvShape) -> tuple[float, ...]:
    """Where a shape sits, for the residual correction: log2 channels in/out per group, log2 pixels, kernel, stride."""
    per_group_out = shape.out_channels // shape.groups if shape.kind != "depthwise" else shape.out_channels
    return (
        math.log2(max(shape.channels_per_group, 1)),
        math.log2(max(per_group_out, 1)),
        math.log2(max(shape.pixels, 1)),
        math.prod(shape.kernel) ** (1 / len(shape.kernel)) / 2,
        2.0 * (max(shape.stride) - 1),  # strided convs are other kernels: two units apart
    )


@dataclass(frozen=True)
class DeviceProfile:
    """Per memory format and kind a ``RooflineFit``; keyed by CPU, torch version, threads and device."""

    cpu: str
    torch_version: str
    threads: int
    device: str
    fits: dict[str, dict[str, RooflineFit]]  #: memory format → kind → fit
    #: memory format → how much longer two convs in a row take than the two alone (dw→pw over dw + pw)
    sequence_factor: dict[str, float] = field(default_factory=dict)
    calibrated: bool = True  #: False for ``default_profile()``: reports say "uncalibrated"
    version: int = PROFILE_VERSION
    budget_seconds: float | None = None  #: of the calibration
    load: float | None = None  #: other processes' CPU use during the calibration, in cores
    notes: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str, int, str]:
        """(CPU model, torch version, threads, device): a cache file is valid only for the same key and version."""
        return (self.cpu, self.torch_version, self.threads, self.device)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        doc = dataclasses.asdict(self)
        doc["notes"] = list(self.notes)
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> DeviceProfile:
        """Read ``to_dict``'s form back (KeyError/TypeError/ValueError on anything else)."""
        fits = {
            fmt: {
                kind: RooflineFit(**{**f, "residuals": tuple(map(tuple, f.get("residuals", ())))})
                for kind, f in k.items()
            }
            for fmt, k in doc["fits"].items()
        }
        return cls(**{**doc, "fits": fits, "notes": tuple(doc.get("notes", ()))})

    def to_json(self) -> str:
        """The profile as indented JSON."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> DeviceProfile:
        """Parse ``to_json``'s output."""
        return cls.from_dict(json.loads(text))


def predict_seconds(profile: DeviceProfile, shape: ConvShape) -> float:
    """Predicted seconds of one call of ``shape`` (a format or kind the profile lacks: contiguous, standard)."""
    return predict_many(profile, (shape,))[shape]


def predict_many(profile: DeviceProfile, shapes: Iterable[ConvShape]) -> dict[ConvShape, float]:
    """``predict_seconds`` of each distinct shape, in one ``RooflineFit.predict_all`` batch per fit."""
    batches: dict[int, tuple[RooflineFit, list[ConvShape]]] = {}
    for shape in dict.fromkeys(shapes):
        fits = profile.fits.get(shape.memory_format) or profile.fits["contiguous"]
        fit = fits.get(shape.kind) or fits["standard"]
        batches.setdefault(id(fit), (fit, []))[1].append(shape)
    return {s: t for fit, batch in batches.values() for s, t in zip(batch, fit.predict_all(batch), strict=True)}


def separable_parts(shape: ConvShape, order: str = "dw_pw", m: int = 1) -> tuple[ConvShape, ConvShape]:
    """The two convs of a separable form, as ``latency.measure.stand_ins`` builds them.

    dw_pw: depthwise Cin→Cin·m (k, stride) then 1×1 Cin·m→Cout (groups g); pw_dw: 1×1 Cin→Cout·m (groups
    g) at the input resolution, then depthwise Cout·m→Cout (k, stride).
    """
    ones = (1,) * len(shape.kernel)
    n, dtype, fmt = shape.batch, shape.dtype, shape.memory_format
    cin, cout, g, k, stride = shape.in_channels, shape.out_channels, shape.groups, shape.kernel, shape.stride
    if order == "dw_pw":
        first = ConvShape("depthwise", cin, cin * m, k, stride, cin, shape.input_size, n, dtype, fmt, shape.output_size)
        second = ConvShape("pointwise", cin * m, cout, ones, ones, g, shape.output_size, n, dtype, fmt)
    else:
        first = ConvShape("pointwise", cin, cout * m, ones, ones, g, shape.input_size, n, dtype, fmt)
        second = ConvShape(
            "depthwise", cout * m, cout, k, stride, cout * m, shape.input_size, n, dtype, fmt, shape.output_size
        )
    return first, second


def predict_forms(
    profile: DeviceProfile, shape: ConvShape, m: int = 1, cache: dict[ConvShape, float] | None = None
) -> dict[str, float]:
    """Predicted seconds of the conv and of its two separable forms at m, keyed ``original``, ``dw_pw``, ``pw_dw``.

    ``cache``: shape → ``predict_seconds``, shared by calls with this one profile (a model repeats its conv
    shapes and blocks share their separable parts: inception_v3 needs 73 distinct predictions of 120).
    """
    return predict_forms_many(profile, [(shape, m)], cache)[0]


def predict_forms_many(
    profile: DeviceProfile, requests: Iterable[tuple[ConvShape, int]], cache: dict[ConvShape, float] | None = None
) -> list[dict[str, float]]:
    """``predict_forms`` of each (shape, m); the convs ``cache`` lacks are predicted together (``predict_many``)."""
    known: dict[ConvShape, float] = {} if cache is None else cache
    plans = [(s, {o: separable_parts(s, o, m) for o in ("dw_pw", "pw_dw")}) for s, m in requests]
    known.update(predict_many(profile, (p for s, f in plans for p in (s, *f["dw_pw"], *f["pw_dw"]) if p not in known)))
    factor = profile.sequence_factor.get
    return [
        {"original": known[s]} | {o: factor(s.memory_format, 1.0) * sum(known[p] for p in ps) for o, ps in f.items()}
        for s, f in plans
    ]


#: Names that moved out of this module (``cache``, ``builtin``), still importable from it.
MOVED = {
    "cache_path": "cache",
    "cpu_model": "cache",
    "current_key": "cache",
    "load_profile": "cache",
    "save_profile": "cache",
    "BUILT_IN": "builtin",
    "DEFAULT_MARGIN": "builtin",
    "LANES": "builtin",
    "SEQUENCE": "builtin",
    "default_profile": "builtin",
}


def __getattr__(name: str) -> Any:
    """``from convaudit.latency.profile import load_profile`` (and the rest of ``MOVED``) keeps working."""
    if name in MOVED:
        import importlib

        return getattr(importlib.import_module(f"convaudit.latency.{MOVED[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
