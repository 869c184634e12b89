"""The engine end to end on small models: inventory, kinds, calls, totals, no mutation, JSON."""

import copy
import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

import convaudit
from convaudit.conversion.planning import plan_conversion
from convaudit.documents.records import Analysis
from convaudit.sources.locations import display_path
from tests.fixtures import nets

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_example(name: str):
    from convaudit.sources.loader import load

    return load(str(EXAMPLES / f"{name}.py"))


def snapshot(model: nn.Module) -> dict:
    """Everything analysis must leave as it found it."""
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "attrs": {n: sorted(m.__dict__) for n, m in model.named_modules()},
        "modules": [n for n, _ in model.named_modules()],
        "hooks": [
            (n, len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
            for n, m in model.named_modules()
        ],
        "training": [m.training for m in model.modules()],
    }


def assert_unchanged(before: dict, model: nn.Module) -> None:
    after = snapshot(model)
    assert after["attrs"] == before["attrs"]
    assert after["modules"] == before["modules"]
    assert after["hooks"] == before["hooks"]
    assert after["training"] == before["training"]
    assert before["state"].keys() == after["state"].keys()
    for k in before["state"]:
        assert torch.equal(before["state"][k], after["state"][k]), k


def real_macs(model: nn.Module, *args, **kwargs) -> int:
    # NB: with grad enabled on purpose: under no_grad, eval-mode nn.MultiheadAttention takes a fused
    # fast path that FlopCounterMode counts as 0 MACs.
    with FlopCounterMode(display=False) as counter:
        model(*args, **kwargs)
    return counter.get_total_flops() // 2


@pytest.mark.parametrize("name", ["small_cnn", "residual_net", "dynamic_net", "two_inputs"])
def test_examples_totals_equal_flop_counter(name: str) -> None:
    loaded = load_example(name)
    model = copy.deepcopy(loaded.model)
    before = snapshot(loaded.model)
    a = convaudit.analyze(loaded.model, loaded.args, loaded.kwargs, cross_check=True)
    assert_unchanged(before, loaded.model)
    assert a.totals.macs == real_macs(model, *loaded.args, **loaded.kwargs)
    assert a.cross_check is not None and a.cross_check.skipped is None
    assert a.cross_check.macs_same_ops == a.totals.macs
    assert a.cross_check.conv_macs == sum(layer.macs for layer in a.layers if layer.op == "module")


def test_residual_net_kinds_and_reasons() -> None:
    loaded = load_example("residual_net")
    a = convaudit.analyze(loaded.model, loaded.args)
    kinds = {layer.name: layer.kind for layer in a.layers}
    assert kinds == {
        "stem": "custom",
        "block1.conv1": "standard",
        "block1.conv2": "standard",
        "block2.conv1": "grouped",
        "block2.conv2": "standard",
        "dw": "depthwise",
        "pw": "pointwise",
        "head": "standard",
        "up": "transposed",
    }
    by = {layer.name: layer for layer in a.layers}
    assert by["stem"].skip_reason.startswith("custom subclass with its own forward (SameConv2d)")
    assert by["dw"].skip_reason and by["pw"].skip_reason and by["up"].skip_reason
    assert all(layer.skip_reason is None for layer in a.layers if layer.candidate)
    head = by["head"]  # functional conv on a parameter, called twice
    assert (head.op, head.calls, head.params) == ("functional", 2, 64 * 64 * 9)
    assert head.macs == 2 * 2 * 32 * 32 * 64 * 64 * 9
    assert by["stem"].macs == 2 * 32 * 32 * 32 * 3 * 9  # counted from the convolution inside its own forward
    assert by["block1.conv1"].source.endswith("residual_net.py:31")


def test_shared_module_params_once_macs_per_call() -> None:
    a = convaudit.analyze(nets.SharedConv(), input_shape=(1, 8, 10, 10))
    (layer,) = a.layers
    assert layer.calls == 3 and layer.params == 8 * 8 * 9 + 8
    assert layer.macs == 3 * 10 * 10 * 8 * 8 * 9
    assert layer.separable.dw_pw.macs == 3 * 10 * 10 * 8 * (9 + 8)
    assert a.totals.params == 8 * 8 * 9 + 8


@pytest.mark.parametrize("model,shape", [(nets.Seed64(), (1, 64, 56, 56)), (nets.Seed256(), (1, 256, 14, 14))])
def test_seed_layers_through_the_engine(model: nn.Module, shape: tuple) -> None:
    (layer,) = convaudit.analyze(model, input_shape=shape).layers
    sep = layer.separable.dw_pw
    cin = shape[1]
    assert layer.params == 9 * cin * cin
    assert (sep.dw_params, sep.pw_params) == (9 * cin, cin * cin)
    assert sep.params_ratio == pytest.approx(1 / cin + 1 / 9)


def test_tensor_constant_is_not_left_on_the_model() -> None:
    model = nets.WithConstant()
    before = snapshot(model)
    a = convaudit.analyze(model, input_shape=(1, 3, 8, 8))
    assert_unchanged(before, model)
    assert not hasattr(model, "_tensor_constant0")
    assert a.layers[0].output_shape == (1, 4, 6, 6)


def test_no_convs_is_a_report_not_an_error() -> None:
    a = convaudit.analyze(nets.NoConv(), input_shape=(2, 16))
    assert a.layers == () and a.totals.macs == 2 * (16 * 32 + 32 * 4)
    assert any("no convolutions" in w for w in a.warnings)


def test_attention_matmuls_and_leaf_fallback_are_costed() -> None:
    model = nets.Attention().eval()
    x = torch.randn(2, 16, 12)
    a = convaudit.analyze(model, (x,))
    assert a.totals.macs == real_macs(model, x)
    assert a.layers[0].dims == 1


def test_conv3d_padding_modes() -> None:
    model = nets.Conv3dNet()
    x = torch.randn(1, 3, 6, 16, 16)
    a = convaudit.analyze(model, (x,))
    assert a.totals.macs == real_macs(model, x)
    same = a.layers[1]
    assert same.padding == "same" and same.padding_mode == "reflect" and same.dilation == (2, 2, 2)


def test_huge_input_needs_no_memory() -> None:
    import resource

    model = nets.Seed64()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    a = convaudit.analyze(model, input_shape=(8, 64, 8192, 8192))  # 137 GB of fp32 activations if real
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert a.layers[0].macs == 8 * 8192 * 8192 * 64 * 64 * 9
    assert grown_kib < 200 * 1024


def test_cross_check_skips_huge_inputs_with_a_reason() -> None:
    a = convaudit.analyze(nets.Seed64(), input_shape=(8, 64, 4096, 4096), cross_check=True)
    assert a.cross_check.skipped and "GiB" in a.cross_check.skipped and a.cross_check.macs is None


def test_untraceable_model_takes_the_hook_path() -> None:
    loaded = load_example("dynamic_net")
    before = snapshot(loaded.model)
    a = convaudit.analyze(loaded.model, loaded.args)
    assert_unchanged(before, loaded.model)
    assert a.trace_path == "hooks" and "symbolic tracing failed" in a.trace_note
    assert [layer.name for layer in a.layers] == ["features.0", "features.2", "refine"]
    assert a.layers[2].calls == 2 and a.graph is None
    assert not torch.nn.modules.module._global_forward_hooks


def test_keyword_inputs() -> None:
    loaded = load_example("two_inputs")
    a = convaudit.analyze(loaded.model, loaded.args, loaded.kwargs)
    assert a.input_shapes == ((1, 3, 64, 64), (1, 1, 64, 64), (1, 1, 64, 64))
    assert [layer.name for layer in a.layers] == ["rgb", "depth", "fuse"]


def test_rules_override_and_ignore() -> None:
    a = convaudit.analyze(nets.NoConv(), input_shape=(2, 16), rules={nn.Linear: None})
    assert a.totals.macs == 0


def test_json_document_and_round_trip() -> None:
    loaded = load_example("residual_net")
    a = convaudit.analyze(loaded.model, loaded.args, source="examples/residual_net.py")
    doc = json.loads(json.dumps(a.to_dict()))
    assert doc == a.to_dict()
    assert doc["schema_version"] == convaudit.SCHEMA_VERSION
    assert {"params", "macs"} <= doc["totals"].keys()
    required = {
        "name",
        "kind",
        "candidate",
        "skip_reason",
        "params",
        "macs",
        "input_shape",
        "output_shape",
        "kernel_size",
        "stride",
        "padding",
        "dilation",
        "groups",
        "calls",
        "separable",
    }
    for layer in doc["layers"]:
        assert required <= layer.keys()
        if layer["candidate"]:
            assert {"params", "macs"} <= layer["separable"]["dw_pw"].keys()
            assert {"params", "macs"} <= layer["separable"]["pw_dw"].keys()
    assert Analysis.from_dict(doc) == a


def test_graph_view_marks_convs() -> None:
    loaded = load_example("residual_net")
    a = convaudit.analyze(loaded.model, loaded.args)
    convs = {n.conv for n in a.graph.nodes if n.conv}
    assert convs == {layer.name for layer in a.layers}
    ids = {n.id for n in a.graph.nodes}
    assert all(src in ids and dst in ids for src, dst in a.graph.edges)
    depth = {n.id: n.depth for n in a.graph.nodes}
    assert all(depth[src] < depth[dst] for src, dst in a.graph.edges)


def test_needs_inputs() -> None:
    with pytest.raises(convaudit.errors.UsageError):
        convaudit.analyze(nets.Seed64())


def test_source_locations_point_at_the_defining_lines() -> None:
    loaded = load_example("residual_net")
    a = convaudit.analyze(loaded.model, loaded.args)
    by = {layer.name: layer.source for layer in a.layers}
    path = EXAMPLES / "residual_net.py"
    lines = path.read_text().splitlines()

    def line_of(source: str) -> str:
        file, _, n = source.rpartition(":")
        assert file == display_path(str(path)) and not Path(file).is_absolute()  # under the cwd: relative
        return lines[int(n) - 1]

    assert "self.conv1 = nn.Conv2d" in line_of(by["block1.conv1"])
    assert "self.stem = SameConv2d" in line_of(by["stem"])
    assert "self.weight = nn.Parameter" in line_of(by["head"])  # functional conv: where its weight is made


def test_source_locations_without_recorded_definitions() -> None:
    a = convaudit.analyze(nets.Seed64(), input_shape=(1, 64, 8, 8))  # built here, not through convaudit's loader
    file, _, n = a.layers[0].source.rpartition(":")
    assert file.endswith("nets.py") and "self.conv = nn.Conv2d" in Path(file).read_text().splitlines()[int(n) - 1]


def test_convs_never_called_are_listed() -> None:
    class Aux(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.main = nn.Conv2d(3, 4, 3)
            self.aux = nn.Conv2d(4, 4, 3)

        def forward(self, x):
            return self.main(x)

    a = convaudit.analyze(Aux(), input_shape=(1, 3, 8, 8))
    assert [layer.name for layer in a.layers] == ["main"] and a.uncalled_convs == ("aux",)
    plan = plan_conversion(a)
    assert ("aux", "never called in forward at these inputs") in plan.skipped


def test_garbage_collector_state_is_restored() -> None:
    import gc

    convaudit.analyze(nets.Seed64(), input_shape=(1, 64, 8, 8))
    assert gc.isenabled()
    with pytest.raises(convaudit.errors.ShapeError):
        convaudit.analyze(nets.Seed64(), input_shape=(1, 3, 8, 8))
    assert gc.isenabled()
    gc.disable()
    try:
        convaudit.analyze(nets.Seed64(), input_shape=(1, 64, 8, 8))
        assert not gc.isenabled()  # a caller's choice is left alone
    finally:
        gc.enable()
