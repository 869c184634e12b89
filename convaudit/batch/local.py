"""Local workers: at most ``jobs`` models at once, each in a process of its own (:func:`isolate.run_forked`).

With N > 1 each model gets cores/N torch threads. A thread per slot waits on its child (only a supervisor:
the model runs in the child, so a hang or a crash stays there and the timeout kills it). Outcomes reach the
caller's ``done`` in the calling thread, which alone writes files. If the caller stops (SIGINT, SIGTERM, an
error), models not started are dropped and running children are killed.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from convaudit.batch.isolate import Entry, kill_all, run_forked
from convaudit.batch.plan import ModelJob, Outcome, Status

__all__ = ["run_local"]


def run_local(jobs: Sequence[ModelJob], done: Callable[[Outcome], None], *, workers: int, entry: Entry) -> None:
    """Run every job on ``workers`` local processes at once; ``done(outcome)`` as each finishes."""
    stop = threading.Event()
    threads = max(1, (os.cpu_count() or 1) // max(1, workers)) if workers > 1 else None

    def one(job: ModelJob) -> Outcome:
        if stop.is_set():
            return Outcome(job.name, job.spec, Status.FAILED, 0.0, "not run: the batch was stopped")
        return run_forked(job, entry, threads)

    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="convaudit-batch")
    pending: set[Future[Outcome]] = set()
    try:
        pending = {pool.submit(one, job) for job in jobs}
        while pending:
            finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)  # wakes for signals
            for future in finished:
                done(future.result())
    finally:
        if pending:  # stopped early: drop what has not started, kill what runs (until every slot is free)
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
            while pending:
                kill_all()
                _, pending = wait(pending, timeout=0.2)
        pool.shutdown(wait=True)
