"""Conversion report renderers: numbers from the report, names escaped, no network."""

import re

import pytest
import torch

import convaudit
from convaudit.formats.conversion import render_conversion_html, render_conversion_text
from tests.fixtures.models import EvilNames


def converted():
    torch.manual_seed(0)
    return convaudit.convert(EvilNames(), (torch.randn(1, 3, 8, 8),), rank=1).report


def test_html_escapes_names_and_stays_offline() -> None:
    html = render_conversion_html(converted())
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "</script><!--" not in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert html.lstrip().lower().startswith("<!doctype html") and "measured = predicted" in html


def test_text_lists_every_layer_with_measured_figures() -> None:
    report = converted()
    text = render_conversion_text(report)
    assert f"{report.params_before:,} → {report.params_measured:,}" in text
    for layer in report.layers:
        assert f"{layer.macs_before:,} → {layer.macs_measured:,}" in text
    assert "measured = predicted" in text


# ---------------------------------------------------------------- the verdict leads


def verdict_report(verdict: str = "broken", recovered: bool = True, weights: str = "model file"):
    """A hand-made report (no conversion run): its text is the golden file's."""
    from convaudit.documents.records import ConversionReport, ConvertedLayer, Fidelity, RecoveryStage

    layer = ConvertedLayer("features.conv", "dw_pw", 1, 9, "svd", 0.21, 36864, 1000, 4672, 200, 4672, 200, 0.9)
    before = Fidelity(1.21, 0.305, 0.109, 64, "held-out calibration batches")
    after = Fidelity(0.198, 0.981, 0.969, 64, "held-out calibration batches")
    stages = (
        RecoveryStage("batchnorm", 3, 0.25, 1.21, 0.66, "done"),
        RecoveryStage("distill", 50, 2.5, 0.66, 0.198, "steps"),
    )
    report = ConversionReport(
        model="net.py",
        settings={"rank": 1, "order": "dw_pw", "init": "svd", "recover": recovered, "mode": "eval"},
        layers=(layer,),
        skipped=(("stem", "matched by --exclude"),),
        params_before=40000,
        macs_before=1200,
        params_predicted=7808,
        macs_predicted=400,
        params_measured=7808,
        macs_measured=400,
        output_error=0.21,
        costs_match=True,
        weights=weights,
        weights_source="net.py",
        verdict=verdict,
        fidelity=before,
        recovered=after if recovered else None,
        recovery=stages if recovered else (),
    )
    if weights == "initialised":
        from convaudit.conversion.reporting import with_weights

        report = with_weights(report, weights, "torchvision.models.resnet18(weights=None)")
    return report


def test_text_golden(golden) -> None:
    golden("conversion_verdict.txt", render_conversion_text(verdict_report("degraded")) + "\n")


def test_text_opens_with_the_verdict_before_and_after_recovery() -> None:
    text = render_conversion_text(verdict_report("degraded"))
    lines = text.splitlines()
    assert lines[0] == "verdict: degraded: the converted model departs from the original: check it on your task"
    assert lines[1] == "  on the held-out calibration batches (64 samples, never fitted to):"
    assert lines[2] == "    before recovery: top-1 agreement 10.9% · relative error 1.21 · cosine 0.305"
    assert lines[3] == "    after recovery:  top-1 agreement 96.9% · relative error 0.198 · cosine 0.981"
    assert "distill 50 steps 2.5 s: 0.66 → 0.198 (stopped: steps)" in lines[4]
    assert lines[5].startswith("  next: try a larger recovery budget") and "--rank 2" in lines[5]
    costs = next(i for i, line in enumerate(lines) if "measured = predicted" in line)
    assert costs > 5 and lines[costs].startswith("costs: ")


def test_kept_needs_no_next_step_and_broken_without_recovery_suggests_it() -> None:
    kept = render_conversion_text(verdict_report("kept", recovered=False))
    assert kept.startswith("verdict: kept: ") and "next:" not in kept
    broken = render_conversion_text(verdict_report("broken", recovered=False))
    assert "  next: try --recover, a higher --rank (e.g. --rank 2) or --max-output-error E" in broken


def test_untrained_weights_warn_in_text_json_and_html() -> None:
    import json

    from convaudit.formats import render

    report = verdict_report("broken", weights="initialised")
    text, doc, html = render(report, "text"), json.loads(render(report, "json")), render(report, "html")
    warning = "the weights are freshly initialised (untrained): the fidelity figures and the verdict"
    assert f"warning: {warning}" in text and text.count(warning) == 1  # at the top, not again among the notes
    assert doc["notes"][0].startswith(warning) and doc["verdict"] == "broken" and doc["weights"] == "initialised"
    assert f'<div class="untrained">{warning}' in html


@pytest.mark.parametrize("verdict,css", [("kept", "kept"), ("degraded", "degraded"), ("broken", "broken")])
def test_html_leads_with_the_verdict_and_never_styles_loss_as_success(verdict: str, css: str) -> None:
    html = render_conversion_html(verdict_report(verdict))
    main = html.split("<main", 1)[1]
    assert main.index('id="verdict"') < main.index('id="summary"')
    assert f'<section id="verdict" class="verdict {css}">' in html and f'<span class="word">{verdict}</span>' in html
    assert "10.9%" in main and "96.9%" in main and "on the held-out calibration batches" in main
    # the costs card is no green success mark beside a lost function
    assert 'class="value ok"' not in html
    style = html.split("<style>", 1)[1].split("</style>", 1)[0]
    if verdict != "kept":
        rule = re.search(rf"\.verdict\.{css} \.word \{{ color: var\(--(\w+)\)", style)
        assert rule and rule[1] in ("bad", "warn"), rule
    assert ("next: try" in main) is (verdict != "kept")
