"""What every command shares: the :class:`Command` record, the options defined once, loading the source."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the loader imports torch: only when a command runs, not to print --help
    from convaudit.cli.progress import Progress
    from convaudit.sources import LoadedModel

__all__ = [
    "Command",
    "add_analysis_options",
    "add_common_options",
    "add_source_options",
    "input_paths",
    "leaf_types",
    "load_source",
]


@dataclass(frozen=True)
class Command:
    """One subcommand: ``add_arguments`` fills its parser, ``run`` does the work and returns the exit code."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def add_source_options(parser: argparse.ArgumentParser, verb: str, *, source: bool = True) -> None:
    """SOURCE (unless ``source`` is false: a command naming its own), --entry, --weights, --trust, --input-shape."""
    if source:
        parser.add_argument(
            "source",
            help="model.py, a checkpoint (.pt/.pth) holding a module, a model.onnx, torchvision:NAME or timm:NAME",
        )
    parser.add_argument("--entry", help=f"name of the function, class or module in model.py to {verb}")
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
    parser.add_argument(
        "--input-shape",
        action="append",
        default=[],
        metavar="SHAPE",
        help="input shape like 1,3,224,224; repeat for several inputs (overrides example_inputs())",
    )


def add_analysis_options(parser: argparse.ArgumentParser) -> None:
    """--leaf and --train-mode: how the model is traced, and in which mode."""
    parser.add_argument(
        "--leaf",
        action="append",
        default=[],
        metavar="MODULE.CLASS",
        help="a module class the tracer must not enter (costed as one call); imports MODULE (repeatable)",
    )
    parser.add_argument(
        "--train-mode",
        action="store_true",
        help="analyse the training graph (model.train(): auxiliary heads, batch statistics); default eval mode",
    )


def add_common_options(parser: argparse.ArgumentParser, output_help: str, output_default: str | None = None) -> None:
    """-o, --force, -q and --debug: what a command writes and how it talks."""
    parser.add_argument("-o", "--output", default=output_default, help=output_help)
    parser.add_argument("--force", action="store_true", help="replace an existing output written by convaudit")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def input_paths(args: argparse.Namespace) -> list[str]:
    """The files a command reads (the source, --weights, --images, --holdout): -o may not be or hold any of them."""
    named = (args.source, getattr(args, "weights", None), getattr(args, "images", None), getattr(args, "holdout", None))
    return [p for p in named if p]


def leaf_types(args: argparse.Namespace, loaded: LoadedModel) -> tuple[type, ...]:
    """The classes --leaf names, imported (after loading: a bare CLASS is one the model file defines)."""
    from convaudit.sources.leaves import import_module_classes

    return import_module_classes(args.leaf, loaded.namespace)


def load_source(args: argparse.Namespace, progress: Progress | None = None) -> LoadedModel:
    """The model, its example inputs and where its weights came from, as the source options say.

    With ``progress``, loading is a stage of it ("load model.py, weights w.pt").
    """
    from convaudit.sources import load, parse_shape

    shapes = [parse_shape(s) for s in args.input_shape]
    if progress is None:
        return load(args.source, entry=args.entry, input_shapes=shapes, weights=args.weights, trust=args.trust)
    label = f"load {args.source}" + (f", weights {args.weights}" if args.weights else "")
    with progress.step(label):
        return load(args.source, entry=args.entry, input_shapes=shapes, weights=args.weights, trust=args.trust)
