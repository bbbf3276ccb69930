"""Penultimate features of a network, average- and std-pooled (HEAT: ``z`` and second-order features)."""
from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def pooled_features(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(z_avg, z_std)``, both (N, C).

    For a conv net with ``feature_map`` (N, C, H, W): ``z_avg`` = spatial mean, ``z_std`` = spatial
    standard deviation (population form, divide by H*W) of the same map. For an MLP (no spatial
    dimensions) ``z_avg`` is the penultimate layer and ``z_std`` is zeros.
    """
    if hasattr(net, "feature_map"):
        fmap = net.feature_map(x)
        flat = fmap.flatten(2)  # (N, C, H'W')
        return flat.mean(dim=2), flat.std(dim=2, unbiased=False)
    if hasattr(net, "features"):
        z = net.features(x)
        return z, torch.zeros_like(z)
    raise TypeError(f"net: expected a module with .feature_map or .features, got {type(net).__name__}")
