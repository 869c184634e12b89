"""One model in a process of its own: the error line, the timeout (counted from the fork)."""

from __future__ import annotations

from pathlib import Path

import pytest

from convaudit.batch.isolate import error_line, run_forked
from convaudit.batch.plan import BatchRequest, plan_jobs
from convaudit.cli.app import main
from tests.batch_models import good, write_batch


@pytest.mark.parametrize(
    ("log", "code", "line"),
    [
        ("model says hi\nconvaudit: error: a.py:3: ValueError: no\n", 1, "a.py:3: ValueError: no"),
        (
            "convaudit: internal error: KeyError: 'x' (rerun with --debug and report it)\n",
            1,
            "internal error: KeyError",
        ),
        ("", -11, "the process died of signal SIGSEGV"),
        ("Segmentation fault\n\n", 139, "exit code 139: Segmentation fault"),
        ("", 3, "exit code 3: no output"),
    ],
)
def test_error_line(log: str, code: int, line: str) -> None:
    assert error_line(log, code).startswith(line)


def test_a_forked_child_reports_ok_failed_and_timed_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_batch(tmp_path)
    good(tmp_path, "good_a.py")
    request = BatchRequest(
        specs=("good_a.py", "broken.py", "hanging.py"),
        output="o",
        fmt="markdown",
        forwarded=("--no-cross-check",),
        timeout_seconds=3,
    )
    outcomes = {}
    for job in plan_jobs(request):
        outcomes[job.spec] = run_forked(job, main)  # run_subprocess: tests/test_batch_dask.py
    ok = outcomes["good_a.py"]
    assert ok.status == "ok" and ok.report_text and ok.report_text.rstrip().endswith("-->")  # Markdown's mark
    assert '"schema_version"' in (ok.report_json or "")
    assert outcomes["broken.py"].status == "failed" and "broken on purpose" in (outcomes["broken.py"].error or "")
    hang = outcomes["hanging.py"]
    assert hang.status == "timed out" and 3 <= hang.seconds < 30
