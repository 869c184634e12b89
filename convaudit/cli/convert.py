"""``convaudit convert SOURCE -o DIR``: rewrite convs as depthwise + pointwise, recover, verify, save the artifact."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import re
from typing import TYPE_CHECKING, Any

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
from convaudit.vocab import Init, Order, Select, Style

if TYPE_CHECKING:  # the loader imports torch: only when the command runs
    from convaudit.sources import LoadedModel

__all__ = ["COMMAND", "add_arguments", "options_of", "parse_duration", "run"]

#: Seconds per unit of --recover-time.
DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``convaudit convert``."""
    add_source_options(parser, "convert")
    add_analysis_options(parser)
    add_common_options(parser, "output directory (default: converted)", output_default="converted")
    parser.add_argument(
        "--rank", help="channel multiplier m for every chosen layer, or 'full' (exact); default: as recommended"
    )
    parser.add_argument(
        "--order", choices=[str(o) for o in Order], help="default dw_pw (with --rank etc.), else as recommended"
    )
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
    parser.add_argument(
        "--select",
        choices=[str(s) for s in Select],
        help="recommended (the default when no --rank/--energy/--target-macs/--order/--max-output-error is given): "
        "each layer as the report recommends, by predicted time and weight energy; energy or sensitivity: "
        "under --target-macs, by weight energy (the default there) or by their effect on the output",
    )
    parser.add_argument(
        "--max-output-error",
        type=float,
        metavar="E",
        help="the cheapest conversion whose held-out output error is at most E (exit 1 if none is)",
    )
    _add_recovery_arguments(parser)


def _add_recovery_arguments(parser: argparse.ArgumentParser) -> None:
    """--recover and its budget, --images/--holdout: what recovery learns from and is measured on."""
    parser.add_argument(
        "--recover",
        action="store_true",
        help="label-free recovery: train the converted layers to reproduce the original on the calibration inputs",
    )
    parser.add_argument("--recover-steps", type=int, metavar="N", help="recovery's step budget (default 600)")
    parser.add_argument("--recover-time", metavar="DURATION", help="recovery's time budget, e.g. 90s, 10m, 1h")
    parser.add_argument("--seed", type=int, default=0, help="recovery's random seed (default 0: repeatable)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where recovery trains (default cpu)")
    parser.add_argument(
        "--images",
        metavar="DIR",
        help="calibration inputs from the image files in DIR, preprocessed by preprocess(image) in model.py "
        "(torchvision:/timm: sources: their eval transforms); replaces calibration_inputs()",
    )
    parser.add_argument(
        "--holdout", metavar="DIR", help="held-out image files: fidelity is measured on them, never fitted to"
    )


def options_of(args: argparse.Namespace) -> ConversionOptions:
    """The ConversionOptions the command line asks for (validated by ConversionOptions itself).

    With no choice of layers or m given, the recommended set (the Python API's default stays rank 1).
    """
    chosen = (args.rank, args.order, args.energy, args.target_macs, args.select, args.max_output_error)
    select = args.select if any(v is not None for v in chosen) else Select.RECOMMENDED
    return ConversionOptions(
        rank=args.rank or None,
        order=args.order or Order.DW_PW,
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
        select=select,
        max_output_error=args.max_output_error,
        recover=args.recover,
        recover_steps=args.recover_steps,
        recover_seconds=parse_duration(args.recover_time) if args.recover_time is not None else None,
        seed=args.seed,
        device=args.device,
    )


def parse_duration(text: str) -> float:
    """'90s', '10m', '1.5h' → seconds; anything else is a UsageError (the unit is required)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smh])", text.strip())
    seconds = float(match[1]) * DURATION_UNITS[match[2]] if match else 0.0
    if seconds <= 0:
        raise UsageError(f"--recover-time {text!r}: give a positive duration with its unit, like 90s, 10m or 1.5h")
    return seconds


def run(args: argparse.Namespace) -> int:
    """Convert the source, write the artifact directory; the conversion summary on the terminal unless -q."""
    from convaudit.cli.progress import Progress, paint
    from convaudit.conversion import convert
    from convaudit.conversion.artifact.writer import ARTIFACT_FILES
    from convaudit.conversion.reporting import with_weights
    from convaudit.formats import render
    from convaudit.outputs.files import check_output
    from convaudit.sources.inputs import materialize

    # before the work, not after it
    check_output(args.output, inputs=input_paths(args), force=args.force, directory=True, files=ARTIFACT_FILES)
    options = options_of(args)
    progress = Progress(quiet=args.quiet)
    loaded = load_source(args, progress)
    with progress.step("read images") if args.images or args.holdout else contextlib.nullcontext():
        calibration = _calibration(loaded, options, args)
        holdout = _images(loaded, args.holdout, "--holdout") if args.holdout else None
    with progress.step("convert: plan, rewrite, verify" + (", recover" if options.recover else "")):
        result = convert(
            loaded.model,
            loaded.args,
            loaded.kwargs,
            options=dataclasses.replace(options, source=loaded.source, leaf_types=leaf_types(args, loaded)),
            calibration=calibration,
            holdout=holdout,
            progress=progress.recovery,
        )
    example = (materialize(loaded.args), materialize(loaded.kwargs))
    report = with_weights(result.report, loaded.weights, loaded.weights_source)
    with progress.step(f"write {args.output}"):
        out = _write(args, loaded, result, report, example)
    if not args.quiet:
        print(render(report, "text"))
        print(paint(f"wrote {out}/ (model.py, state_dict.pt, conversion.json, conversion.html)", "ok"))
        load = f'python -c "import convaudit; m = convaudit.load_converted({str(out)!r})"'
        print(paint(f"next: load it: {load}", "next"))
    return EXIT_OK


def _write(args: argparse.Namespace, loaded: LoadedModel, result: Any, report: Any, example: Any) -> Any:
    """The artifact directory: model.py, state_dict.pt, conversion.json and conversion.html."""
    from convaudit.conversion.artifact.writer import write_artifact
    from convaudit.formats import render

    return write_artifact(
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


def _calibration(loaded: LoadedModel, options: ConversionOptions, args: argparse.Namespace) -> list[Any] | None:
    """The calibration batches: --images, else calibration_inputs() in model.py (a share is held out)."""
    if args.images:
        return _images(loaded, args.images, "--images")
    fn = loaded.namespace.get("calibration_inputs")
    if callable(fn):
        from convaudit.sources.zoo import seeded

        with seeded():  # random calibration batches are the same each run; the caller's stream does not move
            return list(fn())
    needs = [
        flag
        for flag, needed in (
            ("--init calibrated", options.init is Init.CALIBRATED),
            ("--recalibrate-bn", options.recalibrate_bn),
            ("--recover", options.recover),
            ("--select sensitivity", options.select is Select.SENSITIVITY),
        )
        if needed
    ]
    if needs:
        raise UsageError(
            f"{needs[0]} needs calibration_inputs() in {args.source} (an iterable of input batches) or --images DIR"
        )
    return None


def _images(loaded: LoadedModel, directory: str, flag: str) -> list[Any]:
    """Batches of the image files in ``directory``, preprocessed as the model declares."""
    from convaudit.sources.images import image_batches, image_files, preprocessor

    files = image_files(directory, flag)
    preprocess, rgb = preprocessor(loaded.source, loaded.model, loaded.namespace, flag)
    ndim = loaded.args[0].dim() if loaded.args and hasattr(loaded.args[0], "dim") else None
    return image_batches(files, preprocess, rgb=rgb, ndim=ndim, flag=flag)


COMMAND = Command(
    "convert", "rewrite convs as depthwise + pointwise from their own weights, verify, save", add_arguments, run
)
