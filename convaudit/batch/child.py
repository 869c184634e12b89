"""``python -m convaudit.batch.child READY_FD ARG...``: a model's process on a Dask worker.

It imports torch and convaudit first (:data:`~convaudit.batch.isolate.PRELOAD`), writes one byte to READY_FD,
then runs ``convaudit ARG...`` as ``python -m convaudit`` would, and exits at once. The per-model timeout
starts at that byte, so an interpreter start on a busy machine is not counted against the model.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import runpy
import sys

__all__ = ["main"]


def main(argv: list[str]) -> None:
    """Preload, signal READY_FD (``argv[0]``), then run the CLI with the rest; exits with its code."""
    from convaudit.batch.isolate import PRELOAD

    ready = int(argv[0])
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    os.write(ready, b"1")
    os.close(ready)
    sys.argv = ["convaudit", *argv[1:]]
    try:
        runpy.run_module("convaudit", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # NB: no interpreter teardown (seconds with torch loaded); the CLI has cleaned up already


if __name__ == "__main__":
    main(sys.argv[1:])
