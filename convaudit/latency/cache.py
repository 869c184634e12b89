"""The profile cache: this machine's key (CPU model, torch version, threads, device) and the cached file.

A profile is cached under ``$XDG_CACHE_HOME/convaudit`` (else ``~/.cache/convaudit``), one file per key;
``load_profile`` returns None for a missing, unreadable or stale file (another key, or an older
``profile.PROFILE_VERSION``), ``save_profile`` writes atomically.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import re
import tempfile
from pathlib import Path

from convaudit.latency import profile as profile_module
from convaudit.latency.profile import DeviceProfile

__all__ = ["cache_path", "cpu_model", "current_key", "load_profile", "save_profile"]


@functools.cache  # NB: read once per process: every analysis asks (for its profile's key)
def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what ``platform`` says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            match = re.search(r"^model name\s*:\s*(.+)$", f.read(), flags=re.M)
        if match:
            return match[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def current_key(threads: int | None = None, device: str = "cpu") -> tuple[str, str, int, str]:
    """This machine's profile key: (CPU model, torch version, threads (default torch's), device)."""
    import torch

    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else cpu_model()
    return (name, torch.__version__, threads or torch.get_num_threads(), device)


def cache_path(key: tuple[str, str, int, str] | None = None) -> Path:
    """Where the profile of ``key`` (default: this machine's) is cached: $XDG_CACHE_HOME or ~/.cache, /convaudit/."""
    cpu, torch_version, threads, device = key or current_key()
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "convaudit"
    digest = hashlib.sha256(f"{cpu}|{torch_version}".encode()).hexdigest()[:12]
    slug = re.sub(r"[^A-Za-z0-9]+", "-", device).strip("-")
    return root / f"device-{slug}-{threads}t-{digest}.json"


def load_profile(threads: int | None = None, device: str = "cpu", path: Path | None = None) -> DeviceProfile | None:
    """The cached profile of this machine, or None when absent, unreadable or stale (other key or version)."""
    key = current_key(threads, device)
    try:
        profile = _parsed(Path(path or cache_path(key)))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return profile if profile.version == profile_module.PROFILE_VERSION and profile.key == key else None


#: path → ((mtime_ns, size), the profile parsed from it): each analysis loads the profile, and a calibrated
#: one (hundreds of residuals) takes ~1 ms to parse; a rewritten file is read again
_PARSED: dict[Path, tuple[tuple[int, int], DeviceProfile]] = {}


def _parsed(file: Path) -> DeviceProfile:
    status = file.stat()
    stamp = (status.st_mtime_ns, status.st_size)
    hit = _PARSED.get(file)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    profile = DeviceProfile.from_json(file.read_text(encoding="utf-8"))
    _PARSED[file] = (stamp, profile)
    return profile


def save_profile(profile: DeviceProfile, path: Path | None = None) -> Path:
    """Write ``profile`` to ``path`` (default: its cache path) atomically: a temporary file, then a rename."""
    target = Path(path) if path is not None else cache_path(profile.key)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(profile.to_json())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
