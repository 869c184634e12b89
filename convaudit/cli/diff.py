"""``convaudit diff BASE HEAD``: two models, or saved JSON reports, compared layer by layer (text by default).

Each side is anything ``report`` reads (model.py, a checkpoint, a model.onnx, torchvision:NAME, timm:NAME) or
a JSON report it saved (``report -o base.json``), so CI can compare a pull request with the report of its
target branch. A report is recognised by its ``.json`` suffix or by starting with ``{`` (no model file, pickle
or ONNX file does) and is read as data only: :func:`json.loads`, then ``Analysis.from_dict``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from convaudit.cli.shared import (
    Command,
    add_analysis_options,
    add_common_options,
    add_source_options,
    leaf_types,
    load_source,
)
from convaudit.errors import EXIT_BUDGET, EXIT_OK, ModelLoadError, UsageError

__all__ = ["COMMAND", "add_arguments", "is_saved_report", "read_report", "run"]

_MAX_REPORT_BYTES = 512 * 2**20  #: a larger "report" is refused rather than read into memory
_SNIFF = 64


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``convaudit diff``."""
    from convaudit.documents.diff import ModelDiff
    from convaudit.formats import available_formats

    for side, when in (("base", "before"), ("head", "after")):
        parser.add_argument(
            side,
            help=f"the model {when}: anything report reads (model.py, checkpoint, model.onnx, torchvision:NAME, "
            "timm:NAME) or a JSON report it saved (report -o x.json)",
        )
    add_source_options(parser, "diff (applies to both model sides, not to saved reports)", source=False)
    add_analysis_options(parser)
    add_common_options(
        parser, "output file, its suffix picks the format (.txt .md .json .html); default stdout", output_default="-"
    )
    parser.add_argument("--format", choices=available_formats(ModelDiff), help="default: from -o's suffix, else text")
    parser.add_argument(
        "--fail-on-increase",
        metavar="LIMIT",
        help="exit 3 when the head's MACs grow by more than LIMIT (e.g. 5%%); per metric: macs=5%%,params=2%% "
        "(metrics: macs, conv_macs, params)",
    )


def output_format(args: argparse.Namespace) -> tuple[str, str]:
    """(format, output): --format, else -o's suffix, else text on stdout; the two must not disagree."""
    from convaudit.formats import SUFFIXES
    from convaudit.vocab import Format

    output = args.output or "-"
    to_file = output != "-"
    suffix = Path(output).suffix.lower() if to_file else ""
    implied = SUFFIXES.get(suffix) if to_file else None
    if to_file and implied is None and not args.format:
        raise UsageError(
            f"-o {output}: cannot tell the format from {suffix or 'no suffix'}; use .txt, .md, .json, "
            ".html or pass --format"
        )
    if implied is not None and args.format and implied != args.format:
        raise UsageError(f"-o {output} looks like {implied}, but --format is {args.format}")
    return args.format or implied or Format.TEXT, output


def is_saved_report(spec: str) -> bool:
    """Whether ``spec`` names a JSON report: a ``.json`` suffix, or a regular file whose first byte is ``{``."""
    path = Path(spec)
    if path.suffix.lower() == ".json":
        return True
    try:
        if not path.is_file():
            return False
        with open(path, "rb") as f:
            head = f.read(_SNIFF)
    except OSError:
        return False
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{")


def read_report(spec: str) -> Any:
    """The Analysis a saved JSON report holds (read as data: nothing in it is executed or imported)."""
    from convaudit.documents.records import Analysis

    path = Path(spec)
    if not path.is_file():
        raise UsageError(f"{spec}: no such file" if not path.exists() else f"{spec} is not a file")
    if path.stat().st_size > _MAX_REPORT_BYTES:
        raise ModelLoadError(f"{spec}: larger than {_MAX_REPORT_BYTES >> 20} MiB, not a convaudit report")
    try:
        doc = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as exc:
        raise ModelLoadError(
            f"{spec}: not valid JSON ({exc}); save a report with convaudit report MODEL -o x.json"
        ) from exc
    except OSError as exc:
        raise UsageError(f"{spec}: cannot read it ({exc.strerror or exc})") from exc
    is_diff = isinstance(doc, dict) and doc.get("document") == "diff"
    if not isinstance(doc, dict) or "layers" not in doc or "totals" not in doc or is_diff:
        what = "a convaudit diff" if is_diff else "JSON"
        raise ModelLoadError(
            f"{spec} is {what}, not a convaudit report; save one with convaudit report MODEL -o {path.stem}.json"
        )
    version = str(doc.get("schema_version", "?"))
    if version.split(".")[0] != "1":
        raise ModelLoadError(f"{spec}: report schema {version} is not one this convaudit reads (1.x)")
    doc["graph"] = None  # the graph view is not compared, and its layout fields change more often than the rest
    try:
        return Analysis.from_dict(doc)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelLoadError(f"{spec}: not a readable convaudit report (schema {version}): {exc!r}") from exc


def _analyse(args: argparse.Namespace, spec: str) -> Any:
    """Load and analyse one model side, as ``report`` does (no cross-check: the diff does not compare it)."""
    from convaudit.analysis.engine import analyze
    from convaudit.options import AnalysisOptions

    side = argparse.Namespace(**{**vars(args), "source": spec})
    loaded = load_source(side)
    options = AnalysisOptions(
        cross_check=False,
        separability=True,
        train_mode=args.train_mode,
        source=loaded.source,
        leaf_types=leaf_types(side, loaded),
    )
    analysis = analyze(loaded.model, loaded.args, loaded.kwargs, options=options)
    return dataclasses.replace(
        analysis,
        weights=loaded.weights,
        weights_source=loaded.weights_source,
        warnings=tuple(loaded.notes) + analysis.warnings,
    )


def run(args: argparse.Namespace) -> int:
    """Diff the two sides, write the diff, and exit 3 if --fail-on-increase is exceeded."""
    from convaudit.formats import render
    from convaudit.formats.diff import summary_line
    from convaudit.outputs.files import check_output, write_atomic
    from convaudit.review.diff import diff_analyses, increase_failures, parse_increase_limits

    limits = parse_increase_limits(args.fail_on_increase) if args.fail_on_increase else ()
    fmt, output = output_format(args)
    inputs = [p for p in (args.base, args.head, args.weights) if p]
    if output != "-":
        check_output(output, inputs=inputs, force=args.force)  # before the work, not after it
    reports = (is_saved_report(args.base), is_saved_report(args.head))
    base, head = (
        read_report(s) if r else _analyse(args, s) for s, r in zip((args.base, args.head), reports, strict=True)
    )
    diff = diff_analyses(base, head, sources=(args.base, args.head), from_report=reports)
    text = render(diff, fmt)
    if output == "-":
        args.data_out.write(text)
    else:
        written = write_atomic(output, text, force=args.force, inputs=inputs)
        if not args.quiet:
            print(summary_line(diff))
            print(f"wrote {written} ({fmt})")
    failures = increase_failures(diff, limits)
    for line in failures:
        print(f"convaudit: --fail-on-increase: {line}", file=sys.stderr)
    return EXIT_BUDGET if failures else EXIT_OK


COMMAND = Command(
    "diff", "compare two models or saved reports: layers added, removed, changed; totals", add_arguments, run
)
