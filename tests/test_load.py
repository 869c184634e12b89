"""Sources: model.py entry rules, example inputs, torchvision names, checkpoints (weights_only)."""

import os
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from convaudit.errors import EXIT_FAILURE, EXIT_USAGE, CheckpointError, ModelLoadError, UsageError
from convaudit.load import load, parse_shape

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
    path = write(tmp_path, "one.py", "import torch.nn as nn\nclass Net(nn.Sequential):\n    def __init__(self):\n        super().__init__(nn.Conv1d(4, 8, 3))\n")
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
