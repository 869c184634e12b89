"""Many models at once: ``convaudit report A B ... -j N -o DIR`` and ``--executor dask://HOST:PORT``.

``plan`` (one job per model: its file name and up-to-date key) · ``isolate`` (one model in a process of its
own, killed at its timeout) · ``local`` (local worker processes) · ``dask`` (a Dask cluster) · ``index``
(index.json, read back to skip what is up to date) · ``run`` (the orchestrator). The index page is
rendered by :mod:`convaudit.formats.index`; ``options`` holds report's batch flags.
"""

from __future__ import annotations

__all__: list[str] = []  # import from the modules: the CLI imports ``options`` without the rest
