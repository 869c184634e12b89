"""Output files: atomic writes, and nothing overwritten without force."""

from pathlib import Path

import pytest

from convaudit.errors import OutputExistsError, UsageError
from convaudit.output import refuse_existing, write_atomic


def test_write_and_refuse(tmp_path: Path) -> None:
    target = tmp_path / "r.txt"
    write_atomic(target, "one")
    with pytest.raises(OutputExistsError, match="already exists; pass --force"):
        write_atomic(target, "two")
    assert target.read_text() == "one"
    write_atomic(target, "three", force=True)
    assert target.read_text() == "three"
    assert [p.name for p in tmp_path.iterdir()] == ["r.txt"]


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    import os

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(tmp_path / "r.txt", "x")
    assert list(tmp_path.iterdir()) == []


def test_bad_targets(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such directory"):
        write_atomic(tmp_path / "missing" / "r.txt", "x")
    (tmp_path / "d").mkdir()
    with pytest.raises(UsageError, match="is a directory"):
        write_atomic(tmp_path / "d", "x", force=True)
    assert refuse_existing(tmp_path / "new", force=False) == tmp_path / "new"


def test_files_get_the_usual_permissions(tmp_path: Path) -> None:
    import os
    import stat

    from convaudit.output import default_mode

    target = write_atomic(tmp_path / "r.html", "x")
    assert stat.S_IMODE(os.stat(target).st_mode) == default_mode()  # not mkstemp's 0600
