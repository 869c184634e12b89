"""Sources: model.py files, ``torchvision:`` names, checkpoints (vetted as data), and their example inputs."""

from convaudit.sources.inputs import parse_shape
from convaudit.sources.loader import LoadedModel, load

__all__ = ["LoadedModel", "load", "parse_shape"]
