"""The options ``convaudit report`` gains for many models, and the :class:`BatchRequest` they make.

``convaudit report a.py b.py torchvision:resnet50 -j 2 -o DIR`` is a batch: more than one model, or ``-j`` /
``--executor`` given. Every other option of ``report`` applies to each model (forwarded generically, so an
option added to ``report`` later is forwarded and keyed too).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable

from convaudit.batch.plan import BatchRequest, forwarded_options
from convaudit.errors import UsageError

__all__ = ["DEFAULT_DIRECTORY", "DEFAULT_TIMEOUT_SECONDS", "add_batch_options", "batch_request", "is_batch"]

DEFAULT_TIMEOUT_SECONDS = 600.0
DEFAULT_DIRECTORY = "convaudit-reports"


def add_batch_options(parser: argparse.ArgumentParser) -> None:
    """More SOURCEs, -j, --executor and --timeout (call right after the SOURCE positional is added)."""
    parser.add_argument(
        "more_sources",
        nargs="*",
        metavar="SOURCE",
        help=f"more models: one report each and an index page in the directory -o (default {DEFAULT_DIRECTORY})",
    )
    group = parser.add_argument_group("many models at once")
    group.add_argument(
        "-j", "--jobs", type=int, default=None, metavar="N", help="models analysed at once, each in its own process"
    )
    group.add_argument(
        "--executor",
        default=None,
        metavar="WHERE",
        help="local (default) or dask://HOST:PORT: run the models on a Dask cluster (pip install 'convaudit[dask]')",
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help="per model: a model still running then is killed and reported as timed out "
        f"(default {DEFAULT_TIMEOUT_SECONDS:g})",
    )
    parser.add_argument("--json-copy", metavar="PATH", help=argparse.SUPPRESS)  # a worker: the JSON report too


def is_batch(args: argparse.Namespace) -> bool:
    """Whether the command line asks for a batch (several models, -j or --executor)."""
    return bool(getattr(args, "more_sources", None)) or args.jobs is not None or args.executor is not None


def batch_request(actions: Iterable[argparse.Action], args: argparse.Namespace, fmt: str) -> BatchRequest:
    """The batch ``args`` describe; ``actions`` are report's parser actions (what to forward to each model)."""
    if args.output == "-":
        raise UsageError("-o - (stdout) takes one model; give a directory for several")
    jobs = 1 if args.jobs is None else args.jobs
    if jobs < 1:
        raise UsageError(f"-j {jobs}: give at least 1")
    if not args.timeout > 0:
        raise UsageError(f"--timeout {args.timeout:g}: give a positive number of seconds")
    executor = args.executor or "local"
    if executor != "local":
        from convaudit.batch.dask import scheduler_address

        scheduler_address(executor)  # validated before any work
    forwarded, settings = forwarded_options(actions, args)
    files = [f for f in (getattr(args, "weights", None), getattr(args, "images", None)) if f]
    return BatchRequest(
        specs=(args.source, *args.more_sources),
        output=args.output or DEFAULT_DIRECTORY,
        fmt=fmt,
        jobs=jobs,
        executor=executor,
        timeout_seconds=float(args.timeout),
        force=args.force,
        quiet=args.quiet,
        forwarded=tuple(forwarded),
        settings=settings,
        option_files=tuple(files),
    )
