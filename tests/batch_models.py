"""Tiny model files for the batch tests: good ones, one broken at import, one that hangs."""

from __future__ import annotations

from pathlib import Path

GOOD = """\
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, {width}, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


def example_inputs():
    return (torch.randn(1, 3, 8, 8),)
"""

BROKEN = 'raise RuntimeError("broken on purpose at import")\n'

#: Hangs at import (time.sleep), after starting a grandchild that sleeps too and writing its pid beside it.
HANGING = """\
import pathlib, subprocess, time
child = subprocess.Popen(["sleep", "1000"])
pathlib.Path(__file__).with_suffix(".pid").write_text(str(child.pid))
time.sleep(1000)
"""


def good(directory: Path, name: str, width: int = 8) -> Path:
    """A model file with one 3×3 conv (3→width channels) on 8×8 inputs."""
    path = directory / name
    path.write_text(GOOD.format(width=width), encoding="utf-8")
    return path


def write_batch(directory: Path) -> dict[str, Path]:
    """Two good models, one broken at import, one hanging: by role."""
    broken, hanging = directory / "broken.py", directory / "hanging.py"
    broken.write_text(BROKEN, encoding="utf-8")
    hanging.write_text(HANGING, encoding="utf-8")
    return {
        "good_a": good(directory, "good_a.py"),
        "broken": broken,
        "hanging": hanging,
        "good_b": good(directory, "good_b.py", 16),
    }
