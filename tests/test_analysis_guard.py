"""The model is left as found, and analysed as it runs: eval mode by default, the training graph on request.

Oracle: PyTorch's FlopCounterMode on a real forward (in the same mode, on a copy): conv FLOPs = 2·MACs.
"""

import copy
import dataclasses

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

import convaudit
from convaudit.analysis.guard import eval_mode, in_mode
from convaudit.documents.records import MODE_AS_FOUND, Analysis
from convaudit.errors import ShapeError
from convaudit.formats import render
from convaudit.options import ConversionOptions
from convaudit.vocab import Mode
from tests.fixtures.modes import AuxHead, BatchOneHead, FunctionalAux, NormAct


def flags(model: nn.Module) -> dict[str, bool]:
    return {name: m.training for name, m in model.named_modules()}


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_bit_identical(before: dict[str, torch.Tensor], model: nn.Module) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert after[key].dtype == value.dtype and torch.equal(after[key], value), key


def oracle_conv_macs(model: nn.Module, x: torch.Tensor, training: bool) -> int:
    """Conv MACs of a real forward in the given mode, by FlopCounterMode (on a copy: train mode updates buffers)."""
    twin = copy.deepcopy(model).train(training)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        twin(x)
    return sum(n for op, n in counter.get_flop_counts()["Global"].items() if "convolution" in str(op)) // 2


class FrozenNorms(nn.Module):
    """Overrides train() to keep its BatchNorm in eval mode, as detection backbones do."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)

    def train(self, mode: bool = True) -> "FrozenNorms":
        super().train(mode)
        self.bn.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class Harmable(nn.Module):
    """Buffers a train-mode forward updates: running statistics and num_batches_tracked, traced into."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.traced = NormAct(8)
        self.drop = nn.Dropout(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.traced(self.bn(self.conv(x))))


# ---------------------------------------------------------------- the context managers


@pytest.mark.parametrize("training", [False, True])
def test_in_mode_sets_every_module_and_restores_each_flag(training: bool) -> None:
    model = Harmable().train()
    model.bn.eval()  # mixed flags: each must come back as it was, not as model.train() would set them
    before = flags(model)
    with in_mode(model, training):
        assert all(m.training is training for m in model.modules())
    assert flags(model) == before
    with pytest.raises(RuntimeError, match="boom"), in_mode(model, training):
        raise RuntimeError("boom")
    assert flags(model) == before


def test_in_mode_goes_through_the_models_own_train() -> None:
    model = FrozenNorms().eval()
    with in_mode(model, training=True):
        assert model.training and model.conv.training and not model.bn.training  # its override is honoured
    assert not any(m.training for m in model.modules())


@pytest.mark.parametrize("nested", [False, True])
def test_in_mode_calls_an_overridden_train_also_when_every_flag_already_matches(nested: bool) -> None:
    calls: list[bool] = []

    class Counted(FrozenNorms):
        def train(self, mode: bool = True) -> "Counted":
            calls.append(mode)
            return super().train(mode)

    model: nn.Module = nn.Sequential(Counted()) if nested else Counted()
    model.eval()
    calls.clear()
    with in_mode(model, training=False):  # every flag is False already; the override still runs, as for its user
        assert calls == [False]
    assert calls == [False] and not any(m.training for m in model.modules())


def test_eval_mode_is_in_mode_false() -> None:
    model = Harmable().train()
    with eval_mode(model):
        assert not any(m.training for m in model.modules())
    assert all(m.training for m in model.modules())


# ---------------------------------------------------------------- analysis in a mode


def test_training_only_branch_is_not_counted_in_eval_mode() -> None:
    torch.manual_seed(0)
    model = AuxHead().train()  # as timm.create_model and torchvision builders return models
    x = torch.randn(2, 3, 12, 10)
    a = convaudit.analyze(model, x)
    assert a.mode == Mode.EVAL and "aux" not in {layer.name for layer in a.layers}
    assert a.uncalled_convs == ("aux",)
    assert a.totals.conv_macs == oracle_conv_macs(model, x, training=False) == 2 * 8 * 3 * 9 * 120
    trained = convaudit.analyze(model, x, train_mode=True)
    assert trained.mode == Mode.TRAIN and [layer.name for layer in trained.layers] == ["stem", "aux"]
    assert trained.totals.conv_macs == oracle_conv_macs(model, x, training=True) == 2 * (8 * 3 + 4 * 8) * 9 * 120
    assert all(m.training for m in model.modules())


def test_batch_one_batchnorm_works_in_eval_mode_and_says_why_in_train_mode() -> None:
    model = BatchOneHead().train()
    x = torch.randn(1, 3, 8, 8)
    a = convaudit.analyze(model, x)
    assert a.totals.conv_macs == oracle_conv_macs(model, x, training=False) == 16 * 27 * 64 + 10 * 16
    with pytest.raises(ShapeError, match=r"more than 1 value per channel.*batch > 1: give one, or drop --train-mode"):
        convaudit.analyze(model, x, train_mode=True)
    assert all(m.training for m in model.modules())


@pytest.mark.parametrize("train_mode", [False, True])
@pytest.mark.parametrize("cross_check", [False, True])
def test_analysis_leaves_state_dict_bit_identical_and_flags_restored(train_mode: bool, cross_check: bool) -> None:
    torch.manual_seed(0)
    model = Harmable().train()
    model.bn.eval()
    with torch.no_grad():
        model(torch.randn(4, 3, 6, 6))  # non-trivial running statistics and counters
    before, modes = state(model), flags(model)
    convaudit.analyze(model, torch.randn(2, 3, 6, 6), train_mode=train_mode, cross_check=cross_check)
    assert_bit_identical(before, model)
    assert flags(model) == modes


@pytest.mark.parametrize("train_mode", [False, True])
def test_conversion_leaves_the_model_as_found_and_records_the_mode(train_mode: bool) -> None:
    torch.manual_seed(0)
    model = Harmable().train()
    before, modes = state(model), flags(model)
    done = convaudit.convert(model, torch.randn(2, 3, 6, 6), rank="full", train_mode=train_mode)
    assert_bit_identical(before, model)
    assert flags(model) == modes
    mode = "train" if train_mode else "eval"
    assert done.analysis.mode == mode and done.report.settings["mode"] == mode
    assert done.report.to_dict()["settings"]["mode"] == mode
    assert f"mode: {mode}" in render(done.report, "text")
    assert done.report.output_error is not None and done.report.output_error < 1e-5  # verified in eval mode


def test_converting_in_eval_mode_leaves_training_only_convs_alone() -> None:
    model = AuxHead().train()
    done = convaudit.convert(model, torch.randn(2, 3, 8, 8), rank="full")
    assert [layer.name for layer in done.report.layers] == ["stem"]
    trained = convaudit.convert(model, torch.randn(2, 3, 8, 8), rank="full", train_mode=True)
    assert [layer.name for layer in trained.report.layers] == ["stem", "aux"] and trained.report.costs_match


@pytest.mark.parametrize("train_mode", [False, True])
def test_a_functional_rewrite_keeps_the_graph_of_the_mode_analysed(train_mode: bool) -> None:
    torch.manual_seed(0)
    model = FunctionalAux().train()  # the rewrite traces the model: in the mode analysed, not the one it is in
    done = convaudit.convert(model, torch.randn(2, 3, 8, 8), rank="full", train_mode=train_mode)
    assert [layer.name for layer in done.report.layers] == (["w", "w_aux"] if train_mode else ["w"])
    assert model.training and done.report.macs_measured == done.report.macs_predicted
    if train_mode:
        assert done.report.costs_match
    else:  # verification runs in eval mode: the eval graph reproduces the model exactly
        assert done.report.output_error is not None and done.report.output_error < 1e-5
        # NB: the eval graph holds no training-only parameter, so it has w_aux's 576 fewer than predicted
        assert done.report.params_measured == done.report.params_predicted - 8 * 8 * 9


# ---------------------------------------------------------------- the mode in every report


def test_every_report_states_the_mode() -> None:
    model = AuxHead()
    for train_mode, mode in ((False, "eval"), (True, "train")):
        a = convaudit.analyze(model, input_shape=(2, 3, 8, 8), train_mode=train_mode)
        assert a.to_dict()["mode"] == mode and a.schema_version == convaudit.SCHEMA_VERSION
        assert Analysis.from_dict(a.to_dict()) == a
        assert f"mode: {mode}" in render(a, "text")
        assert f"in {mode} mode" in render(a, "markdown")
        assert f">{mode}</span> mode" in render(a, "html")
        assert f'"mode": "{mode}"' in render(a, "json")


def test_a_schema_1_0_document_reads_as_found() -> None:
    doc = convaudit.analyze(AuxHead(), input_shape=(2, 3, 8, 8)).to_dict()
    del doc["mode"]
    doc["schema_version"] = "1.0"
    old = Analysis.from_dict(doc)
    assert old.mode == MODE_AS_FOUND == "as found"
    assert "mode: as found (a schema 1.0 document" in render(old, "text")
    assert dataclasses.replace(old, mode=Mode.EVAL).mode == "eval"


def test_conversion_options_carry_the_mode() -> None:
    assert ConversionOptions().settings()["mode"] == "eval"
    assert ConversionOptions(train_mode=True).settings()["mode"] == "train"


# ---------------------------------------------------------------- untouched: whatever the block does is undone


def _everything(model: nn.Module) -> list:
    """Each module's attributes (by identity, in order), the contents of each table in it, and buffer values."""
    out: list = []
    for m in model.modules():
        out.append(sorted((k, id(v)) for k, v in vars(m).items()))  # NB: a deleted attribute comes back last
        out.append(
            [
                (k, list(v.items()) if isinstance(v, dict) else sorted(v))
                for k, v in vars(m).items()
                if isinstance(v, (dict, set))
            ]
        )
        out.append([(k, b.clone()) for k, b in m._buffers.items() if b is not None])
    return out


def _assert_same(before: list, after: list) -> None:
    assert len(before) == len(after)
    for b, a in zip(before, after, strict=True):
        if b and isinstance(b[0][1], torch.Tensor):
            assert [k for k, _ in b] == [k for k, _ in a]
            assert all(torch.equal(x, y) and x.dtype == y.dtype for (_, x), (_, y) in zip(b, a, strict=True))
        else:
            assert b == a


@pytest.mark.parametrize(
    "change",
    [
        "nothing",
        "new attribute",
        "replaced attribute",
        "deleted attribute",
        "new __dict__",
        "hook",
        "hook order",
        "module order",
        "new buffer",
        "non-persistent",
        "buffer in place",
        "buffer through .data",
        "parameter swap",
        "custom table",
    ],
)
def test_untouched_undoes_each_change(change: str) -> None:
    from collections import OrderedDict

    from convaudit.analysis.guard import untouched

    torch.manual_seed(0)
    model = Harmable()
    model.conv.register_forward_hook(lambda *a: None)
    model.conv.register_forward_hook(lambda *a: None)
    model.table = OrderedDict(a=1, b=2)  # a user's own dict attribute: a table like torch's
    before = _everything(model)
    tables = (model.conv._forward_hooks, model._modules, model.bn._buffers, model.table)
    with untouched(model):
        bn, conv = model.bn, model.conv
        if change == "new attribute":
            model.calls = 1
        elif change == "replaced attribute":
            object.__setattr__(conv, "stride", (2, 2))
        elif change == "deleted attribute":
            del conv.__dict__["padding"]
        elif change == "new __dict__":
            conv.__dict__ = {**conv.__dict__, "extra": 1}
        elif change == "hook":
            bn.register_forward_pre_hook(lambda *a: None)
        elif change == "hook order":
            conv._forward_hooks.move_to_end(next(iter(conv._forward_hooks)))
        elif change == "module order":
            model._modules["conv"] = model._modules.pop("conv")
        elif change == "new buffer":
            bn.register_buffer("extra", torch.ones(1))
        elif change == "non-persistent":
            bn._non_persistent_buffers_set.add("running_mean")
        elif change == "buffer in place":
            bn.running_mean.add_(1)
            bn.num_batches_tracked += 1
        elif change == "buffer through .data":  # no version counter sees this one
            bn.running_var.data.mul_(3)
        elif change == "parameter swap":
            conv._parameters["weight"] = nn.Parameter(torch.zeros_like(conv.weight))
        elif change == "custom table":
            model.table.move_to_end("a")
    _assert_same(before, _everything(model))
    assert (model.conv._forward_hooks, model._modules, model.bn._buffers, model.table) == tables
    now = (model.conv._forward_hooks, model._modules, model.bn._buffers, model.table)
    assert all(a is b for a, b in zip(tables, now, strict=True))  # the same objects, refilled
