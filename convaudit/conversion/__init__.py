"""Conversion: factorisation math, separable layers, planning, rewrite, verification, and the artifact.

planning (which layers, which m) → layers (SeparableConv from a conv's weights, via factorize) →
rewrite (on a copy) → convert (verify against the original) → artifact (model.py, weights, report)
"""

from convaudit.conversion.convert import Conversion, convert
from convaudit.conversion.layers import (
    SeparableConv,
    SeparableConv1d,
    SeparableConv2d,
    SeparableConv3d,
)

__all__ = ["Conversion", "SeparableConv", "SeparableConv1d", "SeparableConv2d", "SeparableConv3d", "convert"]
