"""Verification of one conversion on the example inputs: the final output's error and each layer's alone.

The original's output and each replaced conv's inputs are recorded before the rewrite (:class:`Reference`),
so ``inplace=True`` is verified against the model as it was; every converted module conv is then checked
alone on the inputs it really received. ``--exact`` fails above :data:`EXACT_TOLERANCE`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from torch.utils._pytree import tree_flatten

from convaudit.analysis.adapters import is_conv_module
from convaudit.analysis.guard import eval_mode, untouched
from convaudit.conversion.detections import comparable, is_detection_output
from convaudit.conversion.fidelity import compare_outputs
from convaudit.conversion.layers import SeparableConv
from convaudit.conversion.rewrite import capture_conv_inputs
from convaudit.documents.records import ConversionReport
from convaudit.errors import ConvauditError, UsageError

__all__ = [
    "EXACT_TOLERANCE",
    "Reference",
    "VerificationError",
    "check_exact",
    "conversion_errors",
    "output_error",
    "relative_error",
]

#: ``--exact`` fails when a layer's relative error exceeds this.
EXACT_TOLERANCE = 1e-4


class VerificationError(ConvauditError):
    """The converted model does not do what the conversion promised."""


@dataclass
class Reference:
    """The original model's behaviour on the example inputs, recorded before anything is rewritten."""

    output: Any
    convs: dict[str, nn.Module]  #: the original conv modules about to be replaced (kept alive here)
    inputs: dict[str, list[torch.Tensor]]  #: what each of them received

    @classmethod
    def take(cls, model: nn.Module, names: Sequence[str], args: tuple, kwargs: dict) -> Reference:
        """Run ``model`` once on the example inputs (eval mode, no_grad, left as found), recording what it does."""
        convs = {n: m for n in names if is_conv_module(m := _get(model, n))}
        outputs: list[Any] = []
        # eval mode, flags and everything the forward may change restored after: no copy of the model needed
        with torch.no_grad(), untouched(model), eval_mode(model):
            inputs = capture_conv_inputs(model, list(convs), [(args, kwargs)], outputs)
        return cls(outputs[0], convs, inputs)


def conversion_errors(
    reference: Reference, converted: nn.Module, replaced: dict[str, SeparableConv], args: tuple, kwargs: dict
) -> tuple[float | None, dict[str, float | None], Any]:
    """The final output's relative error, each replaced conv's alone on the inputs it really received, and the
    converted model's output (fidelity on the example inputs reads it instead of running the models again)."""
    with torch.no_grad(), eval_mode(converted):
        got = converted(*args, **kwargs)
        layer_errors: dict[str, float | None] = {}
        for name, conv in reference.convs.items():
            with untouched(conv):  # the user's conv (its hooks run as in the model, their traces do not stay)
                errs = [relative_error(replaced[name](x), conv(x)) for x in reference.inputs[name]]
            layer_errors[name] = max(errs) if errs else None
    return output_error(got, reference.output), layer_errors, got


def check_exact(report: ConversionReport) -> None:
    """--exact: raise when a layer's (or the output's) relative error exceeds EXACT_TOLERANCE."""
    bad = [
        layer for layer in report.layers if layer.relative_error is not None and layer.relative_error > EXACT_TOLERANCE
    ]
    if bad or (report.output_error or 0.0) > EXACT_TOLERANCE:
        worst = max(bad, key=lambda layer: layer.relative_error or 0.0) if bad else None
        where = (
            f"layer '{worst.name}' has relative error {worst.relative_error:.2e}"
            if worst
            else f"the output error is {report.output_error:.2e}"
        )
        raise VerificationError(f"--exact: {where} > {EXACT_TOLERANCE:g}; use --rank full for an exact rewrite")


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    """‖got − expected‖ / ‖expected‖ in float64 (the absolute error when ``expected`` is zero)."""
    g, e = got.detach().double(), expected.detach().double()
    denom = float(e.norm())
    return float((g - e).norm()) / denom if denom > 0 else float((g - e).norm())


def output_error(got: Any, expected: Any) -> float | None:
    """The largest relative error over the float tensors of two outputs of the same structure (None: none).

    Detector outputs are compared as sets of detections, as fidelity compares them (``detections.aligned``):
    the worst float field's error over the images, a lost or extra detection against zeros. Other leaves
    whose leading size differs (how many items a model keeps depends on the values) count as 1.0.
    """
    if is_detection_output(expected) and comparable(expected, got):
        try:  # the worst float field's error over the images, pooled as fidelity pools it
            return compare_outputs([expected], [got], inputs="example inputs").relative_error
        except UsageError:  # neither model detected anything: no values to compare
            return None
    g_flat, _ = tree_flatten(got)
    e_flat, _ = tree_flatten(expected)
    if len(g_flat) != len(e_flat):
        return None
    pairs = [
        (g, e)
        for g, e in zip(g_flat, e_flat, strict=True)
        if isinstance(g, torch.Tensor) and isinstance(e, torch.Tensor)
    ]
    if not pairs:
        return None
    if any(g.shape != e.shape for g, e in pairs):
        if all(g.dim() > 0 and g.shape[1:] == e.shape[1:] for g, e in pairs):
            return 1.0  # only counts differ (a detector keeping other boxes): total disagreement, as fidelity says
        raise VerificationError(
            f"output shapes changed: {[tuple(g.shape) for g, _ in pairs]} vs {[tuple(e.shape) for _, e in pairs]}"
        )
    errors = [relative_error(g, e) for g, e in pairs if g.is_floating_point() and e.numel()]
    return max(errors) if errors else None  # None: no float values to compare (no boxes kept, or integers only)


def _get(root: nn.Module, name: str) -> nn.Module | None:
    try:
        return root.get_submodule(name)
    except AttributeError:
        return None
