"""Rewrite mechanics: put SeparableConv layers in place of chosen convs, on a copy of the model.

Module convs are swapped where they hang in the module tree (every alias of a shared module gets the
same replacement, so it stays shared) and the user's own class survives. Functional convs whose
weight is a parameter need the traced graph: the call becomes a ``call_module`` of a new
SeparableConv, the old parameter is removed, then ``graph.lint()`` and ``recompile()`` — the result
is then a ``torch.fx.GraphModule``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.fx
import torch.nn as nn
from torch.nn.modules.conv import _ConvNd

from convaudit.analysis.adapters import is_conv_module
from convaudit.analysis.guard import eval_mode, in_mode
from convaudit.analysis.rules.costs import CONV_FUNCTIONS, functional_conv_args
from convaudit.analysis.tracing import ConvTracer
from convaudit.conversion.layers import SeparableConv
from convaudit.conversion.planning import Choice
from convaudit.conversion.safe_fx import safe_codegen
from convaudit.errors import UsageError
from convaudit.vocab import Init

__all__ = [
    "capture_conv_inputs",
    "functional_as_module",
    "rebuild_structure",
    "recalibrate_batchnorm",
    "replace_module",
    "rewrite",
]

#: Builds the replacement for one chosen conv: (choice, the conv as a module, its calibration inputs) → layer.
Factory = Callable[[Choice, nn.Module, "list[torch.Tensor] | None"], SeparableConv]


def rewrite(
    model: nn.Module,
    choices: Sequence[Choice],
    factory: Factory,
    *,
    inplace: bool = False,
    calibration: Iterable[tuple[tuple, dict]] | None = None,
    sequential: bool = False,
    leaf_types: Sequence[type] = (),
    training: bool = False,
) -> tuple[nn.Module, dict[str, SeparableConv]]:
    """Return (converted model, {layer name: its replacement}); the input model is untouched unless ``inplace``.

    With ``calibration`` batches (args, kwargs), each conv's inputs are captured from real forwards;
    ``sequential`` captures them on the model converted so far (upstream layers already rewritten).
    ``leaf_types``: module types the tracer must not enter when functional convs are rewritten (as analysed);
    that trace sees the model in eval mode, or in train mode with ``training`` (the graph keeps that mode's branches).
    """
    originals = dict(model.named_modules(remove_duplicate=False))
    # The convs about to be replaced are not worth copying: the copy shares them until they are swapped out.
    memo = {id(originals[c.name]): originals[c.name] for c in choices if is_conv_module(originals.get(c.name))}
    target = model if inplace else copy.deepcopy(model, memo)
    modules = dict(target.named_modules(remove_duplicate=False))
    batches = list(calibration) if calibration is not None else None
    # conv modules, and conv-like modules with an adapter (convaudit.analysis.adapters), swap in the module tree
    module_choices = [c for c in choices if is_conv_module(modules.get(c.name))]
    functional = [c for c in choices if not is_conv_module(modules.get(c.name))]
    replaced: dict[str, SeparableConv] = {}
    captured = (
        capture_conv_inputs(target, [c.name for c in module_choices], batches) if batches and not sequential else {}
    )
    for choice in module_choices:
        if batches and sequential:
            captured = capture_conv_inputs(target, [choice.name], batches)
        conv = modules[choice.name]
        layer = factory(choice, conv, captured.get(choice.name))
        replace_module(target, conv, layer)
        replaced[choice.name] = layer
    if functional:
        target, extra = _rewrite_functional(target, functional, factory, leaf_types, training)
        replaced.update(extra)
    return target, replaced


def rebuild_structure(model: nn.Module, layers: Sequence[dict[str, Any]], leaf_types: Sequence[type] = ()) -> nn.Module:
    """Redo a conversion's structure with untrained separable layers (weights come from a state_dict).

    ``layers``: [{"name", "order", "rank", "style"}] as an artifact's model.py records them; ``leaf_types``
    the module types the conversion kept the tracer out of (``--leaf``).
    """
    choices = [Choice(d["name"], d["order"], int(d["rank"]), int(d["rank"]), None, 0, 0, 0, 0) for d in layers]
    style = next((d.get("style") for d in layers if d.get("style")), None)

    def factory(choice: Choice, conv: nn.Module, inputs: list[torch.Tensor] | None) -> SeparableConv:
        return SeparableConv.from_conv(conv, rank=choice.rank, order=choice.order, init=Init.RANDOM, style=style)

    converted, _ = rewrite(model, choices, factory, inplace=True, leaf_types=leaf_types)
    return converted


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Sequence[tuple[tuple, dict]]) -> int:
    """Re-estimate every BatchNorm's running statistics on ``batches``; returns how many were updated.

    After a rewrite the layers below a converted conv see slightly different activations; their stored
    statistics no longer fit. Only BatchNorm modules run in training mode here (dropout stays off), with
    a cumulative average (momentum None); momentum and training flags are restored afterwards.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return 0
    momenta = [(m, m.momentum) for m in norms]
    with eval_mode(model):
        try:
            for m in norms:
                m.reset_running_stats()
                m.momentum = None
                m.train()
            for args, kwargs in batches:
                model(*args, **kwargs)
        finally:
            for m, momentum in momenta:
                m.momentum = momentum
    return len(norms)


def replace_module(root: nn.Module, old: nn.Module, new: nn.Module) -> int:
    """Put ``new`` wherever ``old`` hangs in ``root``'s tree; returns how many places were changed."""
    places = [(parent, attr) for parent in root.modules() for attr, child in parent._modules.items() if child is old]
    for parent, attr in places:
        setattr(parent, attr, new)
    return len(places)


@torch.no_grad()
def capture_conv_inputs(
    model: nn.Module, names: Sequence[str], batches: Sequence[tuple[tuple, dict]], outputs: list[Any] | None = None
) -> dict[str, list[torch.Tensor]]:
    """Inputs each named conv module receives over real forwards of ``batches`` (global hooks; nothing left behind).

    ``outputs``, when given, collects the model's output for each batch (so a caller needs no second forward).
    """
    wanted = {id(model.get_submodule(n)): n for n in names}
    seen: dict[str, list[torch.Tensor]] = {n: [] for n in names}

    def hook(module: nn.Module, inputs: tuple) -> None:
        name = wanted.get(id(module))
        if name is not None:
            seen[name].append(inputs[0].detach())

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        with eval_mode(model):
            for args, kwargs in batches:
                out = model(*args, **kwargs)
                if outputs is not None:
                    outputs.append(out)
    finally:
        handle.remove()
    return seen


def functional_as_module(spec: dict[str, Any], weight: nn.Parameter, bias: torch.Tensor | None) -> _ConvNd:
    """An nn.ConvNd holding a functional conv's weight and arguments (to build its replacement from)."""
    nd = weight.dim() - 2
    # the class follows nd, so its argument types (per-class tuple lengths) are checked at run time
    conv_cls: Callable[..., _ConvNd] = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[nd]
    g = int(spec["groups"])
    conv = conv_cls(
        weight.shape[1] * g,
        weight.shape[0],
        tuple(weight.shape[2:]),
        stride=spec["stride"],
        padding=spec["padding"],
        dilation=spec["dilation"],
        groups=g,
        bias=bias is not None,
        device="meta",
    )
    conv.weight = nn.Parameter(weight.detach(), requires_grad=weight.requires_grad)
    if bias is not None:
        conv.bias = nn.Parameter(bias.detach())
    return conv


def _rewrite_functional(
    model: nn.Module, choices: Sequence[Choice], factory: Factory, leaf_types: Sequence[type], training: bool
) -> tuple[torch.fx.GraphModule, dict[str, SeparableConv]]:
    tracer = ConvTracer(leaf_types=(SeparableConv, *leaf_types))
    with in_mode(model, training):  # fx keeps the branches of the mode it traced in
        graph = tracer.trace(model)
    # fx would paste module and parameter names into the code it compiles here: safe_codegen writes them as data
    gm = torch.fx.GraphModule(tracer.root, safe_codegen(graph), class_name=type(model).__name__)
    wanted = {c.name: c for c in choices}
    made: dict[tuple, str] = {}
    replaced: dict[str, SeparableConv] = {}
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in CONV_FUNCTIONS:
            continue
        spec = functional_conv_args(node.target, node.args, node.kwargs)
        w = spec["weight"]
        if not (isinstance(w, torch.fx.Node) and w.op == "get_attr" and isinstance(w.target, str)):
            continue  # not a parameter read (get_attr targets are always str)
        name = w.target.removesuffix(".weight") if w.target.endswith(".weight") else w.target
        if name not in wanted:
            continue
        bias = spec["bias"]
        is_param = isinstance(bias, torch.fx.Node) and bias.op == "get_attr" and isinstance(bias.target, str)
        bias_target: str | None = bias.target if is_param else None
        if bias is not None and bias_target is None:
            raise UsageError(
                f"functional conv '{name}': its bias is computed in forward; exclude it with --exclude {name}"
            )
        key = (w.target, bias_target, _hashable(spec))
        if key not in made:
            conv = functional_as_module(
                spec, gm.get_parameter(w.target), gm.get_parameter(bias_target) if bias_target is not None else None
            )
            layer = factory(wanted[name], conv, None)
            made[key] = _free_name(gm, f"{name}_separable")
            gm.add_submodule(made[key], layer)
            replaced[name] = layer
        with gm.graph.inserting_after(node):
            new = gm.graph.call_module(made[key], (spec["input"],))
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
    _drop_unused_attributes(gm)
    gm.graph.lint()
    gm.recompile()
    return gm, replaced


def _hashable(spec: dict[str, Any]) -> tuple:
    def h(v: Any) -> Any:
        return tuple(v) if isinstance(v, list) else v

    return tuple((k, h(spec[k])) for k in ("stride", "padding", "dilation", "groups"))


def _free_name(gm: nn.Module, base: str) -> str:
    name, i = base.replace(".", "_"), 1
    while hasattr(gm, name):
        name, i = f"{base.replace('.', '_')}_{i}", i + 1
    return name


def _drop_unused_attributes(gm: torch.fx.GraphModule) -> None:
    """Remove get_attr nodes nobody reads any more, and the parameters behind them."""
    dropped = set()
    for node in list(gm.graph.nodes):
        if node.op == "get_attr" and not node.users:
            dropped.add(node.target)
            gm.graph.erase_node(node)
    still_read = {node.target for node in gm.graph.nodes if node.op == "get_attr"}
    for target in dropped - still_read:
        owner, _, attr = target.rpartition(".")
        module = gm.get_submodule(owner) if owner else gm
        if attr in module._parameters or attr in module._buffers:
            delattr(module, attr)
