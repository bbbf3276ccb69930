"""A small WideResNet-style conv net (the WRN-10-2 pattern of Elflein et al.), for 1xHxW or 3xHxW inputs.

Layout: a 3x3 stem conv, then three groups of one pre-activation residual block each (widths 16k, 32k,
64k with widening factor ``width=k``; strides 1, 2, 2), LeakyReLU(0.2), **no batch norm** (an EBM's
energy must not depend on the batch), global average pooling and a linear head. It is input-size
agnostic.

Optional 1x1-conv **bottlenecks** (Elflein §4.3, Experiment 4, Tables 4/7) after every block, with
``b = max(1, ⌊factor · C⌋)`` channels (:func:`bottleneck_channels`):

* ``bottleneck_form="expand"`` (default; the authors' ``WideResNet._wide_layer``): two 1x1 convs
  ``C → b → C`` with nothing between them, so the next block and the head see the full width again and
  every block's output is confined to a rank-``b`` linear image. At factor 0.05 and k = 2 the ranks are
  [1, 3, 6].
* ``bottleneck_form="reduce"``: one 1x1 conv ``C → b``; the next block (after its LeakyReLU) and the head
  read the reduced width — a different function class.

``docs/paper_vs_code.md`` lists where this net departs from the authors' WideResNet.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


BOTTLENECK_FORMS = ("expand", "reduce")


def bottleneck_channels(channels: int, factor: float) -> int:
    """Channels inside a 1x1 bottleneck of ``factor`` (Elflein Table 7: 0.05, 0.1, 0.2, 1.0):
    ``int(factor · channels)`` as the authors' code computes it, at least 1 (their WRN-10-2 never goes
    below 32 channels; our narrower presets would reach 0 at factor 0.05)."""
    if not factor > 0:
        raise ValueError(f"bottleneck: expected a factor > 0, got {factor}")
    return max(1, int(factor * channels))


def bottleneck_layer(channels: int, factor: float, form: str) -> tuple[nn.Module, int]:
    """``(module, output channels)`` of one bottleneck: ``"expand"`` = 1x1 convs C → b → C (the
    authors'), ``"reduce"`` = one 1x1 conv C → b. Input (N, C, H, W)."""
    b = bottleneck_channels(channels, factor)
    if form == "expand":
        return nn.Sequential(nn.Conv2d(channels, b, 1), nn.Conv2d(b, channels, 1)), channels
    if form == "reduce":
        return nn.Conv2d(channels, b, 1), b
    raise ValueError(f"bottleneck_form: expected one of {', '.join(BOTTLENECK_FORMS)}, got {form!r}")


ACTIVATIONS = ("leaky_relu", "smooth_leaky_relu")


def activate(x: torch.Tensor, slope: float, activation: str = "leaky_relu") -> torch.Tensor:
    """``LeakyReLU(slope)`` or its smooth twin ``slope·x + (1 - slope)·softplus(x)`` (the same slopes at ±∞,
    a non-zero second derivative: what score matching differentiates), elementwise on any shape."""
    if activation == "leaky_relu":
        return F.leaky_relu(x, slope)
    return slope * x + (1 - slope) * F.softplus(x)


class ResBlock(nn.Module):
    """Pre-activation residual block: x + conv(act(conv(act(x)))) with a 1x1 shortcut when shapes change."""

    def __init__(self, c_in: int, c_out: int, stride: int, slope: float, activation: str = "leaky_relu"):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride) if (stride != 1 or c_in != c_out) else nn.Identity()
        self.slope, self.activation = slope, activation

    def forward(self, x):
        h = self.conv1(activate(x, self.slope, self.activation))
        h = self.conv2(activate(h, self.slope, self.activation))
        return self.shortcut(x) + h


class SmallWRN(nn.Module):
    """``forward(x: (N, C, H, W)) -> (N, out_dim)``; ``feature_map(x) -> (N, 64k, H', W')`` (the
    bottleneck width with ``bottleneck_form="reduce"``). ``activation="smooth_leaky_relu"`` replaces every
    LeakyReLU by its smooth twin (:func:`activate`)."""

    def __init__(self, in_channels: int, out_dim: int, width: int = 2, bottleneck: float | None = None, slope: float = 0.2,
                 bottleneck_form: str = "expand", activation: str = "leaky_relu"):
        super().__init__()
        if bottleneck_form not in BOTTLENECK_FORMS:
            raise ValueError(f"bottleneck_form: expected one of {', '.join(BOTTLENECK_FORMS)}, got {bottleneck_form!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation: expected one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        widths = [16 * width, 32 * width, 64 * width]
        self.stem = nn.Conv2d(in_channels, 16, 3, 1, 1)
        blocks, necks, c = [], [], 16
        for w, s in zip(widths, (1, 2, 2)):
            blocks.append(ResBlock(c, w, s, slope, activation))
            c = w
            if bottleneck is not None:
                neck, c = bottleneck_layer(w, bottleneck, bottleneck_form)
                necks.append(neck)
            else:
                necks.append(nn.Identity())
        self.blocks, self.necks = nn.ModuleList(blocks), nn.ModuleList(necks)
        self.head = nn.Linear(c, out_dim)
        self.feature_dim, self.slope, self.bottleneck, self.bottleneck_form = c, slope, bottleneck, bottleneck_form
        self.activation = activation

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for block, neck in zip(self.blocks, self.necks):
            h = neck(block(h))
        return activate(h, self.slope, self.activation)  # (N, C', H', W')

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_map(x).mean(dim=(2, 3))  # (N, C') average-pooled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
