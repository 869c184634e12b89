"""convaudit.review.diff and .matching, and the diff's formats: what changed, by name or by structure, and its size."""

from __future__ import annotations

import json
import re

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

import convaudit
from convaudit.documents.diff import Change, DiffSide, LayerDiff, MetricDelta, ModelDiff
from convaudit.errors import UsageError
from convaudit.formats import render
from convaudit.formats.diff_markdown import COMMENT_LIMIT, TOP
from convaudit.review.diff import (
    IncreaseLimit,
    diff_analyses,
    increase_failures,
    parse_increase_limits,
)
from tests.fixtures.models import EvilNames

SHAPE = (1, 3, 56, 56)


class Net(nn.Module):
    """examples/small_cnn.py with its layer names and widths as parameters (modules added by name, in order)."""

    def __init__(self, names: tuple[str, ...] = ("stem", "conv64", "expand", "conv256"), mid: int = 64, top: int = 256):
        super().__init__()
        self.names = names
        specs = [(3, mid, 3, 1), (mid, 64, 3, 1), (64, 256, 1, 1), (256, top, 3, 2)]
        for name, (cin, cout, k, stride) in zip(names, specs, strict=True):
            self.add_module(name, nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(top, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.names:
            x = torch.relu(self._modules[name](x))
        return self.fc(torch.flatten(self.pool(x), 1))


def analysis_of(model: nn.Module, shape: tuple[int, ...] = SHAPE):
    return convaudit.analyze(model, input_shape=shape)


def model_macs(model: nn.Module, shape: tuple[int, ...] = SHAPE) -> int:
    """The oracle: FlopCounterMode's FLOPs of a real forward, halved."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(shape))
    return counter.get_total_flops() // 2


@pytest.fixture(scope="module")
def base():
    return analysis_of(Net())


def test_one_widened_conv_is_the_only_layer_named(base) -> None:
    diff = diff_analyses(base, analysis_of(Net(top=512)))
    assert [(x.name, x.status, x.matched_by) for x in diff.layers] == [("conv256", "changed", "name")]
    assert diff.unchanged == 3
    (layer,) = diff.layers
    fields = {c.field: (c.base, c.head) for c in layer.changes}
    assert fields["out_channels"] == (256, 512)
    assert fields["output_shape"] == ((1, 256, 28, 28), (1, 512, 28, 28))
    assert set(fields) == {"out_channels", "output_shape", "params", "macs"}
    assert layer.macs_delta == 28 * 28 * 256 * 256 * 9  # N·Ho·Wo·ΔCout·Cin·kh·kw
    assert layer.params_delta == 256 * 256 * 9
    macs = diff.total("macs")
    assert macs is not None and macs.delta == model_macs(Net(top=512)) - model_macs(Net())  # + the wider Linear
    assert [(o.op, o.head_macs - o.base_macs) for o in diff.ops] == [("Linear", 256 * 10)]


def test_widening_a_middle_conv_names_it_and_the_conv_it_feeds(base) -> None:
    diff = diff_analyses(base, analysis_of(Net(mid=128)))
    changed = {x.name: {c.field for c in x.changes} for x in diff.layers}
    assert changed.keys() == {"stem", "conv64"}
    assert {"out_channels"} <= changed["stem"] and "in_channels" not in changed["stem"]
    assert {"in_channels"} <= changed["conv64"] and "out_channels" not in changed["conv64"]


def test_a_renamed_layer_is_matched_by_structure(base) -> None:
    diff = diff_analyses(base, analysis_of(Net(names=("stem", "middle", "expand", "conv256"))))
    assert [(x.status, x.base_name, x.head_name, x.matched_by) for x in diff.layers] == [
        ("renamed", "conv64", "middle", "structure")
    ]
    assert (diff.count("added"), diff.count("removed"), diff.unchanged) == (0, 0, 3)
    assert diff.layers[0].name == "conv64 → middle"
    assert "conv64 → middle" in render(diff, "text") and "renamed" in render(diff, "markdown")


def test_every_layer_renamed_is_still_matched(base) -> None:
    diff = diff_analyses(base, analysis_of(Net(names=("a", "b", "c", "d"))))
    assert [(x.base_name, x.head_name) for x in diff.layers] == [
        ("stem", "a"),
        ("conv64", "b"),
        ("expand", "c"),
        ("conv256", "d"),
    ]
    assert {x.status for x in diff.layers} == {"renamed"}


def test_renamed_and_widened_pairs_by_the_looser_signature(base) -> None:
    diff = diff_analyses(base, analysis_of(Net(names=("stem", "conv64", "expand", "big"), top=512)))
    (layer,) = diff.layers
    assert (layer.status, layer.base_name, layer.head_name, layer.matched_by) == (
        "changed",
        "conv256",
        "big",
        "structure",
    )


class Deeper(Net):
    """Net with one more 3×3 conv after conv64."""

    def __init__(self) -> None:
        super().__init__()
        self.extra = nn.Conv2d(64, 64, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv64(torch.relu(self.stem(x))))
        x = torch.relu(self.conv256(torch.relu(self.expand(torch.relu(self.extra(x))))))
        return self.fc(torch.flatten(self.pool(x), 1))


def test_added_and_removed_layers(base) -> None:
    deeper = analysis_of(Deeper())
    added = diff_analyses(base, deeper)
    assert [(x.name, x.status, x.base_macs, x.head_macs) for x in added.layers] == [
        ("extra", "added", 0, 56 * 56 * 64 * 64 * 9)
    ]
    removed = diff_analyses(deeper, base)
    assert [(x.name, x.status, x.head_macs) for x in removed.layers] == [("extra", "removed", 0)]
    assert removed.total("macs").delta == -56 * 56 * 64 * 64 * 9  # type: ignore[union-attr]


def test_json_round_trip(base) -> None:
    diff = diff_analyses(base, analysis_of(Net(names=("stem", "mid", "expand", "conv256"), top=384)))
    doc = json.loads(render(diff, "json"))
    assert doc["document"] == "diff" and doc["generator"] == "convaudit"
    assert ModelDiff.from_dict(doc) == diff
    with pytest.raises(ValueError, match="not a convaudit diff"):
        ModelDiff.from_dict(doc | {"schema_version": "2.0"})


def test_identical_models_have_an_empty_diff(base) -> None:
    diff = diff_analyses(base, base)
    assert diff.layers == () and diff.unchanged == len(base.layers) and diff.ops == ()
    assert all(t.delta == 0 for t in diff.totals)
    assert "No convolution differs." in render(diff, "markdown")


@pytest.mark.parametrize(
    "text,expected",
    [
        ("5%", (IncreaseLimit("macs", 5.0),)),
        ("0%", (IncreaseLimit("macs", 0.0),)),
        ("macs=5%,params=2.5%", (IncreaseLimit("macs", 5.0), IncreaseLimit("params", 2.5))),
        (" conv_macs = 1% ", (IncreaseLimit("conv_macs", 1.0),)),
    ],
)
def test_increase_limits_parse(text: str, expected: tuple) -> None:
    assert parse_increase_limits(text) == expected


@pytest.mark.parametrize("text", ["5", "5 %", "-5%", "latency=5%", "macs=", "5%,", "five%"])
def test_increase_limits_refuse_other_forms(text: str) -> None:
    with pytest.raises(UsageError, match="write a percentage such as 5%"):
        parse_increase_limits(text)


def test_increase_failures_name_the_layers_responsible(base) -> None:
    diff = diff_analyses(base, analysis_of(Net(top=512)))
    grew = 100 * diff.total("macs").relative  # type: ignore[union-attr,operator]
    (line,) = increase_failures(diff, parse_increase_limits("5%"))
    assert line.startswith(f"MACs grew {grew:.2f}%") and "more than the 5%" in line
    assert "conv256 +462.42 M MACs (out_channels 256→512)" in line
    assert increase_failures(diff, parse_increase_limits(f"{grew + 0.01:.2f}%")) == []
    assert len(increase_failures(diff, parse_increase_limits("macs=100%,params=2%"))) == 1  # params +91%
    assert (
        increase_failures(diff_analyses(diff_base := analysis_of(Net(top=512)), base), [IncreaseLimit("macs", 0)]) == []
    )
    assert diff_base.totals.macs > base.totals.macs


# ---------------------------------------------------------------- the Markdown comment's size, HTML escaping


def big_diff(n: int, name_chars: int = 300) -> ModelDiff:
    """A synthetic diff of ``n`` changed layers with long names (a registry-sized model)."""
    side = DiffSide("base.json", "m", "M", ((1, 3, 224, 224),), True, "1.4")
    layers = tuple(
        LayerDiff(
            "changed",
            f"blocks.{i}." + "x" * name_chars,
            f"blocks.{i}." + "x" * name_chars,
            "name",
            "standard",
            "model.py:1",
            1000 + i,
            2000 + 2 * i,
            10,
            20,
            (Change("out_channels", 64, 128),),
        )
        for i in range(n)
    )
    return ModelDiff(side, side, (MetricDelta("macs", "MACs", 1.0, 2.0),), layers, unchanged=0)


@pytest.mark.parametrize("n", [5, TOP + 10, 5000])
def test_markdown_fits_a_pull_request_comment(n: int) -> None:
    text = render(big_diff(n), "markdown")
    assert len(text) < COMMENT_LIMIT and len(text.encode("utf-8")) < COMMENT_LIMIT
    first_table = text.split("#### Changed layers")[1].split("\n\n")[1]
    assert first_table.count("\n| `blocks.") == min(n, TOP)
    assert ("<details>" in text) == (n > TOP)
    if n == TOP + 10:
        assert "…and 10 more:" in text and "<summary>10 more layers</summary>" in text
        assert "not shown" not in text
    if n == 5000:
        shown = text.count("| `blocks.")
        assert f"_{n - shown} more layers not shown (comment size limit)" in text
    assert text.rstrip().endswith("-->")  # the signature: --force replaces only our own file


def test_the_largest_change_comes_first() -> None:
    text = render(big_diff(30, name_chars=5), "markdown")
    assert text.index("`blocks.29.xxxxx`") < text.index("`blocks.0.xxxxx`")


def test_html_and_markdown_escape_hostile_module_names(evil) -> None:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        plain = analysis_of(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1)), (1, 3, 8, 8))
    diff = diff_analyses(plain, evil)
    assert {x.head_name for x in diff.layers} == set(EvilNames.NAMES)
    page = render(diff, "html")
    assert "<script>alert(1)</script>" not in page and "</script><!--" not in page
    assert "<script" not in page  # the page runs no script at all
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    comment = render(diff, "markdown")
    spans = ["`0 → <script>alert(1)</script>`", "`</script><!--`"]  # a code span shows its text, never HTML
    assert all(span in comment for span in spans)
    outside_code = re.sub("|".join(re.escape(span) for span in spans), "", comment)
    assert "<script" not in outside_code and "<!--`" not in outside_code
    assert not re.search(r"(?<!\\)\]\(javascript:", outside_code)  # an escaped \] opens no link
    assert EvilNames.NAMES[1] not in comment  # backtick, brackets and | escaped
    text_doc = json.loads(render(diff, "json"))
    assert "<script>alert(1)</script>" in {x["head_name"] for x in text_doc["layers"]}
