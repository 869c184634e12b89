"""The stream a document goes to, kept apart from whatever the model's code prints."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import TextIO

__all__ = ["data_channel"]


@contextlib.contextmanager
def data_channel(data_on_stdout: bool) -> Iterator[TextIO]:
    """The stream a document goes to; while it is stdout, whatever the model prints goes to stderr.

    Python-level prints are redirected through ``sys.stdout``; when stdout is a real file descriptor,
    the descriptor itself is pointed at stderr too (prints from C code), and the document is written
    through a duplicate of the original.
    """
    if not data_on_stdout:
        yield sys.stdout
        return
    out = sys.stdout
    try:
        fd = out.fileno()
    except (AttributeError, OSError, ValueError):
        fd = None
    out.flush()
    saved = os.dup(fd) if fd is not None else None
    data = os.fdopen(os.dup(saved), "w", encoding="utf-8") if saved is not None else out
    if fd is not None:
        os.dup2(sys.stderr.fileno(), fd)
    sys.stdout = sys.stderr
    try:
        yield data
    finally:
        sys.stdout = out
        data.flush()
        if saved is not None and fd is not None:  # saved is set exactly when fd is
            data.close()
            os.dup2(saved, fd)
            os.close(saved)
