"""Costs of executed calls: the conv inventory, MACs of every other op, and whole-model totals."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn as nn

from convaudit.analysis.inventory import build_layer, call_macs, conv_spec, is_conv_call
from convaudit.analysis.propagation import CONVOLUTION_OPS, AtenOp, Call
from convaudit.analysis.rules.costs import CATEGORY, MAC_RULES, OpCall
from convaudit.analysis.rules.registry import MISSING
from convaudit.documents.records import ConvLayer, OpSummary, Totals

__all__ = ["call_cost", "conv_layers", "layer_name", "model_totals", "op_summaries", "uncosted"]

Shape = tuple[int, ...]


def _shape(t: Any) -> Shape:
    return tuple(t.shape) if isinstance(t, torch.Tensor) else ()


def conv_layers(
    calls: list[Call], root: nn.Module, locate: Callable[[str], str | None], locate_param: Callable[[str], str | None]
) -> list[ConvLayer]:
    """One ConvLayer per conv (module or functional weight), its calls aggregated, in first-call order.

    ``locate(module name)`` and ``locate_param(parameter target)`` give the defining file:line.
    """
    grouped: dict[str, list[Call]] = defaultdict(list)
    for call in calls:
        if is_conv_call(call):
            grouped[layer_name(call)].append(call)
    layers = []
    built: dict[tuple, ConvLayer] = {}  # NB: a model repeats its convs' configurations (blocks): each built once
    for name, group in grouped.items():
        spec = conv_spec(group[0])
        shapes = []
        for call in group:
            i, o = _shape(call.args[0]), _shape(call.out)
            # a conv's MACs are its convolutions' (CondConv's routing matmul stays in the totals, not here)
            if call.aten is None:
                macs = call_macs(spec, i, o)
            else:
                macs = sum(op.macs for op in call.aten if op.name in CONVOLUTION_OPS)
            shapes.append((i, o, macs))
        first = group[0]
        if first.node_op == "call_module":
            source = locate(first.name)
        elif first.weight_target:
            source = locate_param(first.weight_target)
        else:
            source = locate(first.owner)
        dtype = first.out.dtype if isinstance(first.out, torch.Tensor) else torch.float32
        key = _configuration(spec, shapes, dtype)
        like = built.get(key)
        if like is None:
            layers.append(built.setdefault(key, build_layer(name, spec, shapes, dtype, source)))
        else:
            layers.append(like.replaced(name=name, source=source))
    return layers


def _configuration(spec: Any, shapes: list[tuple[Any, Any, int]], dtype: torch.dtype) -> Any:
    """All ``build_layer`` reads of a conv but its name and source: equal for equal layers."""
    return spec, tuple(shapes), dtype


def layer_name(call: Call) -> str:
    """The ConvLayer name of a conv call: module name, weight owner, or node name."""
    if call.node_op == "call_module":
        return call.name
    if call.weight_target:
        return (
            call.weight_target.removesuffix(".weight") if call.weight_target.endswith(".weight") else call.weight_target
        )
    return call.name


def call_cost(call: Call, overrides: Mapping[Any, Any] | None = None) -> tuple[int, str, bool]:
    """(MACs, category, costed) of one call: its rule, or the aten ops it ran under the fallback."""
    if call.aten is not None:
        macs = sum(op.macs for op in call.aten)
        kinds = {op.name for op in call.aten if op.macs}
        category = "convolution" if "aten.convolution" in kinds else ("linear algebra" if kinds else "other")
        return macs, category, True
    rule = MAC_RULES.lookup_or_missing(call.target, overrides)
    if rule is MISSING:
        return 0, "other", False
    if rule is None:  # ignored on purpose by a per-call override
        return 0, "ignored", True
    return int(rule(OpCall(call.target, call.args, call.kwargs, call.out))), _category(call.target), True


def _category(target: Any) -> str:
    if isinstance(target, nn.Module):
        for cls in type(target).__mro__:
            if cls in CATEGORY:
                return CATEGORY[cls]
        return "other"
    try:
        return CATEGORY.get(target, "other")
    except TypeError:
        return "other"


def op_label(call: Call) -> str:
    """How an op is named in the report: module type, function or method name."""
    if call.node_op == "call_module":
        return type(call.target).__name__
    if call.node_op == "call_method":
        return f".{call.target}()"
    name = getattr(call.target, "__name__", str(call.target))
    module = getattr(call.target, "__module__", "") or ""
    return f"{module.replace('torch.nn.functional', 'F').replace('_operator', 'operator')}.{name}".lstrip(".")


def op_summaries(calls: list[Call], costs: list[tuple[int, str, bool]]) -> tuple[list[OpSummary], int, list[str]]:
    """Non-conv ops aggregated by label; returns (summaries, total MACs of all calls, uncosted op names).

    ``costs`` holds :func:`call_cost` of each call, computed once by the caller.
    """
    table: dict[str, list[Any]] = {}
    total = 0
    missing: list[str] = []
    for call, (macs, category, costed) in zip(calls, costs, strict=True):
        total += macs
        if not costed:
            missing.append(f"{op_label(call)} ({call.name})")
        missing.extend(uncosted(call.aten or [], call.name))
        if is_conv_call(call):
            continue
        row = table.setdefault(op_label(call), [category, 0, 0, 0])
        row[1] += 1
        row[2] += macs
        if call.node_op == "call_module":
            row[3] += sum(p.numel() for p in call.target.parameters())
    summaries = [OpSummary(op=k, category=v[0], count=v[1], macs=v[2], params=v[3]) for k, v in table.items()]
    summaries.sort(key=lambda s: (-s.macs, -s.count, s.op))
    return summaries, total, list(dict.fromkeys(missing))


def uncosted(ops: list[AtenOp], where: str) -> list[str]:
    """Names of aten ops that ran without a cost rule, with where they ran."""
    return [f"{op.name} ({where})" for op in ops if not op.costed]


def model_totals(params: int, macs: int, layers: list[ConvLayer]) -> Totals:
    """Whole-model totals and the predicted totals after converting every candidate at m = 1."""
    conv_params = sum(layer.params for layer in layers)
    conv_macs = sum(layer.macs for layer in layers)
    cands = [(layer, layer.separable.dw_pw) for layer in layers if layer.candidate and layer.separable]
    cand_params = sum(layer.params for layer, _ in cands)
    cand_macs = sum(layer.macs for layer, _ in cands)
    params_after = params - cand_params + sum(dw_pw.params for _, dw_pw in cands)
    macs_after = macs - cand_macs + sum(dw_pw.macs for _, dw_pw in cands)
    return Totals(
        params=params,
        macs=macs,
        flops=2 * macs,
        conv_params=conv_params,
        conv_macs=conv_macs,
        conv_macs_share=conv_macs / macs if macs else 0.0,
        candidates=len(cands),
        candidate_params=cand_params,
        candidate_macs=cand_macs,
        params_after=params_after,
        macs_after=macs_after,
        params_after_ratio=params_after / params if params else 1.0,
        macs_after_ratio=macs_after / macs if macs else 1.0,
    )
