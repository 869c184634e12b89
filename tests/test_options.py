"""Options: frozen, validated once (the API, the CLI and batch workers alike), picklable, and the old keywords."""

import dataclasses
import pickle
import re

import pytest
import torch
import torch.nn as nn

import convaudit
from convaudit.errors import UsageError
from convaudit.options import AnalysisOptions, ConversionOptions, options_from
from convaudit.vocab import Init, Order, Style
from tests.fixtures import nets


def ignore_dropout_rule(call: object) -> int:
    """A module-level rule: picklable by reference, as a batch worker needs."""
    return 0


def test_analysis_options_pickle_round_trip() -> None:
    options = AnalysisOptions(
        cross_check=True, rules={nn.Dropout: ignore_dropout_rule, nn.ReLU: None}, leaf_types=[nn.Sequential]
    )
    back = pickle.loads(pickle.dumps(options))
    assert back == options and back.leaf_types == (nn.Sequential,)
    assert back.rules == {nn.Dropout: ignore_dropout_rule, nn.ReLU: None}


def test_conversion_options_pickle_round_trip() -> None:
    options = ConversionOptions(
        rank="3", order="pw_dw", init="random", include=["conv*"], exclude="stem", min_savings=0.25
    )
    assert (options.rank, options.order, options.init) == (3, Order.PW_DW, Init.RANDOM)
    assert (options.include, options.exclude) == (("conv*",), ("stem",))
    back = pickle.loads(pickle.dumps(options))
    assert back == options and hash(back) == hash(options) and back.order is Order.PW_DW


def test_options_are_frozen_and_copy_their_mappings() -> None:
    rules: dict = {nn.Dropout: None}
    options = AnalysisOptions(rules=rules)
    rules[nn.ReLU] = None
    assert options.rules == {nn.Dropout: None}
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.cross_check = True  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"rank": 2, "energy": 0.9}, "--rank cannot be combined with --energy or --target-macs"),
        ({"energy": 0.9, "target_macs": 0.5}, "give --energy or --target-macs, not both"),
        ({"rank": "None"}, "--rank 'None': give a positive integer or 'full'"),
        ({"rank": 0}, "give a positive integer or 'full'"),
        ({"rank": True}, "give a positive integer or 'full'"),
        ({"rank": 1.5}, "give a positive integer or 'full'"),
        ({"order": "sideways"}, "--order 'sideways': choose dw_pw, pw_dw or auto"),
        ({"init": "zeros"}, "--init 'zeros': choose svd, calibrated or random"),
        ({"style": "mobilenet"}, "--style mobilenet is for training from scratch: it needs --init random"),
        ({"style": "mobilenet", "init": "random", "order": "pw_dw"}, "it needs --order dw_pw"),
        ({"energy": 1.5}, "--energy 1.5: give a share of the weight energy in (0, 1]"),
        ({"target_macs": 0}, "--target-macs 0: give a share of today's MACs in (0, 1]"),
        ({"min_savings": 5}, "--min-savings 5: give a share of a layer's MACs in [0, 1)"),
    ],
)
def test_conversion_options_validate_with_the_flags_names(kwargs: dict, message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        ConversionOptions(**kwargs)


def test_rule_that_is_no_function_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"rules\[<class 'torch.nn.modules.conv.Conv2d'>\] is a int"):
        AnalysisOptions(rules={nn.Conv2d: 5})


def test_settings_record_the_rank_as_used() -> None:
    assert ConversionOptions().settings()["rank"] == 1
    assert ConversionOptions(energy=0.9).settings()["rank"] is None
    assert ConversionOptions(rank="full", style="mobilenet", init="random").settings()["style"] is Style.MOBILENET


def test_options_from_applies_keywords_and_rejects_unknown_ones() -> None:
    base = ConversionOptions(order="pw_dw")
    assert options_from(ConversionOptions, base, {}, "convert") is base
    assert options_from(ConversionOptions, base, {"rank": 2}, "convert") == ConversionOptions(order="pw_dw", rank=2)
    with pytest.raises(TypeError, match=r"convert\(\) got an unexpected keyword argument 'rnak'"):
        options_from(ConversionOptions, None, {"rnak": 2}, "convert")
    with pytest.raises(TypeError, match="takes a ConversionOptions"):
        options_from(ConversionOptions, AnalysisOptions(), {}, "convert")  # type: ignore[type-var]


def test_analyze_takes_options_or_the_keywords_alike() -> None:
    model, x = nets.Seed64(), torch.randn(1, 64, 8, 8)
    by_keywords = convaudit.analyze(model, (x,), graph=False, source="seed")
    by_options = convaudit.analyze(model, (x,), options=AnalysisOptions(graph=False, source="seed"))
    mixed = convaudit.analyze(model, (x,), options=AnalysisOptions(graph=True), graph=False, source="seed")
    assert by_keywords.to_dict() == by_options.to_dict() == mixed.to_dict()
    assert by_options.graph is None and by_options.model == "seed"
    with pytest.raises(TypeError, match="unexpected keyword argument 'cross_chek'"):
        convaudit.analyze(model, (x,), cross_chek=True)


def test_convert_takes_options_or_the_keywords_alike() -> None:
    torch.manual_seed(0)
    model, x = nets.Seed64(), torch.randn(1, 64, 8, 8)
    by_keywords = convaudit.convert(model, (x,), rank="full", order="dw_pw", source="seed")
    by_options = convaudit.convert(model, (x,), options=ConversionOptions(rank="full", source="seed"))
    strip = ("environment",)
    a, b = by_keywords.report.to_dict(), by_options.report.to_dict()
    for key in strip:
        a.pop(key), b.pop(key)
    assert a["layers"][0].pop("relative_error") < 1e-5 and b["layers"][0].pop("relative_error") < 1e-5
    a.pop("output_error"), b.pop("output_error")
    assert a == b and a["settings"]["rank"] == "full" and a["settings"]["order"] == "dw_pw"
    with pytest.raises(UsageError, match="--rank cannot be combined"):
        convaudit.convert(model, (x,), rank=2, energy=0.9)


def test_conversion_stage_seconds_are_measured_by_the_pipeline() -> None:
    c = convaudit.convert(nets.Seed64(), (torch.randn(1, 64, 8, 8),), rank=1)
    assert list(c.stage_seconds) == ["analysis", "plan", "reference", "rewrite", "verification", "cost_check"]
    assert all(s >= 0 for s in c.stage_seconds.values())


def test_leaf_types_are_classes_and_settings_name_them() -> None:
    with pytest.raises(UsageError, match=r"leaf_types holds 'timm.layers.X', a str; give nn.Module classes"):
        AnalysisOptions(leaf_types=["timm.layers.X"])
    assert ConversionOptions(leaf_types=nn.Sequential).leaf_types == (nn.Sequential,)
    settings = ConversionOptions(leaf_types=[nn.Sequential], train_mode=True).settings()
    assert settings["leaf"] == ["torch.nn.modules.container.Sequential"] and settings["mode"] == "train"
    back = pickle.loads(pickle.dumps(ConversionOptions(leaf_types=[nn.Sequential], train_mode=True)))
    assert back.leaf_types == (nn.Sequential,) and back.train_mode
