"""Budgets from ``[tool.convaudit]`` in the nearest pyproject.toml (read with the stdlib's tomllib).

The nearest file is found walking up from the model file's directory, then from the working directory,
and is the first pyproject.toml holding a ``[tool.convaudit]`` table (as ruff finds ``[tool.ruff]``).
Top-level keys apply to every model; a section under ``models`` applies to one, keyed by the source as
given (``[tool.convaudit.models."torchvision:resnet18"]``) or by a path relative to the file
(``[tool.convaudit.models."models/net.py"]``) and overrides the top-level keys::

    [tool.convaudit]
    max-macs = "4.2G"
    max-latency = "30ms"

    [tool.convaudit.models."torchvision:resnet18"]
    max-macs = "2G"
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convaudit.errors import UsageError

__all__ = ["FILE_NAME", "Config", "find_config", "read_config", "settings_for"]

FILE_NAME = "pyproject.toml"


@dataclass(frozen=True)
class Config:
    """The ``[tool.convaudit]`` table of one pyproject.toml."""

    path: Path
    table: Mapping[str, Any] = field(hash=False)

    @property
    def label(self) -> str:
        """How messages name it: 'pyproject.toml [tool.convaudit]' with the path as given to the user."""
        return f"{_shown(self.path)} [tool.convaudit]"


def read_config(path: str | Path) -> Config | None:
    """The ``[tool.convaudit]`` table of ``path`` (None when it has none); bad TOML is a UsageError."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{_shown(path)}: cannot be read ({exc.strerror or exc}); fix or remove it") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{_shown(path)}: not valid TOML ({exc}); fix the file or pass --no-config") from exc
    table = data.get("tool", {}).get("convaudit") if isinstance(data.get("tool"), dict) else None
    if table is None:
        return None
    if not isinstance(table, dict):
        raise UsageError(f'{_shown(path)}: [tool.convaudit] must be a table, e.g. max-macs = "4.2G" under it')
    return Config(path, table)


def find_config(starts: Iterable[str | Path]) -> Config | None:
    """The nearest pyproject.toml with ``[tool.convaudit]``, walking up from each start in turn."""
    for start in starts:
        here = Path(start).resolve()
        if here.is_file():
            here = here.parent
        for folder in (here, *here.parents):
            candidate = folder / FILE_NAME
            if candidate.is_file():
                config = read_config(candidate)
                if config is not None:
                    return config
    return None


def settings_for(config: Config, source: str | None) -> dict[str, Any]:
    """The file's settings for ``source``: the top-level keys, overridden by the model's own section."""
    settings = {k: v for k, v in config.table.items() if k != "models"}
    models = config.table.get("models", {})
    if not isinstance(models, dict):
        raise UsageError(
            f"{config.label}: 'models' must hold a section per model, e.g. [tool.convaudit.models.\"net.py\"]"
        )
    section = _section(config, models, source) if source else None
    if section is not None:
        settings |= section
    return settings


def _section(config: Config, models: Mapping[str, Any], source: str) -> dict[str, Any] | None:
    """The ``models`` section for ``source``: by the source as given, else by the same file."""
    found = models.get(source)
    if found is None:
        target = Path(source).resolve()
        for key, value in models.items():
            if (config.path.parent / key).resolve() == target:
                found = value
                break
    if found is None:
        return None
    if not isinstance(found, dict):
        raise UsageError(f'{config.label}: models.{source!r} must be a table of budgets, e.g. max-macs = "2G"')
    return dict(found)


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
