"""The fit of a ``DeviceProfile``: least squares on log time per (memory format, kind), from measured samples.

``fit_profile`` fits each (format, kind) by least squares on log time, over the log of the fit's
parameters, with a weak pull toward the prior's (``PRIOR_WEIGHT``: a group with few shapes stays near it),
and keeps each shape's residual for the profile's local correction. The SIMD width (``RooflineFit.lanes``)
is the prior's: measured from the CPU (``calibrate.simd_lanes``), never fitted.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from convaudit.latency.profile import KINDS, MEMORY_FORMATS, ConvShape, DeviceProfile, RooflineFit, features

__all__ = ["MIN_POINTS", "PARAMS", "PRIOR_WEIGHT", "RESCALE_SHRINK", "Sample", "fit_kind", "fit_profile", "predict_one"]

MIN_POINTS = 24  #: shapes a group needs for a full fit (fewer: the prior, rescaled)
RESCALE_SHRINK = 4  #: pseudo-shapes at the prior's speed when a group is only rescaled (``_rescaled``)
PRIOR_WEIGHT = 1e-6  #: weight of the pull toward the prior's log-parameters, against mean squared log error
#: (NB: 1e-5 outweighed a 0.01 rms misfit when the prior's blend is near 1: log(p - 1) is far from everything)
PARAMS = (
    "overhead_seconds",
    "macs_per_second",
    "bytes_per_second",
    "blend",
    "channel_half",
    "pixel_half",
    "cache_bytes",
    "cache_slowdown",
)
BLEND, SLOWDOWN = PARAMS.index("blend"), PARAMS.index("cache_slowdown")
#: Generic shape parameters ``fit_kind`` also starts from (with the prior's rates).
STARTS: tuple[dict[str, float], ...] = (
    {"blend": 4.0, "channel_half": 8.0, "pixel_half": 40.0, "cache_bytes": 4e6, "cache_slowdown": 1.0},
    {"blend": 2.0, "channel_half": 2.0, "pixel_half": 10.0, "cache_bytes": 1e7, "cache_slowdown": 3.0},
)


@dataclass(frozen=True)
class Sample:
    """One measured shape: seconds per call (for a ``sequence``, the dw→pw pair and its parts' sum too)."""

    shape: ConvShape
    seconds: float
    parts_seconds: float | None = None  #: a dw→pw pair's dw + pw time, measured beside it


def fit_profile(samples: Sequence[Sample], prior: DeviceProfile, prior_weight: float = PRIOR_WEIGHT) -> DeviceProfile:
    """Fit every (format, kind) with samples; the rest keep ``prior``'s fit. Sequence samples give the factor."""
    fits: dict[str, dict[str, RooflineFit]] = {}
    factors: dict[str, float] = {}
    notes = []
    for fmt in MEMORY_FORMATS:
        fits[fmt] = {}
        for kind in KINDS:
            pts = [
                s for s in samples if s.parts_seconds is None and (s.shape.memory_format, s.shape.kind) == (fmt, kind)
            ]
            base = prior.fits[fmt][kind]
            fits[fmt][kind] = fit_kind(pts, base, prior_weight) if pts else base
            if not pts:
                notes.append(f"{fmt} {kind}: no shape measured, prior kept")
            elif len(pts) >= MIN_POINTS and _params(fits[fmt][kind]) == _params(base):
                notes.append(f"{fmt} {kind}: the fit diverged from every start, prior kept ({len(pts)} shapes)")
        logs = [
            math.log(s.seconds / s.parts_seconds) for s in samples if s.parts_seconds and s.shape.memory_format == fmt
        ]
        # NB: the median, robust to an outlying pair; a fitted factor · parts + seconds did worse on bench_latency.py
        factors[fmt] = math.exp(statistics.median(logs)) if logs else prior.sequence_factor.get(fmt, 1.0)
    return DeviceProfile(*prior.key, fits, factors, calibrated=True, notes=tuple(notes))


def fit_kind(
    samples: Sequence[Sample], prior: RooflineFit, prior_weight: float = PRIOR_WEIGHT, iterations: int = 200
) -> RooflineFit:
    """Least squares on log seconds over log-parameters, pulled weakly toward ``prior``; the best of a few starts.

    The starts: the prior itself, and the prior's rates with generic shape parameters (``STARTS``): the
    surface has local minima (a blend near 1 trades against the efficiency terms). Under ``MIN_POINTS``
    shapes only the prior's speed is rescaled (its median log error), nothing more can be told.
    """
    if len(samples) < MIN_POINTS:
        return _rescaled(samples, prior)
    x = torch.tensor(
        [
            (s.shape.vector_macs(prior.lanes), s.shape.bytes, s.shape.channels_per_group, s.shape.pixels)
            for s in samples
        ],
        dtype=torch.float64,
    )
    y = torch.tensor([math.log(s.seconds) for s in samples], dtype=torch.float64)
    theta0 = torch.tensor(_encode(prior), dtype=torch.float64)
    best: tuple[float, torch.Tensor] | None = None
    for start in (prior, *(dataclasses.replace(prior, **shape) for shape in STARTS)):  # type: ignore[arg-type]
        theta = torch.tensor(_encode(start), dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS(
            [theta],
            max_iter=iterations,
            max_eval=int(1.5 * iterations),
            line_search_fn="strong_wolfe",
            tolerance_grad=1e-9,
            tolerance_change=1e-12,
        )

        def loss(theta: torch.Tensor = theta, opt: torch.optim.Optimizer = opt) -> torch.Tensor:
            opt.zero_grad()
            fit = _decode(theta)
            pred = fit.seconds(x[:, 0], x[:, 1], x[:, 2], x[:, 3]).log()
            value = ((pred - y) ** 2).mean() + prior_weight * ((theta - theta0) ** 2).sum()
            value.backward()
            return value

        with torch.enable_grad():
            opt.step(loss)
            value = float(loss().detach())
        if math.isfinite(value) and (best is None or value < best[0]):
            best = (value, theta.detach())
    found = dataclasses.replace(_decode(best[1], float), lanes=prior.lanes) if best is not None else prior
    logs = [math.log(s.seconds / predict_one(found, s.shape)) for s in samples]
    rms = math.sqrt(statistics.fmean(r * r for r in logs))
    residuals = tuple((*features(s.shape), round(r, 4)) for s, r in zip(samples, logs, strict=True))
    return dataclasses.replace(found, points=len(samples), rms_log_error=round(rms, 4), residuals=residuals)


def _rescaled(samples: Sequence[Sample], prior: RooflineFit) -> RooflineFit:
    """``prior`` made uniformly faster or slower by the median log error of ``samples``."""
    logs = [math.log(s.seconds / predict_one(prior, s.shape)) for s in samples]
    # NB: shrunk toward the prior by n / (n + RESCALE_SHRINK): one noisy shape must not rescale a kind 1000×
    scale = math.exp(statistics.median(logs) * len(logs) / (len(logs) + RESCALE_SHRINK))
    rms = math.sqrt(statistics.fmean((r - math.log(scale)) ** 2 for r in logs))
    return dataclasses.replace(
        prior,
        overhead_seconds=prior.overhead_seconds * scale,
        macs_per_second=prior.macs_per_second / scale,
        bytes_per_second=prior.bytes_per_second / scale,
        points=len(samples),
        rms_log_error=round(rms, 4),
        residuals=(),
    )


def predict_one(fit: RooflineFit, shape: ConvShape) -> float:
    """``fit``'s roofline time for ``shape`` (no residual correction)."""
    return float(fit.seconds(shape.vector_macs(fit.lanes), shape.bytes, shape.channels_per_group, shape.pixels))


def _params(fit: RooflineFit) -> tuple[float, ...]:
    return tuple(getattr(fit, name) for name in PARAMS)


def _encode(fit: RooflineFit) -> list[float]:
    """The fitted parameters as logs, so each stays positive: the blend as log(p - 1), the slowdown as log(1 + r)."""
    values = list(_params(fit))
    values[BLEND] -= 1
    values[SLOWDOWN] += 1
    return [math.log(max(v, 1e-3)) for v in values]


def _decode(theta: torch.Tensor, cast: Callable[[torch.Tensor], Any] = lambda t: t) -> RooflineFit:
    """``_encode``'s inverse (tensor fields while fitting, ``cast=float`` for the result)."""
    values = [cast(v) for v in theta.exp()]
    values[BLEND], values[SLOWDOWN] = values[BLEND] + 1, values[SLOWDOWN] - 1
    return RooflineFit(**dict(zip(PARAMS, values, strict=True)))
