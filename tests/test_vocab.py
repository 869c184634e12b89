"""The vocabularies: each word defined once, equal to its string, read from user input in one place."""

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from convaudit.errors import UsageError
from convaudit.vocab import LAYER_ORDERS, Format, Init, Kind, Mode, Order, Style, TracePath, WeightsOrigin

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "vocabulary,values",
    [
        (Order, ["dw_pw", "pw_dw", "auto"]),
        (Init, ["svd", "calibrated", "random"]),
        (Style, ["mobilenet"]),
        (Kind, ["standard", "grouped", "depthwise", "pointwise", "transposed", "custom"]),
        (TracePath, ["fx", "hooks", "real"]),
        (Mode, ["eval", "train"]),
        (WeightsOrigin, ["loaded", "model file", "initialised", "as given"]),
        (Format, ["html", "json", "text", "markdown", "sarif"]),
    ],
)
def test_members_are_their_strings(vocabulary: type, values: list[str]) -> None:
    assert [str(m) for m in vocabulary] == values
    for member, value in zip(vocabulary, values, strict=True):
        assert member == value and hash(member) == hash(value) and f"{member}" == value
        assert {value: 1}[member] == 1  # dict lookups by either
        assert json.dumps(member) == json.dumps(value)
        assert pickle.loads(pickle.dumps(member)) is member
        assert vocabulary.of(value) is member and vocabulary.of(member) is member


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: Order.of("sideways", "--order"), "--order 'sideways': choose dw_pw, pw_dw or auto"),
        (lambda: Init.of("zeros", "--init"), "--init 'zeros': choose svd, calibrated or random"),
        (lambda: Style.of("resnet"), "style 'resnet': choose mobilenet"),
        (lambda: Order.of(3, "order"), "order 3: choose dw_pw, pw_dw or auto"),
        (lambda: Order.of("auto", "order", allowed=LAYER_ORDERS), "order 'auto': choose dw_pw or pw_dw"),
    ],
)
def test_a_bad_value_is_one_usage_error(call, message: str) -> None:
    with pytest.raises(UsageError) as info:
        call()
    assert str(info.value) == message


def test_documents_hold_plain_strings() -> None:
    import torch

    import convaudit

    a = convaudit.analyze(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3)), input_shape=(1, 3, 8, 8))
    assert a.trace_path is TracePath.FX and a.layers[0].kind is Kind.STANDARD  # the records carry the members
    doc = a.to_dict()
    assert type(doc["trace_path"]) is str and type(doc["layers"][0]["kind"]) is str  # to_dict() is plain data
    assert type(doc["layers"][0]["separable"]["dw_pw"]["order"]) is str and type(doc["weights"]) is str
    assert doc == json.loads(json.dumps(doc))


def test_vocab_does_not_import_torch() -> None:
    probe = "import sys, convaudit.vocab, convaudit.options\nprint('torch' in sys.modules)\n"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
