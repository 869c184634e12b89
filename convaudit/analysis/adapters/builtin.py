"""The adapters convaudit ships: TF 'SAME' convs, weight-standardised convs, per-sample experts, and
the timm classes they are registered for (by module path and name: nothing here imports timm)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from convaudit.analysis.adapters.base import ConvAdapter, ConvLike, Shape

__all__ = ["TIMM_CLASSES", "NotACandidate", "PerSampleExperts", "StandardizedConv", "TFSameConv"]


class TFSameConv(ConvAdapter):
    """TF 'SAME' padding from the input size, then a conv without padding (timm's ``Conv2dSame``)."""

    forward_is_one_conv = True

    def same_padding(self, module: ConvLike) -> bool:
        return True

    def static_padding(self, module: ConvLike) -> Shape:
        return (0,) * len(module.kernel_size)  # conv2d_same convolves with padding 0 whatever .padding says

    def padding_mode(self, module: ConvLike) -> str:
        return "zeros"


class StandardizedConv(ConvAdapter):
    """Weight Standardization (timm's ``StdConv2d``, ``ScaledStdConv2d`` and their ``*Same`` variants).

    The forward convolves with ``F.batch_norm(W.reshape(1, Cout, -1), None, None, gain·scale, training=True,
    eps)``: every output channel's kernel with zero mean and unit (biased) variance, times ``gain·scale`` when
    ``scaled``. The rewrite factorises that effective weight: it is inference-equivalent (the standardisation
    is folded into the weights; training the rewritten layer no longer standardises them).
    """

    note = "inference-equivalent: the weight standardisation is folded into the separable weights"
    forward_is_one_conv = True

    def __init__(self, scaled: bool) -> None:
        self.scaled = scaled

    def same_padding(self, module: ConvLike) -> bool:
        return bool(getattr(module, "same_pad", False))  # the *Same variants pad at run time unless static

    def padding_mode(self, module: ConvLike) -> str:
        return "zeros"

    def weight(self, module: ConvLike) -> torch.Tensor | None:
        w = module.weight
        with torch.no_grad():
            gain = (module.gain * module.scale).view(-1) if self.scaled else None
            flat = F.batch_norm(
                w.reshape(1, module.out_channels, -1), None, None, gain, training=True, momentum=0.0, eps=module.eps
            )
        return flat.reshape_as(w)


class NotACandidate(ConvAdapter):
    """A conv-like module listed and costed as a conv, but never rewritten, for a fixed reason."""

    custom = True

    def __init__(self, why: str) -> None:
        self.why = why

    def reason(self, module: ConvLike) -> str | None:
        return self.why

    def weight(self, module: ConvLike) -> torch.Tensor | None:
        return None


class PerSampleExperts(NotACandidate):
    """Per-sample expert kernels (timm's ``CondConv2d``): each input's kernel is mixed by its routing weights.

    Listed and costed as one conv (its MACs are its forward's: the expert mixing and the grouped conv over
    the batch); never a candidate, as no fixed weight exists to factorise.
    """

    def __init__(self) -> None:
        super().__init__(
            "per-sample expert kernels (CondConv): each input's kernel is mixed from the experts by its own "
            "routing weights, so there is no fixed weight to factorise"
        )

    def same_padding(self, module: ConvLike) -> bool:
        return bool(getattr(module, "dynamic_padding", False))


#: timm's conv classes: (module under timm.layers, or timm.models.layers before timm 0.9; class name; adapter).
TIMM_CLASSES: tuple[tuple[str, str, ConvAdapter], ...] = (
    ("conv2d_same", "Conv2dSame", TFSameConv()),
    ("std_conv", "StdConv2d", StandardizedConv(scaled=False)),
    ("std_conv", "StdConv2dSame", StandardizedConv(scaled=False)),
    ("std_conv", "ScaledStdConv2d", StandardizedConv(scaled=True)),
    ("std_conv", "ScaledStdConv2dSame", StandardizedConv(scaled=True)),
    ("cond_conv2d", "CondConv2d", PerSampleExperts()),
)
