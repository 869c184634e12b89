"""Calibration and held-out inputs from a directory of image files (``convert --images DIR``, ``--holdout DIR``).

Images are read with PIL (a torchvision dependency) and made into model inputs by the preprocessing the
model declares: ``preprocess(image)`` in model.py (a PIL image, as read, → the input tensor of one sample),
else, for ``torchvision:NAME`` and ``timm:NAME``, the model's own eval transforms (torchvision's
``Weights.DEFAULT.transforms()``, timm's ``resolve_data_config`` + ``create_transform``: both build
offline). Nothing else is guessed: without either, ``--images`` is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from convaudit.errors import UsageError

__all__ = ["IMAGES_PER_BATCH", "IMAGE_SUFFIXES", "image_batches", "image_files", "preprocessor"]

#: Files read as images, by suffix (case-insensitive).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
#: Samples per calibration batch made from image files.
IMAGES_PER_BATCH = 8

Preprocess = Callable[[Any], torch.Tensor]


def image_files(directory: str, flag: str = "--images") -> list[Path]:
    """The image files directly in ``directory``, sorted by name; a UsageError when there are none."""
    root = Path(directory)
    if not root.is_dir():
        raise UsageError(f"{flag} {directory}: no such directory; give a directory of image files")
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UsageError(f"{flag} {directory}: no image files ({', '.join(IMAGE_SUFFIXES[:4])}, ...) in it")
    return files


def preprocessor(
    source: str, model: nn.Module, namespace: Mapping[str, Any], flag: str = "--images"
) -> tuple[Preprocess, bool]:
    """The function turning one PIL image into one sample, and whether it wants RGB images.

    ``preprocess`` in model.py comes first (it gets the image as read); a zoo source uses its eval transforms.
    """
    declared = namespace.get("preprocess")
    if callable(declared):
        return declared, False
    prefix, _, name = source.partition(":")
    if prefix == "torchvision" and name:
        return _torchvision_transforms(name, flag), True
    if prefix == "timm" and name:
        return _timm_transforms(model), True
    raise UsageError(
        f"{flag} needs the model's preprocessing: define preprocess(image) in {source} "
        "(a PIL image → the input tensor of one sample)"
    )


def _torchvision_transforms(name: str, flag: str) -> Preprocess:
    import torchvision.models as tvm

    try:
        transforms: Preprocess = tvm.get_model_weights(name).DEFAULT.transforms()
    except Exception as exc:  # no weights enum: nothing documents this model's preprocessing
        raise UsageError(
            f"{flag}: torchvision:{name} documents no preprocessing (no weights enum); "
            "write a model.py with build_model() and preprocess(image)"
        ) from exc
    return transforms


def _timm_transforms(model: nn.Module) -> Preprocess:
    from timm.data import create_transform, resolve_data_config

    config = resolve_data_config({}, model=model)
    transforms: Preprocess = create_transform(**config)  # eval transforms (is_training defaults to False)
    return transforms


def image_batches(
    files: list[Path],
    preprocess: Preprocess,
    *,
    rgb: bool,
    ndim: int | None = None,
    flag: str = "--images",
    per_batch: int = IMAGES_PER_BATCH,
) -> list[torch.Tensor]:
    """The images, preprocessed one by one and stacked into batches of ``per_batch`` samples.

    Args:
        ndim: dimensions of the model's input batch (of its example input): a sample with as many already
            has its batch dimension (of 1) and is concatenated, one with one fewer is stacked.
    """
    from PIL import Image, UnidentifiedImageError

    samples: list[torch.Tensor] = []
    for path in files:
        try:
            with Image.open(path) as opened:
                image = opened.convert("RGB") if rgb else opened.copy()
        except (UnidentifiedImageError, OSError) as exc:
            raise UsageError(f"{flag}: {path} cannot be read as an image ({type(exc).__name__}); remove it") from exc
        try:
            sample = preprocess(image)
        except Exception as exc:  # the model's own preprocessing: its failure, in one line
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise UsageError(f"{flag}: preprocessing {path.name} raised {type(exc).__name__}: {first}") from exc
        if not isinstance(sample, torch.Tensor):
            raise UsageError(f"{flag}: preprocessing {path.name} gave a {type(sample).__name__}, not a tensor")
        if samples and sample.shape != samples[0].shape:
            raise UsageError(
                f"{flag}: {path.name} preprocesses to {tuple(sample.shape)}, {files[0].name} to "
                f"{tuple(samples[0].shape)}; the preprocessing must give one size (crop or resize)"
            )
        if ndim is not None and sample.dim() not in (ndim, ndim - 1):
            raise UsageError(
                f"{flag}: preprocessing {path.name} gave a {sample.dim()}-d tensor {tuple(sample.shape)}; "
                f"the model takes {ndim}-d batches: return one sample of {ndim - 1} dimensions"
            )
        samples.append(sample)
    join = torch.cat if ndim is not None and samples[0].dim() == ndim else torch.stack
    return [join(samples[i : i + per_batch]) for i in range(0, len(samples), per_batch)]
