"""Local workers: at most N models at once; a stopped batch kills the models still running."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from convaudit.batch.local import run_local
from convaudit.batch.plan import BatchRequest, Outcome, plan_jobs
from convaudit.cli.app import main
from tests.batch_models import good, write_batch
from tests.test_batch_run import alive


def jobs_for(tmp_path: Path, specs: tuple[str, ...], timeout: float = 60.0) -> list:
    request = BatchRequest(
        specs=specs, output="out", fmt="json", forwarded=("--no-cross-check",), timeout_seconds=timeout
    )
    return plan_jobs(request)


def test_at_most_n_models_run_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for i in range(3):
        good(tmp_path, f"m{i}.py")
    outcomes: list[Outcome] = []
    start = time.monotonic()
    run_local(jobs_for(tmp_path, ("m0.py", "m1.py", "m2.py")), outcomes.append, workers=2, entry=main)
    assert sorted(o.spec for o in outcomes) == ["m0.py", "m1.py", "m2.py"]
    assert all(o.status == "ok" and o.report_json for o in outcomes)
    assert time.monotonic() - start < 120


def test_a_stopped_batch_kills_the_running_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_batch(tmp_path)

    pid_file = tmp_path / "hanging.pid"

    def stop(outcome: Outcome) -> None:
        # as Ctrl-C in the calling thread, once the broken model is reported and the hanging one has started
        # its own process (a busy machine can take seconds to get that far: wait for it, not a fixed sleep)
        deadline = time.monotonic() + 60
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        raise KeyboardInterrupt

    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_local(jobs_for(tmp_path, ("hanging.py", "broken.py"), timeout=300), stop, workers=2, entry=main)
    assert time.monotonic() - start < 120  # not the hanging model's 300 s
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(grandchild)
