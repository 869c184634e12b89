"""The analysis engine: trace → shapes → costs → candidates → Analysis (plain data)."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
from torch.nn.modules.conv import _ConvNd

from convaudit.analysis.crosscheck import fvcore_count
from convaudit.analysis.environment import environment
from convaudit.analysis.graph import build_graph, graph_view
from convaudit.analysis.guard import in_mode, untouched
from convaudit.analysis.modelcheck import check_model
from convaudit.analysis.modules import module_tree
from convaudit.analysis.paths import see
from convaudit.analysis.propagation import Call
from convaudit.analysis.recommend import with_latency
from convaudit.analysis.separability import separability as weight_separability
from convaudit.analysis.separability import weight_of
from convaudit.analysis.totals import (
    call_cost,
    conv_layers,
    layer_name,
    model_totals,
    op_summaries,
    uncosted,
)
from convaudit.documents.records import Analysis, ConvLayer
from convaudit.errors import ConvauditError
from convaudit.options import AnalysisOptions, options_from
from convaudit.sources.inputs import flat_tensors, floating_dtype, normalize_inputs
from convaudit.sources.locations import Locator, display_path
from convaudit.vocab import Mode, TracePath

__all__ = ["analyze"]


def analyze(
    model: nn.Module,
    example_inputs: Any = None,
    example_kwargs: Mapping[str, Any] | None = None,
    *,
    input_shape: Sequence[int] | Sequence[Sequence[int]] | None = None,
    options: AnalysisOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
    **keywords: Any,
) -> Analysis:
    """Analyse every conv of ``model`` at the given inputs, without running any real convolution.

    Unless the model reads tensor values (``.item()``, ``if x.mean() > 0:``, ``nonzero``): then its forward
    runs for real (``trace_path`` "real"), under no_grad, on copies of its weights, after a memory estimate.

    Args:
        example_inputs: a tensor or a tuple of positional inputs (real or ``device="meta"``).
        example_kwargs: keyword inputs of ``forward``.
        input_shape: instead of ``example_inputs``: one shape, or a list of shapes (float32 inputs).
        options: an :class:`~convaudit.options.AnalysisOptions`; its fields may also be given as keywords
            (they override ``options``'):
            ``cross_check`` also count with fvcore (runs a real forward; off by default to stay fast);
            ``rules`` per-call MAC rule overrides, ``{MyModule: rule, nn.Dropout: None}`` (None = ignore on purpose);
            ``shape_rules`` per-call shape rule overrides;
            ``leaf_types`` module types the tracer must not trace into;
            ``train_mode`` analyse the training graph (``model.train()``); by default the model is analysed,
            cross-checked and costed in eval mode, as it runs for inference; either way every module's
            training flag is restored after, and the report states the mode;
            ``graph`` build the graph view (default on);
            ``separability`` read candidate weights for the energy each separable form keeps (an SVD per
            channel: off by default so analysis stays at about one forward's time; the CLI turns it on);
            ``timing`` measure every candidate and its separable forms on this device (real compute on
            fresh layers of the same configuration, interleaved until the time ratios are known within ±10%
            or ``timing_seconds`` per layer; in ``memory_format``; the model itself is not run); without it
            every candidate still gets predicted times (``latency_profile``, else the calibrated profile,
            else the built-in "uncalibrated" one) and a ``recommendation``;
            ``source`` how the model was named by the user (shown in reports);
            ``trace_path`` use only this path, "fx", "hooks" or "real" (None: fx, falling back to the model's
            forward under fake tensors, then for real; the report's ``trace_note`` says why);
            ``real_run_max_bytes`` what a real forward may need (estimated first, then held at once): 4 GiB.
    Returns:
        An :class:`~convaudit.records.Analysis`; ``to_dict()`` is the JSON document.
        ``progress(done, total)`` is called after each layer measured (``timing``).
    """
    opts = options_from(AnalysisOptions, options, keywords, "analyze")
    modules = [m for _, m in check_model(model)]  # one walk for the checks, the guard and the mode
    # Tracing and propagation execute the model's code: whatever it does to the modules is undone after.
    # The mode is set for the whole analysis (trace, shapes, cross-check): the graph is the one that mode runs.
    # NB: a full GC over torch's heap costs more than analysing 2000 convs, hence no cyclic GC meanwhile.
    try:
        with _no_cyclic_gc(), untouched(model, modules), in_mode(model, opts.train_mode, modules):
            analysis = _analyze(model, example_inputs, example_kwargs, input_shape, opts, progress)
    except ConvauditError as exc:
        if opts.train_mode and "more than 1 value per channel" in str(exc):  # torch's batch-statistics check
            hinted = type(exc)(f"{exc}; in train mode BatchNorm needs a batch > 1: give one, or drop --train-mode")
            hinted.module = exc.module
            raise hinted from exc
        raise
    return dataclasses.replace(analysis, mode=Mode.TRAIN if opts.train_mode else Mode.EVAL)


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector for the block (restored after); reference counting still frees."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _analyze(
    model: nn.Module,
    example_inputs: Any,
    example_kwargs: Mapping[str, Any] | None,
    input_shape: Any,
    options: AnalysisOptions,
    progress: Callable[[int, int], None] | None = None,
) -> Analysis:
    args, kwargs = normalize_inputs(example_inputs, example_kwargs, input_shape, floating_dtype(model))
    seen = see(model, args, kwargs, options)  # fx, else the forward under fake tensors, else for real
    calls, path, note, traced, extra_aten = seen.calls, seen.path, seen.note, seen.traced, seen.aten or []

    locator = Locator(model)  # as the model's code left it; made here, used up here
    layers = conv_layers(calls, model, locator.definition, locator.parameter)
    if options.separability:
        layers = [_with_separability(model, layer) for layer in layers]
    if path is TracePath.FX:
        costs = [call_cost(c, options.rules) for c in calls]
        ops, total_macs, missing = op_summaries(calls, costs)
    else:  # the recorder saw every aten op of the forward, convs included
        costs, ops = [], []
        total_macs = sum(op.macs for op in extra_aten)
        missing = list(dict.fromkeys(uncosted(extra_aten, "forward")))
    named = list(model.named_modules())  # as the model's code left it (undone after): the tree and uncalled convs
    modules, other_ops = module_tree(model, seen, costs, layers, named)  # from this one pass: nothing runs again
    totals = model_totals(modules[0].params, total_macs, layers)  # the root: every parameter once
    layers, measurement, timing, profile = with_latency(layers, options, progress)  # predicted; measured if asked
    view = _graph(traced.graph, calls, costs, layers) if options.graph and traced is not None else None
    checked = None
    if options.cross_check:
        conv_names = [layer.name for layer in layers if layer.op == "module"]
        checked = fvcore_count(model, args, kwargs, conv_names, _activation_bytes(calls))
        named = list(model.named_modules())  # the real forward ran the model's code again
    listed = {layer.name for layer in layers}
    uncalled = tuple(name for name, m in named if isinstance(m, _ConvNd) and name not in listed)
    warnings = [] if layers or uncalled else ["the model has no convolutions: there is nothing to rewrite"]
    return Analysis(
        model=display_path(options.source) if options.source else type(model).__name__,
        model_class=f"{type(model).__module__}.{type(model).__qualname__}",
        input_shapes=tuple(tuple(a.shape) for a in flat_tensors(args, kwargs)),
        trace_path=path,
        trace_note=note,
        layers=tuple(layers),
        ops=tuple(ops),
        uncosted_ops=tuple(missing),
        totals=totals,
        cross_check=checked,
        graph=view,
        environment=environment() | {"latency profile": profile},
        warnings=tuple(warnings),
        uncalled_convs=uncalled,
        timing=timing,
        measurement=measurement,
        modules=modules,
        other_ops=other_ops,
        tree_depth=options.depth,
    )


def _with_separability(model: nn.Module, layer: ConvLayer) -> ConvLayer:
    """Add the weight-energy figures to a candidate whose weights hold real data."""
    if not layer.candidate:
        return layer
    weight = weight_of(model, layer)
    if weight is None:
        return layer
    return dataclasses.replace(layer, separability=weight_separability(weight, layer.groups))


def _graph(graph: Any, calls: list[Call], costs: list, layers: list[ConvLayer]) -> Any:
    names = {layer.name for layer in layers}
    macs = {}
    convs = {}
    by_node = {c.node_name: (c, cost) for c, cost in zip(calls, costs, strict=True)}  # one cost per call
    for node_name, (call, cost) in by_node.items():
        macs[node_name] = cost[0]
        if layer_name(call) in names:
            convs[node_name] = layer_name(call)
    return graph_view(build_graph(graph, macs, convs))


def _activation_bytes(calls: list[Call]) -> int:
    total = 0
    for call in calls:
        if isinstance(call.out, torch.Tensor):
            total += call.out.numel() * call.out.element_size()
    return total
