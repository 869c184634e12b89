"""Where layers are defined: recorded while loading, else found in the parent's __init__; shown relative
(to the working directory, or to the library root of an installed library), never as this machine's paths."""

import inspect
import os
import sysconfig
from pathlib import Path

import pytest
import torch.nn as nn

from convaudit.sources.locations import (
    definition_of,
    display_location,
    display_path,
    parameter_definition,
    record_definitions,
)
from tests.fixtures import nets

ROOT = Path(__file__).resolve().parents[1]


def test_recorded_while_building(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    with record_definitions():
        line = inspect.currentframe().f_lineno + 1
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    assert definition_of(model, "0") == f"tests/test_sources_locations.py:{line}"  # relative to the cwd
    assert not nn.modules.module._global_module_registration_hooks  # the hook is gone again


def test_found_in_the_parents_init_without_recording() -> None:
    model = nets.SharedConv()
    source = definition_of(model, "conv")
    path, _, n = source.rpartition(":")
    assert "self.conv = nn.Conv2d" in Path(path).read_text().splitlines()[int(n) - 1]


def test_parameters() -> None:
    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = 2
            self.kernel = nn.Parameter(nn.Conv2d(2, 2, 3).weight.detach())

    root = nn.Module()
    root.head = Head()
    path, _, n = parameter_definition(root, "head.kernel").rpartition(":")
    assert "self.kernel = nn.Parameter" in Path(path).read_text().splitlines()[int(n) - 1]


def test_display_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.models.resnet

    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    assert display_path(str(tmp_path / "sub" / "net.py")) == "sub/net.py"  # under the working directory
    assert display_path("sub/net.py") == "sub/net.py"
    outside = str(ROOT / "tests" / "conftest.py")
    assert display_path(outside) == outside  # elsewhere: absolute
    assert display_path(torchvision.models.resnet.__file__) == "torchvision/models/resnet.py"  # its library root
    assert display_path(os.__file__) == "os.py"  # the standard library's root
    for spec in ("torchvision:resnet18", "timm:resnet18", "<string>", ""):
        assert display_path(spec) == spec  # not a file path: as it is
    assert display_location(f"{tmp_path}/sub/net.py:12") == "sub/net.py:12"
    assert display_location("<frozen importlib._bootstrap>:241") == "<frozen importlib._bootstrap>:241"


def test_a_virtualenv_inside_the_working_directory_still_shows_the_library_root(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torchvision.models.resnet

    site = Path(sysconfig.get_paths()["purelib"])
    monkeypatch.chdir(site.parent)  # e.g. a project with .venv/ inside it
    assert display_path(torchvision.models.resnet.__file__) == "torchvision/models/resnet.py"


def test_a_torchvision_layer_is_located_in_its_package() -> None:
    import torchvision

    with record_definitions():
        model = torchvision.models.resnet18()
    path, _, line = definition_of(model, "layer1.0.conv1").rpartition(":")
    assert path == "torchvision/models/resnet.py" and line.isdigit()
