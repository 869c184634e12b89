"""A model torch.fx cannot trace symbolically: its forward branches on the data.

convaudit falls back to module hooks on a fake-tensor forward and says so in the report.
"""

import torch
import torch.nn as nn


class DynamicNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
        )  # fmt: skip
        self.refine = nn.Conv2d(64, 64, 3, padding=1)
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        # Data-dependent control flow: symbolic tracing fails here; the hook path does not need it.
        for _ in range(int(x.shape[-1] > 8) + 1):
            x = torch.relu(self.refine(x))
        if x.dim() == 4:
            x = x.mean(dim=(2, 3))
        return self.head(x)


model = DynamicNet()


def example_inputs():
    return (torch.randn(1, 3, 64, 64),)
