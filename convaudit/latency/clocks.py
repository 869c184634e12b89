"""Clocks and the load meter the timing harness reads: seconds, and other processes' CPU use.

Both are protocols (``Clock``, ``LoadProbe``) so tests inject fakes; ``PerfClock`` and ``LoadMeter`` are
the real ones (``LoadMeter`` reads /proc: busy jiffies of the machine, steal included, minus ours).
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "LoadMeter", "LoadProbe", "PerfClock"]


class Clock(Protocol):
    """Seconds since an arbitrary origin (monotonic)."""

    def now(self) -> float: ...


class LoadProbe(Protocol):
    """Other processes' CPU use between ``start()`` and ``stop()``, in cores (None: not readable)."""

    def start(self) -> None: ...

    def stop(self) -> float | None: ...


class PerfClock:
    """``time.perf_counter``, synchronising CUDA first when timing on a GPU."""

    def __init__(self, device: str = "cpu") -> None:
        self.cuda = device.startswith("cuda")

    def now(self) -> float:
        if self.cuda:
            import torch  # only here: the harness itself is torch-free

            torch.cuda.synchronize()
        return time.perf_counter()


class LoadMeter:
    """Other processes' CPU use in cores: busy jiffies of the machine minus ours, over elapsed jiffies.

    Busy = user + nice + system + irq + softirq + steal of /proc/stat's ``cpu`` line; ours = utime +
    stime of /proc/self/stat (all our threads); elapsed = the ``cpu`` line's total over the number of
    ``cpuN`` lines. ``stop()`` is None without /proc or when under ``min_jiffies`` elapsed (a 10 ms
    jiffy makes shorter readings noise).
    """

    def __init__(self, stat: str = "/proc/stat", self_stat: str = "/proc/self/stat", min_jiffies: int = 5) -> None:
        self.stat, self.self_stat, self.min_jiffies = stat, self_stat, min_jiffies
        self.first: tuple[int, int, int, int] | None = None

    def read(self) -> tuple[int, int, int, int] | None:
        """(busy, total, cpus, ours) in jiffies, or None where unreadable."""
        try:
            with open(self.stat) as f:
                lines = f.read().splitlines()
            with open(self.self_stat) as f:
                ours = f.read().rsplit(")", 1)[1].split()  # after "pid (comm)": field 3 on
        except (OSError, IndexError):
            return None
        fields = [int(v) for v in lines[0].split()[1:9]] if lines and lines[0].startswith("cpu ") else []
        cpus = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
        if len(fields) < 8 or not cpus or len(ours) < 13:
            return None
        user, nice, system, idle, iowait, irq, softirq, steal = fields
        busy = user + nice + system + irq + softirq + steal
        return busy, busy + idle + iowait, cpus, int(ours[11]) + int(ours[12])  # utime, stime

    def start(self) -> None:
        self.first = self.read()

    def stop(self) -> float | None:
        last, first = self.read(), self.first
        if last is None or first is None:
            return None
        elapsed = (last[1] - first[1]) / last[2]
        if elapsed < self.min_jiffies:
            return None
        return max(0.0, (last[0] - first[0] - (last[3] - first[3])) / elapsed)
