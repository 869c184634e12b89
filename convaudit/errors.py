"""Errors and exit codes: one definition, used by every stage and by the CLI.

Every error carries a one-line message that says what went wrong, where, and how to fix it.
The CLI prints that line (and the traceback only with ``--debug``) and exits with the code below.
"""

from __future__ import annotations

__all__ = [
    "EXIT_BUDGET",
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_USAGE",
    "CheckpointError",
    "ConvauditError",
    "ModelLoadError",
    "OutputExistsError",
    "ShapeError",
    "TraceError",
    "UnmeetableError",
    "UsageError",
]

EXIT_OK = 0  #: success (also: a model without convolutions, reported as such)
EXIT_FAILURE = 1  #: the model could not be loaded, traced, analysed or converted (or no conversion meets the bound)
EXIT_USAGE = 2  #: bad command line: unknown option, malformed --input-shape, missing file
#: a budget check failed: ``convaudit check`` (a model over its MAC/params/latency budgets) or
#: ``convaudit diff --fail-on-increase``
EXIT_BUDGET = 3


class ConvauditError(Exception):
    """Base class; ``exit_code`` is what the CLI exits with."""

    exit_code: int = EXIT_FAILURE
    #: raised while the model's code ran: the module (qualified name, "" for the root) where execution stopped
    module: str | None = None


class UsageError(ConvauditError):
    """The command line or arguments cannot be used as given."""

    exit_code = EXIT_USAGE


class ModelLoadError(ConvauditError):
    """A model source exists but no model could be built from it."""


class CheckpointError(ModelLoadError):
    """A checkpoint cannot be loaded safely (``weights_only=True``) or holds no module."""


class TraceError(ConvauditError):
    """Neither symbolic tracing nor the hook fallback could run the model."""


class ShapeError(ConvauditError):
    """The example inputs do not fit the model; the message names the layer."""


class OutputExistsError(ConvauditError):
    """An output file exists and ``--force`` was not given."""

    exit_code = EXIT_USAGE


class UnmeetableError(ConvauditError):
    """No conversion meets the output-error bound asked for (``--max-output-error``); names the best reached."""
