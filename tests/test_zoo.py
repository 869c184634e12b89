"""Model-zoo oracle tests: every classification, segmentation and video model of torchvision.

For each model (built with ``weights=None``, in eval mode, seeded):

* ``analyze()`` leaves the model as found: same state_dict values, same modules, parameters and
  buffers (by name and identity), same attributes, no hooks left behind (per module or global).
* Oracle 1, PyTorch's ``FlopCounterMode`` run under ``FakeTensorMode`` (no real compute): every conv
  module's aten.convolution FLOPs / 2 equal our ``layer.macs``; the conv modules it sees are the
  ones we list (and are called as often as ``layer.calls`` says); our ``totals.macs`` equals its
  total / 2 over the same contraction ops (mm, addmm, bmm, baddbmm, convolution, attention).
* Oracle 2, fvcore's ``FlopCountAnalysis`` on a real forward: ``by_module()[name]`` equals our
  ``layer.macs`` for every conv module, and the conv modules it counts are the ones we list.

Both oracles and ``analyze`` see the same input shape. Inputs are kept small where a model accepts
it (the real fvcore forward is the expensive part); the sizes are chosen with odd intermediate
feature maps and H != W, so floor/ceil and height/width mistakes show.

Run with ``pytest -m zoo tests/test_zoo.py`` (CI runs it).
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
import torch
import torch.nn as nn
import torchvision
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.nn.modules.conv import _ConvNd
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

import convaudit

pytestmark = pytest.mark.zoo

aten = torch.ops.aten

# ---------------------------------------------------------------- the zoo and its input sizes

CLASSIFICATION = torchvision.models.list_models(module=torchvision.models)
SEGMENTATION = torchvision.models.list_models(module=torchvision.models.segmentation)
VIDEO = torchvision.models.list_models(module=torchvision.models.video)

#: Models whose input size is fixed by the architecture (position embeddings, fixed partitions).
FIXED_INPUT = {
    # classification transformers: 224×224 only (vit asserts it, maxvit's partitions need it);
    # swin pads to its window, but is checked at its native size
    **{name: (1, 3, 224, 224) for name in CLASSIFICATION if name.startswith(("vit_", "swin_", "maxvit"))},
    # inception_v3 needs at least 75×75
    "inception_v3": (2, 3, 107, 139),
    # mvit: absolute/relative position sizes are built for 16×224×224
    "mvit_v1_b": (1, 3, 16, 224, 224),
    "mvit_v2_s": (1, 3, 16, 224, 224),
    # s3d ends in AvgPool3d((2, 7, 7)): needs >= 2 frames and 7×7 after the /8 and /32 reductions
    "s3d": (1, 3, 16, 224, 224),
}

#: Default sizes per family (CNNs accept these; N = 2 so batch-size mistakes show).
DEFAULT_INPUT = {
    "classification": (2, 3, 72, 104),  # /32 nets: 72→36→18→9→5→3, 104→52→26→13→7→4
    "segmentation": (2, 3, 120, 152),
    "video": (1, 3, 8, 88, 120),
}

#: Extra constructor arguments: spell out the defaults torchvision warns about when weights=None.
BUILD_KWARGS: dict[str, dict[str, Any]] = {
    "googlenet": {"init_weights": True},
    "inception_v3": {"init_weights": True},
    **{name: {"weights_backbone": None} for name in SEGMENTATION},
}

ZOO = (
    [("classification", name) for name in CLASSIFICATION]
    + [("segmentation", name) for name in SEGMENTATION]
    + [("video", name) for name in VIDEO]
)


def input_shape(family: str, name: str) -> tuple[int, ...]:
    return FIXED_INPUT.get(name, DEFAULT_INPUT[family])


def build(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, **BUILD_KWARGS.get(name, {}))
    return model.eval()


# ---------------------------------------------------------------- "analyze() leaves the model as found"

_HOOK_TABLES = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)

_GLOBAL_HOOKS = (
    "_global_forward_hooks",
    "_global_forward_pre_hooks",
    "_global_backward_hooks",
    "_global_backward_pre_hooks",
    "_global_forward_hooks_always_called",
    "_global_forward_hooks_with_kwargs",
    "_global_module_registration_hooks",
    "_global_parameter_registration_hooks",
    "_global_buffer_registration_hooks",
)


@dataclass
class Snapshot:
    """What must not change: tensors by value, structure by name and identity, attributes, hooks."""

    state: dict[str, torch.Tensor]
    modules: dict[str, int]
    params: dict[str, tuple[int, bool]]
    buffers: dict[str, int]
    attributes: dict[str, tuple[str, ...]]
    training: dict[str, bool]
    hooks: dict[str, dict[str, int]]
    global_hooks: dict[str, int]

    @classmethod
    def take(cls, model: nn.Module) -> Snapshot:
        named = dict(model.named_modules(remove_duplicate=False))
        return cls(
            state={k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
            modules={k: id(m) for k, m in named.items()},
            params={k: (id(p), p.requires_grad) for k, p in model.named_parameters(remove_duplicate=False)},
            buffers={k: id(b) for k, b in model.named_buffers(remove_duplicate=False)},
            attributes={k: tuple(sorted(vars(m))) for k, m in named.items()},
            training={k: m.training for k, m in named.items()},
            hooks={k: {t: len(getattr(m, t, ()) or ()) for t in _HOOK_TABLES} for k, m in named.items()},
            global_hooks={t: len(getattr(nn.modules.module, t, ()) or ()) for t in _GLOBAL_HOOKS},
        )

    def changes(self, model: nn.Module) -> list[str]:
        """Human-readable differences between this snapshot and the model now."""
        after = Snapshot.take(model)
        problems = []
        if after.state.keys() != self.state.keys():
            problems.append(f"state_dict keys changed: {sorted(after.state.keys() ^ self.state.keys())[:10]}")
        for key in self.state.keys() & after.state.keys():
            a, b = self.state[key], after.state[key]
            if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device or not torch.equal(a, b):
                problems.append(f"state_dict[{key!r}] changed")
        for what in ("modules", "params", "buffers", "attributes", "training", "hooks"):
            before_d, after_d = getattr(self, what), getattr(after, what)
            if before_d != after_d:
                diff = sorted(k for k in before_d.keys() | after_d.keys() if before_d.get(k) != after_d.get(k))
                problems.append(f"{what} changed at {diff[:10]}")
        hooked = sorted(k for k, tables in after.hooks.items() if any(n for t, n in tables.items() if "ward" in t))
        if hooked:
            problems.append(f"forward/backward hooks are registered on {hooked[:10]}")
        if after.global_hooks != self.global_hooks:
            problems.append(f"global module hooks changed: {self.global_hooks} -> {after.global_hooks}")
        return problems


# ---------------------------------------------------------------- one analysed model per zoo entry


@dataclass
class Case:
    name: str
    shape: tuple[int, ...]
    model: nn.Module
    analysis: Any
    mutations: list[str]

    @property
    def module_layers(self) -> list[Any]:
        return [layer for layer in self.analysis.layers if layer.op == "module"]


@pytest.fixture(scope="module", params=ZOO, ids=[f"{family}-{name}" for family, name in ZOO])
def case(request: pytest.FixtureRequest) -> Case:
    """Build the model, snapshot it, analyse it; module scope so the three tests share one build."""
    family, name = request.param
    model = build(name)
    shape = input_shape(family, name)
    before = Snapshot.take(model)
    analysis = convaudit.analyze(model, input_shape=shape, graph=False)
    return Case(name, shape, model, analysis, before.changes(model))


def test_analyze_leaves_model_unmutated(case: Case) -> None:
    assert case.mutations == [], f"{case.name}: analyze() mutated the model: {case.mutations}"
    assert case.module_layers, f"{case.name}: no conv modules found"


# ---------------------------------------------------------------- oracle 1: FlopCounterMode (fake tensors)


def _cpu_sdpa_flop(
    query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, out_shape: Any = None, **kwargs: Any
) -> int:
    """FlopCounterMode counts the CUDA attention kernels only; the CPU kernel costs the same."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


_CUSTOM_FLOPS = {aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flop}


def flop_counter(model: nn.Module, shape: tuple[int, ...]) -> tuple[dict[str, dict[Any, int]], int, Counter[str]]:
    """FlopCounterMode's per-module counts (keys without the root-class prefix), total, conv calls."""
    names = {id(m): n for n, m in model.named_modules()}
    calls: Counter[str] = Counter()

    def count_conv_calls(module: nn.Module, inputs: Any, output: Any) -> None:
        if isinstance(module, _ConvNd) and id(module) in names:
            calls[names[id(module)]] += 1

    handle = nn.modules.module.register_module_forward_hook(count_conv_calls)
    try:
        with FakeTensorMode(allow_non_fake_inputs=True):
            x = torch.empty(shape)
            with FlopCounterMode(display=False, custom_mapping=_CUSTOM_FLOPS) as counter:
                model(x)
    finally:
        handle.remove()
    prefix = type(model).__name__ + "."
    counts = {k.removeprefix(prefix): dict(v) for k, v in counter.get_flop_counts().items()}
    return counts, counter.get_total_flops(), calls


def test_conv_macs_match_flop_counter(case: Case) -> None:
    counts, total_flops, calls = flop_counter(case.model, case.shape)
    conv_modules = {name for name, m in case.model.named_modules() if isinstance(m, _ConvNd)}
    theirs = {name: counts[name].get(aten.convolution, 0) / 2 for name in conv_modules if name in counts}
    ours = {layer.name: layer.macs for layer in case.module_layers}

    assert set(ours) == {n for n, v in theirs.items() if v}, (
        f"{case.name}: conv modules differ; only ours: {sorted(set(ours) - set(theirs))[:10]}, "
        f"only FlopCounterMode: {sorted(n for n, v in theirs.items() if v and n not in ours)[:10]}"
    )
    wrong = {n: (ours[n], theirs[n]) for n in ours if ours[n] != theirs[n]}
    assert not wrong, f"{case.name} at {case.shape}: per-conv MACs (ours, FlopCounterMode/2) differ: {_head(wrong)}"
    wrong_calls = {
        layer.name: (layer.calls, calls[layer.name]) for layer in case.module_layers if layer.calls != calls[layer.name]
    }
    assert not wrong_calls, f"{case.name}: conv call counts (ours, actual) differ: {_head(wrong_calls)}"

    global_counts = counts["Global"]
    all_conv = global_counts.get(aten.convolution, 0) / 2
    assert case.analysis.totals.conv_macs == all_conv, (
        f"{case.name}: conv MACs of all layers {case.analysis.totals.conv_macs} != FlopCounterMode/2 {all_conv}"
    )
    assert case.analysis.totals.macs == total_flops / 2, (
        f"{case.name} at {case.shape}: total MACs {case.analysis.totals.macs} != FlopCounterMode/2 {total_flops / 2} "
        f"(by op: { ({str(k): v / 2 for k, v in global_counts.items()}) })"
    )


# ---------------------------------------------------------------- oracle 2: fvcore (real forward)


def fvcore_by_module(model: nn.Module, shape: tuple[int, ...]) -> Counter[str]:
    from fvcore.nn import FlopCountAnalysis

    torch.manual_seed(0)
    x = torch.randn(shape)
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        fca = FlopCountAnalysis(model, x)
        fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        return fca.by_module()


def test_conv_macs_match_fvcore(case: Case) -> None:
    by_module = fvcore_by_module(case.model, case.shape)
    conv_modules = {name for name, m in case.model.named_modules() if isinstance(m, _ConvNd)}
    ours = {layer.name: layer.macs for layer in case.module_layers}
    counted = {name for name in conv_modules if by_module.get(name, 0)}
    assert set(ours) == counted, (
        f"{case.name}: conv modules differ; only ours: {sorted(set(ours) - counted)[:10]}, "
        f"only fvcore: {sorted(counted - set(ours))[:10]}"
    )
    wrong = {n: (ours[n], int(by_module[n])) for n in ours if ours[n] != by_module[n]}
    assert not wrong, f"{case.name} at {case.shape}: per-conv MACs (ours, fvcore) differ: {_head(wrong)}"


def _head(d: dict[str, Any], n: int = 8) -> str:
    items = list(d.items())
    more = f" ... and {len(items) - n} more" if len(items) > n else ""
    return ", ".join(f"{k}: {v}" for k, v in items[:n]) + more
