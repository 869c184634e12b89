"""``convaudit report A B ... -j 2 -o DIR``: a broken and a hanging model do not stop the others; re-runs skip."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from convaudit.batch.plan import report_name
from convaudit.cli.app import main
from tests.batch_models import good, write_batch

FAST = ["--no-cross-check", "-q"]


def index(directory: Path) -> dict[str, dict]:
    doc = json.loads((directory / "index.json").read_text(encoding="utf-8"))
    assert (doc["generator"], doc["document"]) == ("convaudit", "batch index")
    return {row["model"]: row for row in doc["models"]}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie waiting for its parent counts as dead
        return f.read().split(")")[-1].split()[0] != "Z"


@pytest.fixture
def batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    monkeypatch.chdir(tmp_path)
    return write_batch(tmp_path)


def test_broken_and_hanging_models_are_reported_and_the_rest_finish(
    batch: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    specs = [batch[k].name for k in ("good_a", "broken", "hanging", "good_b")]
    start = time.monotonic()
    code = main(["report", *specs, "-j", "2", "--timeout", "15", "-o", "out", "--no-cross-check"])
    elapsed = time.monotonic() - start
    assert code == 1
    rows = index(tmp_path / "out")
    assert [rows[s]["status"] for s in specs] == ["ok", "failed", "timed out", "ok"]
    assert "broken on purpose at import" in rows["broken.py"]["error"]
    assert rows["hanging.py"]["error"] == "timed out after 15 s"
    # the hung model was killed, with the process it started (its whole session)
    grandchild = int((tmp_path / "hanging.pid").read_text())
    deadline = time.monotonic() + 5
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(grandchild)
    # the good ones: both reports (HTML and JSON), figures from the JSON (one 3×3 conv: 3·c·9 MACs per pixel)
    for spec, width in (("good_a.py", 8), ("good_b.py", 16)):
        row = rows[spec]
        assert (row["macs"], row["params"], row["candidates"]) == (8 * 8 * width * 3 * 9, width * 27 + width, 1)
        report = tmp_path / "out" / row["files"]["report"]
        assert report.name == f"{report_name(spec)}.html" and report.read_text().lower().startswith("<!doctype html")
        assert json.loads((tmp_path / "out" / row["files"]["json"]).read_text())["totals"]["macs"] == row["macs"]
    assert rows["broken.py"]["files"] == {} and not list((tmp_path / "out").glob("broken*"))
    err = capsys.readouterr().err
    assert "[4/4]" in err and "hanging.py: timed out" in err
    assert "4 models: 2 ok, 1 failed, 1 timed out" in err and err.rstrip().endswith("exit 1")
    assert elapsed < 120  # the hang cost its timeout, not the batch


def test_rerun_skips_up_to_date_and_reruns_a_changed_model(batch: dict[str, Path], tmp_path: Path) -> None:
    specs = ["good_a.py", "good_b.py"]
    assert main(["report", *specs, "-j", "2", "-o", "out", *FAST]) == 0
    first = index(tmp_path / "out")
    report_b = tmp_path / "out" / first["good_b.py"]["files"]["report"]
    mtime_b = report_b.stat().st_mtime_ns
    good(tmp_path, "good_a.py", width=4)  # changed content: a new key
    assert main(["report", *specs, "-j", "2", "-o", "out", *FAST]) == 0
    second = index(tmp_path / "out")
    assert (second["good_a.py"]["up_to_date"], second["good_b.py"]["up_to_date"]) == (False, True)
    assert second["good_a.py"]["macs"] == 8 * 8 * 4 * 27 != first["good_a.py"]["macs"]
    assert second["good_a.py"]["key"] != first["good_a.py"]["key"]
    assert second["good_b.py"]["key"] == first["good_b.py"]["key"]
    assert report_b.stat().st_mtime_ns == mtime_b  # not rewritten
    # an option that changes the report makes every model stale; --force re-runs even an up-to-date one
    assert main(["report", *specs, "-o", "out", "-j", "1", "--input-shape", "1,3,4,4", *FAST]) == 0
    third = index(tmp_path / "out")
    assert not any(row["up_to_date"] for row in third.values())
    assert third["good_b.py"]["macs"] == 4 * 4 * 16 * 27
    assert main(["report", *specs, "-o", "out", "-j", "1", "--input-shape", "1,3,4,4", *FAST]) == 0
    assert all(row["up_to_date"] for row in index(tmp_path / "out").values())
    assert main(["report", *specs, "-o", "out", "-j", "1", "--input-shape", "1,3,4,4", "--force", *FAST]) == 0
    assert not any(row["up_to_date"] for row in index(tmp_path / "out").values())


def test_only_files_convaudit_wrote_are_replaced(batch: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    assert main(["report", "good_a.py", "good_b.py", "-o", "foreign", *FAST]) == 2  # not a batch directory of ours
    assert sorted(os.listdir(tmp_path / "foreign")) == ["notes.txt"]
    assert main(["report", "good_a.py", "good_b.py", "-o", "out", *FAST]) == 0
    mine = tmp_path / "out" / f"{report_name('good_b.py')}.html"
    mine.write_text("someone else's page")  # where the next run would write good_b's report
    good(tmp_path, "good_b.py", width=4)
    assert main(["report", "good_a.py", "good_b.py", "-o", "out", "--force", *FAST]) == 1
    rows = index(tmp_path / "out")
    assert rows["good_a.py"]["status"] == "ok"
    assert rows["good_b.py"]["status"] == "failed" and "not written by convaudit" in rows["good_b.py"]["error"]
    assert mine.read_text() == "someone else's page"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["-j", "0"], "-j 0"),
        (["--timeout", "0"], "--timeout 0"),
        (["--executor", "ray://x"], "dask://HOST:PORT"),
        (["-o", "-"], "-o -"),
    ],
)
def test_bad_batch_options_are_usage_errors(
    batch: dict[str, Path], extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "good_a.py", "good_b.py", *extra, "-q"]) == 2
    assert message in capsys.readouterr().err


def test_a_single_model_with_j_is_a_batch_and_the_index_links_it(batch: dict[str, Path], tmp_path: Path) -> None:
    assert main(["report", "good_a.py", "-j", "1", "-o", "one", "--format", "markdown", *FAST]) == 0
    rows = index(tmp_path / "one")
    assert rows["good_a.py"]["files"]["report"].endswith(".md")
    page = (tmp_path / "one" / "index.html").read_text()
    assert f'href="{rows["good_a.py"]["files"]["report"]}"' in page


def test_a_hostile_file_name_is_escaped_in_the_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    hostile = '<img src=x onerror="alert(1)">.py'
    good(tmp_path, hostile)
    assert main(["report", hostile, "-j", "1", "-o", "out", *FAST]) == 0
    page = (tmp_path / "out" / "index.html").read_text()
    assert "<img" not in page and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;.py" in page
    (row,) = index(tmp_path / "out").values()
    assert re.fullmatch(r"img_src_x_onerror_alert_1_.py-[0-9a-f]{8}\.html", row["files"]["report"])
    assert (tmp_path / "out" / row["files"]["report"]).is_file()
