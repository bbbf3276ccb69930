"""The standard-normal base density shared by the flows (radial and Glow).

``log N(z; 0, I) = Σ_i [-½ log 2π - ½ z_i²]``, summed over every non-batch axis.
"""
from __future__ import annotations

import math

import torch

LOG_2PI = math.log(2.0 * math.pi)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """``log N(z; 0, I)`` for ``z`` of shape (N, ...) → (N,)."""
    return (-0.5 * (z * z + LOG_2PI)).flatten(1).sum(1)

