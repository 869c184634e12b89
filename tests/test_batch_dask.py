"""``--executor dask://HOST:PORT`` on a real local cluster (a scheduler and two worker processes on 127.0.0.1)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from convaudit.batch import dask as batch_dask
from convaudit.batch.dask import scheduler_address
from convaudit.cli.app import main
from convaudit.errors import UsageError
from tests.batch_models import write_batch

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.dask


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """The scheduler's address as ``dask://HOST:PORT``."""
    with distributed.LocalCluster(
        host="127.0.0.1", n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as local:
        yield local.scheduler_address.replace("tcp://", "dask://")


def cluster_info(address: str) -> dict:
    with distributed.Client(address.replace("dask://", "tcp://"), set_as_default=False) as client:
        return client.scheduler_info()


def test_broken_and_hanging_models_on_dask(
    cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    batch = write_batch(tmp_path)
    specs = [batch[k].name for k in ("good_a", "broken", "hanging", "good_b")]
    argv = ["report", *specs, "--executor", cluster, "--timeout", "5", "-o", "out", "--no-cross-check"]
    assert main(argv) == 1
    doc = json.loads((tmp_path / "out" / "index.json").read_text())
    rows = {row["model"]: row for row in doc["models"]}
    assert [rows[s]["status"] for s in specs] == ["ok", "failed", "timed out", "ok"]
    assert "broken on purpose at import" in rows["broken.py"]["error"]
    workers = {rows[s]["worker"] for s in specs if "worker" in rows[s]}
    assert workers and all(w.startswith("tcp://127.0.0.1:") for w in workers)
    for spec in ("good_a.py", "good_b.py"):  # the client wrote the reports the workers sent back
        assert (tmp_path / "out" / rows[spec]["files"]["report"]).is_file()
        assert rows[spec]["candidates"] == 1
    assert "exit 1" in capsys.readouterr().err
    assert len(cluster_info(cluster)["workers"]) == 2  # the hung model was killed, its worker lives on


def test_a_worker_that_sees_another_file_fails_that_model(
    cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from convaudit.batch.plan import BatchRequest, plan_jobs

    monkeypatch.chdir(tmp_path)
    batch = write_batch(tmp_path)
    (job,) = plan_jobs(BatchRequest(specs=(batch["good_a"].name,), output="out", fmt="json"))
    batch["good_a"].write_text("# changed after planning\n")
    outcomes: list = []
    client = batch_dask.connect(cluster)
    try:
        batch_dask.run_dask(client, [job], outcomes.append, main)
    finally:
        client.close()
    assert outcomes[0].status == "failed" and "different good_a.py" in outcomes[0].error


@pytest.mark.parametrize("bad", ["dask://", "dask://host", "dask://host:port", "tcp://host:1", "dask:/h:1"])
def test_scheduler_address_is_checked(bad: str) -> None:
    with pytest.raises(UsageError, match="dask://HOST:PORT"):
        scheduler_address(bad)
    assert scheduler_address("dask://10.0.0.5:8786") == "tcp://10.0.0.5:8786"


def test_an_unreachable_scheduler_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    write_batch(tmp_path)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(batch_dask, "CONNECT_SECONDS", 2)
    assert main(["report", "good_a.py", "good_b.py", "--executor", f"dask://127.0.0.1:{port}", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert not (tmp_path / "convaudit-reports").exists()  # nothing written
    assert len(err) == 1 and f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}" in err[0]


def test_a_worker_that_may_fork_forks_from_its_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from convaudit.batch.plan import BatchRequest, plan_jobs

    monkeypatch.chdir(tmp_path)
    write_batch(tmp_path)
    (job,) = plan_jobs(BatchRequest(specs=("good_b.py",), output="o", fmt="json", forwarded=("--no-cross-check",)))
    outcome = batch_dask.run_task(job, main)  # this process is not a daemon: run_forked, as with daemon: False
    assert outcome.status == "ok" and outcome.worker is None and '"candidates": 1' in (outcome.report_json or "")
