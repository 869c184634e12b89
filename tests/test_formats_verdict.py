"""The verdict reports open with: its cases, the next command (real flags, quoted), cautions with a legend, plurals."""

from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import convaudit
from convaudit.cli.app import build_parser
from convaudit.documents.latency import Measurement, Recommendation
from convaudit.documents.records import Analysis, ConversionReport, ConvertedLayer
from convaudit.formats.cautions import COSTLIER, LEGEND, LOW, UNTRAINED, layer_marks
from convaudit.formats.common import compact_names, describe_layers, plural
from convaudit.formats.conversion import render_conversion_html, render_conversion_text
from convaudit.formats.html import render_html
from convaudit.formats.markdown import md, render_markdown
from convaudit.formats.text import render_text, terminal_summary
from convaudit.formats.verdict import budget_count, verdict, verdict_lines
from convaudit.vocab import WeightsOrigin
from tests.fixtures.models import OnlyLinear


class Rank1Net(nn.Module):
    """One 3×3 conv whose per-input-channel kernels are rank 1: its m = 1 form keeps all the weight energy."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(64, 64, 3, padding=1, bias=False)
        with torch.no_grad():
            k = torch.randn(64, 1, 3, 3)  # one spatial kernel per input channel
            p = torch.randn(64, 64, 1, 1)  # pointwise mixing
            self.conv.weight.copy_(p * k.transpose(0, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def already_separable() -> nn.Module:
    """A MobileNet-like stack: one small 3×3 stem (the only candidate), then depthwise and pointwise convs."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1),
        nn.Conv2d(16, 16, 3, padding=1, groups=16),
        nn.Conv2d(16, 96, 1),
        nn.Conv2d(96, 96, 3, padding=1, groups=96),
        nn.Conv2d(96, 160, 1),
    )


def trained(a: Analysis, model: str = "examples/net.py", **changes: object) -> Analysis:
    """The record as if read from a model file with its own (trained) weights."""
    fields = {"model": model, "weights": WeightsOrigin.MODEL_FILE, "weights_source": model} | changes
    return dataclasses.replace(a, **fields)  # type: ignore[arg-type]


def with_layers(a: Analysis, **changes: object) -> Analysis:
    return dataclasses.replace(a, layers=tuple(dataclasses.replace(x, **changes) for x in a.layers))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def rank1() -> Analysis:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = Rank1Net()
    return trained(convaudit.analyze(model, input_shape=(1, 64, 56, 56), separability=True))


@pytest.fixture(scope="module")
def separable() -> Analysis:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = already_separable()
    return trained(convaudit.analyze(model, input_shape=(1, 3, 64, 64), separability=True))


def parses(command: str) -> None:
    """The command line is one convaudit's own parser accepts (real subcommand, real flags)."""
    words = shlex.split(command)
    assert words[0] == "convaudit"
    build_parser().parse_args(words[1:])  # SystemExit on an unknown flag fails the test


def test_no_convolutions() -> None:
    v = verdict(convaudit.analyze(OnlyLinear(), input_shape=(2, 16)))
    assert v.case == "no convs" and v.headline.startswith("no convolutions: nothing to rewrite")
    assert v.command is not None and v.command.startswith("convaudit check model.py --max-macs ")
    parses(v.command)


def test_already_separable_little_to_gain(separable: Analysis) -> None:
    v = verdict(separable)
    found = re.match(
        r"already separable, little to gain: ([\d.]+)% of conv MACs already depthwise/pointwise", v.headline
    )
    assert v.case == "little to gain" and v.tone == "neutral" and found and float(found.group(1)) > 90
    assert "1 candidate (the 3×3 0)" in v.headline and "would save at most" in v.headline
    assert v.command == f"convaudit check examples/net.py --max-macs {budget_count(separable.totals.macs)}"
    parses(v.command)


def test_untrained_weights_say_nothing(rank1: Analysis) -> None:
    a = trained(rank1, "torchvision:resnet18", weights=WeightsOrigin.INITIALISED, weights_source="resnet18()")
    v = verdict(a)
    assert v.case == "untrained" and v.tone == "warn"
    assert "freshly initialised" in v.headline and "say nothing about a trained model" in v.headline
    assert v.command == "convaudit report torchvision:resnet18 --weights STATE_DICT.pt"
    assert UNTRAINED in v.markers
    parses(v.command)


def test_low_energy_needs_recovery(small: Analysis) -> None:
    v = verdict(trained(small, "ckpt.pt", weights=WeightsOrigin.LOADED, weights_source="ckpt.pt"))
    assert v.case == "needs recovery" and v.tone == "warn"
    assert re.fullmatch(
        r"the 5×5 conv5 and the 3×3 convs stem, grouped and mix hold [\d.]+% of MACs; their m = 1 forms keep "
        r"[\d.]+% of weight energy: expect to need recovery",
        v.headline,
    )
    assert v.command == "convaudit convert ckpt.pt -o converted --rank 1 --recover --images IMAGE_DIR"
    parses(v.command)
    # a model file may bring calibration_inputs(); a --weights file is carried along
    v = verdict(trained(small, "net.py", weights=WeightsOrigin.LOADED, weights_source="trained.pt['model']"))
    assert v.command == "convaudit convert net.py --weights trained.pt -o converted --rank 1 --recover"
    parses(v.command)


def test_convert_when_recommended(rank1: Analysis) -> None:
    (layer,) = rank1.layers
    assert layer.recommendation is not None and layer.recommendation.action == "convert"
    v = verdict(rank1)
    assert v.case == "convert" and v.tone == "good"
    found = re.match(r"convert: predicted ([\d.]+)% fewer MACs, ([\d.]+)× the candidates' predicted time", v.headline)
    assert found, v.headline
    expected = 1 - rank1.totals.macs_after_ratio  # the recommendation converts it at m = 1
    assert float(found.group(1)) == pytest.approx(100 * expected, abs=0.1)
    assert float(found.group(2)) < 1
    assert v.command == "convaudit convert examples/net.py -o converted"
    parses(v.command)


def test_convert_by_energy_without_recommendations(rank1: Analysis) -> None:
    v = verdict(with_layers(rank1, recommendation=None, latency=None))
    assert v.case == "convert" and v.tone == "good" and "keep 100.0% of weight energy" in v.headline
    assert v.command == "convaudit convert examples/net.py -o converted --rank 1"
    parses(v.command)


def test_keep_when_the_time_would_not_fall(rank1: Analysis) -> None:
    keep = Recommendation("keep", "dw_pw", 1, "slower on this device: the fastest form is predicted 1.30× the time")
    a = with_layers(rank1, recommendation=keep)
    v = verdict(a)
    assert v.case == "keep" and v.tone == "neutral"
    assert v.headline.startswith("keep: MACs would fall to ") and "the predicted time would not" in v.headline
    assert v.command == "convaudit report examples/net.py --measure"
    parses(v.command)
    measured = verdict(dataclasses.replace(a, measurement=Measurement(1, "cpu", "contiguous", None, ())))
    assert "the measured time would not" in measured.headline
    assert measured.command is not None and measured.command.startswith("convaudit check examples/net.py --max-macs")


def test_model_spec_is_shell_quoted(rank1: Analysis) -> None:
    spec = "my models/it's.py"
    v = verdict(trained(rank1, spec))
    assert v.command is not None and shlex.split(v.command)[2] == spec
    parses(v.command)


def test_cautions_carry_a_legend(small: Analysis) -> None:
    v = verdict(small)
    texts = {c.marker: [x.text for x in v.cautions if x.marker == c.marker] for c in v.cautions}
    assert any("--rank full" in t and "not a saving" in t for t in texts[COSTLIER])  # exact forms: bigger
    assert any(t.startswith("predicted slower than the conv: stem") for t in texts[COSTLIER])
    assert any("conv5 13%" in t for t in texts[LOW])
    marks = layer_marks(small)
    assert LOW in marks["conv5"] and COSTLIER in marks["stem"]
    used = set("".join(marks.values())) | set(v.markers)
    for out in (render_text(small), terminal_summary(small)):
        legend = out[out.index("legend: ") :]
        assert all(f"{m} = {LEGEND[m]}" in " ".join(legend.split()) for m in used)
    text = render_markdown(small)
    assert all(f"**{md(m)}** {md(LEGEND[m])}" in text for m in used)
    assert "Legend: " in text and "| caution |" in text
    html = render_html(small)
    assert html.count('class="marker"') >= len(v.cautions) + len(v.markers)
    assert all(LEGEND[m] in html for m in used)


def test_costliest_list_marks_a_low_energy_stem(small: Analysis) -> None:
    lines = terminal_summary(small).splitlines()
    first = lines[lines.index(next(x for x in lines if x.startswith("costliest candidates"))) + 1]
    assert first.split()[:2] == [LOW, "conv5:"] and "keeps 13% energy" in first


def test_larger_m1_form_is_a_caution_not_a_saving(rank1: Analysis) -> None:
    (layer,) = rank1.layers
    assert layer.separable is not None
    worse = dataclasses.replace(layer.separable.dw_pw, macs=layer.macs + 1)
    a = dataclasses.replace(
        rank1, layers=(dataclasses.replace(layer, separable=dataclasses.replace(layer.separable, dw_pw=worse)),)
    )
    assert layer_marks(a) == {"conv": COSTLIER}
    assert any(
        c.marker == COSTLIER and c.text.startswith("m = 1 forms larger than the conv") for c in verdict(a).cautions
    )


@pytest.mark.parametrize("render", [render_text, render_markdown, render_html])
def test_reports_open_with_the_verdict(small: Analysis, render) -> None:
    out = render(small)
    first = {
        render_text: "verdict: ",
        render_markdown: "**Verdict:** ",
        render_html: 'id="verdict"',
    }[render]
    after = {render_text: "predicted after", render_markdown: "**predicted**", render_html: "card predicted"}[render]
    assert out.index(first) < out.index(after)
    if render is render_text:
        assert out.startswith("verdict: ")
    if render is render_markdown:
        assert out.splitlines()[4].startswith("**Verdict:** ")
    if render is render_html:
        assert out.index('<section id="summary">') < out.index('id="verdict"') < out.index('class="cards"')


def test_prediction_card_is_green_only_for_a_convert_verdict(small: Analysis, rank1: Analysis) -> None:
    assert 'class="card predicted tone-good"' in render_html(rank1) and "Predicted after rewrite" in render_html(rank1)
    low = render_html(small)
    assert 'class="card predicted tone-warn"' in low and "not a saving to count on" in low
    assert "**Predicted saving" in render_markdown(rank1) and "**Predicted saving" not in render_markdown(small)


@pytest.mark.parametrize(
    "n, word, many, text",
    [
        (1, "candidate", None, "1 candidate"),
        (0, "candidate", None, "0 candidates"),
        (1234, "conv", None, "1,234 convs"),
        (2, "child", "children", "2 children"),
    ],
)
def test_plural(n: int, word: str, many: str | None, text: str) -> None:
    assert plural(n, word, many) == text


@pytest.mark.parametrize("render", [render_text, render_markdown, render_html, terminal_summary])
def test_one_candidate_is_singular(rank1: Analysis, render) -> None:
    out = render(rank1)
    assert not re.search(r"\b1 (candidates|convolutions|convs|layers)\b", out), re.findall(
        r".{40}\b1 candidates.{20}", out
    )


def test_one_candidate_figures(rank1: Analysis) -> None:
    assert "convolutions: 1 (1 candidate)" in render_text(rank1)
    md = render_markdown(rank1)
    assert "| 1 convolution |" in md and "| 1 candidate |" in md and "**Top 1 candidate**" in md


@pytest.mark.parametrize(
    "names, label",
    [
        (["layer3.0.conv1", "layer3.1.conv2", "layer4.0.conv1"], "layer3–4"),
        (["layer1.0.conv1", "layer2.0.conv1", "layer4.1.conv2"], "layer1–2 and layer4"),
        (["features.1.0", "features.2.0", "features.3.1"], "features.1–3"),
        (["conv1", "conv2"], "conv1–2"),
        (["stem", "body", "head", "tail"], "stem, body, head and 1 more"),
        (["stem", "mix"], "stem and mix"),
        (["only.one"], "only.one"),
    ],
)
def test_compact_names(names: list[str], label: str) -> None:
    assert compact_names(names) == label


def test_describe_layers_by_kernel(small: Analysis) -> None:
    assert describe_layers(small.candidates) == "the 5×5 conv5 and the 3×3 convs stem, grouped and mix"


@pytest.mark.parametrize("n", [0, 1, 999, 1000, 999_999, 12_140_864, 385_814_752, 1_814_073_344, 99_950_000])
def test_budget_count_covers_today(n: int) -> None:
    from convaudit.review.units import parse_count

    text = budget_count(n)
    assert n <= parse_count(text) <= max(n * 1.01, n + 1)


def test_verdict_text_fits_and_keeps_the_command_whole(small: Analysis) -> None:
    v = verdict(small)
    lines = verdict_lines(small)
    assert all(len(x) <= 100 for x in lines if not x.startswith("next:"))
    assert f"next:    {v.command}" in lines


def _conversion(params_after: int, macs_after: int) -> ConversionReport:
    layer = ConvertedLayer(
        "conv", "dw_pw", 9, 9, "svd", 1.0, 100, 1000, params_after, macs_after, params_after, macs_after, 1e-7
    )
    return ConversionReport(
        "net.py",
        {"rank": "full"},
        (layer,),
        (),
        100,
        1000,
        params_after,
        macs_after,
        params_after,
        macs_after,
        1e-7,
        True,
        verdict="kept",
    )


def test_a_bigger_conversion_is_not_shown_as_a_saving() -> None:
    text = render_conversion_text(_conversion(120, 1100))
    assert "converted 1 conv of net.py" in text
    assert "  ! the converted model has more params and MACs than the original: a cost, not a saving" in text
    html = render_conversion_html(_conversion(120, 1100))
    assert "more than before" in html and "(! = costs more than the original)" in html
    smaller = render_conversion_text(_conversion(80, 900))
    assert "! " not in smaller and "more than before" not in render_conversion_html(_conversion(80, 900))


@pytest.mark.zoo
def test_zoo_verdicts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """efficientnet_b0 is already separable; resnet18's 7×7 stem tops the costliest list with a caution."""
    from convaudit.cli.app import main

    out = tmp_path / "e.md"
    assert main(["report", "torchvision:efficientnet_b0", "-o", str(out), "--no-cross-check", "-q"]) == 0
    assert "**Verdict:** already separable, little to gain: 9" in out.read_text()
    r18 = tmp_path / "r.txt"
    assert main(["report", "torchvision:resnet18", "-o", str(r18), "--no-cross-check"]) == 0
    text = r18.read_text()
    assert text.startswith("verdict: the 3×3 convs of layer1–4 and the 7×7 conv1 hold 98.9% of MACs")
    assert "next:    convaudit report torchvision:resnet18 --weights STATE_DICT.pt" in text
    printed = capsys.readouterr().out.splitlines()
    top = printed[printed.index(next(x for x in printed if x.startswith("costliest candidates"))) + 1]
    marks, name = top.split()[:2]
    assert LOW in marks and name == "conv1:" and "keeps 7% energy" in top
