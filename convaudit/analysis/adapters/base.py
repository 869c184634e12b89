"""What a conv-like module is as a conv: :class:`ConvSpec` and the :class:`ConvAdapter` that reads it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from torch.nn.modules.conv import _ConvNd

from convaudit.analysis.adapters.padding import SamePad, same_padding
from convaudit.analysis.rules.registry import own_forward
from convaudit.errors import UsageError

__all__ = ["STANDARD_CONV_TYPES", "ConvAdapter", "ConvLike", "ConvSpec"]

Shape = tuple[int, ...]
#: A conv-like nn.Module, read by attribute (in_channels, kernel_size, stride, ...): nn.Module's types know none.
ConvLike = Any

STANDARD_CONV_TYPES: tuple[type, ...] = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)
_PLAIN = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


@dataclass(frozen=True)
class ConvSpec:
    """The static description of a conv, from a module or a functional call's arguments."""

    type: str
    op: str  #: "module" | "functional"
    in_channels: int
    out_channels: int
    kernel_size: Shape
    stride: Shape
    padding: Shape | str  #: per dimension; (before, after) per dimension when asymmetric
    dilation: Shape
    groups: int
    bias: bool
    padding_mode: str
    transposed: bool
    custom: bool  #: a subclass with its own forward and no adapter, or a conv-like module of its own kind
    weight_is_parameter: bool = True
    params: int = 0
    reason: str | None = None  #: why its adapter says it is no candidate, whatever its shape


class ConvAdapter:
    """A module that computes what ``torch.nn.ConvNd`` computes from its own attributes.

    The torch.nn convs are registered with it; register it for a subclass whose ``forward`` differs only in
    what does not change the result. Subclasses override what differs: :meth:`reason` (never a candidate),
    :meth:`same_padding` (TF 'SAME' padding computed at run time), :meth:`static_padding`,
    :meth:`padding_mode`, :meth:`weight` and :meth:`bias` (what the forward really convolves with), and
    :attr:`note` (what a rewrite of it means, shown in the conversion report).
    """

    note: str | None = None
    custom = False  #: a conv-like module of its own kind ("custom" in reports), e.g. per-sample experts
    #: The forward runs one convolution, what :meth:`as_conv` computes after :meth:`pre_pad`, and otherwise
    #: only ops without multiply-accumulates (a pad, the weight standardisation): analysis then takes the
    #: output shape and MACs from :meth:`padding` and the module's configuration instead of running it.
    forward_is_one_conv = False

    def reason(self, module: ConvLike) -> str | None:
        """Why the module is never a candidate, or None (its kind and savings then decide)."""
        return None

    def same_padding(self, module: ConvLike) -> bool:
        """True when the forward pads the input TF 'SAME' from its size before the conv."""
        return False

    def static_padding(self, module: ConvLike) -> Shape | str:
        """The padding the conv itself applies (after any 'SAME' padding)."""
        padding = module.padding
        return padding if isinstance(padding, str) else tuple(int(p) for p in padding)

    def padding_mode(self, module: ConvLike) -> str:
        """How the conv itself pads (``zeros`` for a forward that calls F.conv* with its padding)."""
        return str(getattr(module, "padding_mode", "zeros"))

    def weight(self, module: ConvLike) -> torch.Tensor | None:
        """The weight the forward convolves with."""
        weight = getattr(module, "weight", None)
        return weight if isinstance(weight, torch.Tensor) else None

    def bias(self, module: ConvLike) -> torch.Tensor | None:
        """The bias the forward adds."""
        bias = getattr(module, "bias", None)
        return bias if isinstance(bias, torch.Tensor) else None

    # ------------------------------------------------------------ derived from the above

    def padding(self, module: ConvLike, input_shape: Shape) -> Shape | str:
        """The effective padding at an input of ``input_shape``: ints per dimension when symmetric, else
        (before, after) per dimension; the static padding when the input shape is unknown."""
        static = self.static_padding(module)
        nd = len(module.kernel_size)
        if not self.same_padding(module) or isinstance(static, str) or len(input_shape) < nd + 1:
            return static
        pairs = [
            same_padding(i, k, s, d)
            for i, k, s, d in zip(input_shape[-nd:], module.kernel_size, module.stride, module.dilation, strict=True)
        ]
        pairs = [(b + p, a + p) for (b, a), p in zip(pairs, static, strict=True)]
        if all(b == a for b, a in pairs):
            return tuple(b for b, _ in pairs)
        return tuple(v for pair in pairs for v in pair)

    def conv_shapes(self, module: ConvLike, input_shape: Shape) -> tuple[Shape, Shape] | None:
        """(the input its conv sees, after any 'SAME' padding; the output) at ``input_shape``; None when
        the input does not fit (PyTorch's own run then says why)."""
        nd = len(module.kernel_size)
        if getattr(module, "transposed", False) or len(input_shape) not in (nd + 1, nd + 2):
            return None
        padding = self.padding(module, input_shape)
        if input_shape[-nd - 1] != module.in_channels or isinstance(padding, str) or len(padding) not in (nd, 2 * nd):
            return None
        pairs = [(p, p) for p in padding] if len(padding) == nd else list(zip(padding[::2], padding[1::2], strict=True))
        padded = [i + before + after for i, (before, after) in zip(input_shape[-nd:], pairs, strict=True)]
        windows = zip(padded, module.kernel_size, module.stride, module.dilation, strict=True)
        spatial = [(i - d * (k - 1) - 1) // s + 1 for i, k, s, d in windows]
        if min(spatial) <= 0:
            return None
        return (*input_shape[:-nd], *padded), (*input_shape[: -nd - 1], int(module.out_channels), *spatial)

    def pre_pad(self, module: ConvLike) -> SamePad | None:
        """The padding module the rewrite puts before the conv (None when the conv pads statically)."""
        if not self.same_padding(module):
            return None
        return SamePad(module.kernel_size, module.stride, module.dilation)

    def as_conv(self, module: ConvLike) -> _ConvNd:
        """A torch.nn Conv1d/2d/3d that, after :meth:`pre_pad`, computes what ``module`` computes."""
        reason = self.reason(module)
        if reason is not None:
            raise UsageError(f"{type(module).__name__} is not rewritten: {reason}")
        if getattr(module, "transposed", False):
            raise UsageError(f"{type(module).__name__}: transposed convolutions are not rewritten")
        nd = len(module.kernel_size)
        plain = _PLAIN.get(nd)
        if plain is None:
            raise UsageError(f"{type(module).__name__}: a {nd}-d conv is not rewritten")
        if isinstance(module, plain) and not own_forward(type(module), plain):
            return module  # it computes what its torch.nn base computes
        weight, bias = self.weight(module), self.bias(module)
        if weight is None:
            raise UsageError(f"{type(module).__name__} has no weight to rewrite from")
        build: Callable[..., _ConvNd] = plain  # its argument types (per-class tuple lengths) are checked at run time
        with torch.device("meta"):
            conv = build(
                module.in_channels,
                module.out_channels,
                tuple(module.kernel_size),
                stride=tuple(module.stride),
                padding=self.static_padding(module),
                dilation=tuple(module.dilation),
                groups=module.groups,
                bias=bias is not None,
                padding_mode=self.padding_mode(module),
            )
        conv.weight = nn.Parameter(weight.detach(), requires_grad=False)
        if bias is not None:
            conv.bias = nn.Parameter(bias.detach(), requires_grad=False)
        return conv

    def spec(self, module: ConvLike, input_shape: Shape, custom: bool = False) -> ConvSpec:
        """The module's ConvSpec at its first call's input shape."""
        cls = type(module)
        return ConvSpec(
            type=f"{cls.__module__}.{cls.__qualname__}".replace("torch.nn.modules.conv.", "torch.nn."),
            op="module",
            in_channels=int(module.in_channels),
            out_channels=int(module.out_channels),
            kernel_size=tuple(module.kernel_size),
            stride=tuple(module.stride),
            padding=self.padding(module, input_shape),
            dilation=tuple(module.dilation),
            groups=int(module.groups),
            bias=getattr(module, "bias", None) is not None,
            padding_mode=self.padding_mode(module),
            transposed=bool(getattr(module, "transposed", False)),
            custom=custom or self.custom,
            params=sum(p.numel() for p in {id(p): p for p in module._parameters.values() if p is not None}.values()),
            reason=self.reason(module),
        )
