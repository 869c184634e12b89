"""``convaudit convert SOURCE -o DIR``: rewrite convs as depthwise + pointwise, verify, save the artifact."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

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
from convaudit.options import ConversionOptions
from convaudit.vocab import Init, Order, Style

__all__ = ["COMMAND", "add_arguments", "options_of", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``convaudit convert``."""
    add_source_options(parser, "convert")
    add_analysis_options(parser)
    add_common_options(parser, "output directory (default: converted)", output_default="converted")
    parser.add_argument("--rank", help="channel multiplier m for every chosen layer, or 'full' (exact); default 1")
    parser.add_argument("--order", default=str(Order.DW_PW), choices=[str(o) for o in Order], help="default dw_pw")
    parser.add_argument("--init", default=str(Init.SVD), choices=[str(i) for i in Init], help="default svd")
    parser.add_argument(
        "--style", choices=[str(s) for s in Style], help="BN+ReLU between the parts (with --init random only)"
    )
    parser.add_argument("--sequential", action="store_true", help="calibrate each layer on the model converted so far")
    parser.add_argument(
        "--recalibrate-bn",
        action="store_true",
        help="re-estimate BatchNorm statistics on calibration_inputs() after the rewrite",
    )
    parser.add_argument("--include", action="append", default=[], metavar="GLOB", help="convert only matching layers")
    parser.add_argument("--exclude", action="append", default=[], metavar="GLOB", help="leave matching layers alone")
    parser.add_argument(
        "--min-savings", type=float, default=0.0, metavar="SHARE", help="skip layers saving less (e.g. 0.5)"
    )
    parser.add_argument(
        "--energy", type=float, metavar="SHARE", help="per layer, the smallest m keeping this weight energy"
    )
    parser.add_argument(
        "--target-macs", type=float, metavar="SHARE", help="whole-model MAC budget as a share of today's"
    )
    parser.add_argument("--exact", action="store_true", help="fail (exit 1) if any layer's relative error exceeds 1e-4")


def options_of(args: argparse.Namespace) -> ConversionOptions:
    """The ConversionOptions the command line asks for (validated by ConversionOptions itself)."""
    return ConversionOptions(
        rank=args.rank or None,
        order=args.order,
        init=args.init,
        sequential=args.sequential,
        recalibrate_bn=args.recalibrate_bn,
        style=args.style,
        include=args.include,
        exclude=args.exclude,
        min_savings=args.min_savings,
        energy=args.energy,
        target_macs=args.target_macs,
        exact=args.exact,
        train_mode=args.train_mode,
    )


def run(args: argparse.Namespace) -> int:
    """Convert the source, write the artifact directory; the conversion summary on the terminal unless -q."""
    from convaudit.conversion import convert
    from convaudit.conversion.artifact.writer import ARTIFACT_FILES, write_artifact
    from convaudit.formats import render
    from convaudit.outputs.files import check_output
    from convaudit.sources.inputs import materialize

    # before the work, not after it
    check_output(args.output, inputs=input_paths(args), force=args.force, directory=True, files=ARTIFACT_FILES)
    options = options_of(args)
    loaded = load_source(args)
    calibration = _calibration(loaded.namespace, options, args.source)
    result = convert(
        loaded.model,
        loaded.args,
        loaded.kwargs,
        options=dataclasses.replace(options, source=loaded.source, leaf_types=leaf_types(args, loaded)),
        calibration=calibration,
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
        html=render(report, "html"),
        force=args.force,
        inputs=input_paths(args),
    )
    if not args.quiet:
        print(render(report, "text"))
        print(f"wrote {out}/ (model.py, state_dict.pt, conversion.json, conversion.html)")
        print(f'load it: python -c "import convaudit; m = convaudit.load_converted({str(out)!r})"')
    return EXIT_OK


def _calibration(namespace: dict[str, Any], options: ConversionOptions, source: str) -> list[Any] | None:
    """The batches of calibration_inputs() in model.py, when the options need them."""
    if options.init is not Init.CALIBRATED and not options.recalibrate_bn:
        return None
    fn = namespace.get("calibration_inputs")
    if not callable(fn):
        flag = "--init calibrated" if options.init is Init.CALIBRATED else "--recalibrate-bn"
        raise UsageError(f"{flag} needs calibration_inputs() in {source} (an iterable of input batches)")
    return list(fn())


COMMAND = Command(
    "convert", "rewrite convs as depthwise + pointwise from their own weights, verify, save", add_arguments, run
)
