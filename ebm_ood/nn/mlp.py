"""The tabular network of Elflein et al.: a 5-layer MLP of width 100 with LeakyReLU."""
from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """``depth`` linear layers (``depth - 1`` hidden of ``width``), LeakyReLU(0.2) between them.

    ``forward(x: (N, D)) -> (N, out_dim)``; ``features(x) -> (N, width)`` is the penultimate layer.
    """

    def __init__(self, in_dim: int, out_dim: int, width: int = 100, depth: int = 5, slope: float = 0.2):
        super().__init__()
        if depth < 2:
            raise ValueError(f"depth: expected >= 2 layers, got {depth}")
        dims = [in_dim] + [width] * (depth - 1)
        layers = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.LeakyReLU(slope)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, out_dim)
        self.feature_dim = width

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # (N, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (N, out_dim)
