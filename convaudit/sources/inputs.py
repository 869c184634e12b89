"""Example inputs: shapes from the command line, values from example_inputs(), meta tensors, seeded real data.

Every stage takes inputs as ``(args, kwargs)``. A shape becomes a meta tensor (nothing is allocated)
of the model's own floating dtype; verification needs real data, which :func:`materialize` makes
from a fixed seed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from torch.utils._pytree import tree_leaves, tree_map

from convaudit.errors import ModelLoadError, UsageError

__all__ = [
    "DEFAULT_SHAPES",
    "MAX_NUMEL",
    "InputForm",
    "flat_tensors",
    "floating_dtype",
    "guess_shape",
    "image_shapes",
    "is_shape",
    "materialize",
    "normalize_inputs",
    "parse_shape",
    "split_inputs",
]


#: The largest element count torch can address in one tensor (its sizes are int64).
MAX_NUMEL = 2**62


def floating_dtype(model: nn.Module) -> torch.dtype:
    """The dtype inputs made from a shape should have: the model's first floating parameter's, else float32."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


DEFAULT_SHAPES = {1: (1, 1024), 2: (1, 224, 224), 3: (1, 16, 112, 112)}  # batch, spatial per conv rank


def parse_shape(text: str) -> tuple[int, ...]:
    """'1,3,224,224' or '1x3x224x224' → (1, 3, 224, 224); raises UsageError otherwise."""
    compact = text.replace(" ", "")
    shape = tuple(int(p) for p in re.split(r"[,x×]", compact)) if re.fullmatch(r"\d+([,x×]\d+)*", compact) else ()
    if not shape or any(d <= 0 for d in shape):
        raise UsageError(f"--input-shape {text!r} is not a shape; write positive integers like 1,3,224,224")
    if math.prod(shape) >= MAX_NUMEL:
        raise UsageError(
            f"--input-shape {text!r} has {math.prod(shape):.3g} elements, more than a tensor can hold; "
            "give a smaller shape"
        )
    return shape


@dataclass(frozen=True)
class InputForm:
    """How shapes (``--input-shape``) become a model's positional inputs.

    The default: one meta tensor per shape, of the model's floating dtype. ``names``/``dtypes``: the inputs a
    graph declares (an ONNX file's), so each shape gets its input's dtype and the count is checked.
    ``images``: the model takes one list of ``[C, H, W]`` images (torchvision's detectors); each shape is
    one image, and an ``N,C,H,W`` shape is N images of ``C,H,W``.
    """

    names: tuple[str, ...] = ()
    dtypes: tuple[torch.dtype, ...] = ()
    images: bool = False

    def inputs(self, shapes: Sequence[tuple[int, ...]], dtype: torch.dtype, source: str) -> tuple:
        """Meta tensors (nothing allocated) for ``shapes``; ``dtype`` where the form names none."""
        if self.names and len(shapes) != len(self.names):
            listed = ", ".join(self.names)
            raise UsageError(
                f"{source} has {len(self.names)} input{'s' if len(self.names) != 1 else ''} ({listed}) but "
                f"{len(shapes)} --input-shape {'were' if len(shapes) != 1 else 'was'} given; "
                "give one per input, in order"
            )
        if self.images:
            return ([torch.empty(s, dtype=dtype, device="meta") for s in image_shapes(shapes, source)],)
        return tuple(
            torch.empty(s, dtype=self.dtypes[i] if i < len(self.dtypes) else dtype, device="meta")
            for i, s in enumerate(shapes)
        )


def image_shapes(shapes: Sequence[tuple[int, ...]], source: str) -> list[tuple[int, ...]]:
    """Per-image ``(C, H, W)`` shapes: a 3-D shape is one image, ``N,C,H,W`` is N of them."""
    out: list[tuple[int, ...]] = []
    for s in shapes:
        if len(s) not in (3, 4):
            text = ",".join(map(str, s))
            raise UsageError(
                f"--input-shape {text}: {source} takes a list of images; give C,H,W per image (e.g. 3,320,320), "
                "repeated for more images, or N,C,H,W"
            )
        out += [tuple(s[1:])] * s[0] if len(s) == 4 else [tuple(s)]
    return out


def split_inputs(value: Any, where: str) -> tuple[tuple, dict]:
    """A tensor, a tuple of positional inputs, a dict of keyword inputs, or (tuple, dict)."""
    if isinstance(value, torch.Tensor):
        return (value,), {}
    if isinstance(value, dict):
        return (), dict(value)
    if isinstance(value, (tuple, list)):
        if len(value) == 2 and isinstance(value[0], (tuple, list)) and isinstance(value[1], dict):
            return tuple(value[0]), dict(value[1])
        return tuple(value), {}
    raise ModelLoadError(
        f"{where} returned {type(value).__name__}; return a tensor, a tuple of inputs, a dict, or (args, kwargs)"
    )


def guess_shape(model: nn.Module, spec: str) -> tuple[int, ...]:
    """(batch, channels, *spatial) for the model's first conv, or (1, in_features) for its first Linear."""
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            batch, *spatial = DEFAULT_SHAPES[len(m.kernel_size)]
            return (batch, m.in_channels, *spatial)
        if isinstance(m, nn.Linear):
            return (1, m.in_features)
    raise UsageError(f"{spec}: cannot guess an input shape (no conv or linear layer); pass --input-shape")


def normalize_inputs(
    example_inputs: Any, example_kwargs: Mapping[str, Any] | None, input_shape: Any, dtype: torch.dtype = torch.float32
) -> tuple[tuple, dict]:
    """Normalise inputs to (args, kwargs); shapes become meta tensors of ``dtype`` (nothing is allocated)."""
    if example_kwargs is not None and not isinstance(example_kwargs, Mapping):
        raise UsageError(f"example_kwargs is a {type(example_kwargs).__name__}; give a dict of keyword inputs")
    if input_shape is not None:
        if example_inputs is not None:
            raise UsageError("give example_inputs or input_shape, not both")
        shapes = [input_shape] if is_shape(input_shape) else list(input_shape)
        if not shapes or not all(is_shape(s) for s in shapes):
            raise UsageError(
                f"input_shape {input_shape!r}: give positive integers like (1, 3, 224, 224), or a list of such"
            )
        return tuple(torch.empty(tuple(s), dtype=dtype, device="meta") for s in shapes), dict(example_kwargs or {})
    if example_inputs is None and not example_kwargs:
        raise UsageError("no example inputs: pass example_inputs=... or input_shape=(1, 3, 224, 224)")
    if isinstance(example_inputs, torch.Tensor):
        args: tuple = (example_inputs,)
    elif example_inputs is None or isinstance(example_inputs, (tuple, list)):
        args = tuple(example_inputs or ())
    else:
        raise UsageError(f"example_inputs is a {type(example_inputs).__name__}; give a tensor or a tuple of inputs")
    return args, dict(example_kwargs or {})


def is_shape(value: Any) -> bool:
    """A sequence of positive ints whose product torch can hold."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        return False
    if not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in value):
        return False
    return math.prod(value) < MAX_NUMEL


def flat_tensors(args: tuple, kwargs: dict) -> list[torch.Tensor]:
    """The tensors among positional and keyword inputs, in order (inside lists too: a detector's images)."""
    flat = tree_leaves(list(args)) + tree_leaves(list(kwargs.values()))
    return [t for t in flat if isinstance(t, torch.Tensor)]


def materialize(value: Any) -> Any:
    """Meta inputs (from shapes) become seeded random tensors: verification needs real data."""
    gen = torch.Generator().manual_seed(0)

    def real(t: Any) -> Any:
        if isinstance(t, torch.Tensor) and t.is_meta:
            return (
                torch.randn(t.shape, generator=gen, dtype=t.dtype)
                if t.is_floating_point()
                else torch.zeros(t.shape, dtype=t.dtype)
            )
        return t

    return tree_map(real, value)
