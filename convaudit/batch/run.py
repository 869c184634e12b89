"""``convaudit report A B ... -o DIR``: plan, skip what is up to date, run the rest, write reports and the index.

The output directory is new, empty, or one a convaudit batch wrote (it has our index.json); any file written
there replaces only a file of ours (outputs.files' ownership check). Each model's JSON report is written, and
its report in the asked format rendered from that JSON, then index.json and index.html. Exit code 0 when
every model is ok, 1 when any failed or timed out: the summary line says which.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from convaudit.batch.index import IndexWriter, read_index, row_of, up_to_date
from convaudit.batch.isolate import Entry
from convaudit.batch.plan import BatchRequest, ModelJob, Outcome, Status, plan_jobs
from convaudit.errors import EXIT_FAILURE, EXIT_OK, ConvauditError, UsageError
from convaudit.formats.index import summary_text
from convaudit.outputs.files import output_errors, output_path, refuse_inputs, show, write_atomic

__all__ = ["prepare_directory", "run_batch", "write_reports"]


def run_batch(request: BatchRequest, entry: Entry, *, stream: TextIO | None = None) -> int:
    """Run the batch; progress on ``stream`` (stderr) unless quiet; returns the exit code."""
    out = stream if stream is not None else sys.stderr
    client = None
    if request.executor != "local":
        from convaudit.batch.dask import connect

        client = connect(request.executor)
    try:
        return _run(request, entry, out, client)
    finally:
        if client is not None:
            client.close()


def _run(request: BatchRequest, entry: Entry, out: TextIO, client: Any) -> int:
    jobs = plan_jobs(request)
    files = [spec for spec in request.specs if os.path.lexists(spec)]
    directory = prepare_directory(request.output, [*files, *request.option_files])
    old = read_index(directory) or {}
    rows: dict[str, dict[str, Any]] = {}
    todo: list[ModelJob] = []
    for job in jobs:
        previous = old.get(job.name)
        if not request.force and previous is not None and up_to_date(previous, job, directory):
            rows[job.name] = dict(previous) | {"model": job.spec, "up_to_date": True}
        else:
            rows[job.name] = row_of(job, None)
            todo.append(job)
    writer = IndexWriter(directory, request.fmt, rows)
    writer.save_json()  # the directory is ours from now on, and a stopped batch says what was pending
    say = _Say(out, request.quiet, len(todo))
    where = request.executor if request.executor != "local" else f"{request.jobs} local process(es)"
    say.line(f"{len(jobs)} models: {len(jobs) - len(todo)} up to date, {len(todo)} to run on {where}")
    if request.settings.get("measure") and (request.jobs > 1 or request.executor != "local"):
        say.line("note: models measured at the same time disturb each other's timings; use -j 1 with --measure")
    by_name = {job.name: job for job in todo}

    def done(outcome: Outcome) -> None:
        job = by_name[outcome.name]
        written: dict[str, str] = {}
        if outcome.status == Status.OK:
            try:
                written = write_reports(directory, job, outcome, request.fmt)
            except ConvauditError as exc:  # e.g. a file of someone else's where the report goes
                outcome = dataclasses.replace(outcome, status=Status.FAILED, error=str(exc), report_json=None)
        writer.update(row_of(job, outcome, written))
        say.finished(outcome)

    if todo:
        _dispatch(request, todo, done, entry, client)
    index = writer.finish()
    return _summary(list(rows.values()), index, out, request.quiet)


def _dispatch(request: BatchRequest, todo: list[ModelJob], done: Any, entry: Entry, client: Any) -> None:
    if client is None:
        from convaudit.batch.local import run_local

        run_local(todo, done, workers=request.jobs, entry=entry)
    else:
        from convaudit.batch.dask import run_dask

        run_dask(client, todo, done, entry)


def prepare_directory(output: str, inputs: list[str]) -> Path:
    """The output directory, created if missing; a UsageError if it is a file, holds an input, or is not ours."""
    shown = show(output)
    target = output_path(output)
    refuse_inputs(target, inputs, shown)
    if os.path.lexists(target) and not os.path.isdir(target):
        raise UsageError(f"{shown} is a file; -o for several models names a directory")
    if os.path.isdir(target):
        old = read_index(target)
        if old is None:
            raise UsageError(f"{shown}/index.json was not written by convaudit; left it alone: choose another -o")
        if not old and any(os.scandir(target)):
            raise UsageError(
                f"{shown} holds files but no index.json of a convaudit batch; left it alone: "
                "choose a new or empty directory for -o"
            )
        return target
    with output_errors(shown):
        os.makedirs(target)
    return target


def write_reports(directory: Path, job: ModelJob, outcome: Outcome, fmt: str) -> dict[str, str]:
    """Write the model's JSON report and its report in ``fmt``; their file names (relative to ``directory``)."""
    json_name = f"{job.name}.json"
    write_atomic(directory / json_name, outcome.report_json or "", force=True)
    if job.suffix == ".json":
        return {"json": json_name, "report": json_name}
    name = f"{job.name}{job.suffix}"
    write_atomic(directory / name, outcome.report_text or "", force=True)
    return {"json": json_name, "report": name}


class _Say:
    """Progress: a line per finished model on the stream (plain lines: a log stays readable), unless quiet."""

    def __init__(self, stream: TextIO, quiet: bool, total: int) -> None:
        self.stream, self.quiet, self.total, self.count = stream, quiet, total, 0

    def line(self, text: str) -> None:
        if not self.quiet:
            print(f"convaudit: {text}", file=self.stream, flush=True)

    def finished(self, outcome: Outcome) -> None:
        self.count += 1
        error = f": {outcome.error}" if outcome.error and outcome.status != Status.TIMED_OUT else ""
        self.line(
            f"[{self.count}/{self.total}] {show(outcome.spec)}: {outcome.status} in {outcome.seconds:.1f} s{error}"
        )


def _summary(rows: list[dict[str, Any]], index: Path, stream: TextIO, quiet: bool) -> int:
    failed = [row for row in rows if row.get("status") != Status.OK]
    code = EXIT_FAILURE if failed else EXIT_OK
    line = f"convaudit: {summary_text(rows)}; index {show(str(index))}; exit {code}"
    if not quiet:
        print(line, file=stream, flush=True)
    elif failed:
        print(line, file=sys.stderr, flush=True)
    return code
