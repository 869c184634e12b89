"""Measured time: every candidate and its DW→PW form timed on fresh layers; the model is not run."""

import json

import pytest
import torch.nn as nn

import convaudit
from convaudit.documents.records import Analysis
from convaudit.formats import render
from convaudit.latency.measure import MAX_INPUT_BYTES, measure
from tests.fixtures import nets


def test_candidates_are_timed_and_the_model_is_not_run() -> None:
    model = nn.Sequential(nn.Conv2d(8, 32, 3, padding=1), nn.Conv2d(32, 32, 1), nn.Conv2d(32, 32, 3, padding=1))
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))
    a = convaudit.analyze(model, input_shape=(1, 8, 16, 16), timing=True)
    assert not calls
    t = a.timing
    assert t.threads >= 1 and t.repeats == 10 and [x.name for x in t.layers] == ["0", "2"]
    for x, layer in zip(t.layers, a.candidates, strict=True):
        assert (
            x.seconds > 0 and x.seconds_dw_pw > 0 and x.speedup_measured == pytest.approx(x.seconds / x.seconds_dw_pw)
        )
        assert x.speedup_predicted == pytest.approx(layer.macs / layer.separable.dw_pw.macs)


def test_large_inputs_are_skipped_with_a_reason() -> None:
    a = convaudit.analyze(nets.Seed64(), input_shape=(4, 64, 2048, 2048))  # 4 GiB input
    assert MAX_INPUT_BYTES < 4 * 64 * 2048 * 2048 * 4
    (x,) = measure(a.layers).layers
    assert x.seconds is None and "larger than" in x.skipped


def test_reports_show_and_round_trip_the_timing() -> None:
    a = convaudit.analyze(nets.Seed64(), input_shape=(1, 64, 16, 16), timing=True)
    assert Analysis.from_dict(json.loads(render(a, "json"))) == a
    assert "measured on cpu" in render(a, "text") and "MACs promised" in render(a, "text")
    html = render(a, "html")
    assert 'id="timing"' in html and "Measured time" in html
