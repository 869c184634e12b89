"""Output files: atomic writes, and nothing overwritten without force."""

from pathlib import Path

import pytest

from convaudit.errors import OutputExistsError, UsageError
from convaudit.formats.signature import text_signature
from convaudit.outputs.files import refuse_existing, write_atomic


def ours(body: str) -> str:
    """A text report body, signed as convaudit signs its text reports."""
    return f"{body}\n\n{text_signature()}\n"


def test_write_and_refuse(tmp_path: Path) -> None:
    target = tmp_path / "r.txt"
    write_atomic(target, ours("one"))
    with pytest.raises(OutputExistsError, match="already exists; pass --force"):
        write_atomic(target, ours("two"))
    assert target.read_text() == ours("one")
    write_atomic(target, ours("three"), force=True)
    assert target.read_text() == ours("three")
    assert [p.name for p in tmp_path.iterdir()] == ["r.txt"]


def test_force_replaces_only_our_own_file(tmp_path: Path) -> None:
    target = tmp_path / "r.txt"
    target.write_text("the user's notes\n")
    with pytest.raises(UsageError, match=r"r.txt was not written by convaudit .*left it alone"):
        write_atomic(target, ours("x"), force=True)
    assert target.read_text() == "the user's notes\n"
    assert [p.name for p in tmp_path.iterdir()] == ["r.txt"]


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    import errno
    import os

    def boom(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "link", boom)
    with pytest.raises(UsageError, match=r"cannot write .*r.txt: No space left on device"):
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

    from convaudit.outputs.files import default_mode

    target = write_atomic(tmp_path / "r.html", "x")
    assert stat.S_IMODE(os.stat(target).st_mode) == default_mode()  # not mkstemp's 0600


# ---------------------------------------------------------------- what --force may replace


@pytest.mark.parametrize("fmt", ["html", "json", "text", "markdown"])
def test_each_builtin_format_is_recognised_as_ours(small, fmt: str) -> None:
    from convaudit.formats import render
    from convaudit.formats.signature import is_convaudit_report

    assert is_convaudit_report(render(small, fmt).encode())


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\xff binary",
        b"<!DOCTYPE html><html><head><title>mine</title></head></html>",
        b"<html>" + b'<meta name="generator" content="convaudit">',
        b'{"schema_version": "1.0"}',
        b'[{"schema_version": "1.0"}]',
        b"{not json",
        b"my notes\n\xe2\x80\x94 convaudit 0.1.0\nmore of my notes\n",
        b"\xe2\x80\x94 convaudit\n",
        b"<!-- generator: somebody 1.0 -->\n",
    ],
)
def test_other_files_are_not_recognised(data: bytes) -> None:
    from convaudit.formats.signature import is_convaudit_report

    assert not is_convaudit_report(data)


def _artifact(root: Path, doc: dict | None = None) -> Path:
    import json

    root.mkdir()
    for name in ("model.py", "state_dict.pt", "conversion.html"):
        (root / name).write_text("x")
    default = {"schema_version": "1.0", "model": "m.py", "settings": {}, "layers": [], "generator": "convaudit"}
    (root / "conversion.json").write_text(json.dumps(default if doc is None else doc))
    return root


def test_artifact_recognition(tmp_path: Path) -> None:
    from convaudit.conversion.artifact.writer import ARTIFACT_FILES
    from convaudit.outputs.files import artifact_problem

    (tmp_path / "empty").mkdir()
    assert artifact_problem(tmp_path / "empty", ARTIFACT_FILES) is None  # nothing there to lose
    assert artifact_problem(_artifact(tmp_path / "ours"), ARTIFACT_FILES) is None
    old = _artifact(tmp_path / "v01", {"schema_version": "1.0", "model": "m.py", "settings": {}, "layers": []})
    assert artifact_problem(old, ARTIFACT_FILES) is None  # convaudit 0.1 did not write "generator"
    (old / "state_dict.pt").unlink()
    assert "not convaudit's" in str(artifact_problem(old, ARTIFACT_FILES))
    other = _artifact(tmp_path / "other", {"schema_version": "1.0", "generator": "someone"})
    assert "generator 'someone'" in str(artifact_problem(other, ARTIFACT_FILES))
    extra = _artifact(tmp_path / "extra")
    (extra / "notes.txt").write_text("mine")
    assert "'notes.txt'" in str(artifact_problem(extra, ARTIFACT_FILES))
    linked = _artifact(tmp_path / "linked")
    (linked / "model.py").unlink()
    (linked / "model.py").symlink_to(tmp_path / "extra" / "notes.txt")
    assert "'model.py'" in str(artifact_problem(linked, ARTIFACT_FILES))  # not a file convaudit wrote
    cache = _artifact(tmp_path / "cache")
    (cache / "__pycache__").mkdir()
    (cache / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"\0")
    assert artifact_problem(cache, ARTIFACT_FILES) is None
    (cache / "__pycache__" / "mine.txt").write_text("mine")
    assert "'__pycache__'" in str(artifact_problem(cache, ARTIFACT_FILES))


def test_an_input_in_any_form_is_refused(tmp_path: Path) -> None:
    import os

    from convaudit.outputs.files import check_output

    weights = tmp_path / "w" / "state_dict.pt"
    weights.parent.mkdir()
    weights.write_bytes(b"weights")
    os.link(weights, tmp_path / "hard.pt")
    for out, says in [
        (weights, "is"),
        (tmp_path / "hard.pt", "is"),
        (tmp_path / "w", "contains"),
        (tmp_path, "contains"),
    ]:
        with pytest.raises(UsageError, match=f"-o {out} {says} the input {weights}"):
            check_output(out, inputs=[weights], force=True, directory=out.is_dir())
    assert check_output(tmp_path / "w" / "out", inputs=[weights, "torchvision:resnet18"], directory=True).name == "out"
    assert weights.read_bytes() == b"weights"


def test_force_replaces_a_link_never_what_it_points_to(tmp_path: Path) -> None:
    precious = tmp_path / "precious.txt"
    precious.write_text(ours("looks like ours, but it is the target of a link"))
    link = tmp_path / "r.txt"
    link.symlink_to(precious)
    with pytest.raises(OutputExistsError, match="a symlink: convaudit does not follow it"):
        write_atomic(link, ours("new"))
    write_atomic(link, ours("new"), force=True)
    assert not link.is_symlink() and link.read_text() == ours("new")
    assert precious.read_text() == ours("looks like ours, but it is the target of a link")


# ---------------------------------------------------------------- claims: exactly one writer wins


def test_a_file_that_appears_meanwhile_is_kept(tmp_path: Path, monkeypatch) -> None:
    import convaudit.outputs.files as output

    target = tmp_path / "r.txt"
    make = output._make_temp_file

    def racing(t: Path) -> Path:
        tmp = make(t)
        target.write_text(ours("the other writer's"))  # another run claims the name first
        return tmp

    monkeypatch.setattr(output, "_make_temp_file", racing)
    with pytest.raises(OutputExistsError, match="appeared while convaudit was writing it"):
        write_atomic(target, ours("mine"))
    assert target.read_text() == ours("the other writer's")
    assert [p.name for p in tmp_path.iterdir()] == ["r.txt"]


@pytest.mark.parametrize("errno_name", ["EPERM", "EXDEV"])
def test_without_hard_links_the_claim_is_still_exclusive(tmp_path: Path, monkeypatch, errno_name: str) -> None:
    import errno
    import os

    import convaudit.outputs.files as output

    def no_links(src, dst):
        raise OSError(getattr(errno, errno_name), "hard links not supported")

    monkeypatch.setattr(os, "link", no_links)
    write_atomic(tmp_path / "a.txt", ours("a"))
    assert (tmp_path / "a.txt").read_text() == ours("a")
    with pytest.raises(OutputExistsError, match="appeared while"):
        output._claim_file(output._make_temp_file(tmp_path / "a.txt"), tmp_path / "a.txt", "a.txt", False)
    output.remove_temps()
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"] and (tmp_path / "a.txt").read_text() == ours("a")


def _finished(target: Path) -> Path:
    from convaudit.outputs.files import make_temp_dir

    tmp = make_temp_dir(target)
    (tmp / "model.py").write_text("new")
    return tmp


def test_a_directory_that_appears_meanwhile_is_kept(tmp_path: Path, monkeypatch) -> None:
    import os

    from convaudit.outputs.files import claim_directory, discard

    target = tmp_path / "out"
    tmp = _finished(target)
    target.mkdir()  # another run's claim, still empty
    with pytest.raises(OutputExistsError, match="appeared while"):
        claim_directory(tmp, target)
    discard(tmp)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and list(target.iterdir()) == []
    target.rmdir()

    mkdir = os.mkdir

    def filled_meanwhile(path, mode=0o777):  # we claim the name, then a --force run fills it before our rename
        mkdir(path, mode)
        (Path(path) / "theirs.txt").write_text("theirs")

    tmp = _finished(target)
    monkeypatch.setattr(os, "mkdir", filled_meanwhile)
    with pytest.raises(OutputExistsError, match="appeared while"):
        claim_directory(tmp, target)
    discard(tmp)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and (target / "theirs.txt").read_text() == "theirs"


def test_force_swaps_our_artifact_and_refuses_anything_else(tmp_path: Path) -> None:
    from convaudit.conversion.artifact.writer import ARTIFACT_FILES
    from convaudit.outputs.files import claim_directory, discard

    target = _artifact(tmp_path / "out")
    claim_directory(_finished(target), target, force=True, files=ARTIFACT_FILES)
    assert sorted(p.name for p in target.iterdir()) == ["model.py"] and (target / "model.py").read_text() == "new"
    (target / "notes.txt").write_text("mine")
    tmp = _finished(target)
    with pytest.raises(UsageError, match="not written by convaudit"):
        claim_directory(tmp, target, force=True, files=ARTIFACT_FILES)
    discard(tmp)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and (target / "notes.txt").read_text() == "mine"


def test_an_os_error_while_claiming_is_one_line(tmp_path: Path, monkeypatch) -> None:
    import errno
    import os

    from convaudit.outputs.files import claim_directory, discard

    def read_only(path, mode=0o777):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    tmp = _finished(tmp_path / "out")
    monkeypatch.setattr(os, "mkdir", read_only)
    with pytest.raises(UsageError, match=r"cannot write .*out: Read-only file system"):
        claim_directory(tmp, tmp_path / "out")
    discard(tmp)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- signals


def test_sigterm_becomes_an_exception_and_temporaries_go(tmp_path: Path) -> None:
    import os
    import signal
    import time

    from convaudit.outputs.files import Terminated, make_temp_dir, signals_as_exceptions

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated), signals_as_exceptions():
        make_temp_dir(tmp_path / "out")
        assert len(list(tmp_path.iterdir())) == 1
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # interrupted by the handler
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_claim_is_not_cut_in_half_by_a_signal(tmp_path: Path) -> None:
    import os
    import signal

    import convaudit.outputs.files as output

    order: list[str] = []
    with pytest.raises(output.Terminated), output.signals_as_exceptions():
        with output.held():
            os.kill(os.getpid(), signal.SIGTERM)
            (tmp_path / "done").write_text("the held block finishes")
            order.append("held block done")
        order.append("not reached: the signal is delivered on leaving the block")
    assert order == ["held block done"] and (tmp_path / "done").exists()


def test_messages_stay_one_line_whatever_the_path(tmp_path: Path) -> None:
    from convaudit.outputs.files import check_output

    weird = tmp_path / "model\nconvaudit: ok.py"
    weird.write_text("x")
    with pytest.raises(UsageError) as info:
        check_output(weird, inputs=[weird], force=True)
    assert "\n" not in str(info.value) and "is the input" in str(info.value)
    assert weird.read_text() == "x"
