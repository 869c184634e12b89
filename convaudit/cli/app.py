"""Command line: ``convaudit COMMAND ...``, one entry of :data:`COMMANDS` per command.

Exit codes (defined in :mod:`convaudit.errors`): 0 ok (a model without convs is reported, exit 0) ·
1 analysis, trace or load failure · 2 usage error (bad option, missing file, existing output) ·
3 a budget check failed (``convaudit check`` over a budget, ``convaudit diff --fail-on-increase``).
Errors are one line; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from convaudit import __version__
from convaudit.cli import calibrate, check, convert, diff, report
from convaudit.cli.channel import data_channel
from convaudit.cli.shared import Command
from convaudit.errors import EXIT_FAILURE, ConvauditError
from convaudit.outputs.files import Terminated, signals_as_exceptions

__all__ = ["COMMANDS", "build_parser", "main"]

#: The commands, in the order ``--help`` lists them.
COMMANDS: tuple[Command, ...] = (report.COMMAND, convert.COMMAND, check.COMMAND, diff.COMMAND, calibrate.COMMAND)


def build_parser(commands: Sequence[Command] = COMMANDS) -> argparse.ArgumentParser:
    """The argument parser (also used by the docs)."""
    parser = argparse.ArgumentParser(
        prog="convaudit",
        description=(
            "Find every k×k convolution in a PyTorch model, cost it, and say what a depthwise-separable rewrite "
            "would save."
        ),
        epilog="Exit codes: 0 ok · 1 load/trace/analysis failure · 2 usage error · 3 a budget check failed.",
    )
    parser.add_argument("--version", action="version", version=f"convaudit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in commands:
        command.add_arguments(sub.add_parser(command.name, help=command.help))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``convaudit`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    command = next(c for c in COMMANDS if c.name == args.command)
    try:
        with signals_as_exceptions(), data_channel(getattr(args, "output", None) == "-") as args.data_out:
            return command.run(args)
    except Terminated:  # temporary files are already removed (signals_as_exceptions)
        print("convaudit: terminated by SIGTERM; temporary files removed, nothing written", file=sys.stderr)
        return EXIT_FAILURE
    except SystemExit as exc:  # raised by the model's code (argparse is done): it must not pass for our own exit
        print(f"convaudit: error: the model's code called sys.exit({exc.code!r}); nothing was written", file=sys.stderr)
        return EXIT_FAILURE
    except ConvauditError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"convaudit: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("convaudit: interrupted", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:  # a bug of ours: one line, the traceback with --debug
        if args.debug:
            traceback.print_exc()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(
            f"convaudit: internal error: {type(exc).__name__}: {first} (rerun with --debug and report it)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
