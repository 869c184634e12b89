"""The words convaudit's options and documents use, each defined once as a ``StrEnum``.

A member equals its string (``Order.DW_PW == "dw_pw"``) and hashes like it, so records, JSON and the
rendered reports read the same as before; reading a user's value goes through :meth:`of`, the one
place such a value is validated. Torch-free: documents and renderers import it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Self

from convaudit.errors import UsageError

__all__ = [
    "LAYER_ORDERS",
    "Format",
    "Init",
    "Kind",
    "Mode",
    "Order",
    "Select",
    "Style",
    "TracePath",
    "Vocabulary",
    "WeightsOrigin",
]


def _choices(values: tuple[str, ...]) -> str:
    """'a, b or c', as the messages say it."""
    return values[0] if len(values) == 1 else f"{', '.join(values[:-1])} or {values[-1]}"


class Vocabulary(StrEnum):
    """Base of the vocabularies: a member is its string; :meth:`of` reads one from user input."""

    @classmethod
    def of(cls, value: object, flag: str | None = None, allowed: tuple[Self, ...] | None = None) -> Self:
        """The member ``value`` names, or a UsageError naming ``flag`` and the choices.

        Args:
            flag: how the user gave it (``"--order"``); default the class name in lower case.
            allowed: accept only these members (e.g. a layer's order is never ``auto``).
        """
        choices = allowed if allowed is not None else tuple(cls)
        if isinstance(value, str):  # a plain string or a member: members are strings
            member = cls._value2member_map_.get(str(value))
            if member is not None and member in choices:
                return member
        raise UsageError(f"{flag or cls.__name__.lower()} {value!r}: choose {_choices(tuple(str(c) for c in choices))}")


class Order(Vocabulary):
    """Which part of a separable replacement comes first."""

    DW_PW = "dw_pw"  #: depthwise (k×k, the conv's stride) then pointwise 1×1
    PW_DW = "pw_dw"  #: pointwise 1×1 at the input resolution, then depthwise (BSConv-U)
    AUTO = "auto"  #: a plan's choice per layer, the order keeping more weight energy; never a layer's order


#: The orders a layer can have (``auto`` is resolved by the plan).
LAYER_ORDERS: tuple[Order, ...] = (Order.DW_PW, Order.PW_DW)


class Init(Vocabulary):
    """Where a separable layer's weights come from."""

    SVD = "svd"  #: factorised from the conv's own weights (weight space)
    CALIBRATED = "calibrated"  #: fitted to the conv's outputs on calibration inputs (dw_pw only)
    RANDOM = "random"  #: a fresh initialisation, for training from scratch


class Select(Vocabulary):
    """How a plan chooses layers and m under a budget (``--target-macs``, ``--max-output-error``)."""

    ENERGY = "energy"  #: the least weight energy lost (read from the weights alone; the default)
    SENSITIVITY = "sensitivity"  #: the least final-output error, measured per layer and m on calibration batches
    #: each candidate as the analysis recommends (convert at its order and m, or keep): by the device profile's
    #: predicted time and the weight energy (``convaudit convert``'s default; the Python API's default is rank 1)
    RECOMMENDED = "recommended"


class Style(Vocabulary):
    """What sits between the two parts of a separable layer (nothing by default)."""

    MOBILENET = "mobilenet"  #: BatchNorm + ReLU (dw_pw, init random: not function-preserving)


class Kind(Vocabulary):
    """What a conv is (the one definition of each is ``analysis.inventory.conv_kind``)."""

    STANDARD = "standard"
    GROUPED = "grouped"
    DEPTHWISE = "depthwise"
    POINTWISE = "pointwise"
    TRANSPOSED = "transposed"
    CUSTOM = "custom"  #: a conv subclass with its own forward


class TracePath(Vocabulary):
    """How the analysis saw the model's calls."""

    FX = "fx"  #: a symbolic trace (torch.fx)
    HOOKS = "hooks"  #: the model's forward under fake tensors, with module hooks
    REAL = "real"  #: the model's forward run for real (it reads tensor values), with module hooks


class Mode(Vocabulary):
    """The mode the model was analysed in: as it runs for inference (the default), or its training graph."""

    EVAL = "eval"  #: model.eval(): BatchNorm reads its running statistics, dropout and training-only branches off
    TRAIN = "train"  #: model.train() (--train-mode): the training graph, auxiliary heads included


class WeightsOrigin(Vocabulary):
    """Where the analysed model's weights came from."""

    LOADED = "loaded"  #: a checkpoint or --weights: trained
    MODEL_FILE = "model file"  #: whatever model.py builds
    INITIALISED = "initialised"  #: a fresh torchvision/timm model: random
    AS_GIVEN = "as given"  #: a model passed to analyze()/convert() (not loaded by convaudit)


class Format(Vocabulary):
    """The built-in report formats (more can be registered: see ``convaudit.formats``)."""

    HTML = "html"
    JSON = "json"
    TEXT = "text"
    MARKDOWN = "markdown"
    SARIF = "sarif"  #: SARIF 2.1.0, for code scanning (report and check)
