"""The built-in device profile: what reports predict with on a machine nobody calibrated ("uncalibrated").

The constants are a fit on the development machine (``calibrate.fit_profile``), rounded; ``default_profile``
makes them conservative (separable forms ``DEFAULT_MARGIN`` slower), so an uncalibrated recommendation to
convert must pay off by that margin.
"""

from __future__ import annotations

from convaudit.latency.profile import MEMORY_FORMATS, DeviceProfile, RooflineFit

__all__ = ["BUILT_IN", "DEFAULT_MARGIN", "LANES", "SEQUENCE", "default_profile"]

#: The roofline fitted on the development machine (a 2-core AMD EPYC with AVX-512, torch 2.14.1, 1 thread;
#: ``calibrate`` with 150 s, 516 shapes, 39-76 per group, rms log error 0.19-0.39, other processes using
#: 1.4 cores), profile version 2 (MACs padded to ``LANES``), rounded to 3 digits: per memory format and kind
#: the fields of ``RooflineFit`` from ``overhead_seconds`` to ``cache_slowdown``. No residual correction:
#: another machine's quirks are not this one's.
BUILT_IN: dict[str, dict[str, tuple[float, ...]]] = {
    "contiguous": {
        "standard": (7.8e-05, 3.85e10, 3.71e10, 1.01, 0.0345, 0.172, 1.43e07, 43.1),
        "grouped": (0.000116, 2.54e10, 1.65e10, 2.43, 1.23, 0.433, 2.29e07, 33.5),
        "depthwise": (0.000103, 3.27e10, 9.6e09, 1.01, 1.85, 2.58, 4.14e07, 7.4),
        "pointwise": (1.64e-05, 3.48e10, 1.54e10, 1.01, 0.0362, 6.39, 2.85e08, 75.3),
    },
    "channels_last": {
        "standard": (5.48e-05, 3.43e10, 2.1e11, 1.01, 0.0172, 5.82, 3.36e07, 143.0),
        "grouped": (7.23e-05, 2.58e10, 3.07e09, 3.92, 0.0715, 0.751, 2.76e07, 3.03),
        "depthwise": (6.73e-05, 3.07e10, 3.15e10, 1.37, 0.113, 74.2, 8.94e06, 5.34),
        "pointwise": (1.3e-05, 3.4e10, 9.26e09, 1.15, 0.0412, 0.196, 5.34e07, 3.26),
    },
}
#: The SIMD width ``BUILT_IN`` was fitted at (``RooflineFit.lanes``: AVX-512, 16 fp32 lanes).
LANES = 16
#: ``DeviceProfile.sequence_factor`` as fitted with ``BUILT_IN``.
SEQUENCE: dict[str, float] = {"contiguous": 1.22, "channels_last": 1.21}
#: The default profile predicts separable forms this much slower than the fit: a conversion it
#: recommends must pay off by this margin on a machine nobody calibrated.
DEFAULT_MARGIN = 1.25


def default_profile() -> DeviceProfile:
    """The conservative built-in profile: ``BUILT_IN``'s fit, depthwise and pointwise ``DEFAULT_MARGIN`` slower.

    Used when no calibrated profile is cached (reports say "uncalibrated"); deterministic, so tests can pin it.
    """
    fits: dict[str, dict[str, RooflineFit]] = {}
    for fmt, kinds in BUILT_IN.items():
        fits[fmt] = {}
        for kind, (o, macs, nbytes, blend, channels, pixels, cache, slowdown) in kinds.items():
            slow = DEFAULT_MARGIN if kind in ("depthwise", "pointwise") else 1.0
            fits[fmt][kind] = RooflineFit(
                o * slow, macs / slow, nbytes / slow, blend, channels, pixels, cache, slowdown, lanes=LANES
            )
    return DeviceProfile(
        "built-in",
        "any",
        0,
        "cpu",
        fits,
        dict.fromkeys(MEMORY_FORMATS, 1.0),
        calibrated=False,
        notes=(f"uncalibrated: built-in profile, separable forms predicted {DEFAULT_MARGIN:g}× slower than fitted",),
    )
