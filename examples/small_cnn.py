"""A small CNN holding the seed lesson's two layers: 64→64 3×3 and 256→256 3×3 (bias-free).

convaudit report examples/small_cnn.py
"""

import torch
import torch.nn as nn


class SmallCNN(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 64, kernel_size=3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(64)
        self.conv64 = nn.Conv2d(64, 64, kernel_size=3, padding=1, bias=False)  # seed: 36,864 params
        self.bn1 = nn.BatchNorm2d(64)
        self.expand = nn.Conv2d(64, 256, kernel_size=1, bias=False)
        self.conv256 = nn.Conv2d(256, 256, kernel_size=3, stride=2, padding=1, bias=False)  # seed: 589,824 params
        self.bn2 = nn.BatchNorm2d(256)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(256, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn0(self.stem(x)))
        x = torch.relu(self.bn1(self.conv64(x)))
        x = torch.relu(self.bn2(self.conv256(self.expand(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def build_model() -> nn.Module:
    return SmallCNN()


def example_inputs():
    return (torch.randn(1, 3, 56, 56),)
