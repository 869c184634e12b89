"""Writing outputs without ever losing a file.

Before any work, :func:`check_output` refuses an ``-o`` that is an input or holds one, that exists (without
``force``), or that exists but was not written by convaudit: ``force`` replaces only a report in one of our
formats, an artifact directory recognised by its ``conversion.json``, an empty directory, or a symlink (the
link itself, never what it points to). The final name is then claimed exclusively (``os.link`` for files;
``mkdir`` and a rename onto that empty directory for directories), so of two writers at once exactly one
wins and the other gets :class:`OutputExistsError`. Temporary entries (``.NAME.XXXX``) are registered and
removed however a command ends, SIGINT and SIGTERM included (:func:`signals_as_exceptions`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from convaudit.errors import OutputExistsError, UsageError
from convaudit.outputs.temps import (
    Terminated,
    discard,
    held,
    register,
    remove_temps,
    signals_as_exceptions,
)

__all__ = [
    "Terminated",
    "artifact_problem",
    "check_output",
    "claim_directory",
    "default_mode",
    "discard",
    "make_temp_dir",
    "output_errors",
    "output_path",
    "refuse_existing",
    "remove_temps",
    "show",
    "signals_as_exceptions",
    "write_atomic",
]

PathLike = str | os.PathLike[str]
_MAX_READ = 256 * 2**20  # a larger file is not read whole to decide whether it is ours
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS, errno.EXDEV}


def default_mode(directory: bool = False) -> int:
    """The permissions a plain open()/mkdir() would give under the current umask (mkstemp uses 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


# ---------------------------------------------------------------- deciding, before any work


def show(path: PathLike) -> str:
    """A path for a one-line message: as given, or its repr when it holds a newline or another control character."""
    text = os.fspath(path)
    return text if text.isprintable() else repr(text)


def output_path(path: PathLike) -> Path:
    """``path`` with its directory resolved and its last component as given (a link there is not followed)."""
    text = os.fspath(path)
    if not text:
        raise UsageError("-o is empty; give a path")
    head, name = os.path.split(text.rstrip(os.sep) or text)
    full = Path(os.path.realpath(text)) if name in ("", ".", "..") else Path(os.path.realpath(head or ".")) / name
    if not full.name:
        raise UsageError(f"-o {text}: the root directory cannot be an output; choose a new path")
    return full


def refuse_inputs(target: Path, inputs: Iterable[PathLike], shown: str) -> None:
    """``-o`` may not be an input file, nor a directory holding one at any depth (nor a link to either)."""
    outs = {target, Path(os.path.realpath(target))}
    for item in inputs:
        if not os.path.lexists(item):
            continue  # not a path (torchvision:NAME)
        real = Path(os.path.realpath(item))
        for out in outs:
            if out == real or _same_file(out, real):
                raise UsageError(f"-o {shown} is the input {show(item)}; choose another output path")
            if out in real.parents:
                raise UsageError(
                    f"-o {shown} contains the input {show(item)}; choose an output that does not hold the inputs "
                    "(a new name beside them is fine)"
                )


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output(
    path: PathLike,
    *,
    inputs: Iterable[PathLike] = (),
    force: bool = False,
    directory: bool = False,
    files: Sequence[str] = (),
) -> Path:
    """The resolved output path, or UsageError/OutputExistsError saying why ``path`` may not be written.

    ``directory``: the output is an artifact directory whose own files are ``files``.
    """
    shown = show(path)
    target = output_path(path)
    refuse_inputs(target, inputs, shown)
    if os.path.lexists(target):
        mode = os.lstat(target).st_mode
        if directory and not stat.S_ISDIR(mode) and not stat.S_ISLNK(mode):
            raise UsageError(f"{shown} is a file; -o for convert names a directory")
        if not directory and stat.S_ISDIR(mode):
            raise UsageError(f"{shown} is a directory; give a file name for -o")
        if not force:
            link = " (a symlink: convaudit does not follow it)" if stat.S_ISLNK(mode) else ""
            raise OutputExistsError(f"{shown} already exists{link}; pass --force to replace it or choose another -o")
        with output_errors(shown):  # e.g. a directory we may not list
            problem = _replace_problem(target, directory, files)
        if problem:
            raise UsageError(_not_ours(shown, problem))
    _check_parent(target, shown, directory)
    return target


def refuse_existing(path: PathLike, force: bool) -> Path:
    """``path`` as a Path; raises OutputExistsError if it exists (a dangling link too) and ``force`` is not set."""
    target = Path(path)
    if os.path.lexists(target) and not force:
        raise OutputExistsError(f"{target} already exists; pass --force to replace it or choose another -o path")
    return target


def _not_ours(shown: str, problem: str) -> str:
    return f"{shown} was not written by convaudit ({problem}); left it alone: choose another -o or remove it yourself"


def _check_parent(target: Path, shown: str, directory: bool) -> None:
    """The directory the output goes into exists (for a directory output: will be created) and is writable."""
    parent = target.parent
    if not directory and not parent.is_dir():
        raise UsageError(f"{show(parent)}: no such directory for -o {shown}; create it first")
    while not os.path.lexists(parent) and parent != parent.parent:
        parent = parent.parent  # convert creates missing parents
    if not parent.is_dir():
        raise UsageError(f"{show(parent)} is not a directory, so -o {shown} cannot be created there")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write to {show(parent)} (permission denied) for -o {shown}; choose another -o")


def _replace_problem(target: Path, directory: bool, files: Sequence[str]) -> str | None:
    """None if ``force`` may replace ``target``; else what makes it someone else's."""
    mode = os.lstat(target).st_mode
    if stat.S_ISLNK(mode):
        return None  # only the link itself is replaced; what it points to is never touched
    if directory:
        return artifact_problem(target, files) if stat.S_ISDIR(mode) else "not a directory"
    if not stat.S_ISREG(mode):
        return "not a regular file"
    from convaudit.formats.signature import is_convaudit_report

    data = _read_regular(target)
    return None if data is not None and is_convaudit_report(data) else "not a report in a convaudit format"


def _read_regular(path: Path) -> bytes | None:
    """The whole file, or None when it is not a regular file or too large; never follows a link, never blocks."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_READ:
            return None
        return f.read(_MAX_READ + 1)


def artifact_problem(directory: Path, files: Sequence[str]) -> str | None:
    """None if ``directory`` is empty or a convaudit artifact holding only its own ``files``; else what is not ours."""
    names = sorted(os.listdir(directory))
    if not names:
        return None
    foreign = [n for n in names if not _own_entry(directory / n, n, files)]
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        return f"it holds {foreign[0]!r}{more}, which convaudit does not write"
    data = _read_regular(directory / "conversion.json") if "conversion.json" in names else None
    try:
        doc = json.loads(data) if data is not None else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or not isinstance(doc.get("schema_version"), str):
        return "it has no conversion.json of convaudit's"
    if "generator" in doc:
        return None if doc["generator"] == "convaudit" else f"its conversion.json names generator {doc['generator']!r}"
    if {"model.py", "state_dict.pt"} <= set(names) and {"model", "settings", "layers"} <= doc.keys():
        return None  # written by convaudit 0.1, before conversion.json named its generator
    return "its conversion.json is not convaudit's"


def _own_entry(path: Path, name: str, files: Sequence[str]) -> bool:
    """A regular file convaudit writes, or the bytecode cache Python leaves after importing model.py."""
    mode = os.lstat(path).st_mode
    if name in files:
        return stat.S_ISREG(mode)
    if name == "__pycache__" and stat.S_ISDIR(mode):
        return all(p.suffix == ".pyc" and stat.S_ISREG(os.lstat(p).st_mode) for p in path.iterdir())
    return False


# ---------------------------------------------------------------- writing and claiming


@contextlib.contextmanager
def output_errors(shown: PathLike) -> Iterator[None]:
    """An OSError while writing becomes one clear UsageError line (exit 2)."""
    try:
        yield
    except OSError as exc:
        why = exc.strerror or str(exc)
        where = f" ({show(str(exc.filename))})" if exc.filename else ""
        raise UsageError(
            f"cannot write {show(shown)}: {why}{where}; check that its directory is writable and has space, "
            "or choose another -o"
        ) from exc


def write_atomic(path: PathLike, text: str, force: bool = False, *, inputs: Iterable[PathLike] = ()) -> Path:
    """Write ``text`` to ``path`` via a temporary file in the same directory and an exclusive claim of the name."""
    target = check_output(path, inputs=inputs, force=force)
    shown = show(path)
    tmp: Path | None = None
    try:
        with output_errors(shown):
            tmp = _make_temp_file(target)
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(tmp, default_mode())
            _claim_file(tmp, target, shown, force)
    finally:
        if tmp is not None:
            discard(tmp)
    return target


def _claim_file(tmp: Path, target: Path, shown: str, force: bool) -> None:
    with held():
        if force and os.path.lexists(target):
            problem = _replace_problem(target, False, ())  # again, at the moment of replacing
            if problem:
                raise UsageError(_not_ours(shown, problem))
            os.replace(tmp, target)  # replaces a link itself, never its target
            return
        try:
            os.link(tmp, target)  # exclusive: fails if the name exists
        except FileExistsError:
            raise OutputExistsError(_lost(shown)) from None
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
            _claim_by_create(tmp, target, shown)


def _claim_by_create(tmp: Path, target: Path, shown: str) -> None:
    """Where hard links are not supported: claim the name by exclusive create, then move the content onto it."""
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError:
        raise OutputExistsError(_lost(shown)) from None
    os.close(fd)
    os.replace(tmp, target)


def _lost(shown: str) -> str:
    return f"{shown} appeared while convaudit was writing it (another run?); left it alone, nothing written"


def claim_directory(tmp: Path, path: PathLike, *, force: bool = False, files: Sequence[str] = ()) -> Path:
    """Move the finished directory ``tmp`` to ``path``: exclusively, or with ``force`` over our own artifact."""
    shown = show(path)
    target = output_path(path)
    with held(), output_errors(shown):
        if not os.path.lexists(target):
            _claim_fresh(tmp, target, shown)
            return target
        if not force:
            raise OutputExistsError(_lost(shown))
        problem = _replace_problem(target, True, files)
        if problem:
            raise UsageError(_not_ours(shown, problem))
        if os.path.islink(target):
            os.unlink(target)  # the link only
            _claim_fresh(tmp, target, shown)
        elif not os.listdir(target):
            _rename_onto_empty(tmp, target, shown)
        else:
            _swap(tmp, target, shown)
    return target


def _claim_fresh(tmp: Path, target: Path, shown: str) -> None:
    """mkdir is the exclusive claim; the rename onto that empty directory then makes the content appear at once."""
    try:
        os.mkdir(target, 0o700)
    except FileExistsError:
        raise OutputExistsError(_lost(shown)) from None
    try:
        _rename_onto_empty(tmp, target, shown)
    except BaseException:
        with contextlib.suppress(OSError):
            os.rmdir(target)  # our claim while still empty; a winner's full directory is not removable this way
        raise


def _rename_onto_empty(tmp: Path, target: Path, shown: str) -> None:
    try:
        os.replace(tmp, target)
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise OutputExistsError(_lost(shown)) from None
        raise


def _swap(tmp: Path, target: Path, shown: str) -> None:
    """Replace our own earlier artifact: move it aside, claim the name, and drop it (or put it back on failure)."""
    backup = make_temp_dir(target, "old")
    try:
        os.rename(target, backup / "previous")
        try:
            _claim_fresh(tmp, target, shown)
        except BaseException:
            if not os.path.lexists(target):
                os.rename(backup / "previous", target)
            raise
    finally:
        discard(backup)


# ---------------------------------------------------------------- temporary entries


def _prefix(target: Path, tag: str = "") -> str:
    """``.NAME.`` (shortened so the temporary name fits where the final name fits)."""
    return f".{target.name[:80]}.{tag + '.' if tag else ''}"


def _make_temp_file(target: Path) -> Path:
    with held():
        fd, name = tempfile.mkstemp(prefix=_prefix(target), suffix=".tmp", dir=target.parent)
        os.close(fd)
        register(Path(name))
    return Path(name)


def make_temp_dir(target: Path, tag: str = "") -> Path:
    """A registered temporary directory beside ``target`` (removed by :func:`discard` or on any exit)."""
    with held():
        tmp = Path(tempfile.mkdtemp(prefix=_prefix(target, tag), dir=target.parent))
        register(tmp)
    os.chmod(tmp, default_mode(directory=True))
    return tmp
