"""``convaudit report SOURCE``: analyse a model and write the report (HTML by default)."""

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
from convaudit.errors import EXIT_OK, UsageError
from convaudit.options import AnalysisOptions

__all__ = ["COMMAND", "add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``convaudit report``."""
    from convaudit.formats import available_formats

    add_source_options(parser, "analyse")
    add_analysis_options(parser)
    add_common_options(parser, "output file (default report.<format>; '-' for stdout)")
    parser.add_argument(
        "--format",
        choices=available_formats(),  # the registry's, so formats installed through entry points are accepted
        help="default: from -o's suffix, else html",
    )
    parser.add_argument(
        "--no-cross-check", action="store_true", help="skip fvcore's independent count (a real forward)"
    )
    parser.add_argument(
        "--time", action="store_true", help="measure each candidate and its depthwise→pointwise form on this machine"
    )


def output_format(args: argparse.Namespace) -> tuple[str, str]:
    """(format, output path): --format, else -o's suffix, else html; the two must not disagree."""
    from convaudit.formats import SUFFIXES, default_suffix
    from convaudit.vocab import Format

    to_file = bool(args.output) and args.output != "-"
    implied = SUFFIXES.get(Path(args.output).suffix.lower()) if to_file else None
    fmt = args.format or implied or Format.HTML
    if implied is not None and args.format and implied != fmt:
        raise UsageError(f"-o {args.output} looks like {implied}, but --format is {fmt}")
    return fmt, args.output or f"report{default_suffix(fmt)}"


def run(args: argparse.Namespace) -> int:
    """Analyse the source and write the report; a short summary on the terminal unless -q."""
    from convaudit.analysis.engine import analyze
    from convaudit.formats import render
    from convaudit.formats.text import terminal_summary
    from convaudit.outputs.files import check_output, write_atomic

    fmt, output = output_format(args)
    if output != "-":
        check_output(output, inputs=input_paths(args), force=args.force)  # before the work, not after it
    options = AnalysisOptions(
        cross_check=not args.no_cross_check, separability=True, timing=args.time, train_mode=args.train_mode
    )
    loaded = load_source(args)
    options = dataclasses.replace(options, source=loaded.source, leaf_types=leaf_types(args, loaded))
    analysis = analyze(loaded.model, loaded.args, loaded.kwargs, options=options)
    analysis = dataclasses.replace(
        analysis,
        weights=loaded.weights,
        weights_source=loaded.weights_source,
        warnings=tuple(loaded.notes) + analysis.warnings,
    )
    text = render(analysis, fmt)
    if output == "-":
        args.data_out.write(text)
        return EXIT_OK
    written = write_atomic(output, text, force=args.force, inputs=input_paths(args))
    if not args.quiet:
        print(terminal_summary(analysis))
        print(f"wrote {written} ({fmt})")
    return EXIT_OK


COMMAND = Command("report", "analyse a model and write a report (HTML by default)", add_arguments, run)
