"""``convaudit report SOURCE``: analyse a model and write the report (HTML by default)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any, TextIO

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

__all__ = ["COMMAND", "END_TO_END_FACTOR", "MeasureProgress", "add_arguments", "run"]

#: The end-to-end comparison's time cap, in multiples of the per-layer cap (--measure-time).
END_TO_END_FACTOR = 5


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
        help=f"with --measure: time cap per layer (default 3; end to end {END_TO_END_FACTOR}× it)",
    )
    parser.add_argument(
        "--memory-format",
        choices=["contiguous", "channels_last"],
        default="contiguous",
        help="memory format of the predicted and measured times (default contiguous)",
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
        cross_check=not args.no_cross_check,
        separability=True,
        timing=args.measure,
        timing_seconds=args.measure_time,
        memory_format=args.memory_format,
        train_mode=args.train_mode,
    )
    loaded = load_source(args)
    options = dataclasses.replace(options, source=loaded.source, leaf_types=leaf_types(args, loaded))
    progress = MeasureProgress(quiet=args.quiet)
    try:
        progress.stage("measure layers")
        analysis = analyze(loaded.model, loaded.args, loaded.kwargs, options=options, progress=progress)
        if args.measure:
            analysis = _end_to_end(analysis, loaded, options, progress)
    finally:
        progress.close()
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


def _end_to_end(analysis: Any, loaded: Any, options: AnalysisOptions, progress: MeasureProgress) -> Any:
    """The analysis with the model timed before and after converting its recommended set (or a note why not)."""
    from convaudit.conversion.endtoend import measure_recommended

    progress.stage("measure end to end")
    e2e = measure_recommended(
        loaded.model,
        analysis,
        loaded.args,
        loaded.kwargs,
        max_seconds=END_TO_END_FACTOR * options.timing_seconds,
        memory_format=options.memory_format,
        leaf_types=options.leaf_types,
        progress=progress,
    )
    if e2e is None:
        note = "end to end: not measured, no candidate is recommended for conversion"
        return dataclasses.replace(analysis, warnings=(*analysis.warnings, note))
    return dataclasses.replace(analysis, end_to_end=e2e)


class MeasureProgress:
    """``progress(done, total)`` of the measurement: a tqdm bar on stderr when it is a terminal, never with -q."""

    def __init__(self, *, quiet: bool, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = not quiet and callable(isatty) and bool(isatty())
        self._bar: Any = None
        self._label = ""

    def stage(self, label: str) -> None:
        """The next calls belong to ``label`` (a new bar)."""
        self.close()
        self._label = label

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            from tqdm import tqdm  # type: ignore[import-untyped]

            self._bar = tqdm(total=total, desc=self._label, unit="layer", file=self.stream, leave=False)
        self._bar.total = total
        self._bar.update(max(0, done - self._bar.n))

    def close(self) -> None:
        """Finish the current bar."""
        if self._bar is not None:
            self._bar.close()
        self._bar = None


COMMAND = Command("report", "analyse a model and write a report (HTML by default)", add_arguments, run)
