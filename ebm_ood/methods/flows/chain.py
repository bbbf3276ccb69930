"""A stack of invertible layers: ``z = f_L ∘ … ∘ f_1 (x)`` and ``log|det ∂z/∂x| = Σ_l log|det J_{f_l}|``
(the chain rule for Jacobian determinants), and its inverse ``x = f_1⁻¹ ∘ … ∘ f_L⁻¹ (z)``; shared by the
radial flow and Glow's flow steps."""
from __future__ import annotations

import torch


def chain_forward(layers, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply ``layers`` (each ``x -> (y, log_det (N,))``) in order; returns ``(z, summed log_det (N,))``."""
    log_det = x.new_zeros(x.shape[0])
    for layer in layers:
        x, ld = layer(x)
        log_det = log_det + ld
    return x, log_det


def chain_inverse(layers, z: torch.Tensor) -> torch.Tensor:
    """Undo :func:`chain_forward`: apply each layer's ``inverse`` in reverse order."""
    for layer in reversed(layers):
        z = layer.inverse(z)
    return z
