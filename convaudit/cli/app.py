"""Command line: ``convaudit report SOURCE``.

Exit codes (defined in :mod:`convaudit.errors`): 0 ok (a model without convs is reported, exit 0) ·
1 analysis, trace or load failure · 2 usage error (bad option, missing file, existing output) ·
3 a budget check failed. Errors are one line; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

from convaudit import __version__
from convaudit.errors import EXIT_FAILURE, EXIT_OK, ConvauditError, UsageError
from convaudit.outputs.files import Terminated, signals_as_exceptions

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used by the docs)."""
    parser = argparse.ArgumentParser(
        prog="convaudit",
        description="Find every k×k convolution in a PyTorch model, cost it, and say what a depthwise-separable rewrite would save.",
        epilog="Exit codes: 0 ok · 1 load/trace/analysis failure · 2 usage error · 3 budget check failed.",
    )
    parser.add_argument("--version", action="version", version=f"convaudit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    report = sub.add_parser("report", help="analyse a model and write a report (HTML by default)")
    report.add_argument("source", help="model.py, a checkpoint (.pt/.pth) holding a module, or torchvision:NAME")
    report.add_argument("-o", "--output", help="output file (default report.<format>; '-' for stdout)")
    report.add_argument(
        "--format", choices=["html", "json", "text", "markdown"], help="default: from -o's suffix, else html"
    )
    report.add_argument("--entry", help="name of the function, class or module in model.py to analyse")
    _weights_options(report)
    report.add_argument(
        "--input-shape",
        action="append",
        default=[],
        metavar="SHAPE",
        help="input shape like 1,3,224,224; repeat for several inputs (overrides example_inputs())",
    )
    report.add_argument(
        "--no-cross-check", action="store_true", help="skip fvcore's independent count (a real forward)"
    )
    report.add_argument(
        "--time", action="store_true", help="measure each candidate and its depthwise→pointwise form on this machine"
    )
    report.add_argument("--force", action="store_true", help="overwrite an existing output file")
    report.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    report.add_argument("--debug", action="store_true", help="show tracebacks")

    conv = sub.add_parser("convert", help="rewrite convs as depthwise + pointwise from their own weights, verify, save")
    conv.add_argument("source", help="model.py, a checkpoint (.pt/.pth) holding a module, or torchvision:NAME")
    conv.add_argument("-o", "--output", default="converted", help="output directory (default: converted)")
    conv.add_argument("--entry", help="name of the function, class or module in model.py to convert")
    _weights_options(conv)
    conv.add_argument(
        "--input-shape", action="append", default=[], metavar="SHAPE", help="example input shape, repeatable"
    )
    conv.add_argument("--rank", help="channel multiplier m for every chosen layer, or 'full' (exact); default 1")
    conv.add_argument("--order", default="dw_pw", choices=["dw_pw", "pw_dw", "auto"], help="default dw_pw")
    conv.add_argument("--init", default="svd", choices=["svd", "calibrated", "random"], help="default svd")
    conv.add_argument("--style", choices=["mobilenet"], help="BN+ReLU between the parts (with --init random only)")
    conv.add_argument("--sequential", action="store_true", help="calibrate each layer on the model converted so far")
    conv.add_argument(
        "--recalibrate-bn",
        action="store_true",
        help="re-estimate BatchNorm statistics on calibration_inputs() after the rewrite",
    )
    conv.add_argument("--include", action="append", default=[], metavar="GLOB", help="convert only matching layers")
    conv.add_argument("--exclude", action="append", default=[], metavar="GLOB", help="leave matching layers alone")
    conv.add_argument(
        "--min-savings", type=float, default=0.0, metavar="SHARE", help="skip layers saving less (e.g. 0.5)"
    )
    conv.add_argument(
        "--energy", type=float, metavar="SHARE", help="per layer, the smallest m keeping this weight energy"
    )
    conv.add_argument("--target-macs", type=float, metavar="SHARE", help="whole-model MAC budget as a share of today's")
    conv.add_argument("--exact", action="store_true", help="fail (exit 1) if any layer's relative error exceeds 1e-4")
    conv.add_argument("--force", action="store_true", help="replace an existing output directory")
    conv.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    conv.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def _weights_options(parser: argparse.ArgumentParser) -> None:
    """--weights and --trust, the same for report and convert."""
    parser.add_argument(
        "--weights",
        metavar="STATE_DICT",
        help="load this state_dict (torch.save file, read weights_only) into the model; any source",
    )
    parser.add_argument(
        "--trust",
        action="append",
        default=[],
        metavar="MODULE",
        help="let a checkpoint use MODULE's nn.Module classes; this runs that module's import (repeatable)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``convaudit`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with signals_as_exceptions(), _data_channel(getattr(args, "output", None) == "-") as args.data_out:
            return _report(args) if args.command == "report" else _convert(args)
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


@contextlib.contextmanager
def _data_channel(data_on_stdout: bool) -> Iterator[TextIO]:
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
        if saved is not None:
            data.close()
            os.dup2(saved, fd)  # type: ignore[arg-type]
            os.close(saved)


def _input_paths(args: argparse.Namespace) -> list[str]:
    """The files a command reads (the source, --weights): -o may not be or hold any of them."""
    return [p for p in (args.source, getattr(args, "weights", None)) if p]


def _report(args: argparse.Namespace) -> int:
    from convaudit.analysis.engine import analyze
    from convaudit.formats import SUFFIXES, render
    from convaudit.formats.text import terminal_summary
    from convaudit.outputs.files import check_output, write_atomic
    from convaudit.sources import load, parse_shape

    fmt = (
        args.format
        or (SUFFIXES.get(Path(args.output).suffix.lower()) if args.output and args.output != "-" else None)
        or "html"
    )
    if args.output and args.output != "-" and args.format and Path(args.output).suffix.lower() in SUFFIXES:
        if SUFFIXES[Path(args.output).suffix.lower()] != fmt:
            raise UsageError(
                f"-o {args.output} looks like {SUFFIXES[Path(args.output).suffix.lower()]}, but --format is {fmt}"
            )
    output = args.output or f"report.{ {'markdown': 'md', 'text': 'txt'}.get(fmt, fmt) }"
    if output != "-":
        check_output(output, inputs=_input_paths(args), force=args.force)  # before the work, not after it
    shapes = [parse_shape(s) for s in args.input_shape]
    loaded = load(args.source, entry=args.entry, input_shapes=shapes, weights=args.weights, trust=args.trust)
    analysis = analyze(
        loaded.model,
        loaded.args,
        loaded.kwargs,
        cross_check=not args.no_cross_check,
        separability=True,
        timing=args.time,
        source=loaded.source,
    )
    analysis = dataclasses.replace(analysis, weights=loaded.weights, weights_source=loaded.weights_source)
    if loaded.notes:
        from dataclasses import replace

        analysis = replace(analysis, warnings=tuple(loaded.notes) + analysis.warnings)
    text = render(analysis, fmt)
    if output == "-":
        args.data_out.write(text)
        return EXIT_OK
    written = write_atomic(output, text, force=args.force, inputs=_input_paths(args))
    if not args.quiet:
        print(terminal_summary(analysis))
        print(f"wrote {written} ({fmt})")
    return EXIT_OK


def _convert(args: argparse.Namespace) -> int:
    from convaudit.conversion import convert
    from convaudit.conversion.artifact.writer import ARTIFACT_FILES, write_artifact
    from convaudit.formats.conversion import (
        render_conversion_html,
        render_conversion_text,
    )
    from convaudit.outputs.files import check_output
    from convaudit.sources import load, parse_shape
    from convaudit.sources.inputs import materialize

    # before the work, not after it
    check_output(args.output, inputs=_input_paths(args), force=args.force, directory=True, files=ARTIFACT_FILES)
    if args.rank is not None and (args.energy is not None or args.target_macs is not None):
        raise UsageError("--rank cannot be combined with --energy or --target-macs: they choose m per layer")
    if args.energy is not None and args.target_macs is not None:
        raise UsageError("give --energy or --target-macs, not both")
    rank: int | str | None = None if (args.energy is not None or args.target_macs is not None) else (args.rank or "1")
    if rank not in (None, "full"):
        if not str(rank).isdigit() or int(str(rank)) < 1:
            raise UsageError(f"--rank {rank!r}: give a positive integer or 'full'")
        rank = int(str(rank))
    shapes = [parse_shape(s) for s in args.input_shape]
    loaded = load(args.source, entry=args.entry, input_shapes=shapes, weights=args.weights, trust=args.trust)
    calibration = None
    if args.init == "calibrated" or args.recalibrate_bn:
        fn = loaded.namespace.get("calibration_inputs")
        if not callable(fn):
            flag = "--init calibrated" if args.init == "calibrated" else "--recalibrate-bn"
            raise UsageError(f"{flag} needs calibration_inputs() in {args.source} (an iterable of input batches)")
        calibration = list(fn())
    result = convert(
        loaded.model,
        loaded.args,
        loaded.kwargs,
        rank=rank,
        order=args.order,
        init=args.init,
        calibration=calibration,
        sequential=args.sequential,
        recalibrate_bn=args.recalibrate_bn,
        style=args.style,
        include=args.include,
        exclude=args.exclude,
        min_savings=args.min_savings,
        energy=args.energy,
        target_macs=args.target_macs,
        exact=args.exact,
        source=loaded.source,
    )
    example = (materialize(loaded.args), materialize(loaded.kwargs))
    report = dataclasses.replace(result.report, weights=loaded.weights, weights_source=loaded.weights_source)
    out = write_artifact(
        args.output,
        result.model,
        report,
        result.plan,
        example,
        source=loaded.source,
        entry=args.entry,
        html=render_conversion_html(report),
        force=args.force,
        inputs=_input_paths(args),
    )
    if not args.quiet:
        print(render_conversion_text(report))
        print(f"wrote {out}/ (model.py, state_dict.pt, conversion.json, conversion.html)")
        print(f'load it: python -c "import convaudit; m = convaudit.load_converted({str(out)!r})"')
    return EXIT_OK
