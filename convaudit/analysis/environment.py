"""The environment a document was made in: convaudit, torch, Python and platform versions."""

from __future__ import annotations

import platform

import torch

from convaudit import __version__

__all__ = ["environment"]


def environment() -> dict[str, str]:
    """Versions of convaudit, torch and Python, and the platform (shown in every report)."""
    return {
        "convaudit": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }
