"""Benchmark: how fast is ``convaudit.convert``, and what does a rank-1 conversion do to a real model?

Prints, in one run:

(a) resnet50 (torchvision, ``weights=None``) at 1×3×224×224: ``convaudit.convert(model, x, rank=1,
    init="svd")`` converting every candidate. At torch's default thread count and at 1 thread: a first
    call, then the median (min, max) of N more runs, broken down by stage: analysis of the original
    model (with the per-channel SVDs of the separability figures when m is chosen by energy), planning,
    the reference run of the original, rewrite (copy + factorisation + module swap), verification (real
    forwards of both models, every layer on its real inputs; then the analysis of the converted model).
    Target: median total under 2 s (verdict at the default
    thread count). The stages are timed by the pipeline itself: ``Conversion.stage_seconds``; "other" is
    the wall time of the call outside them. When the target fails (or with ``--profile``), one conversion
    is run under cProfile and the top functions by cumulative time are listed.
(b) the digits experiment (``examples/digits_experiment.py``: a small CNN trained on scikit-learn's
    bundled digits, converted at m = 1 with init svd / calibrated / calibrated+sequential / random, then
    fine-tuned) and its accuracy tables. Needs scikit-learn (``pip install '.[examples]'``).

Usage (from the repository root)::

    python benchmarks/bench_convert.py               # 5 timed runs of (a) per thread count, then (b)
    python benchmarks/bench_convert.py --repeat 9
    python benchmarks/bench_convert.py --no-digits   # (a) only
    python benchmarks/bench_convert.py --quick       # 2 timed runs, the digits experiment with --quick
    python benchmarks/bench_convert.py --profile     # always print the cProfile hotspots
    python benchmarks/bench_convert.py --strict      # exit status 1 if the target fails

A script that prints figures, not a timed test: timings depend on the machine and on its load (the
script says how many CPUs other processes kept busy during the run).
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import io
import os
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
for p in (str(REPO), str(REPO / "benchmarks")):
    if p not in sys.path:  # run from a checkout without installing; bench_analysis for CpuContention
        sys.path.insert(0, p)

import torch  # noqa: E402
import torchvision  # noqa: E402
from bench_analysis import CpuContention  # noqa: E402
from bench_select import load_digits_module  # noqa: E402

import convaudit  # noqa: E402

TARGET_SECONDS = 2.0
#: stages of Conversion.stage_seconds, in the order convert runs them → how the table labels them
STAGES = {
    "analysis": "analysis of the original model",
    "plan": "planning",
    "reference": "reference run of the original (outputs, conv inputs)",
    "rewrite": "rewrite (deepcopy, factorisation, module swap)",
    "recalibration": "BatchNorm re-estimation",
    "verification": "verification: real forwards, per-layer errors",
    "cost_check": "verification: analysis of the converted model",
}


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def timed_conversion(fn: Callable[[], convaudit.Conversion]) -> dict[str, float]:
    """Seconds of each stage as the conversion measured them, "other" (the rest of the call) and "total"."""
    t = time.perf_counter()
    stages = dict(fn().stage_seconds)
    stages["total"] = time.perf_counter() - t
    stages["other"] = stages["total"] - sum(v for k, v in stages.items() if k != "total")
    return stages


def bench_resnet50(repeat: int, profile: bool) -> bool:
    print(
        "(a) convert torchvision resnet50 (weights=None) at 1×3×224×224: every candidate, rank=1, order=dw_pw, init=svd"
    )
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval()
    x = torch.randn(1, 3, 224, 224)

    def once() -> convaudit.Conversion:
        return convaudit.convert(model, (x,), rank=1, init="svd")

    default_threads = torch.get_num_threads()
    verdicts: dict[int, bool] = {}
    rep = once().report
    print(
        f"    converted {len(rep.layers)} convs ({len(rep.skipped)} left alone); params {rep.params_before:,} → "
        f"{rep.params_measured:,}; MACs {rep.macs_before:,} → {rep.macs_measured:,}; measured == predicted: "
        f"{rep.costs_match}; output error (random input, untrained weights) {rep.output_error:.3f}"
    )
    # torch's own thread count is what a user gets; 1 thread is shown too because on a loaded machine
    # multi-threaded kernels (the real forwards of verification, the SVDs) degrade far more.
    for threads in [default_threads] + ([1] if default_threads > 1 else []):
        torch.set_num_threads(threads)
        try:
            first = timed_conversion(once)
            runs = [timed_conversion(once) for _ in range(repeat)]
        finally:
            torch.set_num_threads(default_threads)
        verdicts[threads] = _print_stages(threads, first, runs, repeat)
    ok = verdicts[default_threads]
    print(f"\n    verdict (torch's default, {default_threads} thread(s)): {verdict(ok)}")
    if profile or not ok:
        print_profile(once)
    return ok


def _print_stages(threads: int, first: dict[str, float], runs: list[dict[str, float]], repeat: int) -> bool:
    seen = {k for r in [first, *runs] for k in r}
    keys = [*(k for k in STAGES if k in seen), *sorted(seen - {*STAGES, "other", "total"}), "other", "total"]
    labels = {**STAGES, "other": "other (outside the stages)"}
    print(f"\n    torch threads = {threads}")
    print(f"    {'stage':<52} {'first [s]':>9} {'median [s]':>11} {'min [s]':>9} {'max [s]':>9}")
    for k in keys:
        vals = [r.get(k, 0.0) for r in runs]
        print(
            f"    {labels.get(k, k):<52} {first.get(k, 0.0):9.3f} "
            f"{statistics.median(vals):11.3f} {min(vals):9.3f} {max(vals):9.3f}"
        )
    median_total = statistics.median(r["total"] for r in runs)
    ok = median_total < TARGET_SECONDS
    print(
        f"    median total {median_total:.3f} s over {repeat} runs (after the first); "
        f"target < {TARGET_SECONDS:.0f} s   {verdict(ok)}"
    )
    return ok


def print_profile(fn: Callable[[], Any], top: int = 20) -> None:
    """Run ``fn`` once under cProfile; print the top functions by cumulative time (file:line)."""
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    stats = pstats.Stats(prof, stream=io.StringIO())
    stats.sort_stats("cumulative")
    rows = [(ct, tt, nc, func) for func, (_cc, nc, tt, ct, _callers) in stats.stats.items()]  # type: ignore[attr-defined]
    rows.sort(key=lambda r: r[0], reverse=True)
    print(f"\n    cProfile of one conversion: top {top} by cumulative time (convaudit frames first, then the rest)")
    print(f"    {'cumulative [s]':>14} {'own [s]':>8} {'calls':>7}  function")

    def where(func: tuple[str, int, str]) -> str:
        file, line, name = func
        path = Path(file)
        try:
            file = str(path.resolve().relative_to(REPO))
        except ValueError:
            file = "/".join(path.parts[-2:]) if len(path.parts) > 1 else file
        return f"{file}:{line} {name}"

    ours = [r for r in rows if str(REPO / "convaudit") in r[3][0]][:top]
    theirs = [r for r in rows if str(REPO / "convaudit") not in r[3][0] and r[3][0] != "~"][: top // 2]
    for ct, tt, nc, func in ours:
        print(f"    {ct:14.3f} {tt:8.3f} {nc:7d}  {where(func)}")
    print("    -- outside convaudit (torch, python):")
    for ct, tt, nc, func in theirs:
        print(f"    {ct:14.3f} {tt:8.3f} {nc:7d}  {where(func)}")


def bench_digits(quick: bool) -> None:
    print("(b) digits experiment (examples/digits_experiment.py" + (" --quick" if quick else "") + ")")
    module = load_digits_module()
    if importlib.util.find_spec("sklearn") is None:
        print("    skipped: scikit-learn is not installed (pip install '.[examples]')")
        return
    results = module.main(["--quick"] if quick else [], verbose=False)
    print(
        f"    {results.n_train} train / {results.n_test} test images; original trained {results.train_steps} steps; "
        f"fine-tuning {results.finetune_steps} steps per method; took {results.seconds:.1f} s"
    )
    print("    test accuracy, stage × method (chance = 0.10):")
    print("\n".join(("    " + line).rstrip() for line in module.format_table(results).strip("\n").splitlines()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="timed runs of (a) per thread count, median reported (default 5; 2 with --quick)",
    )
    p.add_argument("--quick", action="store_true", help="fewer runs of (a), and the digits experiment with --quick")
    p.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads(N) before (a) (default: torch's own)"
    )
    p.add_argument("--profile", action="store_true", help="print cProfile hotspots of (a) even when it passes")
    p.add_argument("--no-digits", action="store_true", help="skip (b)")
    p.add_argument("--strict", action="store_true", help="exit with status 1 when the target fails")
    args = p.parse_args(argv)
    repeat = args.repeat if args.repeat is not None else (2 if args.quick else 5)
    if repeat < 1:
        p.error("--repeat must be at least 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print("convaudit conversion benchmark")
    print(
        f"convaudit {convaudit.__version__}, torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"python {sys.version.split()[0]}, {sys.platform}"
    )
    print(
        f"torch.get_num_threads() = {torch.get_num_threads()}; os.cpu_count() = {os.cpu_count()}; "
        f"timed runs = {repeat} (after a first run)\n"
    )
    contention = CpuContention()
    ok = bench_resnet50(repeat, args.profile)
    others = contention.others()
    if others is not None:
        print(
            f"    other processes kept {others:.2f} CPUs busy on average during (a) [CPUs] (of {os.cpu_count()}; "
            f"/proc/stat minus this process)"
        )
        if others > 0.25:
            print(
                "    WARNING: the machine was busy during (a); the real forwards and SVDs inside convert slow "
                "down with it (multi-threaded ones most): rerun on a quiet machine before trusting the timings."
            )
    if not args.no_digits:
        print()
        bench_digits(args.quick)
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
