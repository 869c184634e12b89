"""Where layers are defined: recorded while loading, else found in the parent's __init__."""

import inspect
from pathlib import Path

import torch.nn as nn

from convaudit.sources.locations import definition_of, parameter_definition, record_definitions
from tests.fixtures import nets


def test_recorded_while_building() -> None:
    with record_definitions():
        line = inspect.currentframe().f_lineno + 1
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    assert definition_of(model, "0") == f"{__file__}:{line}"
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
