"""convert()'s verdict: held-out inputs kept apart from fitting, fidelity before/after recovery, schema 1.2."""

from __future__ import annotations

import copy
import dataclasses
import importlib
import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import convaudit
from convaudit.conversion.fidelity import DEGRADED_ERROR, judge, measure_fidelity, split_holdout
from convaudit.conversion.recovery import STAGES
from convaudit.documents.records import ConversionReport, Fidelity, RecoveryStage
from convaudit.errors import UnmeetableError, UsageError
from convaudit.sources.loader import load

#: the module, not the function the package exports under the same name
convert_module = importlib.import_module("convaudit.conversion.convert")
ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "schema.md").read_text()


class Tiny(nn.Module):
    """conv 3→16, conv 16→16 (3×3, BatchNorm+ReLU), global pool, a 5-way linear head: a classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.head = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.head(x.mean((2, 3)))


def tiny() -> Tiny:
    torch.manual_seed(0)
    return Tiny().eval()


def batches(n: int = 4, size: int = 8, seed: int = 1) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(size, 3, 8, 8, generator=gen) for _ in range(n)]


def rows(tensors: list[torch.Tensor]) -> set[bytes]:
    """Every sample of the batches, by value."""
    return {t[i].numpy().tobytes() for t in tensors for i in range(t.shape[0])}


def test_without_calibration_fidelity_is_on_the_example_inputs_and_says_so() -> None:
    x = torch.randn(4, 3, 8, 8)
    lossy = convaudit.convert(tiny(), (x,), rank=1).report
    f = lossy.fidelity
    assert f is not None and f.inputs == "example inputs" and f.samples == 4
    # one output tensor: the pooled relative error is the example-input error verification reports
    assert f.relative_error == pytest.approx(lossy.output_error, rel=1e-6)
    assert f.top1_agreement is not None and lossy.recovered is None and lossy.recovery == ()
    assert lossy.verdict == judge(f)
    exact = convaudit.convert(tiny(), (x,), rank="full").report
    assert exact.verdict == "kept" and exact.fidelity.relative_error < 1e-5 and exact.fidelity.top1_agreement == 1.0


def test_a_broken_conversion_is_judged_broken() -> None:
    from tests.fixtures import nets

    report = convaudit.convert(nets.Seed64(), (torch.randn(2, 64, 8, 8),), rank=1).report
    assert report.fidelity.top1_agreement is None  # a feature map, not logits: judged by error and cosine
    assert report.fidelity.relative_error > DEGRADED_ERROR and report.verdict == "broken"


def test_held_out_batches_are_split_off_and_measured_on() -> None:
    model, cal = tiny(), batches()
    c = convaudit.convert(model, (cal[0],), rank=1, calibration=cal)
    fit, held = split_holdout(cal)
    f = c.report.fidelity
    assert f.inputs == "held-out calibration batches" and f.samples == sum(a[0].shape[0] for a, _ in held)
    assert rows([a[0] for a, _ in fit]).isdisjoint(rows([a[0] for a, _ in held]))
    assert f == measure_fidelity(model, c.model, held, inputs=f.inputs)  # oracle: the same figures measured again


def test_held_out_inputs_are_never_fitted_to() -> None:
    """calibrated init and BatchNorm re-estimation see the fit batches only: the held-out ones change nothing."""
    model, cal = tiny(), batches()
    fit, _ = split_holdout(cal)
    fit_tensors = [a[0] for a, _ in fit]
    settings = {"rank": 1, "init": "calibrated", "recalibrate_bn": True}
    split = convaudit.convert(model, (cal[0],), calibration=cal, **settings)
    other = convaudit.convert(model, (cal[0],), calibration=fit_tensors, holdout=batches(2, seed=7), **settings)
    for key, value in split.model.state_dict().items():
        assert torch.equal(value, other.model.state_dict()[key]), key
    assert other.report.fidelity.inputs == "--holdout inputs" and other.report.fidelity.samples == 16
    assert other.report.fidelity != split.report.fidelity


def test_recovery_fits_the_fit_batches_and_selects_on_the_held_out(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, list[torch.Tensor]] = {}
    real = convert_module.recover

    def spy(converted, original, inputs, *, holdout=None, **kwargs):
        seen["fit"] = [a[0] for a, _ in inputs]
        seen["held"] = [a[0] for a, _ in holdout]
        return real(converted, original, inputs, holdout=holdout, **kwargs)

    monkeypatch.setattr(convert_module, "recover", spy)
    model, cal = tiny(), batches()
    before = copy.deepcopy(model.state_dict())
    c = convaudit.convert(model, (cal[0],), rank=1, calibration=cal, recover=True, recover_steps=6)
    assert rows(seen["fit"]).isdisjoint(rows(seen["held"])) and rows(seen["fit"]) | rows(seen["held"]) == rows(cal)
    r = c.report
    assert {s.name for s in r.recovery} == set(STAGES) and c.recovery is not None
    assert r.fidelity.inputs == r.recovered.inputs == "held-out calibration batches"
    assert r.recovered.relative_error <= r.fidelity.relative_error  # the best held-out state is kept
    assert r.verdict == judge(r.recovered) and r.settings["recover"] and r.settings["recover_steps"] == 6
    _, held = split_holdout(cal)
    assert r.recovered == measure_fidelity(model, c.model, held, inputs=r.recovered.inputs)  # c.model: recovered
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the user's model untouched
    assert r.costs_match and {layer.name for layer in r.layers} == {"conv1", "conv2"}


def test_recovery_and_sensitivity_need_calibration_inputs() -> None:
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(UsageError, match="--recover needs calibration inputs"):
        convaudit.convert(tiny(), (x,), recover=True)
    with pytest.raises(UsageError, match="--select sensitivity measures"):
        convaudit.convert(tiny(), (x,), select="sensitivity", target_macs=0.5)
    with pytest.raises(UsageError, match="--recover-steps sets how recovery runs: it needs --recover"):
        convaudit.convert(tiny(), (x,), recover_steps=5)


def test_one_sample_falls_back_to_the_example_inputs_unless_recovery_needs_held_out() -> None:
    x, one = torch.randn(2, 3, 8, 8), [torch.randn(1, 3, 8, 8)]
    r = convaudit.convert(tiny(), (x,), rank=1, calibration=one, recalibrate_bn=True).report
    assert r.fidelity.inputs == "example inputs" and any("cannot hold inputs out" in n for n in r.notes)
    with pytest.raises(UsageError, match="cannot hold inputs out"):
        convaudit.convert(tiny(), (x,), rank=1, calibration=one, recover=True)


def test_inplace_is_judged_against_the_model_as_it_was() -> None:
    model, cal = tiny(), batches()
    original = copy.deepcopy(model)
    c = convaudit.convert(model, (cal[0],), rank=1, calibration=cal, inplace=True)
    _, held = split_holdout(cal)
    assert c.model is model and c.report.fidelity == measure_fidelity(
        original, model, held, inputs=c.report.fidelity.inputs
    )
    assert c.report.fidelity.relative_error > 0.01


def test_max_output_error_picks_a_plan_meeting_it_or_fails() -> None:
    model, cal = tiny(), batches()
    c = convaudit.convert(model, (cal[0],), calibration=cal, max_output_error=0.5, select="energy")
    assert c.report.fidelity.relative_error <= 0.5 and c.report.layers
    assert any("--max-output-error 0.5" in n for n in c.report.notes)
    with pytest.raises(UnmeetableError) as info:
        convaudit.convert(model, (cal[0],), calibration=cal, max_output_error=1e-9, select="energy")
    assert info.value.exit_code == 1


# ---------------------------------------------------------------- the document


def report_with_recovery() -> ConversionReport:
    base = convaudit.convert(tiny(), (torch.randn(2, 3, 8, 8),), rank=1).report
    held = Fidelity(0.8, 0.6, 0.25, 16, "held-out calibration batches")
    after = Fidelity(0.04, 0.999, 0.9375, 16, "held-out calibration batches")
    stages = (
        RecoveryStage("batchnorm", 3, 0.1, 0.8, 0.5, "done"),
        RecoveryStage("distill", 20, 1.5, 0.5, 0.04, "time"),
    )
    return dataclasses.replace(base, fidelity=held, recovered=after, recovery=stages, verdict=judge(after))


def test_json_opens_with_the_verdict_and_reads_back() -> None:
    report = report_with_recovery()
    doc = json.loads(json.dumps(report.to_dict()))
    assert list(doc)[:4] == ["verdict", "fidelity", "recovered", "recovery"] and doc["verdict"] == "degraded"
    assert doc["schema_version"] == convaudit.SCHEMA_VERSION == "1.4"
    assert ConversionReport.from_dict(doc) == report


@pytest.mark.parametrize("artifact", ["tiny01_artifact", "replay01_artifact"])
def test_a_0_1_conversion_json_still_reads(artifact: str) -> None:
    doc = json.loads((ROOT / "tests" / "fixtures" / "artifact_0_1" / artifact / "conversion.json").read_text())
    old = ConversionReport.from_dict(doc)
    assert old.schema_version == "1.0" and old.verdict is None and old.fidelity is None and old.recovery == ()
    assert len(old.layers) == len(doc["layers"]) and old.costs_match == doc["costs_match"]
    assert convaudit.formats.render(old, "text").startswith("verdict: not measured")


def fields_of(heading: str) -> set[str]:
    body = DOC.split(heading, 1)[1]
    body = re.split(r"\n#{2,3} ", body, maxsplit=1)[0]
    return set(re.findall(r"^\| `(\w+)` \|", body, flags=re.M))


@pytest.mark.parametrize(
    "heading,record",
    [
        ("## conversion.json", ConversionReport),
        ("### fidelity", Fidelity),
        ("### recovery stage", RecoveryStage),
    ],
)
def test_schema_doc_lists_the_conversion_fields(heading: str, record: type) -> None:
    assert fields_of(heading) == {f.name for f in dataclasses.fields(record)}


def test_the_verdict_thresholds_in_the_doc_are_the_code_s() -> None:
    from convaudit.conversion import fidelity

    thresholds = DOC.split("**Verdict thresholds**", 1)[1].split("\n\n", 1)[0]
    for name in ("KEPT_AGREEMENT", "DEGRADED_AGREEMENT", "KEPT_ERROR", "DEGRADED_ERROR", "KEPT_COSINE"):
        assert f"{getattr(fidelity, name):g}" in thresholds, name


def test_untrained_weights_say_their_figures_mean_nothing() -> None:
    from convaudit.conversion.reporting import with_weights

    built = "torchvision.models.resnet18(weights=None)"
    report = with_weights(report_with_recovery(), "initialised", built)
    assert report.notes[0].startswith("the weights are freshly initialised") and "mean nothing" in report.notes[0]
    assert with_weights(report, "initialised", built) == report  # said once
    trained = with_weights(report_with_recovery(), "loaded", "ckpt.pt")
    assert not any("mean nothing" in n for n in trained.notes)


def test_digits_example_converts_with_recovery() -> None:
    loaded = load(str(ROOT / "examples" / "digits_experiment.py"))
    cal = loaded.namespace["calibration_inputs"]()
    c = convaudit.convert(loaded.model, loaded.args, calibration=cal, rank=1, recover=True, recover_steps=3)
    r = c.report
    assert r.recovery and r.recovered.samples == 64 and r.fidelity.top1_agreement is not None
    assert r.verdict in ("kept", "degraded", "broken") and "recovery" in c.stage_seconds
