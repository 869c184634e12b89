"""A residual network with every kind of conv convaudit tells apart.

Standard and grouped 3×3 convs (candidates), depthwise and pointwise convs, a transposed conv,
a "same"-padding Conv2d subclass with its own forward (custom), and a functional conv whose
weight is a parameter.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class SameConv2d(nn.Conv2d):
    """TensorFlow-style 'SAME' padding computed from the input size (like timm's Conv2dSame)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.kernel_size
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class BasicBlock(nn.Module):
    def __init__(self, channels: int, groups: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False, groups=groups)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(out)))


class MixerHead(nn.Module):
    """A functional 3×3 conv on a parameter, called twice with the same weight."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(channels, channels, 3, 3) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight, padding=1)
        return F.conv2d(F.relu(x), self.weight, padding=1)


class ResidualNet(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = SameConv2d(3, 32, 3, stride=2)
        self.block1 = BasicBlock(32)
        self.block2 = BasicBlock(32, groups=4)
        self.dw = nn.Conv2d(32, 32, 3, padding=1, groups=32)
        self.pw = nn.Conv2d(32, 64, 1)
        self.head = MixerHead(64)
        self.up = nn.ConvTranspose2d(64, 16, 2, stride=2)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block2(self.block1(self.stem(x)))
        x = self.head(self.pw(self.dw(x)))
        x = self.up(x)
        return self.fc(x.mean(dim=(2, 3)))


def build_model() -> nn.Module:
    return ResidualNet()


def example_inputs():
    return (torch.randn(2, 3, 64, 64),)
