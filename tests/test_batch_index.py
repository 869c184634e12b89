"""index.json: read back only when convaudit wrote it; up to date only with the same key and files present."""

from __future__ import annotations

import json
from pathlib import Path

from convaudit.batch.index import IndexWriter, figures, read_index, row_of, up_to_date
from convaudit.batch.plan import ModelJob, Outcome, Status

JOB = ModelJob("torchvision:x", "torchvision-x-12345678", "k1", ("report",), ".html", 5.0, "/")
REPORT = json.dumps({"model_class": "Net", "totals": {"params": 10, "macs": 1000, "candidates": 2, "macs_after": 250}})


def test_figures_come_from_the_json_report() -> None:
    assert figures(REPORT) == {
        "model_class": "Net",
        "params": 10,
        "macs": 1000,
        "candidates": 2,
        "macs_saved": 750,
        "macs_saved_share": 0.75,
    }


def test_written_index_reads_back_and_decides_up_to_date(tmp_path: Path) -> None:
    files = {"json": f"{JOB.name}.json", "report": f"{JOB.name}.html"}
    ok = Outcome(JOB.name, JOB.spec, Status.OK, 1.234, report_json=REPORT, report_text="")
    writer = IndexWriter(tmp_path, "html", {JOB.name: row_of(JOB, None)})
    writer.update(row_of(JOB, ok, files))
    writer.finish()
    rows = read_index(tmp_path)
    assert rows is not None and rows[JOB.name]["seconds"] == 1.23 and rows[JOB.name]["macs_saved"] == 750
    assert not up_to_date(rows[JOB.name], JOB, tmp_path)  # its report files are missing
    for name in files.values():
        (tmp_path / name).write_text("{}")
    assert up_to_date(rows[JOB.name], JOB, tmp_path)
    assert not up_to_date(rows[JOB.name], ModelJob(*(JOB.__dict__ | {"key": "k2"}).values()), tmp_path)
    failed = row_of(JOB, Outcome(JOB.name, JOB.spec, Status.FAILED, 1.0, "boom"))
    assert not up_to_date(failed, JOB, tmp_path) and failed["error"] == "boom" and "macs" not in failed
    assert (tmp_path / "index.html").read_text().startswith("<!doctype html>")


def test_an_index_json_of_someone_else_is_not_read(tmp_path: Path) -> None:
    assert read_index(tmp_path) == {}
    (tmp_path / "index.json").write_text(json.dumps({"models": [{"name": JOB.name, "key": "k1", "status": "ok"}]}))
    assert read_index(tmp_path) is None
    (tmp_path / "index.json").write_text("not json")
    assert read_index(tmp_path) is None
