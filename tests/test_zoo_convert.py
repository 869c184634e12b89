"""Zoo tests of ``convaudit.convert``: real torchvision CNNs rewritten depthwise + pointwise.

For each model (built with ``weights=None``, seeded, in eval mode, on a small input):

* the converted model runs and gives outputs of the same structure, shapes and dtypes;
* the report's numbers hold: ``costs_match``; every converted layer's measured params/MACs equal the
  predicted ones; the report's measured totals equal a fresh ``analyze()`` of the converted model and
  the plan's predicted totals;
* the same numbers from oracles that are not convaudit: ``numel()`` of the parameters, and
  PyTorch's ``FlopCounterMode`` (fake tensors) for the MACs of each separable layer and of the whole model;
* the original model is left as found (values, modules, parameters, attributes, flags, hooks);
* every conv that runs is either converted (and is a SeparableConv in the converted model) or listed
  in ``report.skipped`` with a reason; convs that never run are left alone.

Also: ``rank="full"`` is exact (every layer and the output, checked by the report and by comparing the
outputs here), the artifact directory reloads to the same model, ``order="pw_dw"`` and ``order="auto"``.

Run with ``pytest -m zoo tests/test_zoo_convert.py``.
"""

from __future__ import annotations

import json
import traceback
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
import torch.nn as nn
import torchvision
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.nn.modules.conv import _ConvNd
from torch.utils._pytree import keystr, tree_flatten, tree_flatten_with_path
from torch.utils.flop_counter import FlopCounterMode

import convaudit
from convaudit.conversion.artifact.writer import load_converted, write_artifact
from tests.test_zoo import Snapshot

pytestmark = pytest.mark.zoo

aten = torch.ops.aten

#: rank="full" must be exact to this relative error
#: (convaudit.conversion.EXACT_TOLERANCE, what ``exact=True`` enforces).
EXACT_TOLERANCE = 1e-4

# ---------------------------------------------------------------- models and inputs

#: Classification inputs: H != W so height/width mix-ups show; /32 nets: 64→…→2, 80→…→3.
CLS = (1, 3, 64, 80)

#: name → (input shape, extra constructor arguments).
MODELS: dict[str, tuple[tuple[int, ...], dict[str, Any]]] = {
    "resnet18": (CLS, {}),
    "resnet50": (CLS, {}),
    "vgg16": (CLS, {}),
    "densenet121": (CLS, {}),
    "regnet_y_400mf": (CLS, {}),
    # torchvision's own googlenet init (init_weights=True: N(0, 0.01) convs) makes the activations vanish,
    # so the logits are the fc bias and every output error is 0.0; PyTorch's default init keeps a signal.
    "googlenet": (CLS, {"init_weights": False}),
    # 4 frames: the temporal strides still show (4→4→2→1→1), and the real forwards of verification stay cheap
    "r3d_18": ((1, 3, 4, 32, 40), {}),
    "fcn_resnet50": ((1, 3, 80, 96), {"weights_backbone": None}),
    "lraspp_mobilenet_v3_large": ((1, 3, 80, 96), {"weights_backbone": None}),
}

EXACT_MODELS = ["resnet18", "r3d_18", "googlenet"]
ARTIFACT_MODELS = ["resnet18", "fcn_resnet50"]


def build(name: str) -> nn.Module:
    torch.manual_seed(0)
    _, kwargs = MODELS[name]
    return torchvision.models.get_model(name, weights=None, **kwargs).eval()


def example(name: str) -> torch.Tensor:
    return torch.randn(MODELS[name][0], generator=torch.Generator().manual_seed(1))


def tensors(output: Any) -> tuple[list[torch.Tensor], Any]:
    """Output tensors (dicts, namedtuples, tuples flattened) and the container structure."""
    flat, spec = tree_flatten(output)
    return [t for t in flat if isinstance(t, torch.Tensor)], spec


def leaves(output: Any) -> list[tuple[str, torch.Tensor]]:
    """Output tensors by key path ("['out']", "[0]"), whatever the containers' types."""
    flat, _ = tree_flatten_with_path(output)
    return [(keystr(path), t) for path, t in flat if isinstance(t, torch.Tensor)]


def rel_error(got: torch.Tensor, want: torch.Tensor) -> float:
    g, w = got.double(), want.double()
    return float((g - w).norm() / w.norm().clamp_min(1e-300))


@torch.no_grad()
def run(model: nn.Module, x: torch.Tensor) -> Any:
    return model(x)


@torch.no_grad()
def run_recording_convs(model: nn.Module, x: torch.Tensor) -> tuple[Any, set[str]]:
    """A real forward; also the names of the conv modules that ran (global hook, removed after)."""
    names = {id(m): n for n, m in model.named_modules()}
    called: set[str] = set()

    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        if isinstance(module, _ConvNd) and id(module) in names:
            called.add(names[id(module)])

    handle = nn.modules.module.register_module_forward_hook(hook)
    try:
        return model(x), called
    finally:
        handle.remove()


# ---------------------------------------------------------------- one conversion per model


@dataclass
class Case:
    name: str
    x: torch.Tensor
    model: nn.Module
    expected: Any  #: the original model's output, computed before convert()
    called_convs: set[str]
    mutations: list[str] = field(default_factory=list)
    result: convaudit.Conversion | None = None
    error: str | None = None

    @property
    def conversion(self) -> convaudit.Conversion:
        if self.result is None:
            pytest.fail(f"{self.name}: convaudit.convert(model, (x,), rank=1) raised:\n{self.error}", pytrace=False)
        return self.result


def converted(
    name: str, model: nn.Module, x: torch.Tensor, **kwargs: Any
) -> tuple[convaudit.Conversion | None, str | None]:
    try:
        return convaudit.convert(model, (x,), source=f"torchvision:{name}", **kwargs), None
    except Exception:
        return None, traceback.format_exc(limit=-4)


@pytest.fixture(scope="module", params=list(MODELS))
def case(request: pytest.FixtureRequest) -> Case:
    """Build, run, snapshot, convert at rank 1; module scope so the tests of one model share it."""
    name = request.param
    model, x = build(name), example(name)
    expected, called = run_recording_convs(model, x)
    before = Snapshot.take(model)
    result, error = converted(name, model, x, rank=1)
    return Case(name, x, model, expected, called, before.changes(model), result, error)


# ---------------------------------------------------------------- shared checks


def flop_counter(model: nn.Module, x: torch.Tensor) -> tuple[dict[str, int], int]:
    """FlopCounterMode (fake tensors, no compute): conv MACs per module name, and total MACs."""
    with FakeTensorMode(allow_non_fake_inputs=True):
        fake = torch.empty(x.shape)
        with FlopCounterMode(display=False) as counter:
            model(fake)
    prefix = type(model).__name__ + "."
    per_module = {
        k.removeprefix(prefix): v.get(aten.convolution, 0) // 2
        for k, v in counter.get_flop_counts().items()
        if k != "Global"
    }
    return per_module, counter.get_total_flops() // 2


def cost_problems(c: convaudit.Conversion, x: torch.Tensor) -> list[str]:
    """Everything that must hold between predicted, measured, re-analysed and independently counted costs."""
    r, plan = c.report, c.plan
    problems = []
    if not r.costs_match:
        problems.append(f"report.costs_match is False (notes: {r.notes})")
    for layer in r.layers:
        got, want = (layer.params_measured, layer.macs_measured), (layer.params_predicted, layer.macs_predicted)
        if got != want:
            problems.append(
                f"layer {layer.name} ({layer.order}, m={layer.rank}): measured (params, MACs) {got} != predicted {want}"
            )
    if (r.params_predicted, r.macs_predicted) != (plan.params_after, plan.macs_after):
        problems.append(
            f"report predicted {(r.params_predicted, r.macs_predicted)} != plan {(plan.params_after, plan.macs_after)}"
        )
    if (r.params_measured, r.macs_measured) != (plan.params_after, plan.macs_after):
        problems.append(
            f"report measured {(r.params_measured, r.macs_measured)} "
            f"!= plan predicted {(plan.params_after, plan.macs_after)}"
        )
    if (r.params_before, r.macs_before) != (plan.params_before, plan.macs_before):
        problems.append(
            f"report before {(r.params_before, r.macs_before)} != plan before {(plan.params_before, plan.macs_before)}"
        )

    again = convaudit.analyze(c.model, (x,), graph=False).totals
    if (r.params_measured, r.macs_measured) != (again.params, again.macs):
        problems.append(
            f"report measured {(r.params_measured, r.macs_measured)} != analyze(converted) {(again.params, again.macs)}"
        )

    # oracles outside convaudit: numel() and FlopCounterMode
    numel = sum(p.numel() for p in c.model.parameters())
    if r.params_measured != numel:
        problems.append(
            f"report params_measured {r.params_measured} != numel of the converted model's parameters {numel}"
        )
    per_module, total = flop_counter(c.model, x)
    if r.macs_measured != total:
        problems.append(f"report macs_measured {r.macs_measured} != FlopCounterMode total/2 {total}")
    for layer in r.layers:
        sep = c.model.get_submodule(layer.name)
        n_params = sum(p.numel() for p in sep.parameters())
        macs = per_module.get(f"{layer.name}.conv_dw", 0) + per_module.get(f"{layer.name}.conv_pw", 0)
        if (layer.params_measured, layer.macs_measured) != (n_params, macs):
            problems.append(
                f"layer {layer.name}: measured (params, MACs) {(layer.params_measured, layer.macs_measured)} != "
                f"(numel, FlopCounterMode/2) {(n_params, macs)}"
            )
    return problems


def structure_problems(c: convaudit.Conversion, model: nn.Module) -> list[str]:
    """Each converted layer is a SeparableConv as the report says; every other conv keeps its class."""
    problems = []
    layers = {layer.name: layer for layer in c.report.layers}
    for name, m in model.named_modules():
        if not isinstance(m, _ConvNd):
            continue
        new = c.model.get_submodule(name)
        if name in layers:
            want = layers[name]
            if not isinstance(new, convaudit.SeparableConv):
                problems.append(
                    f"{name} is converted in the report but is a {type(new).__name__} in the converted model"
                )
            elif (new.order, new.multiplier) != (want.order, want.rank):
                problems.append(
                    f"{name}: SeparableConv({new.order}, m={new.multiplier}) "
                    f"but the report says ({want.order}, m={want.rank})"
                )
        elif type(new) is not type(m):
            problems.append(f"{name} was not converted but is now a {type(new).__name__} (was {type(m).__name__})")
    return problems


def output_problems(want: Any, got: Any) -> list[str]:
    want_t, want_spec = tensors(want)
    got_t, got_spec = tensors(got)
    if want_spec != got_spec:
        return [f"output structure changed: {want_spec} -> {got_spec}"]
    problems = [
        f"output {i}: {tuple(g.shape)} {g.dtype} (original {tuple(w.shape)} {w.dtype})"
        for i, (w, g) in enumerate(zip(want_t, got_t, strict=True))
        if g.shape != w.shape or g.dtype != w.dtype
    ]
    return problems + [
        f"output {i} is not finite"
        for i, g in enumerate(got_t)
        if g.is_floating_point() and not torch.isfinite(g).all()
    ]


# ---------------------------------------------------------------- rank 1 over the zoo


def test_converted_model_runs_with_the_original_output_shapes(case: Case) -> None:
    c = case.conversion
    assert c.report.layers, f"{case.name}: nothing was converted (skipped: {c.report.skipped[:5]})"
    assert not c.model.training, f"{case.name}: the converted model is not in eval mode like the original"
    got = run(c.model, case.x)
    problems = output_problems(case.expected, got)
    assert not problems, f"{case.name}: {problems}"
    # the report's output error is the one measured here
    mine = max(
        rel_error(g, w)
        for g, w in zip(tensors(got)[0], tensors(case.expected)[0], strict=True)
        if w.is_floating_point()
    )
    assert c.report.output_error == pytest.approx(mine, rel=1e-6, abs=1e-12), (
        f"{case.name}: report.output_error {c.report.output_error} but the outputs differ by {mine}"
    )


def test_costs_match_prediction_reanalysis_and_oracles(case: Case) -> None:
    c = case.conversion
    problems = cost_problems(c, case.x)
    assert not problems, f"{case.name} at {tuple(case.x.shape)}:\n" + "\n".join(problems)
    assert c.report.macs_measured < c.report.macs_before, f"{case.name}: rank 1 saved no MACs"


def test_original_model_is_unchanged(case: Case) -> None:
    case.conversion  # noqa: B018 - fails with convert()'s error if it raised
    assert case.mutations == [], f"{case.name}: convert() changed the original model: {case.mutations}"
    assert not any(isinstance(m, convaudit.SeparableConv) for m in case.model.modules()), (
        f"{case.name}: the original holds SeparableConvs"
    )
    again = run(case.model, case.x)
    same = all(torch.equal(a, b) for a, b in zip(tensors(case.expected)[0], tensors(again)[0], strict=True))
    assert same, f"{case.name}: the original model computes something else after convert()"


def test_every_conv_is_converted_or_skipped_with_a_reason(case: Case) -> None:
    c = case.conversion
    converted_names = [layer.name for layer in c.report.layers]
    skipped_names = [name for name, _ in c.report.skipped]
    assert len(set(converted_names)) == len(converted_names), f"{case.name}: a layer is converted twice"
    assert len(set(skipped_names)) == len(skipped_names), f"{case.name}: a layer is skipped twice"
    assert not set(converted_names) & set(skipped_names), (
        f"{case.name}: converted and skipped: {set(converted_names) & set(skipped_names)}"
    )
    no_reason = [name for name, reason in c.report.skipped if not (isinstance(reason, str) and reason.strip())]
    assert not no_reason, f"{case.name}: skipped without a reason: {no_reason}"
    accounted = set(converted_names) | set(skipped_names)
    missing = sorted(case.called_convs - accounted)
    assert not missing, f"{case.name}: convs that run are neither converted nor skipped: {missing[:10]}"
    functional = {layer.name for layer in c.analysis.layers if layer.op == "functional"}
    unknown = sorted(accounted - functional - {n for n, m in case.model.named_modules() if isinstance(m, _ConvNd)})
    assert not unknown, f"{case.name}: the report names convs the model does not have: {unknown[:10]}"
    # convs that never run (googlenet's aux heads in eval) are not in the report and stay as they were
    problems = structure_problems(c, case.model)
    assert not problems, f"{case.name}: " + "; ".join(problems[:10])


# ---------------------------------------------------------------- exact mode


@pytest.mark.parametrize("name", EXACT_MODELS)
def test_full_rank_is_exact(name: str) -> None:
    model, x = build(name), example(name)
    expected = run(model, x)
    c = convaudit.convert(model, (x,), rank="full", exact=True, source=f"torchvision:{name}")
    r = c.report
    assert r.layers, f"{name}: nothing converted"
    wrong_rank = [(layer.name, layer.rank, layer.exact_rank) for layer in r.layers if layer.rank != layer.exact_rank]
    assert not wrong_rank, f"{name}: rank='full' used m != exact m: {wrong_rank[:5]}"
    unmeasured = [layer.name for layer in r.layers if layer.relative_error is None]
    assert not unmeasured, f"{name}: layers without a measured error: {unmeasured[:5]}"
    bad = {layer.name: layer.relative_error for layer in r.layers if layer.relative_error >= EXACT_TOLERANCE}
    assert not bad, f"{name}: rank='full' layers with relative error >= {EXACT_TOLERANCE}: {bad}"
    assert r.output_error is not None and r.output_error < EXACT_TOLERANCE, f"{name}: output error {r.output_error}"
    # the same, measured here: the outputs themselves (googlenet in eval returns a plain tensor)
    got = run(c.model, x)
    assert not output_problems(expected, got)
    errors = [rel_error(g, w) for g, w in zip(tensors(got)[0], tensors(expected)[0], strict=True)]
    assert max(errors) < EXACT_TOLERANCE, f"{name}: rank='full' output relative errors {errors}"
    problems = cost_problems(c, x)
    assert not problems, f"{name} rank='full':\n" + "\n".join(problems)


# ---------------------------------------------------------------- the artifact directory


@pytest.mark.parametrize("name", ARTIFACT_MODELS)
def test_artifact_reloads_to_the_same_model(name: str, tmp_path: Any) -> None:
    model, x = build(name), example(name)
    c = convaudit.convert(model, (x,), rank=1, source=f"torchvision:{name}")
    out = write_artifact(tmp_path / "out", c.model, c.report, c.plan, ((x,), {}), source=f"torchvision:{name}")
    for f in ("model.py", "state_dict.pt", "conversion.json"):
        assert (out / f).is_file(), f"{name}: artifact has no {f}"
    assert json.loads((out / "conversion.json").read_text()) == c.report.to_dict()
    m2 = load_converted(out)
    assert not m2.training, f"{name}: load_converted() does not return an eval-mode model"
    want_state, got_state = c.model.state_dict(), m2.state_dict()
    assert want_state.keys() == got_state.keys()
    assert all(torch.equal(want_state[k], got_state[k]) for k in want_state), f"{name}: reloaded weights differ"
    c.model.eval()
    want, got = leaves(run(c.model, x)), leaves(run(m2, x))
    # by key path, not container type: the generated forward is fx code, which returns a plain dict
    # where torchvision's segmentation models return an OrderedDict (equal as mappings)
    assert [k for k, _ in want] == [k for k, _ in got], (
        f"{name}: reloaded outputs {[k for k, _ in got]} vs {[k for k, _ in want]}"
    )
    diffs = [
        float((g - w).abs().max()) if g.shape == w.shape else None for (_, w), (_, g) in zip(want, got, strict=True)
    ]
    assert all(d == 0.0 for d in diffs), (
        f"{name}: reloaded artifact's outputs differ from the converted model's by {diffs}"
    )
    assert "class ConvertedModel" in (out / "model.py").read_text(), (
        f"{name} is traceable: model.py should be generated, not replayed"
    )


# ---------------------------------------------------------------- orders and training-mode originals


def test_pw_dw_order_on_resnet18() -> None:
    model, x = build("resnet18"), example("resnet18")
    expected = run(model, x)
    c = convaudit.convert(model, (x,), rank=1, order="pw_dw")
    assert c.report.layers and all((layer.order, layer.rank) == ("pw_dw", 1) for layer in c.report.layers)
    problems = cost_problems(c, x) + structure_problems(c, model) + output_problems(expected, run(c.model, x))
    assert not problems, "resnet18 pw_dw:\n" + "\n".join(problems)


def test_auto_order_on_regnet() -> None:
    """regnet_y_400mf mixes plain and grouped convs: "auto" picks, per layer, the order keeping more energy."""
    model, x = build("regnet_y_400mf"), example("regnet_y_400mf")
    expected = run(model, x)
    c = convaudit.convert(model, (x,), rank=1, order="auto")
    orders = {layer.order for layer in c.report.layers}
    assert orders == {"dw_pw", "pw_dw"}, (
        f"regnet_y_400mf auto: expected both orders from the seeded weights, got {orders}"
    )
    by_name = {layer.name: layer for layer in c.analysis.layers}
    wrong = []
    for layer in c.report.layers:
        energy = by_name[layer.name].separability
        assert energy is not None, f"{layer.name}: no separability figures for a converted layer"
        other = "pw_dw" if layer.order == "dw_pw" else "dw_pw"
        kept = getattr(energy, layer.order)[min(layer.rank, len(getattr(energy, layer.order))) - 1]
        alternative = getattr(energy, other)[min(layer.rank, len(getattr(energy, other))) - 1]
        if kept < alternative - 1e-9:
            wrong.append(
                f"{layer.name}: chose {layer.order} keeping {kept:.4f} of the energy, {other} keeps {alternative:.4f}"
            )
        if layer.energy is not None and abs(layer.energy - kept) > 1e-6:
            wrong.append(f"{layer.name}: report energy {layer.energy:.6f} != analysis {kept:.6f} for {layer.order}")
    problems = wrong + cost_problems(c, x) + structure_problems(c, model) + output_problems(expected, run(c.model, x))
    assert not problems, "regnet_y_400mf auto:\n" + "\n".join(problems)


def test_original_left_in_training_mode_is_unchanged() -> None:
    """Verification runs the original in eval mode: its flags and BatchNorm statistics must come back as they were."""
    model, x = build("resnet18"), example("resnet18")
    model.train()
    before = Snapshot.take(model)
    c = convaudit.convert(model, (x,), rank=1)
    assert before.changes(model) == [], f"resnet18 (training mode): convert() changed it: {before.changes(model)}"
    assert c.report.costs_match
