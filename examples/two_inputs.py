"""A model with two positional inputs and a keyword input (image, depth map, and a gating mask)."""

import torch
import torch.nn as nn


class FusionNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rgb = nn.Conv2d(3, 32, 3, padding=1)
        self.depth = nn.Conv2d(1, 32, 3, padding=1)
        self.fuse = nn.Conv2d(64, 64, 3, padding=1)

    def forward(self, image: torch.Tensor, depth: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = torch.cat([self.rgb(image), self.depth(depth)], dim=1)
        if mask is not None:
            x = x * mask
        return self.fuse(x)


def build_model() -> nn.Module:
    return FusionNet()


def example_inputs():
    return (torch.randn(1, 3, 64, 64), torch.randn(1, 1, 64, 64)), {"mask": torch.ones(1, 1, 64, 64)}
