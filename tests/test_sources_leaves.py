"""--leaf MODULE.CLASS: classes named on the command line, imported by name; the trace error's hint names the flag."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from convaudit.analysis.propagation import FakeContext, propagate_fx
from convaudit.analysis.tracing import trace
from convaudit.cli.app import main
from convaudit.conversion.artifact.writer import load_converted
from convaudit.errors import EXIT_OK, EXIT_USAGE, TraceError, UsageError
from convaudit.sources.leaves import import_module_classes
from convaudit.sources.loader import load
from tests.fixtures.modes import DimCheck, NormAct

MODEL_PY = """\
from tests.fixtures.modes import DimCheck, WithDimCheck


class LocalCheck(DimCheck):
    pass


def build_model():
    model = WithDimCheck()
    model.block = LocalCheck()
    return model
"""


def test_dotted_names_import_their_class() -> None:
    assert import_module_classes(["tests.fixtures.modes.DimCheck", "torch.nn.Sequential"]) == (DimCheck, nn.Sequential)
    assert import_module_classes([" tests.fixtures.modes.NormAct "]) == (NormAct,)


def test_a_bare_name_is_a_class_of_the_model_file() -> None:
    assert import_module_classes(["DimCheck"], {"DimCheck": DimCheck}) == (DimCheck,)


@pytest.mark.parametrize(
    "name,namespace,message",
    [
        (
            "tests.fixtures.modes.DimChek",
            {},
            "--leaf tests.fixtures.modes.DimChek: tests.fixtures.modes has no DimChek; "
            "did you mean DimCheck, WithDimCheck?",
        ),
        ("nosuchpkg_xyz.Block", {}, "--leaf nosuchpkg_xyz.Block: no module nosuchpkg_xyz on sys.path"),
        ("os.path", {}, "--leaf os.path is a module, not an nn.Module class"),
        ("torch.nn.functional.relu", {}, "--leaf torch.nn.functional.relu is a function, not an nn.Module class"),
        ("Block", {}, "--leaf Block: give MODULE.CLASS (a bare CLASS must be defined in the model file)"),
        ("Block", {"Block": 3}, "--leaf Block is a int, not an nn.Module class"),
        ("not a name", {}, "--leaf 'not a name': give MODULE.CLASS, e.g. --leaf timm.layers.SqueezeExcite"),
        ("", {}, "give MODULE.CLASS"),
    ],
)
def test_bad_names_are_one_usage_line(name: str, namespace: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        import_module_classes([name], namespace)


class HostGate(nn.Module):
    """Hands its input to host code that needs a real tensor (a TypeError under fake tensors)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return host_scale(x)


@torch.fx.wrap
def host_scale(x: torch.Tensor) -> torch.Tensor:
    if type(x) is not torch.Tensor:
        raise TypeError("host code wants a plain tensor")
    return x * 2


class Gated(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.gate = HostGate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(self.conv(x))


def test_the_trace_error_names_the_leaf_flag_and_the_class() -> None:
    ctx = FakeContext()
    traced = trace(Gated())
    with pytest.raises(TraceError) as caught:
        propagate_fx(traced, (ctx.to_fake(torch.randn(1, 3, 8, 8)),), {}, ctx)
    message = str(caught.value)
    assert "host code wants a plain tensor" in message
    assert "--leaf tests.test_sources_leaves.HostGate (leaf_types=... in Python)" in message


def report_json(tmp_path: Path, *args: str) -> dict:
    model = tmp_path / "net.py"
    model.write_text(MODEL_PY)
    out = tmp_path / "r.json"
    code = main(["report", str(model), "--input-shape", "1,3,8,8", "--no-cross-check", "-o", str(out), *args])
    assert code == EXIT_OK
    return json.loads(out.read_text())


def test_leaf_keeps_the_tracer_out_of_a_block_so_the_graph_path_sees_everything(tmp_path: Path) -> None:
    without = report_json(tmp_path)
    assert without["trace_path"] != "fx" and "symbolic tracing failed" in without["trace_note"]
    with_leaf = report_json(tmp_path, "--leaf", "tests.fixtures.modes.DimCheck", "--force")
    assert with_leaf["trace_path"] == "fx" and with_leaf["trace_note"] is None
    assert [layer["name"] for layer in with_leaf["layers"]] == ["conv", "mix"]  # the functional conv is listed
    assert with_leaf["totals"]["conv_macs"] == (8 * 3 + 8 * 8) * 9 * 64
    for own in ("LocalCheck", "net.LocalCheck"):  # a class of net.py itself, bare or by its module's name
        assert report_json(tmp_path, "--leaf", own, "--force")["trace_path"] == "fx"


def test_bad_leaf_on_the_command_line_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model = tmp_path / "net.py"
    model.write_text(MODEL_PY)
    code = main(["report", str(model), "--leaf", "os.path", "-o", str(tmp_path / "r.json")])
    assert code == EXIT_USAGE and "--leaf os.path is a module" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_convert_takes_leaf_and_train_mode(tmp_path: Path) -> None:
    model = tmp_path / "net.py"
    model.write_text(MODEL_PY)
    argv = ["convert", str(model), "--input-shape", "1,3,8,8", "--rank", "full", "-o", str(tmp_path / "out"), "-q"]
    assert main([*argv, "--leaf", "tests.fixtures.modes.DimCheck", "--train-mode"]) == EXIT_OK
    doc = json.loads((tmp_path / "out" / "conversion.json").read_text())
    assert doc["settings"]["mode"] == "train" and {layer["name"] for layer in doc["layers"]} == {"conv", "mix"}
    assert doc["settings"]["leaf"] == ["tests.fixtures.modes.DimCheck"]
    # model.py cannot be generated from an untraceable block: it replays net.py, keeping the tracer out of it again
    assert "LEAVES = ['tests.fixtures.modes.DimCheck']" in (tmp_path / "out" / "model.py").read_text()
    converted = load_converted(tmp_path / "out")
    x = torch.randn(1, 3, 8, 8)
    original = load(str(model)).model.eval()
    original.load_state_dict(converted.state_dict(), strict=False)  # conv and the block match; mix was replaced
    assert converted(x).shape == (1, 8, 8, 8)
