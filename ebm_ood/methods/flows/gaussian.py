"""Gaussian base densities shared by the flows (radial and Glow).

``log N(z; μ, σ²) = Σ_i [-½ log 2π - log σ_i - ½ ((z_i - μ_i)/σ_i)²]``, summed over every non-batch axis.
"""
from __future__ import annotations

import math

import torch

LOG_2PI = math.log(2.0 * math.pi)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """``log N(z; 0, I)`` for ``z`` of shape (N, ...) → (N,)."""
    return (-0.5 * (z * z + LOG_2PI)).flatten(1).sum(1)


def diagonal_normal_log_prob(z: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """``log N(z; μ, diag σ²)`` with ``σ = exp(log_std)``; all (N, ...) → (N,)."""
    u = (z - mean) * torch.exp(-log_std)
    return (-0.5 * (u * u + LOG_2PI) - log_std).flatten(1).sum(1)
