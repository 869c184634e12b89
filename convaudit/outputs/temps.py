"""Temporary entries and signals: whatever a command leaves half-written is removed however it ends.

Every temporary file or directory (``.NAME.XXXX``) is registered when created and removed by
:func:`discard` once it is claimed or abandoned, and by :func:`remove_temps` when a command ends.
:func:`signals_as_exceptions` turns SIGTERM into :class:`Terminated` (and SIGINT into KeyboardInterrupt)
so that ``finally`` blocks run; :func:`held` defers both until a claim or a cleanup is complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

__all__ = ["Terminated", "discard", "held", "register", "remove_temps", "signals_as_exceptions"]

_TEMPS: set[Path] = set()  # temporary entries that exist right now


class Terminated(BaseException):
    """SIGTERM arrived (a BaseException, so the model's ``except Exception`` cannot swallow it)."""


def register(path: Path) -> None:
    """Record a temporary entry just created (call inside :func:`held`, so no signal comes in between)."""
    _TEMPS.add(path)


def discard(path: Path) -> None:
    """Remove a temporary entry of ours if it is still there (it is gone once claimed)."""
    with held():
        try:
            if stat.S_ISDIR(os.lstat(path).st_mode):
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink()
        except FileNotFoundError:
            pass
        _TEMPS.discard(path)


def remove_temps() -> None:
    """Remove every temporary entry still registered."""
    with held():  # all of them, even if a second signal arrives meanwhile
        for path in sorted(_TEMPS):
            discard(path)


_held = 0  # > 0 while a claim or a cleanup runs: signals wait until it is complete
_pending: list[int] = []


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Defer SIGINT/SIGTERM (as handled by signals_as_exceptions) until a claim or a cleanup is complete.

    A flag, not a signal mask: a mask holds only this thread, and the kernel then hands the signal to any
    other thread (torch's), whose C handler makes Python raise in the main thread anyway.
    """
    global _held
    _held += 1
    try:
        yield
    finally:
        _held -= 1
        if not _held and _pending:
            signum = _pending[0]
            _pending.clear()
            _raise_for(signum)


def _raise_for(signum: int) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(signum)


def _on_signal(signum: int, frame: object) -> None:
    if _held:
        _pending.append(signum)
        return
    _raise_for(signum)


@contextlib.contextmanager
def signals_as_exceptions() -> Iterator[None]:
    """For one command: SIGTERM raises Terminated, SIGINT KeyboardInterrupt, and temporaries go on any exit."""
    main = threading.current_thread() is threading.main_thread()
    previous: dict[int, Callable[[int, FrameType | None], Any] | int | signal.Handlers | None] = {}
    if main:
        for signum, usual in ((signal.SIGTERM, signal.SIG_DFL), (signal.SIGINT, signal.default_int_handler)):
            if signal.getsignal(signum) == usual:  # an ignored or a custom handler is left as it is
                previous[signum] = signal.signal(signum, _on_signal)
    try:
        yield
    finally:
        try:
            remove_temps()
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
