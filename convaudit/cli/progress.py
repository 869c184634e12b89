"""A terminal that talks: a command's long work on stderr, in named stages, and colour for its last lines.

One :class:`Progress` per command run. ``stage(label)`` (or ``with progress.step(label):``) starts a
stage. A stage whose work comes in steps shows a tqdm bar with the count, the rate and an ETA:
``steps(done, total)`` is the callback of the measurement (``analyze``, ``measure_recommended``) and
``recovery(stage, step, total, loss)`` the one of recovery (``convert``), each of its stages a bar with the
loss. A stage without steps (loading, tracing and analysis, conversion) is one line whose elapsed time a
background thread keeps ticking. A finished stage leaves one line, ``✓ label (4.1 s)``; a failed one
leaves nothing (the error line follows).

It talks only to a terminal: nothing when stderr is not a TTY (a log, a pipe), with ``-q``, in CI (``$CI``
set) or with ``TERM=dumb``. Colour (:func:`paint`) only on a terminal and never with ``$NO_COLOR`` set
(https://no-color.org). tqdm comes with fvcore, already a dependency; rich would add a dependency for
what one bar and one coloured line do here.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TextIO

__all__ = ["STYLES", "Progress", "colour_enabled", "paint", "talks"]

#: ANSI SGR parameters of the roles :func:`paint` knows.
STYLES: dict[str, str] = {"ok": "32", "warn": "33", "error": "31", "bold": "1", "dim": "2", "next": "1;36"}

#: How often a stage without steps redraws its elapsed time.
TICK_SECONDS = 0.5


def _isatty(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return callable(isatty) and bool(isatty())
    except (OSError, ValueError):  # a closed stream
        return False


def _environ(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def talks(stream: Any, *, quiet: bool, environ: Mapping[str, str] | None = None) -> bool:
    """Whether progress goes to ``stream``: a terminal, without -q, outside CI, not ``TERM=dumb``."""
    env = _environ(environ)
    in_ci = env.get("CI", "").strip().lower() not in ("", "0", "false", "no")
    return not quiet and _isatty(stream) and not in_ci and env.get("TERM") != "dumb"


def colour_enabled(stream: Any, environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``stream`` gets colour: a terminal, ``$NO_COLOR`` unset or empty, not ``TERM=dumb``."""
    env = _environ(environ)
    return _isatty(stream) and not env.get("NO_COLOR") and env.get("TERM") != "dumb"


def paint(text: str, role: str, stream: Any = None, environ: Mapping[str, str] | None = None) -> str:
    """``text`` in ``role``'s colour (:data:`STYLES`) when ``stream`` (default stdout) shows colour, else as is."""
    target = sys.stdout if stream is None else stream
    if not colour_enabled(target, environ):
        return text
    return f"\033[{STYLES[role]}m{text}\033[0m"


def _elapsed(seconds: float) -> str:
    """'4.1 s', '2 min 05 s'."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


class Progress:
    """The stages of one command's work on stderr (see the module); every method is a no-op when it is quiet."""

    def __init__(self, *, quiet: bool, stream: TextIO | None = None, environ: Mapping[str, str] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = talks(self.stream, quiet=quiet, environ=environ)
        self.colour = self.enabled and colour_enabled(self.stream, environ)
        self._lock = threading.Lock()
        self._stage: tuple[str, str, str, float] | None = None  #: (label, bar's label, unit, started)
        self._part: tuple[str, float] | None = None  #: recovery's current stage: (label, started)
        self._bar: Any = None
        self._stop: threading.Event | None = None

    # ------------------------------------------------------------ stages

    def stage(self, label: str, unit: str = "step", counting: str | None = None) -> None:
        """Start the stage ``label`` (finishing the one before); its steps, if any, count in ``unit`` on a bar
        labelled ``counting`` (default ``label``)."""
        self.close()
        if not self.enabled:
            return
        self._stage = (label, counting or label, unit, time.monotonic())
        self._open(label, None, unit, bar_format="{desc} … {elapsed}")
        self._stop = threading.Event()
        threading.Thread(target=self._tick, args=(self._stop,), daemon=True, name="convaudit-progress").start()

    @contextmanager
    def step(self, label: str, unit: str = "step", counting: str | None = None) -> Iterator[Progress]:
        """``with progress.step("load model.py"):`` a stage that finishes with the block (silently on an error)."""
        self.stage(label, unit, counting)
        try:
            yield self
        except BaseException:
            self.close(failed=True)
            raise
        self.close()

    def steps(self, done: int, total: int) -> None:
        """``done`` of ``total`` steps of the current stage (the measurement's ``progress(done, total)``)."""
        if not self.enabled or self._stage is None:
            return
        _, label, unit, _ = self._stage
        with self._lock:
            if self._bar is None or self._bar.total is None:
                self._open(label, total, unit)
            self._bar.total = total
            self._bar.update(max(0, done - self._bar.n))

    def recovery(self, stage: str, step: int, total: int | None, loss: float) -> None:
        """Recovery's ``progress(stage, step, total, loss)``: a bar per recovery stage, with the loss."""
        if not self.enabled:
            return
        label = f"recover: {stage}"
        with self._lock:
            if self._part is None or self._part[0] != label:
                self._finish_part()
                self._part = (label, time.monotonic())
                self._open(label, total, "step")
            if total is not None and self._bar.total != total:
                self._bar.total = total
            self._bar.update(max(0, step - self._bar.n))
            self._bar.set_postfix_str(f"loss {loss:.4g}", refresh=True)

    def close(self, failed: bool = False) -> None:
        """Finish the current stage: one ``✓ label (time)`` line, or none when it ``failed``."""
        if self._stop is not None:
            self._stop.set()
            self._stop = None
        with self._lock:
            if not failed:
                self._finish_part()
            self._clear()
            self._part = None
            if self._stage is not None and not failed:
                label, _, _, started = self._stage
                self._line(label, time.monotonic() - started)
            self._stage = None

    # ------------------------------------------------------------ drawing

    def width(self) -> int:
        """The terminal's width (80 when it reports none: a pseudo-terminal of unknown size)."""
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, OSError, ValueError):
            columns = 0
        return columns or 80

    def _open(self, label: str, total: int | None, unit: str, bar_format: str | None = None) -> None:
        from tqdm import tqdm  # type: ignore[import-untyped]

        self._clear()
        self._bar = tqdm(
            total=total,
            desc=label,
            unit=unit,
            file=self.stream,
            leave=False,
            ncols=self.width(),
            bar_format=bar_format,
            colour="cyan" if self.colour else None,
            dynamic_ncols=False,
        )

    def _clear(self) -> None:
        if self._bar is not None:
            self._bar.close()
        self._bar = None

    def _finish_part(self) -> None:
        if self._part is not None:
            label, started = self._part
            n = self._bar.n if self._bar is not None else 0
            steps = f", {n} step{'' if n == 1 else 's'}" if n else ""
            self._clear()
            self._line(f"{label}{steps}", time.monotonic() - started)
            self._part = None

    def _line(self, label: str, seconds: float) -> None:
        mark = f"\033[{STYLES['ok']}m✓\033[0m" if self.colour else "✓"
        self.stream.write(f"{mark} {label} ({_elapsed(seconds)})\n")
        self.stream.flush()

    def _tick(self, stop: threading.Event) -> None:
        """Redraw the bar (its elapsed time) until ``stop`` is set."""
        while not stop.wait(TICK_SECONDS):
            with self._lock:
                if self._bar is not None and not stop.is_set():
                    self._bar.refresh()
