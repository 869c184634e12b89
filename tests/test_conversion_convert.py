"""convert(): function preserved at full rank, costs measured = predicted, the user's model untouched."""

import copy
from pathlib import Path

import pytest
import torch
import torch.fx
import torch.nn as nn

import convaudit
from convaudit.conversion.convert import VerificationError
from convaudit.conversion.fidelity import split_holdout
from convaudit.conversion.layers import SeparableConv
from convaudit.errors import UsageError
from convaudit.sources.loader import load
from tests.fixtures import nets

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def example(name: str):
    return load(str(EXAMPLES / f"{name}.py"))


def same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("name", ["small_cnn", "residual_net", "dynamic_net", "two_inputs"])
@pytest.mark.parametrize("order", ["dw_pw", "pw_dw"])
def test_full_rank_is_exact_and_costs_match(name: str, order: str) -> None:
    loaded = example(name)
    before = copy.deepcopy(loaded.model)
    c = convaudit.convert(loaded.model, loaded.args, loaded.kwargs, rank="full", order=order, exact=True)
    assert same_state(before, loaded.model) and type(loaded.model) is type(before)
    r = c.report
    assert r.costs_match and r.output_error < 1e-5 and r.max_layer_error < 1e-4
    assert (r.params_measured, r.macs_measured) == (r.params_predicted, r.macs_predicted)
    after = convaudit.analyze(c.model, loaded.args, loaded.kwargs)
    assert (after.totals.params, after.totals.macs) == (r.params_measured, r.macs_measured)
    converted = {layer.name for layer in r.layers}
    assert converted | {n for n, _ in r.skipped} == {layer.name for layer in c.analysis.layers}


def test_module_swap_keeps_the_users_class() -> None:
    loaded = example("dynamic_net")  # cannot be traced: module swap on a copy
    c = convaudit.convert(loaded.model, loaded.args)
    assert type(c.model) is type(loaded.model) and isinstance(c.model.refine, SeparableConv)
    assert isinstance(loaded.model.refine, nn.Conv2d)


def test_functional_conv_goes_through_fx_and_stays_shared() -> None:
    loaded = example("residual_net")
    c = convaudit.convert(loaded.model, loaded.args, rank="full")
    assert isinstance(c.model, torch.fx.GraphModule)
    head = next(layer for layer in c.report.layers if layer.name == "head")
    assert head.macs_measured == head.macs_predicted and "final output only" in head.note
    calls = [n for n in c.model.graph.nodes if n.op == "call_module" and n.target.startswith("head")]
    assert len(calls) == 2 and len({n.target for n in calls}) == 1  # one module, called at both sites
    assert not hasattr(c.model.head, "weight")  # the old parameter is gone
    assert c.report.output_error < 1e-5


def test_shared_module_is_replaced_once() -> None:
    model = nets.SharedConv()
    model.alias = model.conv  # the same conv under a second name
    c = convaudit.convert(model, (torch.randn(1, 8, 10, 10),), rank="full")
    assert c.model.conv is c.model.alias and isinstance(c.model.conv, SeparableConv)
    (layer,) = c.report.layers
    assert layer.macs_measured == 3 * layer.macs_predicted // 3 and c.report.costs_match


def test_inplace_is_verified_against_the_model_as_it_was() -> None:
    model = nets.Seed64()
    x = torch.randn(1, 64, 8, 8)
    with torch.no_grad():
        expected = model(x)
    c = convaudit.convert(model, (x,), inplace=True)
    assert c.model is model and isinstance(model.conv, SeparableConv)
    with torch.no_grad():
        measured = float((model(x) - expected).norm() / expected.norm())
    assert c.report.output_error == pytest.approx(measured, rel=1e-6) and measured > 0.1


def test_exact_fails_below_full_rank() -> None:
    model = nets.Seed64()
    with pytest.raises(VerificationError, match=r"--exact: layer 'conv' has relative error .* > 0\.0001"):
        convaudit.convert(model, (torch.randn(1, 64, 8, 8),), rank=1, exact=True)


def test_rank_one_error_is_reported_not_hidden() -> None:
    c = convaudit.convert(nets.Seed64(), (torch.randn(1, 64, 8, 8),), rank=1)
    (layer,) = c.report.layers
    assert 0.1 < layer.relative_error < 1.5 and 0 < layer.energy < 1


def test_calibrated_needs_and_uses_calibration() -> None:
    torch.manual_seed(0)
    loaded = example("small_cnn")
    with pytest.raises(UsageError, match="needs calibration"):
        convaudit.convert(loaded.model, loaded.args, init="calibrated")
    batches = [torch.nn.functional.avg_pool2d(torch.randn(8, 3, 60, 60), 5, stride=1) for _ in range(2)]
    svd = convaudit.convert(loaded.model, (batches[0],), rank=1)
    cal = convaudit.convert(loaded.model, (batches[0],), rank=1, init="calibrated", calibration=batches)
    seq = convaudit.convert(
        loaded.model, (batches[0],), rank=1, init="calibrated", calibration=batches, sequential=True
    )
    assert all(layer.init == "calibrated" for layer in cal.report.layers)
    assert cal.report.output_error < svd.report.output_error
    assert seq.report.costs_match and seq.report.output_error < svd.report.output_error


def test_mobilenet_style_for_training_from_scratch() -> None:
    loaded = example("small_cnn")
    c = convaudit.convert(loaded.model, loaded.args, init="random", style="mobilenet")
    assert c.report.costs_match and isinstance(c.model.conv64.bn_dw, nn.BatchNorm2d)
    with pytest.raises(UsageError, match="needs --init random"):
        convaudit.convert(loaded.model, loaded.args, style="mobilenet")


def test_nothing_to_convert() -> None:
    c = convaudit.convert(nets.NoConv(), (torch.randn(2, 16),))
    assert c.report.layers == () and c.report.costs_match and c.report.output_error == 0.0


def test_batchnorm_recalibration_on_the_copy_only() -> None:
    torch.manual_seed(0)
    loaded = example("small_cnn")
    model = loaded.model
    batches = [torch.randn(8, 3, 24, 24) for _ in range(3)]
    before = copy.deepcopy(model.state_dict())
    recal = convaudit.convert(model, (batches[0],), rank=1, calibration=batches, recalibrate_bn=True)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert recal.model.bn1.momentum == model.bn1.momentum and recal.model.training == model.training
    # oracle: PyTorch's own BatchNorm re-estimation (SWA's update_bn) on the same conversion, on the fit
    # batches only: the held-out ones are never fitted to
    fit, held = split_holdout(batches)
    assert len(fit) == 2 and len(held) == 1
    reference = convaudit.convert(model, (batches[0],), rank=1).model
    torch.optim.swa_utils.update_bn([a[0] for a, _ in fit], reference)
    for name in ("bn0", "bn1", "bn2"):
        ours, theirs = getattr(recal.model, name), getattr(reference, name)
        assert torch.allclose(ours.running_mean, theirs.running_mean, rtol=1e-5, atol=1e-7)
        assert torch.allclose(ours.running_var, theirs.running_var, rtol=1e-5, atol=1e-7)
    with pytest.raises(UsageError, match="--recalibrate-bn needs calibration"):
        convaudit.convert(model, (batches[0],), recalibrate_bn=True)
