"""convaudit: find every k×k convolution in a PyTorch model, cost it, and say what a
depthwise-separable rewrite would save.

    >>> import convaudit, torchvision
    >>> a = convaudit.analyze(torchvision.models.resnet18(), input_shape=(1, 3, 224, 224))
    >>> a.totals.macs, len(a.candidates)
"""

__version__ = "0.1.0"

from .analysis import analyze  # noqa: E402
from .artifact import load_converted  # noqa: E402
from .convert import Conversion, convert  # noqa: E402
from .records import SCHEMA_VERSION, Analysis, ConversionReport, ConvLayer  # noqa: E402
from .separable import SeparableConv, SeparableConv1d, SeparableConv2d, SeparableConv3d  # noqa: E402

__all__ = [
    "analyze",
    "convert",
    "load_converted",
    "Analysis",
    "ConvLayer",
    "Conversion",
    "ConversionReport",
    "SeparableConv",
    "SeparableConv1d",
    "SeparableConv2d",
    "SeparableConv3d",
    "SCHEMA_VERSION",
    "__version__",
]
