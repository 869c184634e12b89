"""The whole model timed before and after converting its recommended set (``convaudit report --measure``).

Analysis may not import conversion, so the end-to-end figure is taken here, one stage above both:
the analysis' recommendations are planned (``select="recommended"``), rewritten on a copy from the
layers' own weights (SVD), and the original and the copy are timed interleaved by
``latency.measure.measure_end_to_end``. The user's model is never changed (the memory format is set
on copies).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from convaudit.conversion.layers import SeparableConv
from convaudit.conversion.planning import Choice, plan_conversion
from convaudit.conversion.rewrite import rewrite
from convaudit.documents.latency import EndToEnd
from convaudit.documents.records import Analysis
from convaudit.latency.measure import BOTH, MEMORY_FORMATS, measure_end_to_end
from convaudit.options import ConversionOptions
from convaudit.sources.inputs import materialize
from convaudit.vocab import Select

__all__ = ["measure_recommended"]


def measure_recommended(
    model: nn.Module,
    analysis: Analysis,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    max_seconds: float = 30.0,
    memory_format: str = "contiguous",
    leaf_types: Sequence[type] = (),
    progress: Callable[[int, int], None] | None = None,
) -> EndToEnd | None:
    """The model against a copy with its recommended layers converted, timed end to end; None: none recommended.

    Args:
        analysis: of ``model`` at these inputs, with recommendations (any ``convaudit.analyze`` result).
        args, kwargs: the example inputs (meta tensors are replaced by seeded random ones).
        max_seconds: the time cap of the interleaved comparison.
        memory_format: "channels_last" times copies of both models and inputs in that layout; "both"
            times each layout in turn (contiguous the record's figures, channels_last in ``by_format``).
    """
    plan = plan_conversion(analysis, ConversionOptions(select=Select.RECOMMENDED, leaf_types=tuple(leaf_types)))
    if not plan.choices:
        return None

    def factory(choice: Choice, conv: nn.Module, inputs: Any) -> SeparableConv:
        return SeparableConv.from_conv(conv, rank=choice.rank, order=choice.order)

    converted, _ = rewrite(model, plan.choices, factory, leaf_types=leaf_types)
    real_args, real_kwargs = materialize(tuple(args)), materialize(dict(kwargs or {}))
    formats = MEMORY_FORMATS if memory_format == BOTH else (memory_format,)
    layers = tuple(c.name for c in plan.choices)
    found = {}
    for fmt in formats:
        original, copy_, a, k = model, converted, real_args, real_kwargs
        if fmt == "channels_last":  # on copies: the user's model keeps its layout
            original = copy.deepcopy(model).to(memory_format=torch.channels_last)
            copy_ = copy.deepcopy(converted).to(memory_format=torch.channels_last)
            a, k = _channels_last(real_args), _channels_last(real_kwargs)
        before, after, reliable = measure_end_to_end(original, copy_, a, k, max_seconds=max_seconds, progress=progress)
        found[fmt] = EndToEnd(before, after, reliable, layers, fmt)
    primary = found[formats[0]]
    return dataclasses.replace(primary, by_format=found) if len(formats) > 1 else primary


def _channels_last(value: Any) -> Any:
    """4-d tensors in ``value`` (a tuple or dict of inputs) in channels_last; anything else as it is."""
    if isinstance(value, torch.Tensor):
        return value.contiguous(memory_format=torch.channels_last) if value.dim() == 4 else value
    if isinstance(value, dict):
        return {k: _channels_last(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(_channels_last(v) for v in value)
    return value
