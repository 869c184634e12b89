"""What a batch will do: one :class:`ModelJob` per model, with a stable file name and an up-to-date key.

The file name is the spec made filesystem-safe plus 8 hex digits of its hash (``torchvision-resnet50-1c0f…``),
so it never depends on the other models of the batch. The key is a hash of what the report depends on: the
model spec, the content of its file (for a file), the files other options read (``--weights``), every option
that changes the report, the format, and the convaudit version. A model whose key matches its last ok run is
not run again (``--force`` runs it anyway).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "NOT_FORWARDED",
    "BatchRequest",
    "ModelJob",
    "Outcome",
    "Status",
    "file_sha256",
    "forwarded_options",
    "job_key",
    "plan_jobs",
    "report_name",
]

#: Options of ``convaudit report`` that are the batch's own, or say how it talks: not passed to each model's run.
NOT_FORWARDED = frozenset(
    {
        "source",
        "more_sources",
        "output",
        "force",
        "quiet",
        "debug",
        "jobs",
        "executor",
        "timeout",
        "format",
        "help",
        "json_copy",
    }
)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_SLUG = 60


class Status(StrEnum):
    """How one model's run ended."""

    PENDING = "pending"  #: planned, not finished (an index.json written mid-run says so)
    OK = "ok"
    FAILED = "failed"  #: load, trace or analysis error (the error line says which)
    TIMED_OUT = "timed out"  #: killed at --timeout


@dataclass(frozen=True)
class BatchRequest:
    """One ``convaudit report A B ... -o DIR`` run, as the CLI parsed it (plain data, picklable)."""

    specs: tuple[str, ...]
    output: str  #: the directory
    fmt: str  #: the per-model report format (the JSON report is always written too)
    jobs: int = 1  #: local worker processes
    executor: str = "local"  #: "local" or "dask://HOST:PORT"
    timeout_seconds: float = 600.0
    force: bool = False
    quiet: bool = False
    forwarded: tuple[str, ...] = ()  #: the report options every model's run gets (``--input-shape 1,3,64,64`` ...)
    settings: Mapping[str, Any] = field(default_factory=dict)  #: the options that change a report, for the key
    option_files: tuple[str, ...] = ()  #: files options read (--weights): hashed into the key, never -o


@dataclass(frozen=True)
class ModelJob:
    """One model of the batch: what to run and under which name its reports are written."""

    spec: str  #: as given on the command line
    name: str  #: the file name stem in the output directory
    key: str  #: the up-to-date key
    argv: tuple[str, ...]  #: ``report SPEC ... --format FMT -q``; the runner adds ``-o`` and ``--json-copy``
    suffix: str  #: of the report in FMT (``.html``)
    timeout_seconds: float
    cwd: str  #: where the spec and relative option paths are read (a Dask worker needs the same path)
    source_sha256: str | None = None  #: the file's content hash, checked again where the model runs


@dataclass(frozen=True)
class Outcome:
    """One model's run as it ended: its JSON report, or the error line."""

    name: str
    spec: str
    status: Status
    seconds: float
    error: str | None = None  #: one line, for a failure or a timeout
    report_json: str | None = None  #: the JSON report's text, when ok
    report_text: str | None = None  #: the report in the batch's format (the same text when that is JSON)
    worker: str | None = None  #: where it ran (a Dask worker's address)


def report_name(spec: str) -> str:
    """A stable, filesystem-safe stem for ``spec``: a readable slug and 8 hex digits of the normalised spec."""
    text = spec.removeprefix("./")
    slug = _UNSAFE.sub("_", re.sub(r"[/\\:]+", "-", text)).strip("._-")[:_MAX_SLUG].rstrip("._-")
    digest = hashlib.sha256(_normalised(spec).encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f"{slug or 'model'}-{digest}"


def _normalised(spec: str) -> str:
    """A file's real path (``a.py`` and ``./a.py`` are one model); any other spec as given."""
    return os.path.realpath(spec) if os.path.lexists(spec) else spec


def file_sha256(path: str) -> str | None:
    """The SHA-256 of a regular file's content, or None when ``path`` is not one (``torchvision:NAME``)."""
    if not os.path.isfile(path):
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def job_key(spec: str, source_sha256: str | None, request: BatchRequest, option_hashes: Mapping[str, Any]) -> str:
    """The hash of everything the report depends on.

    NB: a model file's own imports (a sibling module) are not hashed; ``--force`` re-runs after changing one.
    """
    from convaudit import __version__

    document = {
        "spec": _normalised(spec),
        "source_sha256": source_sha256,
        "option_files": dict(option_hashes),
        "settings": dict(request.settings),
        "format": request.fmt,
        "version": __version__,
    }
    text = json.dumps(document, sort_keys=True, default=str, ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def plan_jobs(request: BatchRequest) -> list[ModelJob]:
    """One job per distinct model spec, in the order given (a spec named twice runs once)."""
    from convaudit.formats import default_suffix

    option_hashes = {os.path.realpath(p): file_sha256(p) for p in request.option_files}
    suffix = default_suffix(request.fmt)
    jobs: list[ModelJob] = []
    seen: set[str] = set()
    for spec in request.specs:
        name = report_name(spec)
        if name in seen:
            continue
        seen.add(name)
        digest = file_sha256(spec)
        argv = ("report", spec, *request.forwarded, "--format", request.fmt, "-q")
        key = job_key(spec, digest, request, option_hashes)
        jobs.append(ModelJob(spec, name, key, argv, suffix, request.timeout_seconds, os.getcwd(), digest))
    return jobs


def forwarded_options(
    actions: Iterable[argparse.Action], args: argparse.Namespace, exclude: Iterable[str] = NOT_FORWARDED
) -> tuple[list[str], dict[str, Any]]:
    """The command line that gives another run the same options, and those options as data (for the key).

    Generic over the parser, so an option added to ``convaudit report`` later is forwarded and keyed too.
    """
    skip = set(exclude)
    argv: list[str] = []
    settings: dict[str, Any] = {}
    for action in actions:
        if not action.option_strings or action.dest in skip or action.dest == argparse.SUPPRESS:
            continue
        if not hasattr(args, action.dest):
            continue
        value = getattr(args, action.dest)
        settings[action.dest] = value
        argv += _as_argv(action, value)
    return argv, settings


def _as_argv(action: argparse.Action, value: Any) -> list[str]:
    """The tokens that set ``action``'s destination to ``value`` (nothing when it is the default)."""
    flag = action.option_strings[-1] if action.option_strings[-1].startswith("--") else action.option_strings[0]
    if value == action.default:
        return []
    if action.nargs == 0:  # store_true / store_false / store_const
        return [flag]
    if isinstance(action, argparse._AppendAction):
        return [f"{flag}={item}" for item in value]  # "=": a value may start with "-"
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [flag, *map(str, value)]
    return [f"{flag}={value}"]
