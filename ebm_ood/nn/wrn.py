"""A small WideResNet-style conv net (the WRN-10-2 pattern of Elflein et al.), for 1xHxW or 3xHxW inputs.

Layout: a 3x3 stem conv, then three groups of one pre-activation residual block each (widths 16k, 32k,
64k with widening factor ``width=k``; strides 1, 2, 2), LeakyReLU(0.2), **no batch norm** (an EBM's
energy must not depend on the batch), global average pooling and a linear head. It is input-size
agnostic. Optional 1x1-conv **bottlenecks** (Elflein §4.3, Table 4/7) after every block map the block's
C channels to ``max(1, round(factor * C))`` channels; the next block reads from the bottleneck.
``bottleneck=1.0`` inserts a 1x1 conv with as many output as input channels: the same function class as
no bottleneck (a 1x1 conv of full rank can be absorbed into the next conv), but a different
parametrisation.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def bottleneck_channels(channels: int, factor: float) -> int:
    """Channels after a 1x1 bottleneck of ``factor`` (Elflein Table 7: 0.05, 0.1, 0.2, 1.0)."""
    if not factor > 0:
        raise ValueError(f"bottleneck: expected a factor > 0, got {factor}")
    return max(1, int(round(factor * channels)))


class ResBlock(nn.Module):
    """Pre-activation residual block: x + conv(act(conv(act(x)))) with a 1x1 shortcut when shapes change."""

    def __init__(self, c_in: int, c_out: int, stride: int, slope: float):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride) if (stride != 1 or c_in != c_out) else nn.Identity()
        self.slope = slope

    def forward(self, x):
        h = self.conv1(F.leaky_relu(x, self.slope))
        h = self.conv2(F.leaky_relu(h, self.slope))
        return self.shortcut(x) + h


class SmallWRN(nn.Module):
    """``forward(x: (N, C, H, W)) -> (N, out_dim)``; ``feature_map(x) -> (N, 64k or bottleneck, H', W')``."""

    def __init__(self, in_channels: int, out_dim: int, width: int = 2, bottleneck: float | None = None, slope: float = 0.2):
        super().__init__()
        widths = [16 * width, 32 * width, 64 * width]
        self.stem = nn.Conv2d(in_channels, 16, 3, 1, 1)
        blocks, necks, c = [], [], 16
        for w, s in zip(widths, (1, 2, 2)):
            blocks.append(ResBlock(c, w, s, slope))
            c = w
            if bottleneck is not None:
                c_b = bottleneck_channels(w, bottleneck)
                necks.append(nn.Conv2d(w, c_b, 1))
                c = c_b
            else:
                necks.append(nn.Identity())
        self.blocks, self.necks = nn.ModuleList(blocks), nn.ModuleList(necks)
        self.head = nn.Linear(c, out_dim)
        self.feature_dim, self.slope, self.bottleneck = c, slope, bottleneck

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for block, neck in zip(self.blocks, self.necks):
            h = neck(block(h))
        return F.leaky_relu(h, self.slope)  # (N, C', H', W')

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_map(x).mean(dim=(2, 3))  # (N, C') average-pooled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
