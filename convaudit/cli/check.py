"""``convaudit check SOURCE``: the pre-merge gate. Exit 0 within every budget, 3 when one is exceeded.

Budgets come from flags (``--max-macs 4.2G``) or from ``[tool.convaudit]`` in the nearest pyproject.toml
(walking up from the model file, then from the working directory; per-model sections allowed); flags
override the file. The explanation (text, the default, on stdout) names each exceeded budget, the layers
responsible and what converting them saves; ``--format json`` and ``sarif`` write the same as data.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from convaudit.cli.shared import (
    Command,
    add_analysis_options,
    add_common_options,
    add_source_options,
    input_paths,
    leaf_types,
    load_source,
)
from convaudit.errors import EXIT_BUDGET, EXIT_OK, UsageError
from convaudit.review.budgets import BUDGETS, Budget, resolve_budgets
from convaudit.review.pyproject import Config, find_config, read_config, settings_for
from convaudit.vocab import Format

__all__ = ["COMMAND", "FORMATS", "add_arguments", "budgets_of", "run"]

#: The formats of a check's result.
FORMATS = (Format.TEXT, Format.JSON, Format.SARIF)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``convaudit check``."""
    add_source_options(parser, "check")
    add_analysis_options(parser)
    add_common_options(parser, "output file (default '-': stdout)", output_default="-")
    parser.add_argument(
        "--format", choices=[str(f) for f in FORMATS], help="text (the default), json or sarif (code scanning)"
    )
    budgets = parser.add_argument_group(
        "budgets", "each overrides the same key in [tool.convaudit] of the nearest pyproject.toml"
    )
    for spec in BUDGETS.values():
        budgets.add_argument(f"--{spec.name}", dest=spec.attribute, metavar=spec.example, help=spec.help)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--config", metavar="PYPROJECT", help="read [tool.convaudit] from this file, not the nearest")
    where.add_argument("--no-config", action="store_true", help="ignore pyproject.toml: only the flags count")


def budgets_of(args: argparse.Namespace) -> tuple[tuple[Budget, ...], Config | None]:
    """The budgets in force (flags over the file) and the file they were read from."""
    config: Config | None = None
    if args.config:
        if not Path(args.config).is_file():
            raise UsageError(f"--config {args.config}: no such file; name a pyproject.toml")
        config = read_config(args.config)
        if config is None:
            raise UsageError(f"--config {args.config}: it has no [tool.convaudit] table; add one with the budgets")
    elif not args.no_config:
        source = Path(args.source)
        config = find_config([source, Path.cwd()] if source.exists() else [Path.cwd()])
    flags = {name: getattr(args, spec.attribute) for name, spec in BUDGETS.items()}
    settings = settings_for(config, args.source) if config else None
    label = config.label if config else "pyproject.toml [tool.convaudit]"
    return resolve_budgets(flags, settings, label), config


def output_format(args: argparse.Namespace) -> str:
    """--format, else -o's suffix (.json, .sarif, .txt), else text; the two must not disagree."""
    from convaudit.formats import SUFFIXES

    implied = SUFFIXES.get(Path(args.output).suffix.lower()) if args.output != "-" else None
    if args.output != "-" and implied is None and not args.format:
        raise UsageError(
            f"-o {args.output}: unknown suffix {Path(args.output).suffix or '(none)'}; use .txt, .json or .sarif, "
            "or give --format"
        )
    if implied is not None and implied not in FORMATS:
        raise UsageError(f"-o {args.output}: a check is written as text, json or sarif (.txt, .json, .sarif)")
    if implied is not None and args.format and implied != args.format:
        raise UsageError(f"-o {args.output} looks like {implied}, but --format is {args.format}")
    return args.format or implied or Format.TEXT


def run(args: argparse.Namespace) -> int:
    """Check the source against its budgets; print (or write) the result; exit 3 when a budget is exceeded."""
    from convaudit.formats import render
    from convaudit.outputs.files import check_output, write_atomic
    from convaudit.review.check import analyse_for_check, check_analysis

    fmt = output_format(args)
    budgets, config = budgets_of(args)  # a bad budget is a usage error before the model is loaded
    if args.output != "-":
        check_output(args.output, inputs=input_paths(args), force=args.force)
    loaded = load_source(args)
    analysis = analyse_for_check(
        loaded.model,
        loaded.args,
        loaded.kwargs,
        source=loaded.source,
        leaf_types=leaf_types(args, loaded),
        train_mode=args.train_mode,
    )
    analysis = dataclasses.replace(analysis, warnings=tuple(loaded.notes) + analysis.warnings)
    result = check_analysis(analysis, budgets, source=args.source, config=config.label if config else None)
    text = render(result, fmt)
    if args.output == "-":
        if not (args.quiet and fmt == Format.TEXT):  # -q: the exit code says it all; data formats still go out
            args.data_out.write(text)
    else:
        written = write_atomic(args.output, text, force=args.force, inputs=input_paths(args))
        if not args.quiet:
            print(text if fmt == Format.TEXT else render(result, Format.TEXT), end="")
            print(f"wrote {written} ({fmt})")
    return EXIT_OK if result.passed else EXIT_BUDGET


COMMAND = Command(
    "check", "check a model against MAC, parameter and latency budgets (exit 3 when over)", add_arguments, run
)
