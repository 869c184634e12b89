"""Recommendations: convert or keep with the reason, on crafted layers and fake profiles; the JSON fields;
``report --measure`` on a tiny model (real timing, a short cap); ``convert``'s default, the recommended set."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import convaudit
from convaudit.analysis.recommend import (
    UNCALIBRATED,
    RecommendOptions,
    _forms,
    device_profile,
    recommend,
    reference_m,
)
from convaudit.cli.app import main
from convaudit.conversion.planning import plan_conversion
from convaudit.documents.latency import FORMS, EndToEnd, LayerLatency, Spread
from convaudit.documents.records import Analysis, ConvLayer, Separability
from convaudit.errors import EXIT_OK, UsageError
from convaudit.formats.latency import end_to_end_line
from convaudit.latency.profile import ConvShape, DeviceProfile, RooflineFit, current_key, predict_forms, save_profile
from convaudit.options import ConversionOptions
from convaudit.sources.loader import load

KINDS = ("standard", "grouped", "depthwise", "pointwise")

SEPARABLE_MODEL = '''
"""Two convs whose weights are exactly depthwise-separable at m = 1 (rank 1 per input channel)."""

import torch
import torch.nn as nn


def separable_weight(c_out, c_in, k, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(c_out, c_in, 1, 1, generator=g) * torch.randn(1, c_in, k, k, generator=g)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(32, 64, 3, padding=1, bias=False)
        self.b = nn.Conv2d(64, 64, 3, padding=1, bias=False)
        with torch.no_grad():
            self.a.weight.copy_(separable_weight(64, 32, 3, 0))
            self.b.weight.copy_(separable_weight(64, 64, 3, 1))

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def build_model():
    return Net()


def example_inputs():
    return (torch.randn(1, 32, 24, 24),)
'''


def profile(
    depthwise_macs_per_second: float = 1e10, calibrated: bool = True, key: tuple | None = None
) -> DeviceProfile:
    """Compute-bound and overhead-free: time = MACs / rate, so a form's time ratio is its MAC ratio when the
    depthwise rate equals the others' (1e10 MAC/s)."""
    fits = {kind: RooflineFit(0.0, depthwise_macs_per_second if kind == "depthwise" else 1e10, 1e18) for kind in KINDS}
    cpu, version, threads, device = key or ("fake", "0", 1, "cpu")
    return DeviceProfile(
        cpu, version, threads, device, {"contiguous": fits}, {"contiguous": 1.0}, calibrated=calibrated
    )


@pytest.fixture(scope="module")
def conv() -> ConvLayer:
    """A 64→64 3×3 conv at 1×64×16×16: dw_pw at m has m·(9 + 64)/576 of its MACs."""
    model = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1))
    (layer,) = convaudit.analyze(model, input_shape=(1, 64, 16, 16), latency_profile=profile()).layers
    return dataclasses.replace(layer, latency=None, recommendation=None)


def energies(layer: ConvLayer, dw_pw: list[float], pw_dw: list[float] | None = None) -> ConvLayer:
    return dataclasses.replace(layer, separability=Separability(tuple(dw_pw), tuple(pw_dw or [0.0] * 9)))


def test_converts_a_separable_layer_predicted_faster(conv: ConvLayer) -> None:
    rec = recommend(energies(conv, [0.95] + [1.0] * 8), profile())
    assert (rec.action, rec.order, rec.m) == ("convert", "dw_pw", 1)
    ratio = 73 / 576  # time = MAC ratio under this profile
    assert f"predicted {1 / ratio:.2f}× faster ({ratio:.2f}× the time" in rec.reason
    assert "keeps 95% of the weight energy" in rec.reason


def test_without_weight_figures_the_cheapest_m_is_weighed(conv: ConvLayer) -> None:
    rec = recommend(conv, profile())  # no separability: energy is not a criterion
    assert (rec.action, rec.m) == ("convert", 1) and "weight energy" not in rec.reason


def test_keeps_a_layer_of_low_separability(conv: ConvLayer) -> None:
    # 90% of the energy needs m = 8 for dw_pw (8·73/576 ≈ 1.01× the MACs, so the time) and is out of reach for pw_dw
    layer = energies(conv, [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.95, 1.0], [0.1] * 8 + [1.0])
    rec = recommend(layer, profile())
    assert rec.action == "keep" and rec.reason.startswith("low separability: dw_pw at m = 1")
    assert "keeps only 20% of the weight energy (needs 90%)" in rec.reason
    assert "at m = 8 (dw_pw) it is predicted 1.01× the time" in rec.reason
    assert recommend(layer, profile(), options=RecommendOptions(min_energy=None)).action == "convert"


def test_keeps_a_layer_slower_on_this_device(conv: ConvLayer) -> None:
    rec = recommend(energies(conv, [1.0] * 9, [1.0] * 9), profile(depthwise_macs_per_second=1e8))
    assert rec.action == "keep" and rec.reason.startswith("slower on this device: the fastest form")
    assert "is predicted to take" in rec.reason


@pytest.mark.parametrize(
    "options,start",
    [
        (RecommendOptions(min_speedup=20.0), "savings too small: the fastest form (dw_pw, m = 1)"),
        (RecommendOptions(max_macs_ratio=0.1), "savings too small: dw_pw at m = 1 is predicted"),
    ],
)
def test_keeps_a_layer_whose_savings_are_too_small(conv: ConvLayer, options: RecommendOptions, start: str) -> None:
    rec = recommend(energies(conv, [1.0] * 9, [1.0] * 9), profile(), options=options)
    assert rec.action == "keep" and rec.reason.startswith(start), rec.reason


def measured(original: float, dw_pw: float, pw_dw: float, reliable: bool) -> LayerLatency:
    seconds = {"original": original, "dw_pw": dw_pw, "pw_dw": pw_dw}
    return LayerLatency(None, seconds, dict.fromkeys(seconds, 1e-5), reliable, "contiguous")


def test_a_reliable_measurement_decides(conv: ConvLayer) -> None:
    layer = energies(conv, [1.0] * 9, [1.0] * 9)
    assert recommend(layer, profile()).action == "convert"  # predicted faster...
    rec = recommend(layer, profile(), measured(1e-3, 2e-3, 3e-3, reliable=True))
    assert rec.action == "keep" and "measured to take 2.00× the time" in rec.reason  # ...measured slower
    faster = recommend(layer, profile(), measured(1e-3, 9e-4, 4e-4, reliable=True))
    assert (faster.action, faster.order) == ("convert", "pw_dw") and faster.reason.startswith("measured 2.50× faster")


def test_an_unreliable_measurement_never_decides(conv: ConvLayer) -> None:
    layer = energies(conv, [1.0] * 9, [1.0] * 9)
    rec = recommend(layer, profile(), measured(1e-3, 2e-3, 3e-3, reliable=False))
    assert rec.action == "convert" and rec.reason.endswith("(measured figures unreliable: decided on the prediction)")


def test_deterministic_given_the_profile(conv: ConvLayer) -> None:
    layer = energies(conv, [0.5, 0.7, 0.92] + [1.0] * 6)
    first = recommend(layer, profile())
    assert all(recommend(layer, profile()) == first for _ in range(3))
    assert (first.m, reference_m(layer, profile())) == (3, 3)


def test_tests_predict_with_the_default_profile_and_a_calibrated_one_is_read(tmp_path: Path, monkeypatch) -> None:
    assert device_profile()[1] == UNCALIBRATED  # tests/conftest.py: an empty cache directory
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    save_profile(profile(key=current_key()))
    assert device_profile()[1] == "calibrated on this machine"


def test_the_engine_adds_latency_and_recommendations() -> None:
    model = nn.Sequential(nn.Conv2d(8, 16, 3), nn.Conv2d(16, 16, 1))
    a = convaudit.analyze(model, input_shape=(1, 8, 12, 12), separability=True)
    conv, pointwise = a.layers
    assert conv.latency is not None and set(conv.latency.predicted_seconds or {}) == set(FORMS)
    assert conv.latency.measured_seconds is None and conv.latency.reliable is None
    assert conv.recommendation is not None and conv.recommendation.action in ("convert", "keep")
    assert pointwise.latency is None and pointwise.recommendation is None  # not a candidate
    assert a.environment["latency profile"] == UNCALIBRATED and a.measurement is None and a.end_to_end is None


def test_layers_of_one_shape_each_get_the_profiles_own_prediction_in_a_record_of_their_own() -> None:
    # residuals near these shapes: the correction, not the roofline alone, is what each layer must get
    residuals = ((4.0, 4.0, 7.0, 1.5, 0.0, 0.4), (4.0, 5.0, 7.0, 1.5, 0.0, -0.3), (0.0, 0.0, 7.0, 0.5, 0.0, 0.2))
    fits = {kind: RooflineFit(1e-6, 1e10, 1e9, points=3, residuals=residuals) for kind in KINDS}
    calibrated = dataclasses.replace(profile(), fits={"contiguous": fits})
    plain = {kind: dataclasses.replace(fit, residuals=()) for kind, fit in fits.items()}
    roofline = dataclasses.replace(calibrated, fits={"contiguous": plain})
    same = [nn.Conv2d(16, 16, 3, padding=1) for _ in range(3)]
    model = nn.Sequential(*same, nn.Conv2d(16, 32, 3, padding=1), nn.Conv2d(32, 32, 5, padding=2))
    layers = convaudit.analyze(model, input_shape=(1, 16, 12, 12), latency_profile=calibrated).layers
    seconds = []
    for layer in layers:
        assert layer.latency is not None and layer.recommendation is not None and layer.recommendation.m == 1
        expected = predict_forms(calibrated, ConvShape.from_layer(layer), 1)
        assert layer.latency.predicted_seconds == expected != predict_forms(roofline, ConvShape.from_layer(layer), 1)
        seconds.append(layer.latency.predicted_seconds)
    assert seconds[0] == seconds[1] == seconds[2] != seconds[3] != seconds[4]
    assert len({id(s) for s in seconds}) == len(seconds)  # plain data: no record shares another's dict


def test_predictions_shared_across_shapes_and_m_are_predict_forms_own() -> None:
    # one memo across shapes and m (blocks share separable parts; a conv's time is the same at every m):
    # every answer must still be predict_forms' (the oracle), with the correction and a sequence factor in play
    residuals = ((4.0, 4.0, 7.0, 1.5, 0.0, 0.4), (5.0, 6.0, 8.0, 1.5, 0.0, -0.3), (0.0, 0.0, 7.0, 0.5, 0.0, 0.2))
    fits = {kind: RooflineFit(1e-6, 1e10, 1e9, points=3, residuals=residuals) for kind in KINDS}
    calibrated = dataclasses.replace(profile(), fits={"contiguous": fits}, sequence_factor={"contiguous": 1.3})
    convs = [nn.Conv2d(16, 16, 3, padding=1), nn.Conv2d(16, 32, 3, padding=1), nn.Conv2d(32, 32, 5, stride=2)]
    layers = convaudit.analyze(nn.Sequential(*convs), input_shape=(1, 16, 12, 12), latency_profile=calibrated).layers
    memo: dict = {}
    for m in (1, 2, 1, 3):
        for layer in layers:
            shape = ConvShape.from_layer(layer)
            got = _forms(calibrated, shape, m, memo)
            assert got == predict_forms(calibrated, shape, m) and got is not _forms(calibrated, shape, m, memo)
    predicted = [k for k in memo if isinstance(k, ConvShape)]  # each conv (and part) once: not 5 per (shape, m)
    assert len(predicted) < 5 * len(layers) * 3 and all(
        layer_shape in predicted for layer_shape in map(ConvShape.from_layer, layers)
    )


def test_json_fields_as_the_issue_spells_them() -> None:
    model = nn.Sequential(nn.Conv2d(8, 16, 3))
    a = convaudit.analyze(model, input_shape=(1, 8, 12, 12), separability=True)
    e2e = EndToEnd(Spread(2e-3, 1e-4, 9), Spread(1e-3, 2e-4, 9), False, ("0",))
    doc = json.loads(json.dumps(dataclasses.replace(a, end_to_end=e2e).to_dict()))
    latency = doc["layers"][0]["latency"]
    assert set(latency) == {"predicted_seconds", "measured_seconds", "measured_spread", "reliable", "memory_format"} | {
        "by_format",  # 1.4: per memory format with both, else null
        "measured_ci",  # 1.4: with --measure, else null
    }
    assert latency["by_format"] is None and latency["measured_ci"] is None
    assert set(latency["predicted_seconds"]) == {"original", "dw_pw", "pw_dw"}
    assert set(doc["layers"][0]["recommendation"]) == {"action", "order", "m", "reason"}
    assert doc["end_to_end"] == {
        "original": {"measured_seconds": 2e-3, "measured_spread": 1e-4, "runs": 9},
        "recommended": {"measured_seconds": 1e-3, "measured_spread": 2e-4, "runs": 9},
        "reliable": False,
        "layers": ["0"],
    }
    assert doc["schema_version"] == "1.4" and doc["measurement"] is None
    assert Analysis.from_dict(doc).to_dict() == doc
    line = end_to_end_line(dataclasses.replace(a, end_to_end=e2e))
    assert line is not None and line.endswith("0.50× the time — unreliable (noisy measurement; not a result)")
    reliable = end_to_end_line(dataclasses.replace(a, end_to_end=dataclasses.replace(e2e, reliable=True)))
    assert reliable is not None and reliable.endswith("0.50× the time")


@pytest.fixture
def separable_py(tmp_path: Path) -> Path:
    path = tmp_path / "sep" / "model.py"
    path.parent.mkdir()
    path.write_text(SEPARABLE_MODEL)
    return path


def test_report_measure_times_for_real_and_flags_noise(separable_py: Path, capsys) -> None:
    out = separable_py.parent / "report.json"
    # a 10 ms cap per layer cannot reach the ±10% interval (6 rounds of ≥ 1 ms batches per form): unreliable
    args = ["report", str(separable_py), "--measure", "--measure-time", "0.01", "--no-cross-check", "-q"]
    assert main([*args, "-o", str(out)]) == EXIT_OK
    doc = json.loads(out.read_text())
    assert doc["measurement"]["threads"] == torch.get_num_threads()
    # --measure times both memory formats (each layer in turn); the record's own figures are contiguous
    assert doc["measurement"]["memory_format"] == "contiguous, channels_last"
    assert doc["measurement"]["unreliable_reasons"]
    for layer in doc["layers"]:
        latency = layer["latency"]
        assert set(latency["measured_seconds"]) == set(latency["measured_spread"]) == set(FORMS)
        assert all(v > 0 for v in latency["measured_seconds"].values())
        assert latency["reliable"] is False and latency["memory_format"] == "contiguous"
        assert list(latency["by_format"]) == ["contiguous", "channels_last"]
    e2e = doc["end_to_end"]  # both layers are exactly separable: the recommended set is both
    assert e2e["layers"] == ["a", "b"] and e2e["original"]["measured_seconds"] > 0
    assert set(e2e["recommended"]) == {"measured_seconds", "measured_spread", "runs"}
    assert e2e["memory_format"] == "contiguous" and list(e2e["by_format"]) == ["contiguous", "channels_last"]
    assert main([*args, "--time", "-o", "-", "--format", "text"]) == EXIT_OK  # --time: the alias
    text = capsys.readouterr().out
    lines = text.splitlines()
    rows = [i for i, line in enumerate(lines) if line.startswith(("a ", "b ")) and "dw_pw m=" in line]
    # each row's measured figures wrap onto its next line (the text report fits 100 columns)
    assert len(rows) == 2 and all(" unreliable" in lines[i + 1] for i in rows)
    # the whole model gets END_TO_END_FACTOR times the cap: on a quiet machine it may reach the interval
    assert len([line for line in text.splitlines() if line.startswith("end to end, measured: contiguous: ")]) == 1


def test_convert_defaults_to_the_recommended_set(separable_py: Path, tmp_path: Path) -> None:
    src = str(separable_py)
    assert main(["convert", src, "-o", str(tmp_path / "rec"), "-q"]) == EXIT_OK
    report = json.loads((tmp_path / "rec" / "conversion.json").read_text())
    assert report["settings"]["select"] == "recommended"
    loaded = load(src)
    analysis = convaudit.analyze(loaded.model, loaded.args, separability=True)
    wanted = [(x.name, x.recommendation.order, x.recommendation.m) for x in analysis.candidates
              if x.recommendation and x.recommendation.action == "convert"]  # fmt: skip
    assert wanted and [(c["name"], c["order"], c["rank"]) for c in report["layers"]] == wanted
    assert main(["convert", src, "-o", str(tmp_path / "r1"), "--rank", "1", "-q"]) == EXIT_OK
    assert json.loads((tmp_path / "r1" / "conversion.json").read_text())["settings"]["select"] is None


def test_the_recommended_plan_skips_what_it_keeps(conv: ConvLayer) -> None:
    model = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1), nn.Conv2d(64, 64, 3, padding=1))
    a = convaudit.analyze(model, input_shape=(1, 64, 16, 16), latency_profile=profile())
    keep = recommend(a.layers[1], profile(depthwise_macs_per_second=1e8))
    a = dataclasses.replace(a, layers=(a.layers[0], dataclasses.replace(a.layers[1], recommendation=keep)))
    plan = plan_conversion(a, select="recommended")
    assert [(c.name, c.order, c.rank) for c in plan.choices] == [("0", "dw_pw", 1)]
    assert plan.skipped == (("1", f"recommended to keep: {keep.reason}"),)


@pytest.mark.parametrize(
    "given,flag", [({"rank": 2}, "--rank"), ({"energy": 0.9}, "--energy"), ({"order": "pw_dw"}, "--order")]
)
def test_recommended_chooses_order_and_m_itself(given: dict, flag: str) -> None:
    with pytest.raises(UsageError, match=f"chooses each layer's order and m itself: drop {flag}"):
        ConversionOptions(select="recommended", **given)
