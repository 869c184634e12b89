"""The model.onnx source: read as data, turned into a torch module by onnx2torch, analysed and converted.

The ONNX files are built here with ``onnx.helper`` (and one exported by ``torch.onnx.export``, dynamo=False).
Oracles: per-conv MACs against FlopCounterMode on a real eval-mode forward of onnx2torch's module (conv
FLOPs = 2·MACs) and against the torch model an export came from; full-rank conversion against the
original module's outputs, through the written artifact loaded back.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import onnx
import pytest
import torch
import torch.nn as nn
from onnx import TensorProto, numpy_helper
from onnx import helper as oh

import convaudit
from convaudit.cli.app import main
from convaudit.errors import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, ModelLoadError, UsageError
from convaudit.sources import load
from convaudit.sources.inputs import materialize
from convaudit.vocab import WeightsOrigin
from tests.test_analysis_paths import assert_as_found, assert_conv_macs_match, conv_macs_by_module, state_of
from tests.test_cli import one_line_error

OPSET = 17


def weight(name: str, *shape: int, seed: int = 0, positive: bool = False) -> TensorProto:
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(*shape, generator=g)
    return numpy_helper.from_array((t.abs() + 0.5 if positive else t).numpy(), name)


def save(path: Path, nodes: list, inputs: list, outputs: list, inits: list, **save_kwargs: object) -> Path:
    graph = oh.make_graph(nodes, "net", inputs, outputs, inits)
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", OPSET)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path), **save_kwargs)
    return path


def tensor(name: str, dims: list, elem: int = TensorProto.FLOAT) -> object:
    return oh.make_tensor_value_info(name, elem, dims)


def conv_net(path: Path, batch: object = "N", groups: int = 8, pads: tuple = (1, 1, 1, 1), **kw: object) -> Path:
    """Conv 3→8 3×3 + BatchNormalization + Relu + a grouped/depthwise 3×3 conv + GlobalAveragePool + Gemm."""
    nodes = [
        oh.make_node("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="conv1"),
        oh.make_node("BatchNormalization", ["c1", "s", "bb", "m", "v"], ["n1"], name="bn1"),
        oh.make_node("Relu", ["n1"], ["r1"], name="relu1"),
        oh.make_node(
            "Conv", ["r1", "w2"], ["c2"], kernel_shape=[3, 3], pads=list(pads), strides=[2, 2], group=groups, name="g2"
        ),
        oh.make_node("GlobalAveragePool", ["c2"], ["gap"], name="gap"),
        oh.make_node("Flatten", ["gap"], ["f"], name="flat"),
        oh.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1, name="fc"),
    ]
    inits = [
        weight("w1", 8, 3, 3, 3),
        weight("b1", 8, seed=1),
        weight("s", 8, seed=2),
        weight("bb", 8, seed=3),
        weight("m", 8, seed=4),
        weight("v", 8, seed=5, positive=True),
        weight("w2", 16, 8 // groups, 3, 3, seed=6),
        weight("wf", 10, 16, seed=7),
        weight("bf", 10, seed=8),
    ]
    return save(path, nodes, [tensor("x", [batch, 3, 20, 24])], [tensor("y", [batch, 10])], inits, **kw)


def oracle_matches(loaded: convaudit.sources.LoadedModel, analysis: convaudit.Analysis) -> None:
    assert_conv_macs_match(analysis, conv_macs_by_module(loaded.model, *materialize(loaded.args)))


# ---------------------------------------------------------------- loading and costs


@pytest.mark.parametrize(
    "groups,pads,kind",
    [(8, (1, 1, 1, 1), "depthwise"), (2, (1, 1, 1, 1), "grouped"), (1, (0, 1, 1, 0), "standard")],
    ids=["depthwise", "grouped", "asymmetric-pads"],
)
def test_onnx_convs_are_plain_convs_costed_as_flopcounter_counts(
    tmp_path: Path, groups: int, pads: tuple, kind: str
) -> None:
    path = conv_net(tmp_path / "net.onnx", groups=groups, pads=pads)
    loaded = load(str(path))
    assert loaded.weights == WeightsOrigin.LOADED and loaded.weights_source == str(path)
    assert loaded.args[0].shape == (1, 3, 20, 24) and loaded.args[0].dtype == torch.float32
    assert loaded.notes == [
        "input shape x 1,3,20,24 from the graph's input (not fixed in the graph: x[0] 'N' → 1); "
        "pass --input-shape to set it"
    ]
    convs = {n: type(m) for n, m in loaded.model.named_modules() if isinstance(m, nn.modules.conv._ConvNd)}
    assert set(convs.values()) == {nn.Conv2d}  # plain torch convs: candidates like any other
    before = state_of(loaded.model)
    a = convaudit.analyze(loaded.model, loaded.args)
    assert_as_found(before, loaded.model)
    oracle_matches(loaded, a)
    by_name = {layer.name: layer for layer in a.layers}
    assert by_name["conv1"].kind == "standard" and by_name["conv1"].candidate
    second = next(layer for name, layer in by_name.items() if name.startswith("g2"))  # "g2.1" behind its pad
    assert second.kind == kind and second.candidate == (kind != "depthwise")
    assert a.totals.conv_macs == 3 * 8 * 9 * 20 * 24 + 16 * (8 // groups) * 9 * 10 * 12  # 103,680 + ...


def test_several_inputs_keep_their_element_types(tmp_path: Path) -> None:
    nodes = [
        oh.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="conv"),
        oh.make_node("Cast", ["shift"], ["sf"], to=TensorProto.FLOAT, name="cast"),
        oh.make_node("Add", ["c", "sf"], ["a"], name="add"),
        oh.make_node("Mul", ["a", "scale"], ["y"], name="mul"),
    ]
    inputs = [
        tensor("x", [2, 3, 8, 8]),
        tensor("shift", [1], TensorProto.INT64),
        tensor("scale", ["N", 4, "H", "W"]),
    ]
    path = save(tmp_path / "multi.onnx", nodes, inputs, [tensor("y", [2, 4, 8, 8])], [weight("w", 4, 3, 3, 3)])
    loaded = load(str(path))
    assert [(tuple(t.shape), t.dtype) for t in loaded.args] == [
        ((2, 3, 8, 8), torch.float32),
        ((1,), torch.int64),
        ((1, 4, 224, 224), torch.float32),  # symbolic dims: the batch 1, spatial ones the conv default
    ]
    (note,) = loaded.notes
    assert "x 2,3,8,8, shift 1, scale 1,4,224,224 from the graph's inputs" in note
    assert "scale[0] 'N' → 1; scale[2] 'H' → 224; scale[3] 'W' → 224" in note
    # --input-shape: one per input, each with its graph's element type
    loaded = load(str(path), input_shapes=[(2, 3, 8, 8), (1,), (2, 4, 8, 8)])
    assert [t.dtype for t in loaded.args] == [torch.float32, torch.int64, torch.float32] and loaded.notes == []
    a = convaudit.analyze(loaded.model, loaded.args)
    oracle_matches(loaded, a)
    assert a.totals.conv_macs == 2 * 4 * 3 * 9 * 8 * 8
    with pytest.raises(UsageError, match=r"has 3 inputs \(x, shift, scale\) but 1 --input-shape was given"):
        load(str(path), input_shapes=[(2, 3, 8, 8)])


def test_a_symbolic_batch_becomes_one_and_input_shape_overrides_it(tmp_path: Path) -> None:
    path = conv_net(tmp_path / "net.onnx", batch="batch_size")
    loaded = load(str(path))
    assert loaded.args[0].shape == (1, 3, 20, 24) and "x[0] 'batch_size' → 1" in loaded.notes[0]
    loaded = load(str(path), input_shapes=[(4, 3, 40, 48)])
    assert loaded.args[0].shape == (4, 3, 40, 48) and loaded.notes == []
    a = convaudit.analyze(loaded.model, loaded.args)
    oracle_matches(loaded, a)
    assert a.input_shapes == ((4, 3, 40, 48),)


# ---------------------------------------------------------------- the command line


def test_report_cli_writes_json_with_loaded_weights(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = conv_net(tmp_path / "net.onnx")
    out = tmp_path / "r.json"
    assert main(["report", str(path), "-o", str(out)]) == EXIT_OK
    doc = json.loads(out.read_text())
    assert doc["model"] == str(path) and doc["weights"] == "loaded" and doc["weights_source"] == str(path)
    assert doc["input_shapes"] == [[1, 3, 20, 24]] and doc["cross_check"]["macs_same_ops"] == doc["totals"]["macs"]
    assert [layer["name"] for layer in doc["layers"] if layer["candidate"]] == ["conv1"]
    assert "wrote" in capsys.readouterr().out


def test_convert_full_rank_is_exact_and_the_artifact_loads_back(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = conv_net(tmp_path / "net.onnx", groups=2)
    out = tmp_path / "out"
    assert main(["convert", str(path), "--rank", "full", "--exact", "-o", str(out), "-q"]) == EXIT_OK
    report = json.loads((out / "conversion.json").read_text())
    assert {layer["name"] for layer in report["layers"]} == {"conv1", "g2"}
    assert all(layer["relative_error"] < 1e-5 for layer in report["layers"]) and report["output_error"] < 1e-5
    assert report["costs_match"]
    rebuilt = convaudit.load_converted(out)
    original = load(str(path)).model
    x = torch.randn(3, 3, 20, 24, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = original(x), rebuilt(x)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5)
    assert not any(type(m) is nn.Conv2d and m.kernel_size == (3, 3) and m.groups == 1 for m in rebuilt.modules())


@pytest.mark.parametrize("command", ["report", "convert"])
def test_output_onto_the_onnx_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture, command: str) -> None:
    path = conv_net(tmp_path / "net.onnx")
    data = path.read_bytes()
    assert main([command, str(path), "-o", str(path), "--force"]) == EXIT_USAGE
    assert "is the input" in one_line_error(capsys.readouterr().err)
    assert path.read_bytes() == data


# ---------------------------------------------------------------- what cannot be loaded, in one line


def test_an_op_onnx2torch_cannot_convert_names_the_node(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    nodes = [
        oh.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], name="conv"),
        oh.make_node("Hardmax", ["c"], ["y"], name="argmax_head"),
    ]
    path = save(
        tmp_path / "hm.onnx", nodes, [tensor("x", [1, 3, 8, 8])], [tensor("y", [1, 4, 6, 6])], [weight("w", 4, 3, 3, 3)]
    )
    with pytest.raises(ModelLoadError, match=r"node 'argmax_head' \(Hardmax\), opset 17: onnx2torch .* cannot convert"):
        load(str(path))
    assert main(["report", str(path), "-o", str(tmp_path / "r.json")]) == EXIT_FAILURE
    assert "node 'argmax_head' (Hardmax)" in one_line_error(capsys.readouterr().err)


def test_a_converter_failure_names_the_node(tmp_path: Path) -> None:
    nodes = [oh.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], auto_pad="SAME_UPPER", name="same_conv")]
    path = save(
        tmp_path / "same.onnx",
        nodes,
        [tensor("x", [1, 3, 8, 8])],
        [tensor("y", [1, 4, 8, 8])],
        [weight("w", 4, 3, 3, 3)],
    )
    with pytest.raises(
        ModelLoadError,
        match=r"node 'same_conv' \(Conv\): onnx2torch .*cannot convert it: NotImplementedError: .SAME_UPPER. auto_pad",
    ):
        load(str(path))


def test_missing_extra_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    path = conv_net(tmp_path / "net.onnx")
    monkeypatch.setitem(sys.modules, "onnx2torch", None)  # import onnx2torch raises ImportError
    with pytest.raises(ModelLoadError, match=r"needs onnx and onnx2torch.*pip install 'convaudit\[onnx\]'"):
        load(str(path))
    assert main(["report", str(path), "-o", str(tmp_path / "r.json")]) == EXIT_FAILURE
    assert "pip install 'convaudit[onnx]'" in one_line_error(capsys.readouterr().err)


def test_not_an_onnx_file(tmp_path: Path) -> None:
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x00\x01 not a protobuf \xff")
    with pytest.raises(ModelLoadError, match=r"junk\.onnx: not an ONNX model"):
        load(str(path))
    with pytest.raises(UsageError, match=r"no such file; give a model.py, a checkpoint \(.pt/.pth\), a model.onnx"):
        load(str(tmp_path / "missing.onnx"))


def test_external_data_is_read_only_from_beside_the_model(tmp_path: Path) -> None:
    inside = tmp_path / "model"
    inside.mkdir()
    path = conv_net(
        inside / "ext.onnx",
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="w.data",
        size_threshold=0,
    )
    loaded = load(str(path))  # beside it: read
    assert torch.equal(
        loaded.model.get_submodule("conv1").weight,
        torch.from_numpy(numpy_helper.to_array(weight("w1", 8, 3, 3, 3)).copy()),
    )
    proto = onnx.load(str(path), load_external_data=False)
    (tmp_path / "secret.data").write_bytes((inside / "w.data").read_bytes())
    os.symlink(tmp_path / "secret.data", inside / "link.data")
    for location in ("../secret.data", str(tmp_path / "secret.data"), "link.data"):
        for t in proto.graph.initializer:
            for entry in t.external_data:
                if entry.key == "location":
                    entry.value = location
        onnx.save(proto, str(inside / "escape.onnx"))
        with pytest.raises(
            ModelLoadError, match=rf"keeps its data in '{location}', which is not a file beside the model"
        ):
            load(str(inside / "escape.onnx"))


# ---------------------------------------------------------------- torch.onnx.export


class Exported(nn.Module):
    """A small torch model to export: convs of every kind, BN (folded by the exporter), pooling, a head."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16),
            nn.Conv2d(16, 32, 1),
            nn.Conv2d(32, 32, 5, padding=2, groups=4, dilation=1),
            nn.ReLU(),
            nn.Conv2d(32, 24, 3, padding=2, dilation=2),
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(24, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter: dynamo=False on purpose
def test_a_torch_onnx_export_round_trips(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Exported().eval()
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    path = tmp_path / "exported.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["image"], dynamic_axes={"image": {0: "batch"}})
    loaded = load(str(path))
    assert loaded.args[0].shape == (1, 3, 32, 32) and "image[0] 'batch' → 1" in loaded.notes[0]
    a = convaudit.analyze(loaded.model, loaded.args)
    oracle_matches(loaded, a)
    torch_macs = conv_macs_by_module(model, x)[""]
    assert a.totals.conv_macs == torch_macs  # the same convs as the torch model it came from
    with torch.no_grad():
        assert torch.allclose(loaded.model(x), model(x), rtol=1e-4, atol=1e-5)
    out = tmp_path / "out"
    assert main(["convert", str(path), "--rank", "full", "--exact", "-o", str(out), "-q"]) == EXIT_OK
    rebuilt = convaudit.load_converted(out)
    with torch.no_grad():
        assert torch.allclose(rebuilt(x), model(x), rtol=1e-4, atol=1e-5)
    report = json.loads((out / "conversion.json").read_text())
    assert len(report["layers"]) == 3 and report["output_error"] < 1e-5  # the 3×3, the grouped 5×5, the dilated 3×3
