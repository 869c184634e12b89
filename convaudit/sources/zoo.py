"""Model zoos: ``torchvision:NAME`` and ``timm:NAME``, built untrained (nothing is fetched) at their own input size.

Each builder runs under a fixed seed (torch's global generator seeded with :data:`SEED`, its state
restored after: :func:`seeded`), so two reports of the same name show the same (random) weights, say so
("under seed 0"), and the caller's random stream does not move; the loader runs a model.py the same way.
The input size comes from the model's own data before anything is guessed: timm's
``pretrained_cfg['input_size']``; for torchvision the size a ViT is built for (``image_size``), else the
crop (or resize) size of its default weights' transforms, else a small table. torchvision's detectors take
a list of ``[C, H, W]`` images: one image, the size their own transform resizes to (``fixed_size``, else the
eval-mode ``min_size``, square: kept as it is). The note returned with it says where the size came from.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import torch
import torch.nn as nn

from convaudit.errors import ModelLoadError
from convaudit.sources.inputs import InputForm
from convaudit.sources.locations import record_definitions

__all__ = ["SEED", "VIDEO_FRAMES", "ZOO_PREFIXES", "ZooModel", "load_zoo", "seeded"]

#: The source prefixes this module builds.
ZOO_PREFIXES = ("torchvision:", "timm:")

#: The seed untrained models are built under (zoo builders, a model.py's import and build).
SEED = 0

#: Frames per clip for torchvision's video models (the clip length of torchvision's video references).
VIDEO_FRAMES = 16

#: Constructor arguments that spell out torchvision's default where ``weights=None`` warns about it.
_TORCHVISION_KWARGS: dict[str, dict[str, Any]] = {
    "googlenet": {"init_weights": True},
    "inception_v3": {"init_weights": True},
}


@dataclass(frozen=True)
class ZooModel:
    """A zoo model, built untrained, with the input shape it is documented for (None: nothing documented)."""

    model: nn.Module
    shape: tuple[int, ...] | None
    shape_note: str | None  #: where the shape came from, for the report
    entry: str  #: what was built, e.g. "timm.create_model('resnet18')"
    built: str  #: the builder call and its seed, the report's weights source
    form: InputForm = field(default_factory=InputForm)  #: how shapes become its inputs (a detector's list of images)
    notes: tuple[str, ...] = ()  #: more for the report, kept when --input-shape replaces the shape


@contextlib.contextmanager
def seeded(seed: int = SEED) -> Iterator[None]:
    """Torch's global CPU generator seeded for the block; its state (the caller's random stream) restored after."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)  # NB: not torch.manual_seed, which also queues CUDA seeds for later
        yield


def load_zoo(spec: str) -> ZooModel:
    """Build ``torchvision:NAME`` or ``timm:NAME``; a ModelLoadError (with close names) when there is no such model."""
    prefix, _, name = spec.partition(":")
    if prefix == "timm":
        return _timm(name)
    return _torchvision(name)


def _shape_note(shape: tuple[int, ...], where: str) -> str:
    return f"input shape {','.join(map(str, shape))} from {where}; pass --input-shape to set it"


def _unknown(source: str, name: str, names: list[str], listing: str) -> ModelLoadError:
    close = difflib.get_close_matches(name, names, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; see {listing}"
    return ModelLoadError(f"{source}:{name}: no such {source} model{hint}")


# ---------------------------------------------------------------- timm


def _timm(name: str) -> ZooModel:
    try:
        import timm
    except ImportError as exc:
        raise ModelLoadError(f"timm:{name} needs timm, which is not installed; pip install 'convaudit[timm]'") from exc
    known = name in timm.list_pretrained() if "." in name else timm.is_model(name)  # NAME or NAME.TAG
    if not known:
        names = timm.list_pretrained() if "." in name else timm.list_models()
        raise _unknown("timm", name, names, "timm.list_models()")
    try:
        with seeded(), record_definitions():
            model = timm.create_model(name, pretrained=False)
    except Exception as exc:  # the builder is third-party code: its failure is a load failure, in one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ModelLoadError(f"timm:{name}: timm.create_model raised {type(exc).__name__}: {first}") from exc
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    size = cfg.get("input_size") if isinstance(cfg, dict) else None
    shape = (1, *size) if _is_size(size) else None
    note = _shape_note(shape, "timm's pretrained_cfg['input_size']") if shape else None
    return ZooModel(
        model,
        shape,
        note,
        f"timm.create_model({name!r})",
        f"timm.create_model({name!r}, pretrained=False) under seed {SEED}",
    )


def _is_size(value: Any) -> TypeGuard[tuple[int, ...] | list[int]]:
    """A non-empty tuple or list of positive ints."""
    return isinstance(value, (tuple, list)) and bool(value) and all(isinstance(d, int) and d > 0 for d in value)


# ---------------------------------------------------------------- torchvision


def _torchvision(name: str) -> ZooModel:
    try:
        import torchvision.models as tvm
    except ImportError as exc:
        raise ModelLoadError(f"torchvision:{name} needs torchvision; pip install torchvision") from exc
    available = tvm.list_models()
    if name not in available:
        raise _unknown("torchvision", name, available, "torchvision.models.list_models()")
    builder = tvm.get_model_builder(name)
    kwargs: dict[str, Any] = {"weights": None, **_TORCHVISION_KWARGS.get(name, {})}
    if "weights_backbone" in inspect.signature(builder).parameters:
        kwargs["weights_backbone"] = None  # segmentation/detection builders default to downloading one
    with seeded(), record_definitions():
        model = builder(**kwargs)
    if name in tvm.list_models(module=tvm.detection):
        return _detector(name, model)
    video = name in tvm.list_models(module=tvm.video)
    shape, where = _torchvision_shape(name, model, video)
    return ZooModel(
        model,
        shape,
        _shape_note(shape, where),
        f"torchvision.models.{name}",
        f"torchvision.models.{name}(weights=None) under seed {SEED}",
    )


def _detector(name: str, model: nn.Module) -> ZooModel:
    """A detector takes a list of [C, H, W] images: one, at the size its transform resizes to (kept as it is)."""
    transform = getattr(model, "transform", None)
    cls = type(model).__name__
    fixed, min_size, max_size = (getattr(transform, k, None) for k in ("fixed_size", "min_size", "max_size"))
    if _is_size(fixed) and len(fixed) == 2:  # (width, height), as GeneralizedRCNNTransform reads it
        shape, where = (3, int(fixed[1]), int(fixed[0])), f"{cls}.transform.fixed_size"
        resize = f"{cls}'s transform resizes every image to {fixed[1]}×{fixed[0]}"
    elif _is_size(min_size) and isinstance(max_size, int):
        side = int(min_size[-1])  # eval mode: the last (training picks one at random)
        shape, where = (3, side, side), f"{cls}.transform.min_size (eval)"
        resize = f"{cls}'s transform resizes every image to shorter side {side}, longer side at most {max_size}"
    else:
        shape, where, resize = (3, 224, 224), "the ImageNet default, 224² (nothing documented for it)", ""
    note = f"input shape {','.join(map(str, shape))} (one image) from {where}; pass --input-shape C,H,W per image"
    notes = (f"{resize} before its backbone: the costs are at that size",) if resize else ()
    return ZooModel(
        model,
        shape,
        note,
        f"torchvision.models.{name}",
        f"torchvision.models.{name}(weights=None) under seed {SEED}",
        form=InputForm(images=True),
        notes=notes,
    )


def _torchvision_shape(name: str, model: nn.Module, video: bool) -> tuple[tuple[int, ...], str]:
    """(shape, where it came from): the model's own image_size, its weights' transforms, else the table."""
    image_size = getattr(model, "image_size", None)  # ViT: the position embedding is built for this size
    if isinstance(image_size, int) and not isinstance(image_size, bool) and image_size > 0:
        return (1, 3, image_size, image_size), f"{type(model).__name__}.image_size"
    documented = _documented_size(name)
    if documented is not None:
        (h, w), where = documented
        frames = (VIDEO_FRAMES,) if video else ()
        more = f", {VIDEO_FRAMES} frames (torchvision's video references)" if video else ""
        return (1, 3, *frames, h, w), where + more
    if video:
        return (1, 3, VIDEO_FRAMES, 112, 112), "the table for torchvision's video models"
    return (1, 3, 224, 224), "the ImageNet default, 224² (nothing documented for it)"


def _documented_size(name: str) -> tuple[tuple[int, int], str] | None:
    """(h, w) of the default weights' preprocessing (crop, else resize) and where it is written; None if none."""
    import torchvision.models as tvm

    try:
        weights = tvm.get_model_weights(name).DEFAULT
        keywords = dict(getattr(weights.transforms, "keywords", {}))  # a functools.partial of the transform
    except Exception:  # no weights enum, or one of another shape: the table decides
        return None
    for key in ("crop_size", "resize_size"):
        size = keywords.get(key)
        if isinstance(size, int):
            size = (size, size)
        if isinstance(size, (tuple, list)) and len(size) == 1:  # a shorter-side resize, as (256,)
            size = (size[0], size[0])
        if _is_size(size) and len(size) == 2:
            return (int(size[0]), int(size[1])), f"torchvision's {type(weights).__name__}.{weights.name} ({key})"
    return None
