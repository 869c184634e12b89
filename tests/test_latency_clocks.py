"""The clocks and the load meter: other processes' CPU use from /proc, on fake files and for real."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from convaudit.latency.clocks import LoadMeter


def write_proc(tmp: Path, user: int, system: int, idle: int, ours: tuple[int, int]) -> None:
    (tmp / "stat").write_text(
        f"cpu  {user} 0 {system} {idle} 0 0 0 0 0 0\ncpu0 1 0 0 0 0 0 0 0 0 0\ncpu1 1 0 0 0 0 0 0 0 0 0\nintr 1\n"
    )
    fields = ["S"] + ["0"] * 10 + [str(ours[0]), str(ours[1])] + ["0"] * 30
    (tmp / "self").write_text(f"123 (python (x) y) {' '.join(fields)}\n")


def test_load_meter_is_others_busy_jiffies_over_elapsed(tmp_path: Path) -> None:
    meter = LoadMeter(str(tmp_path / "stat"), str(tmp_path / "self"))
    write_proc(tmp_path, user=100, system=50, idle=1000, ours=(10, 5))
    meter.start()
    # 350 jiffies over 2 cpus = 175 elapsed; busy +250, of it ours +75: others 175 → 1.0 core
    write_proc(tmp_path, user=300, system=100, idle=1100, ours=(70, 20))
    assert meter.stop() == pytest.approx(1.0)
    meter.start()
    write_proc(tmp_path, user=302, system=100, idle=1104, ours=(72, 20))  # 3 jiffies: too short to say
    assert meter.stop() is None
    assert LoadMeter(str(tmp_path / "missing")).stop() is None


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="needs /proc")
def test_load_meter_sees_another_busy_process() -> None:
    meter = LoadMeter()
    meter.start()
    spin = "import time\nt = time.time()\nwhile time.time() - t < 0.6: pass"
    subprocess.run([sys.executable, "-c", spin], check=True)  # its CPU is not ours (cutime is not counted)
    cores = meter.stop()
    assert cores is not None and cores >= 0.4
