"""Writing output files: atomically, and never over an existing file without ``force``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import OutputExistsError, UsageError

__all__ = ["write_atomic", "refuse_existing", "default_mode"]


def default_mode(directory: bool = False) -> int:
    """The permissions a plain open()/mkdir() would give under the current umask (mkstemp uses 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def refuse_existing(path: str | os.PathLike[str], force: bool) -> Path:
    """``path`` as a Path; raises OutputExistsError if it exists and ``force`` is not set."""
    target = Path(path)
    if target.exists() and not force:
        raise OutputExistsError(f"{target} already exists; pass --force to replace it or choose another -o path")
    return target


def write_atomic(path: str | os.PathLike[str], text: str, force: bool = False) -> Path:
    """Write ``text`` to ``path`` via a temporary file in the same directory and an atomic rename."""
    target = refuse_existing(path, force)
    if target.exists() and target.is_dir():
        raise UsageError(f"{target} is a directory; give a file name for -o")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{parent}: no such directory for -o {target}; create it first")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, default_mode())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
