"""Run one model's ``convaudit report`` in a process of its own, killed at its timeout.

Two ways, one result (:class:`~convaudit.batch.plan.Outcome`):

- :func:`run_forked` (local workers): a child of a *forkserver* that has imported torch and convaudit
  once, so a model costs a fork, not an interpreter start. The child calls the CLI's entry point.
- :func:`run_subprocess` (Dask workers, whose processes are daemons and may not fork children of
  ``multiprocessing``): ``python -m convaudit.batch.child``, which imports first, says it is ready, then
  runs the CLI (the timeout starts then: a slow interpreter start is not the model's).

Either child leads a session of its own, so the timeout kills it with everything it started (``killpg``,
SIGKILL: a model stuck in C code or ignoring signals dies too). Its stdout and stderr go to a log file, of
which the last ``convaudit: ...`` line is the error line. Children still running when the batch is stopped
(SIGINT, SIGTERM, an error) are killed by :func:`kill_all`.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from convaudit.batch.plan import ModelJob, Outcome, Status

__all__ = ["PRELOAD", "STARTUP_SECONDS", "Entry", "error_line", "kill_all", "run_forked", "run_subprocess"]

Entry = Callable[[list[str]], int]
#: What the forkserver imports once, before forking a child per model.
PRELOAD = [
    "convaudit.cli.app",
    "torch",
    "torchvision",
    "convaudit.analysis.engine",
    "convaudit.sources",
    "convaudit.formats.html",
    "convaudit.formats.json",
]
#: How long a model's Python may take to start and import torch (not counted in --timeout).
STARTUP_SECONDS = 300.0
_LOG_TAIL = 64 * 1024
_RUNNING: set[int] = set()  # process-group ids of children alive right now
_LOCK = threading.Lock()
_CONTEXT: Any = None


def _forkserver() -> Any:
    global _CONTEXT
    with _LOCK:
        if _CONTEXT is None:
            _CONTEXT = multiprocessing.get_context("forkserver")
            _CONTEXT.set_forkserver_preload(PRELOAD)
        return _CONTEXT


def run_forked(job: ModelJob, entry: Entry, threads: int | None = None) -> Outcome:
    """Run ``job`` in a forkserver child calling ``entry(argv)`` (the CLI's ``main``); ``threads``: torch's."""
    with tempfile.TemporaryDirectory(prefix="convaudit-batch-") as tmp:
        report, log = Path(tmp), Path(tmp) / "log.txt"
        argv = [*job.argv, *_outputs(job, report)]
        process = _forkserver().Process(target=_child, args=(entry, argv, str(log), job.cwd, threads), daemon=False)
        process.start()  # returns once forked: the forkserver's own start (importing torch) is not the model's time
        start = time.monotonic()
        _track(process.pid)
        try:
            process.join(job.timeout_seconds)
            timed_out = process.exitcode is None
            if timed_out:
                _kill_group(process.pid)
                process.join()
        finally:
            _untrack(process.pid)
            _kill_group(process.pid, alive=False)  # whatever the model left running in its session
        return _outcome(job, process.exitcode, timed_out, time.monotonic() - start, report, log)


def _child(entry: Entry, argv: list[str], log: str, cwd: str, threads: int | None) -> None:
    """In the child: a session of its own, output to the log, then the CLI; the exit code is the CLI's."""
    os.setsid()
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    for target in (1, 2):
        os.dup2(fd, target)
    os.close(fd)
    os.chdir(cwd)
    if threads:  # N models at once share the cores instead of each taking them all
        import torch

        torch.set_num_threads(threads)
    sys.exit(entry(argv))


def run_subprocess(job: ModelJob) -> Outcome:
    """Run ``job`` as ``python -m convaudit.batch.child`` (on a daemonic Dask worker)."""
    with tempfile.TemporaryDirectory(prefix="convaudit-batch-") as tmp:
        report, log = Path(tmp), Path(tmp) / "log.txt"
        ready_r, ready_w = os.pipe()
        argv = [sys.executable, "-m", "convaudit.batch.child", str(ready_w), *job.argv, *_outputs(job, report)]
        try:
            with open(log, "wb") as out:
                process = subprocess.Popen(
                    argv,
                    cwd=job.cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    start_new_session=True,
                    pass_fds=(ready_w,),
                )
        finally:
            os.close(ready_w)
        _track(process.pid)
        try:
            with os.fdopen(ready_r, "rb") as ready:  # the byte after its imports, or EOF if it died first
                select.select([ready], [], [], STARTUP_SECONDS)
            start = time.monotonic()
            try:
                process.wait(job.timeout_seconds)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(process.pid)
                process.wait()
        finally:
            _untrack(process.pid)
            _kill_group(process.pid, alive=False)
        code = None if timed_out else process.returncode
        return _outcome(job, code, timed_out, time.monotonic() - start, report, log)


def _outputs(job: ModelJob, tmp: Path) -> list[str]:
    """``-o`` (the report in the batch's format) and, unless that is JSON, ``--json-copy`` (the index reads it)."""
    if job.suffix == ".json":
        return ["-o", str(tmp / "report.json")]
    return ["-o", str(tmp / f"report{job.suffix}"), "--json-copy", str(tmp / "report.json")]


def _outcome(job: ModelJob, code: int | None, timed_out: bool, seconds: float, tmp: Path, log: Path) -> Outcome:
    if timed_out:
        return Outcome(job.name, job.spec, Status.TIMED_OUT, seconds, f"timed out after {job.timeout_seconds:g} s")
    report, copy = tmp / f"report{job.suffix}", tmp / "report.json"
    if code == 0 and report.is_file() and copy.is_file():
        text = report.read_text(encoding="utf-8")
        json_text = copy.read_text(encoding="utf-8")
        return Outcome(job.name, job.spec, Status.OK, seconds, report_json=json_text, report_text=text)
    return Outcome(job.name, job.spec, Status.FAILED, seconds, error_line(_tail(log), code))


def _tail(log: Path) -> str:
    try:
        with open(log, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - _LOG_TAIL))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def error_line(log: str, code: int | None) -> str:
    """The CLI's last ``convaudit: ...`` line, else the log's last line, else how the process ended."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    ours = [line for line in lines if line.startswith("convaudit: ")]
    if ours:
        return ours[-1].removeprefix("convaudit: ").removeprefix("error: ")
    if code is not None and code < 0:
        return f"the process died of signal {signal.Signals(-code).name}"
    last = lines[-1] if lines else "no output"
    return f"exit code {code}: {last}"


def _track(pid: int) -> None:
    with _LOCK:
        _RUNNING.add(pid)


def _untrack(pid: int) -> None:
    with _LOCK:
        _RUNNING.discard(pid)


def _kill_group(pid: int, *, alive: bool = True) -> None:
    """SIGKILL the child's session (its group id is its pid); while the child is ``alive`` (not yet reaped,
    so its pid cannot be reused), the child itself too, in case it had not made its session yet."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    if alive:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def kill_all() -> None:
    """Kill every child still running (the batch is being stopped)."""
    with _LOCK:
        pids = list(_RUNNING)
    for pid in pids:
        _kill_group(pid)
