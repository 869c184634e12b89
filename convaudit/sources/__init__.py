"""Sources: model.py files, ``torchvision:``/``timm:`` names, checkpoints (vetted as data), their example inputs,
and the ``--leaf`` classes named on the command line."""

from convaudit.sources.inputs import parse_shape
from convaudit.sources.loader import LoadedModel, load

__all__ = ["LoadedModel", "load", "parse_shape"]
