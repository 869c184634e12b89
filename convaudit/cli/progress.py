"""The recovery progress bar: one tqdm bar per stage on stderr, with the loss and an ETA.

Shown only on a terminal (stderr a TTY) and never with ``-q``; otherwise the callback does nothing, so a
log file or a pipe gets no carriage-return noise. tqdm comes with fvcore, already a dependency.
"""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO

__all__ = ["RecoveryProgress"]


class RecoveryProgress:
    """``progress(stage, step, total, loss)`` for :func:`convaudit.recover`; ``close()`` when done."""

    def __init__(self, *, quiet: bool, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = not quiet and callable(isatty) and bool(isatty())
        self._bar: Any = None
        self._stage: str | None = None

    def __call__(self, stage: str, step: int, total: int | None, loss: float) -> None:
        if not self.enabled:
            return
        if stage != self._stage:
            self.close()
            from tqdm import tqdm  # type: ignore[import-untyped]

            self._bar = tqdm(
                total=total, desc=f"recover: {stage}", unit="step", file=self.stream, leave=True, ncols=self.width()
            )
            self._stage = stage
        if total is not None and self._bar.total != total:
            self._bar.total = total
        self._bar.update(max(0, step - self._bar.n))
        self._bar.set_postfix_str(f"loss {loss:.4g}", refresh=True)

    def width(self) -> int:
        """The terminal's width (80 when it reports none: a pseudo-terminal of unknown size)."""
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, OSError, ValueError):
            columns = 0
        return columns or 80

    def close(self) -> None:
        """Finish the current stage's bar (the next stage opens its own)."""
        if self._bar is not None:
            self._bar.close()
        self._bar, self._stage = None, None
