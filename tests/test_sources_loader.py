"""Sources: model.py entry rules, example inputs, torchvision names, checkpoints (weights_only)."""

import os
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from convaudit.errors import EXIT_FAILURE, EXIT_USAGE, CheckpointError, ModelLoadError, UsageError
from convaudit.sources import load, parse_shape

FIXTURES = Path(__file__).parent / "fixtures"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_build_model_and_example_inputs() -> None:
    loaded = load(str(EXAMPLES / "small_cnn.py"))
    assert loaded.entry == "build_model()" and loaded.args[0].shape == (1, 3, 56, 56) and not loaded.notes


def test_module_level_model() -> None:
    loaded = load(str(EXAMPLES / "dynamic_net.py"))
    assert loaded.entry == "model"


def test_single_class(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "one.py",
        "import torch.nn as nn\nclass Net(nn.Sequential):\n"
        "    def __init__(self):\n        super().__init__(nn.Conv1d(4, 8, 3))\n",
    )
    loaded = load(str(path))
    assert loaded.entry == "Net()" and loaded.args[0].shape == (1, 4, 1024)
    assert "guessed" in loaded.notes[0]


def test_args_and_kwargs_inputs() -> None:
    loaded = load(str(EXAMPLES / "two_inputs.py"))
    assert len(loaded.args) == 2 and set(loaded.kwargs) == {"mask"}


def test_entry_overrides_and_input_shape() -> None:
    loaded = load(str(FIXTURES / "bad" / "several.py"), entry="B", input_shapes=[(2, 3, 9, 9)])
    assert loaded.entry == "B" and loaded.model.conv.kernel_size == (5, 5)
    assert loaded.args[0].shape == (2, 3, 9, 9) and loaded.args[0].is_meta


def test_input_shape_replaces_example_inputs() -> None:
    loaded = load(str(EXAMPLES / "two_inputs.py"), input_shapes=[(1, 3, 8, 8), (1, 1, 8, 8)])
    assert [tuple(a.shape) for a in loaded.args] == [(1, 3, 8, 8), (1, 1, 8, 8)] and loaded.kwargs == {}


@pytest.mark.parametrize(
    "name,entry,exc,pattern",
    [
        ("syntax_error.py", None, ModelLoadError, r"syntax_error\.py:3: syntax error"),
        ("raises.py", None, ModelLoadError, r"raises\.py:5: build_model\(\) raised RuntimeError: weights file missing"),
        ("no_module.py", None, ModelLoadError, r"defines no nn\.Module.*--entry NAME"),
        ("several.py", None, ModelLoadError, r"several nn\.Module classes \(A, B\).*--entry NAME"),
        ("several.py", "C", ModelLoadError, r"--entry C not found \(it defines A, B\)"),
        ("missing.py", None, UsageError, r"no such file"),
    ],
)
def test_bad_model_files(name: str, entry: str | None, exc: type, pattern: str) -> None:
    with pytest.raises(exc, match=pattern) as info:
        load(str(FIXTURES / "bad" / name), entry=entry)
    assert "\n" not in str(info.value)
    assert info.value.exit_code == (EXIT_USAGE if exc is UsageError else EXIT_FAILURE)


def test_exception_at_import_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "boom.py", "import torch\n\nx = 1 / 0\n")
    with pytest.raises(ModelLoadError, match=r"boom\.py:3: ZeroDivisionError"):
        load(str(path))


@pytest.mark.parametrize("text", ["1,3,224,224", "1x3x224x224", " 1, 3 ,8,8 "])
def test_parse_shape(text: str) -> None:
    assert parse_shape(text)[0] == 1


@pytest.mark.parametrize("text", ["", "a,b", "1,-3", "0,3", "1.5,2", "1,3,x", "1,,3"])
def test_parse_shape_rejects(text: str) -> None:
    with pytest.raises(UsageError, match="not a shape"):
        parse_shape(text)


def test_torchvision_source() -> None:
    pytest.importorskip("torchvision")
    loaded = load("torchvision:resnet18")
    assert type(loaded.model).__name__ == "ResNet" and loaded.args[0].shape == (1, 3, 224, 224)
    assert load("torchvision:r3d_18").args[0].shape == (1, 3, 16, 112, 112)
    # segmentation builders default to downloading backbone weights: nothing may be fetched
    assert type(load("torchvision:fcn_resnet50").model).__name__ == "FCN"


def test_unknown_torchvision_name_suggests() -> None:
    pytest.importorskip("torchvision")
    with pytest.raises(ModelLoadError, match="no such torchvision model; did you mean resnet50"):
        load("torchvision:resnet5O")


# ---------------------------------------------------------------- checkpoints


class Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_checkpoint_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": Evil(marker)}, path)
    with pytest.raises(CheckpointError, match=r"refused: unpickling it would call (posix|os)\.system"):
        load(str(path))
    assert not marker.exists()


def test_whole_module_checkpoint_loads(tmp_path: Path) -> None:
    path = tmp_path / "net.pt"
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
    torch.save(model, path)
    loaded = load(str(path), input_shapes=[(1, 3, 16, 16)])
    assert isinstance(loaded.model, nn.Sequential)
    assert torch.equal(loaded.model[0].weight, model[0].weight)


def test_state_dict_checkpoint_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "sd.pth"
    torch.save(nn.Conv2d(3, 8, 3).state_dict(), path)
    with pytest.raises(CheckpointError, match="holds a state_dict, not a whole module"):
        load(str(path))


def test_garbage_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "junk.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load(str(path))


class TwoConvs(nn.Sequential):
    def __init__(self) -> None:
        super().__init__(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 4, 3))
        self.register_buffer("scratch", torch.zeros(2), persistent=False)  # a non-empty set: ADDITEMS at protocol 4+


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_every_protocol_of_a_genuine_save_loads(tmp_path: Path, protocol: int, zip_format: bool) -> None:
    model = TwoConvs()
    path = tmp_path / "net.pt"
    torch.save(model.state_dict(), path, pickle_protocol=protocol, _use_new_zipfile_serialization=zip_format)
    loaded = load(str(FIXTURES / "bad" / "several.py"), entry="A")  # any model: only the state_dict's reading matters
    from convaudit.sources.checkpoints import load_checkpoint_object

    state = load_checkpoint_object(path)
    expected = model.state_dict()
    assert list(state) == list(expected) and all(torch.equal(state[k], v) for k, v in expected.items())
    assert loaded.weights == "model file"
    if zip_format:  # whole modules: torch's old non-zip format loads their classes through code, and is refused
        torch.save(model, path, pickle_protocol=protocol)
        whole = load(str(path), input_shapes=[(1, 3, 8, 8)]).model
        assert type(whole) is TwoConvs and whole._non_persistent_buffers_set == {"scratch"}
        assert all(
            torch.equal(a, b) for a, b in zip(whole.state_dict().values(), model.state_dict().values(), strict=True)
        )


def test_legacy_whole_module_is_one_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "old.pt"
    torch.save(TwoConvs(), path, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match=r"old non-zip format.*re-save it"):
        load(str(path))


@pytest.mark.parametrize("suffix", [".PT", ".Pth", ".CKPT"])
def test_checkpoint_suffix_in_any_case_is_a_checkpoint(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"model{suffix}"
    torch.save(nn.Sequential(nn.Conv2d(3, 8, 3)), path)
    assert isinstance(load(str(path), input_shapes=[(1, 3, 8, 8)]).model, nn.Sequential)


def test_class_needing_arguments_says_so(tmp_path: Path) -> None:
    text = "import torch.nn as nn\nclass Net(nn.Module):\n    def __init__(self, width, depth=2):\n"
    text += "        super().__init__()\n"
    path = write(tmp_path, "needy.py", text)
    pattern = r"Net needs constructor arguments \(width\); add build_model\(\) or pass --entry"
    with pytest.raises(ModelLoadError, match=pattern):
        load(str(path))


@pytest.mark.parametrize(
    "text,where",
    [
        ("import sys\nsys.exit(3)\n", r"exit\.py:2: called sys\.exit\(3\) while loading exit\.py \(at import"),
        (
            "import sys\ndef build_model():\n    sys.exit('no')\n",
            r"exit\.py:3: called sys\.exit\('no'\) while loading exit\.py \(in build_model\(\)\)",
        ),
        (
            "import sys, torch.nn as nn\nmodel = nn.Conv2d(1, 1, 1)\ndef example_inputs():\n    sys.exit(0)\n",
            r"called sys\.exit\(0\) while loading exit\.py \(in example_inputs\(\)\)",
        ),
    ],
)
def test_sys_exit_while_loading_is_a_load_error(tmp_path: Path, text: str, where: str) -> None:
    with pytest.raises(ModelLoadError, match=where) as info:
        load(str(write(tmp_path, "exit.py", text)))
    assert "\n" not in str(info.value) and info.value.exit_code == EXIT_FAILURE


# ---------------------------------------------------------------- --weights


TWO_CONVS_PY = (
    "import torch.nn as nn\nclass Net(nn.Sequential):\n    def __init__(self):\n"
    "        super().__init__(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 4, 3))\n"
)


@pytest.mark.parametrize("layout", ["plain", "state_dict", "model"])
def test_weights_load_into_a_model_file(tmp_path: Path, layout: str) -> None:
    model_py = write(tmp_path, "net.py", TWO_CONVS_PY)
    trained = TwoConvs()
    with torch.no_grad():
        trained[0].weight.fill_(0.25)
        trained[1].running_mean.fill_(3.0)
    state = trained.state_dict()
    path = tmp_path / "sd.pt"
    torch.save(state if layout == "plain" else {layout: state, "epoch": 7}, path, pickle_protocol=4)
    loaded = load(str(model_py), weights=str(path), input_shapes=[(1, 3, 8, 8)])
    assert torch.equal(loaded.model[0].weight, trained[0].weight)
    assert torch.equal(loaded.model[1].running_mean, state["1.running_mean"])
    assert loaded.weights == "loaded"
    assert loaded.weights_source == (str(path) if layout == "plain" else f"{path}[{layout!r}]")


def test_torchvision_without_weights_is_initialised() -> None:
    pytest.importorskip("torchvision")
    loaded = load("torchvision:resnet18")
    assert loaded.weights == "initialised"
    assert loaded.weights_source == "torchvision.models.resnet18(weights=None) under seed 0"


def test_weights_into_torchvision_and_a_whole_module(tmp_path: Path) -> None:
    torchvision = pytest.importorskip("torchvision")
    trained = torchvision.models.resnet18(num_classes=1000)
    path = tmp_path / "r.pth"
    torch.save({"state_dict": trained.state_dict()}, path)
    loaded = load("torchvision:resnet18", weights=str(path))
    assert loaded.weights == "loaded" and torch.equal(loaded.model.fc.weight, trained.fc.weight)
    whole = tmp_path / "whole.pt"
    torch.save(trained, whole)  # a whole module passed as --weights: its state_dict is used
    assert "whole module" in load("torchvision:resnet18", weights=str(whole)).weights_source


@pytest.mark.parametrize(
    "edit,pattern",
    [
        (lambda sd: sd.pop("2.bias"), r"1 missing \(2\.bias\)"),
        (lambda sd: sd.update(extra=torch.zeros(1), more=torch.zeros(1)), r"2 unexpected \(extra, more\)"),
        (
            lambda sd: sd.update({"0.weight": torch.zeros(8, 3, 5, 5)}),
            r"1 with another shape \(0\.weight \(8×3×5×5 in the file, 8×3×3×3 in the model\)\)",
        ),
    ],
)
def test_weights_that_do_not_fit_are_one_line(tmp_path: Path, edit: object, pattern: str) -> None:
    state = TwoConvs().state_dict()
    edit(state)  # type: ignore[operator]
    path = tmp_path / "sd.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=f"sd.pt: the weights do not fit the model: {pattern}") as info:
        load(str(write(tmp_path, "net.py", TWO_CONVS_PY)), weights=str(path))
    assert "\n" not in str(info.value) and info.value.exit_code == EXIT_FAILURE


def test_weights_from_data_parallel_get_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "dp.pt"
    torch.save({f"module.{k}": v for k, v in TwoConvs().state_dict().items()}, path)
    with pytest.raises(CheckpointError, match=r"9 missing .*9 unexpected \(module\.0\.weight, .*DataParallel"):
        load(str(write(tmp_path, "net.py", TWO_CONVS_PY)), weights=str(path))


@pytest.mark.parametrize(
    "obj,pattern",
    [
        ({"epoch": 3, "optimizer": {}}, r"no state_dict .* \(its keys: 'epoch', 'optimizer'\)"),
        ([torch.zeros(1)], r"holds a list, not a state_dict"),
    ],
)
def test_weights_without_a_state_dict(tmp_path: Path, obj: object, pattern: str) -> None:
    path = tmp_path / "w.pt"
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match=pattern):
        load(str(write(tmp_path, "net.py", TWO_CONVS_PY)), weights=str(path))


def test_missing_weights_file_is_usage(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"--weights .*no such file"):
        load(str(write(tmp_path, "net.py", TWO_CONVS_PY)), weights=str(tmp_path / "nope.pt"))


def test_weights_reach_the_records(tmp_path: Path) -> None:
    """Analysis and ConversionReport carry the weights field through to_dict/from_dict and every summary."""
    import dataclasses

    from convaudit.documents.records import Analysis
    from convaudit.formats import render
    from tests.fixtures.models import report_analysis

    built = "torchvision.models.x(weights=None)"
    a = dataclasses.replace(report_analysis(), weights="initialised", weights_source=built)
    again = Analysis.from_dict(a.to_dict())
    assert (again.weights, again.weights_source) == ("initialised", built)
    for fmt in ("text", "markdown", "html"):
        assert "freshly initialised (torchvision.models.x(weights=None))" in render(a, fmt).replace("\\_", "_")


def test_trust_of_a_missing_module_is_usage(tmp_path: Path) -> None:
    from tests.test_hostile import raw_checkpoint

    ckpt = raw_checkpoint(tmp_path / "ck.pt", b"\x80\x02cnosuchmod_xyz\nNet\n)\x81.")
    with pytest.raises(UsageError, match=r"--trust nosuchmod_xyz: no module nosuchmod_xyz on sys.path or beside ck.pt"):
        load(str(ckpt), trust=["nosuchmod_xyz"])
    with pytest.raises(UsageError, match="give a module name"):
        load(str(ckpt), trust=["not a module"])
