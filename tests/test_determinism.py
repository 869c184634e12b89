"""Outputs that do not drift: two runs of ``convaudit report`` give byte-identical JSON, text, Markdown and
HTML, each run a separate process (its own hash seed, its own random state) in its own directory.

Untrained weights come from a fixed seed (a model.py's import and build, ``torchvision:``/``timm:``
builders) without moving the caller's random stream; paths are relative (the working directory, else
the library root); no wall-clock figure is in a report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from convaudit.sources import load

FORMATS = {"json": "json", "text": "txt", "markdown": "md", "html": "html"}

#: A model file whose weights are drawn at import (``model = Net()``) and whose example input is random.
NET = """
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.body = nn.Sequential(
            nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.Conv2d(32, 32, 5, padding=2)
        )
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        return self.head(self.body(torch.relu(self.stem(x))).mean((2, 3)))


model = Net()


def example_inputs():
    return (torch.randn(1, 3, 24, 24),)
"""

#: Runs each (name, argv) of argv[1] through convaudit's main in this one process.
WORKER = """
import json, sys
from convaudit.cli.app import main
for name, argv in json.loads(sys.argv[1]):
    if main(argv) != 0:
        sys.exit(f"{name}: convaudit {' '.join(argv)} failed")
"""


def reports(cases: dict[str, list[str]], formats: dict[str, str]) -> list[tuple[str, list[str]]]:
    """Per case and format: (output file, ``report`` argv writing it)."""
    return [
        (f"{name}.{suffix}", ["report", *argv, "-q", "--format", fmt, "-o", f"{name}.{suffix}"])
        for name, argv in cases.items()
        for fmt, suffix in formats.items()
    ]


def run_twice(tmp_path: Path, files: dict[str, bytes], runs: list[tuple[str, list[str]]]) -> tuple[Path, Path]:
    """Each run in a fresh process, in its own directory holding ``files``; the two directories."""
    dirs = []
    for name, hash_seed in (("first", "1"), ("second", "2")):
        work = tmp_path / name
        work.mkdir()
        for file, data in files.items():
            (work / file).write_bytes(data)
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}  # set and dict orders must not leak into a report
        done = subprocess.run(
            [sys.executable, "-c", WORKER, json.dumps(runs)], cwd=work, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-3000:]
        dirs.append(work)
    return dirs[0], dirs[1]


def assert_identical(first: Path, second: Path, names: list[str]) -> None:
    for name in names:
        a, b = (first / name).read_bytes(), (second / name).read_bytes()
        if a != b:
            lines = [(x, y) for x, y in zip(a.decode().splitlines(), b.decode().splitlines(), strict=False) if x != y]
            pytest.fail(f"{name} differs between two runs, first at:\n{lines[0][0][:300]}\n{lines[0][1][:300]}")


def no_absolute_paths(document: dict, where: Path) -> None:
    """No field of the JSON report names this machine's directories (the run's own, the checkout's)."""
    text = json.dumps(document)
    assert str(where) not in text and str(Path(__file__).resolve().parents[1]) not in text


def state_dict_bytes(model: torch.nn.Module, path: Path) -> bytes:
    with torch.random.fork_rng():
        torch.manual_seed(7)  # other weights than the seeded build: --weights must be what is reported
        for p in model.parameters():
            torch.nn.init.normal_(p)
    torch.save(model.state_dict(), path)
    return path.read_bytes()


def test_a_model_file_reports_the_same_bytes_twice(tmp_path: Path) -> None:
    namespace: dict = {}
    exec(compile(NET, "net.py", "exec"), namespace)
    weights = state_dict_bytes(namespace["Net"](), tmp_path / "w.pt")
    runs = reports({"net": ["net.py"]}, FORMATS) + reports(
        {"net_weights": ["net.py", "--weights", "w.pt"]}, {"json": "json"}
    )
    first, second = run_twice(tmp_path, {"net.py": NET.encode(), "w.pt": weights}, runs)
    assert_identical(first, second, [out for out, _ in runs])
    doc = json.loads((first / "net.json").read_text())
    assert doc["weights_source"] == "net.py, built under seed 0"
    assert {layer["source"].rpartition(":")[0] for layer in doc["layers"]} == {"net.py"}  # relative to the cwd
    assert doc["model"] == "net.py" and doc["cross_check"]["seconds"] is None
    no_absolute_paths(doc, first)
    loaded = json.loads((first / "net_weights.json").read_text())
    assert loaded["weights"] == "loaded" and loaded["weights_source"] == "w.pt"


@pytest.mark.zoo
def test_a_torchvision_model_reports_the_same_bytes_twice(tmp_path: Path) -> None:
    import torchvision

    weights = state_dict_bytes(torchvision.models.resnet18(), tmp_path / "r18.pt")
    runs = reports({"r18": ["torchvision:resnet18"]}, FORMATS)
    runs += reports({"r18_weights": ["torchvision:resnet18", "--weights", "r18.pt"]}, {"json": "json"})
    first, second = run_twice(tmp_path, {"r18.pt": weights}, runs)
    assert_identical(first, second, [out for out, _ in runs])
    doc = json.loads((first / "r18.json").read_text())
    assert doc["weights_source"] == "torchvision.models.resnet18(weights=None) under seed 0"
    assert doc["layers"][0]["source"].startswith("torchvision/models/resnet.py:")  # the library root's path
    no_absolute_paths(doc, first)
    assert json.loads((first / "r18_weights.json").read_text())["weights_source"] == "r18.pt"


def test_loading_a_model_file_is_seeded_and_leaves_the_random_stream_alone(tmp_path: Path) -> None:
    (tmp_path / "net_seeded.py").write_text(NET)
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    one = load(str(tmp_path / "net_seeded.py"))
    assert torch.equal(torch.get_rng_state(), before)  # the caller's random stream did not move
    two = load(str(tmp_path / "net_seeded.py"))
    assert torch.equal(one.model.stem.weight, two.model.stem.weight)
    assert torch.equal(one.args[0], two.args[0])  # example_inputs() ran under the seed too
    with torch.random.fork_rng():
        torch.manual_seed(0)
        fresh = torch.nn.Conv2d(3, 16, 3, padding=1)
    assert torch.equal(one.model.stem.weight, fresh.weight)  # seed 0, as the report says
