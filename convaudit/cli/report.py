"""``convaudit report SOURCE``: analyse a model and write the report (HTML by default)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from convaudit.batch.options import add_batch_options, is_batch
from convaudit.cli.progress import Progress, paint
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

__all__ = [
    "COMMAND",
    "END_TO_END_FACTOR",
    "add_arguments",
    "analysis_stage",
    "next_step",
    "output_format",
    "run",
    "run_batch_command",
]

#: The end-to-end comparison's time cap, in multiples of the per-layer cap (--measure-time).
END_TO_END_FACTOR = 5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``convaudit report``."""
    from convaudit.formats import available_formats

    add_source_options(parser, "analyse")
    add_batch_options(parser)  # more SOURCEs, -j, --executor, --timeout: convaudit.batch
    add_analysis_options(parser)
    add_common_options(parser, "output file (default report.<format>; '-' for stdout)")
    parser.add_argument(
        "--format",
        choices=available_formats(),  # the registry's, so formats installed through entry points are accepted
        help="default: from -o's suffix, else html",
    )
    parser.add_argument(
        "--depth",
        type=int,
        default=3,
        metavar="N",
        help="show the module tree N levels deep; deeper modules fold into their row (default 3; JSON has all)",
    )
    parser.add_argument(
        "--no-cross-check", action="store_true", help="skip fvcore's independent count (a real forward)"
    )
    parser.add_argument(
        "--measure",
        "--time",
        dest="measure",
        action="store_true",
        help="measure each candidate and its separable forms on this machine (interleaved, with their spread), "
        "and the model end to end before and after converting the recommended set",
    )
    parser.add_argument(
        "--measure-time",
        type=float,
        default=3.0,
        metavar="SECONDS",
        help=f"with --measure: time cap per layer and memory format (default 3; end to end {END_TO_END_FACTOR}× it)",
    )
    parser.add_argument(
        "--memory-format",
        choices=["contiguous", "channels_last", "both"],
        help="memory format of the predicted and measured times; both: each in turn, recommendations decided on "
        "contiguous (default: both with --measure, else contiguous)",
    )


def output_format(args: argparse.Namespace) -> tuple[str, str]:
    """(format, output path): --format, else -o's suffix, else html; the two must not disagree."""
    from convaudit.formats import SUFFIXES, default_suffix
    from convaudit.vocab import Format

    to_file = bool(args.output) and args.output != "-"
    suffix = Path(args.output).suffix.lower() if to_file else ""
    implied = SUFFIXES.get(suffix)
    if suffix and implied is None and not args.format:  # never a silent HTML file named report.csv
        known = ", ".join(sorted(SUFFIXES))
        raise UsageError(f"-o {args.output}: unknown suffix {suffix}; use one of {known}, or name it with --format")
    fmt = args.format or implied or Format.HTML
    if implied is not None and args.format and implied != fmt:
        raise UsageError(f"-o {args.output} looks like {implied}, but --format is {fmt}")
    return fmt, args.output or f"report{default_suffix(fmt)}"


def run_batch_command(args: argparse.Namespace) -> int:
    """Several models (or -j / --executor): one report each and an index page in the directory -o."""
    from convaudit.batch.options import batch_request
    from convaudit.batch.run import run_batch
    from convaudit.cli.app import main
    from convaudit.vocab import Format

    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)  # the actions say which options each model's run gets
    request = batch_request(parser._actions, args, args.format or Format.HTML)
    return run_batch(request, entry=main)


def run(args: argparse.Namespace) -> int:
    """Analyse the source and write the report; a short summary on the terminal unless -q."""
    if is_batch(args):
        return run_batch_command(args)
    from convaudit.analysis.engine import analyze
    from convaudit.formats import render
    from convaudit.formats.text import terminal_summary
    from convaudit.outputs.files import check_output, write_atomic
    from convaudit.sources.locations import display_path

    named = args.output if args.output and args.output != "-" else None
    if named:  # first: "-o model.py is the input model.py" says more than "unknown suffix .py"
        check_output(named, inputs=input_paths(args), force=args.force)
    fmt, output = output_format(args)
    if output != "-" and not named:
        check_output(output, inputs=input_paths(args), force=args.force)  # before the work, not after it
    options = AnalysisOptions(
        cross_check=not args.no_cross_check,
        separability=True,
        timing=args.measure,
        timing_seconds=args.measure_time,
        memory_format=args.memory_format or ("both" if args.measure else "contiguous"),
        train_mode=args.train_mode,
        depth=args.depth,
    )
    progress = Progress(quiet=args.quiet)
    loaded = load_source(args, progress)
    options = dataclasses.replace(options, source=loaded.source, leaf_types=leaf_types(args, loaded))
    with progress.step(analysis_stage(options), unit="layer", counting="measure candidates"):
        analysis = analyze(loaded.model, loaded.args, loaded.kwargs, options=options, progress=progress.steps)
    if args.measure:
        with progress.step("measure end to end", unit="model"):
            analysis = _end_to_end(analysis, loaded, options, progress)
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
    if args.json_copy:  # a batch's worker: the JSON too, from the same analysis (convaudit.batch)
        write_atomic(args.json_copy, render(analysis, "json"), inputs=input_paths(args))
    if not args.quiet:
        print(terminal_summary(analysis))
        shown = display_path(str(written))
        print(paint(f"wrote {shown} ({fmt})" + (": open it in a browser" if fmt == "html" else ""), "ok"))
        step = next_step(analysis)
        if step:
            print(paint(f"next: {step}", "next"))
    return EXIT_OK


def analysis_stage(options: AnalysisOptions) -> str:
    """What the analysis stage does, for its progress line."""
    parts = ["trace", "costs", "separability"] + (["cross-check (fvcore)"] if options.cross_check else [])
    return "analyse: " + ", ".join(parts) + (", measure" if options.timing else "")


def next_step(analysis: Any) -> str | None:
    """The report's last line: the command the verdict says to run next (None: nothing worth running)."""
    from convaudit.formats.verdict import verdict

    return verdict(analysis).command


def _end_to_end(analysis: Any, loaded: Any, options: AnalysisOptions, progress: Progress) -> Any:
    """The analysis with the model timed before and after converting its recommended set (or a note why not)."""
    from convaudit.conversion.endtoend import measure_recommended

    e2e = measure_recommended(
        loaded.model,
        analysis,
        loaded.args,
        loaded.kwargs,
        max_seconds=END_TO_END_FACTOR * options.timing_seconds,
        memory_format=options.memory_format,
        leaf_types=options.leaf_types,
        progress=progress.steps,
    )
    if e2e is None:
        note = "end to end: not measured, no candidate is recommended for conversion"
        return dataclasses.replace(analysis, warnings=(*analysis.warnings, note))
    from convaudit.formats.latency import slower_text  # the never-slower guard: said, and flagged, in every format

    slower = [text for e in (e2e.by_format or {"": e2e}).values() if (text := slower_text(e))]
    return dataclasses.replace(analysis, end_to_end=e2e, warnings=(*analysis.warnings, *slower))


COMMAND = Command("report", "analyse a model and write a report (HTML by default)", add_arguments, run)
