"""``convaudit calibrate-device``: time a grid of conv shapes on this machine, fit its latency profile, cache it.

Reports predict each conv's time (and its separable forms') from this profile; without one they use a
conservative built-in profile and say "uncalibrated". The profile is keyed by CPU model, torch version,
thread count and device: calibrate again at the thread count reports will run at.
"""

from __future__ import annotations

import argparse
import re

from convaudit.cli.shared import Command
from convaudit.errors import EXIT_OK, UsageError

__all__ = ["COMMAND", "add_arguments", "parse_budget", "run"]

#: Seconds per unit of --budget.
UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
#: Other processes' load (cores) above which the summary warns that the profile may be off.
BUSY_CORES = 0.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``convaudit calibrate-device``."""
    parser.add_argument(
        "--budget", default="2m", metavar="DURATION", help="time for the micro-benchmark, e.g. 90s or 2m (default 2m)"
    )
    parser.add_argument(
        "--threads", type=int, metavar="N", help="torch threads to calibrate at (default: torch's); part of the key"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def parse_budget(text: str) -> float:
    """'90s', '2m', '0.5h' → seconds; anything else is a UsageError (the unit is required)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smh])", text.strip())
    seconds = float(match[1]) * UNITS[match[2]] if match else 0.0
    if seconds <= 0:
        raise UsageError(f"--budget {text!r}: give a positive duration with its unit, like 90s or 2m")
    return seconds


def run(args: argparse.Namespace) -> int:
    """Calibrate, save the profile to the user's cache, and summarise it unless -q."""
    budget = parse_budget(args.budget)
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads {args.threads}: give a positive number of threads")
    from convaudit.cli.progress import Progress
    from convaudit.latency.cache import save_profile
    from convaudit.latency.calibrate import calibrate

    progress = Progress(quiet=args.quiet)
    with progress.step("calibrate: time conv shapes", unit="group"):
        profile = calibrate(budget, progress.steps, threads=args.threads)
    path = save_profile(profile)
    if not args.quiet:
        print(f"device: {profile.cpu} · torch {profile.torch_version} · {profile.threads} threads · {profile.device}")
        for fmt, kinds in profile.fits.items():
            for kind, fit in kinds.items():
                error = "" if fit.rms_log_error is None else f", rms log error {fit.rms_log_error:.2f}"
                print(
                    f"  {fmt:13} {kind:9}  {fit.macs_per_second / 1e9:6.1f} GMAC/s  {fit.bytes_per_second / 1e9:5.1f} "
                    f"GB/s  overhead {fit.overhead_seconds * 1e6:5.1f} µs  ({fit.points} shapes{error})"
                )
        if profile.load is not None and profile.load > BUSY_CORES:
            print(
                f"note: other processes used {profile.load:.1f} CPU cores during calibration; "
                "the profile may be off, calibrate again on a quieter machine"
            )
        print(f"wrote {path}")
    return EXIT_OK


COMMAND = Command(
    "calibrate-device", "fit this machine's latency profile (a short micro-benchmark)", add_arguments, run
)
