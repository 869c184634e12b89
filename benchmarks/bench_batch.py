"""Benchmark: models per minute of ``convaudit report A B ... -o DIR`` for 20 torchvision models.

Four ways, in one run: ``-j 1`` and ``-j 2`` (local worker processes, forked from a server that has
imported torch) and ``--executor dask://…`` on a local cluster of 2 worker processes with 1 thread each:
as Dask starts them by default (daemonic: every model starts its own Python, the price of a hang-proof
timeout there), and with ``distributed.worker.daemon: False`` (each worker forks its models from a
forkserver of its own).
Models are the small ones plus a few mid-size, untrained (no weights), at their documented input size.

To spread machine load across the three, the models are split in two halves run in opposite orders
(j1, j2, dask, dask-fork on the first half, the reverse on the second); each figure is 20 models over the two
halves' time. /proc/loadavg is printed before and after each run. Every run writes a fresh directory
(``--force`` is not needed); the cluster's start and the local forkserver's start are not counted.

Usage (from the repository root)::

    python benchmarks/bench_batch.py                  # the report's defaults (cross-check on)
    python benchmarks/bench_batch.py --no-cross-check # faster per model
    python benchmarks/bench_batch.py --models 6       # the first N models only, for a quick look

A script that prints figures, not a test: they depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time
from pathlib import Path

MODELS = [
    "squeezenet1_1", "mobilenet_v3_small", "shufflenet_v2_x0_5", "mnasnet0_5", "resnet18",
    "mobilenet_v2", "regnet_x_400mf", "squeezenet1_0", "shufflenet_v2_x1_0", "mobilenet_v3_large",
    "resnet34", "mnasnet1_0", "regnet_y_400mf", "efficientnet_b0", "googlenet",
    "resnet50", "densenet121", "convnext_tiny", "efficientnet_b1", "regnet_y_800mf",
]  # fmt: skip
WAYS = ("-j 1", "-j 2", "dask", "dask-fork")
LABELS = {"dask": "dask, 2 workers", "dask-fork": "dask, not daemonic"}


def loadavg() -> str:
    """The 1-minute load average (of 2 cores here)."""
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def run(way: str, models: list[str], out: Path, extra: list[str], schedulers: dict[str, str]) -> tuple[float, int, str]:
    """(seconds, exit code, 'load before→after') of one batch."""
    from convaudit.cli.app import main

    how = ["--executor", schedulers[way]] if way in schedulers else way.split()
    argv = ["report", *(f"torchvision:{m}" for m in models), *how, "-o", str(out), "-q", *extra]
    before = loadavg()
    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):
        code = main(argv)
    took = time.perf_counter() - start
    if code != 0:  # say which model failed, and why
        for row in json.loads((out / "index.json").read_text())["models"]:
            if row["status"] != "ok":
                print(f"  {way}: {row['model']}: {row['status']}: {row['error']}")
    return took, code, f"{before}→{loadavg()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=len(MODELS), help="the first N models (default 20)")
    parser.add_argument("--no-cross-check", action="store_true", help="pass --no-cross-check to every model")
    args = parser.parse_args()
    import dask
    from distributed import LocalCluster

    models = MODELS[: args.models]
    halves = [models[: len(models) // 2], models[len(models) // 2 :]]
    extra = ["--no-cross-check"] if args.no_cross_check else []
    seconds = dict.fromkeys(WAYS, 0.0)
    notes: dict[str, list[str]] = {way: [] for way in WAYS}
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        started = time.perf_counter()
        kwargs = {"host": "127.0.0.1", "n_workers": 2, "threads_per_worker": 1, "processes": True}
        with contextlib.ExitStack() as stack:
            schedulers = {"dask": stack.enter_context(LocalCluster(dashboard_address=None, **kwargs)).scheduler_address}
            with dask.config.set({"distributed.worker.daemon": False}):  # its workers may fork: a forkserver each
                fork = stack.enter_context(LocalCluster(dashboard_address=None, **kwargs))
            schedulers["dask-fork"] = fork.scheduler_address
            schedulers = {k: v.replace("tcp://", "dask://") for k, v in schedulers.items()}
            print(f"two dask clusters up in {time.perf_counter() - started:.1f} s (not counted); load {loadavg()}")
            for way in ("-j 2", "dask-fork"):  # start the forkservers (each imports torch once)
                warm = run(way, ["squeezenet1_1", "mnasnet0_5"], Path(tmp) / f"warm{way}", extra, schedulers)
                print(f"{way} warm-up {warm[0]:.1f} s (not counted)")
            for half, order in zip(halves, (WAYS, WAYS[::-1]), strict=True):
                for way in order:
                    out = Path(tmp) / f"{way.replace(' ', '')}-{len(notes[way])}"
                    took, code, load = run(way, half, out, extra, schedulers)
                    seconds[way] += took
                    notes[way].append(
                        f"{len(half)} in {took:.0f} s, load {load}" + ("" if code == 0 else f", exit {code}")
                    )
    print(f"\n{len(models)} torchvision models, untrained, {'no cross-check' if extra else 'report defaults'}:")
    base = len(models) / seconds["-j 1"] * 60
    for way in WAYS:
        per_minute = len(models) / seconds[way] * 60
        label = LABELS.get(way, way)
        print(f"  {label:16} {per_minute:6.1f} models/min  ({per_minute / base:.2f}× -j 1)  [{'; '.join(notes[way])}]")


if __name__ == "__main__":
    main()
