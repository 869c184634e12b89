"""``--executor dask://HOST:PORT``: the batch's models as tasks on a Dask cluster (dask.distributed).

Dask schedules; convaudit only submits one task per model and collects the outcomes as they complete. A task
runs its model in a process of its own on the worker (:func:`run_task`), so the per-model timeout kills a
hung model there and the worker lives on. The workers read the model files at
the client's paths (a shared file system; a task checks the file's hash and fails if it differs) and send the
JSON report back: the client writes every file. Needs the optional extra: ``pip install 'convaudit[dask]'``.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from convaudit.batch.isolate import Entry, run_forked, run_subprocess
from convaudit.batch.plan import ModelJob, Outcome, Status, file_sha256
from convaudit.errors import UsageError

__all__ = ["CONNECT_SECONDS", "SCHEME", "connect", "run_dask", "run_task", "scheduler_address", "worker_problem"]

SCHEME = "dask://"
CONNECT_SECONDS = 15


def scheduler_address(executor: str) -> str:
    """``dask://HOST:PORT`` → ``tcp://HOST:PORT``; anything else is a UsageError."""
    rest = executor.removeprefix(SCHEME) if executor.startswith(SCHEME) else ""
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--executor {executor!r}: give local or dask://HOST:PORT (the scheduler's address)")
    return f"tcp://{rest}"


def run_task(job: ModelJob, entry: Entry) -> Outcome:
    """On a Dask worker: the model in a process of its own, killed at its timeout; the outcome names the worker.

    A daemonic worker (Dask's default) may not have ``multiprocessing`` children: the model starts its own
    Python (:func:`isolate.run_subprocess`). A worker started with ``distributed.worker.daemon: False`` forks
    it from a preloaded server instead (:func:`isolate.run_forked`), saving the interpreter start per model.
    """
    problem = worker_problem(job)
    if problem:
        outcome = Outcome(job.name, job.spec, Status.FAILED, 0.0, problem)
    elif multiprocessing.current_process().daemon:
        outcome = run_subprocess(job)
    else:
        outcome = run_forked(job, entry)
    try:
        from distributed import get_worker

        where: str | None = get_worker().address
    except (ImportError, ValueError):  # not on a worker (called directly)
        where = None
    return dataclasses.replace(outcome, worker=where)


def worker_problem(job: ModelJob) -> str | None:
    """Why this machine cannot run ``job`` as the client planned it (another file system), or None."""
    if not os.path.isdir(job.cwd):
        return f"this worker has no directory {job.cwd}: it needs the model files at the same paths"
    if job.source_sha256 is not None and file_sha256(os.path.join(job.cwd, job.spec)) != job.source_sha256:
        return f"this worker sees a different {job.spec} than the client: share the files"
    return None


def connect(executor: str) -> Any:
    """A ``distributed.Client`` of the scheduler ``executor`` names (before any work: a bad address writes nothing)."""
    address = scheduler_address(executor)
    try:
        from distributed import Client
    except ImportError:
        raise UsageError(
            "--executor dask:// needs dask.distributed: pip install 'convaudit[dask]' (or 'dask[distributed]')"
        ) from None
    try:
        return Client(address, timeout=f"{CONNECT_SECONDS}s", set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise UsageError(f"cannot reach the Dask scheduler at {address} ({_first_line(exc)}); is it running?") from None


def run_dask(client: Any, jobs: Sequence[ModelJob], done: Callable[[Outcome], None], entry: Entry) -> None:
    """Submit every job through ``client``; ``done(outcome)`` as each completes (the caller closes the client)."""
    from distributed import as_completed

    batch = uuid.uuid4().hex[:8]
    futures: dict[Any, ModelJob] = {}
    try:
        for job in jobs:
            key = f"convaudit-{job.name}-{batch}"
            future = client.submit(run_task, job, entry, key=key, pure=False, retries=0)
            futures[future] = job
        with client.as_current():
            for future in as_completed(list(futures)):
                job = futures.pop(future)
                try:
                    outcome = future.result()
                except Exception as exc:  # the task itself failed: a worker died, a pickling error
                    error = f"on the Dask cluster: {type(exc).__name__}: {_first_line(exc)}"
                    outcome = Outcome(job.name, job.spec, Status.FAILED, 0.0, error)
                done(outcome)
    finally:
        if futures:  # stopped early; running tasks end at their own timeout
            client.cancel(list(futures))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
