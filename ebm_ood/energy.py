"""A classifier read as an energy-based model (Elflein Eq. 1-3; Grathwohl et al. 2020, "JEM").

With logits ``f(x) ∈ R^C``:

* Eq. 1  ``p(x) = exp(-E(x)) / Z``
* Eq. 2  ``p(y|x) = softmax(f(x))[y]``
* Eq. 3  ``p(x) = Σ_y exp(f(x)[y]) / Z``, i.e. ``E(x) = -logsumexp_y f(x)[y]`` and ``E(x, y) = -f(x)[y]``.

The energy score of Liu et al. (2020) adds a temperature: ``E(x; T) = -T · logsumexp(f(x) / T)``
(HEAT's EL prior). All functions take ``logits`` of shape (N, C) and return (N,) unless stated;
:class:`JEMEnergy` wraps a logit network as the energy module the EBM methods train.
"""
from __future__ import annotations

import torch
from torch import nn


def _check_logits(logits: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits: expected a torch.Tensor, got {type(logits).__name__}")
    if logits.ndim != 2 or logits.shape[1] < 1:
        raise ValueError(f"logits: expected shape (N, C) with C >= 1, got {tuple(logits.shape)}")


def energy_from_logits(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Elflein Eq. 3 / Liu et al.: ``E(x; T) = -T · logsumexp_y(f(x)[y] / T)``. (N, C) → (N,)."""
    _check_logits(logits)
    if not temperature > 0:
        raise ValueError(f"temperature: expected T > 0, got {temperature}")
    return -temperature * torch.logsumexp(logits / temperature, dim=1)


def joint_energy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``E(x, y) = -f(x)[y]`` so that ``p(x, y) ∝ exp(f(x)[y])`` (the JEM joint). (N, C), (N,) → (N,)."""
    _check_logits(logits)
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"y: expected a torch.Tensor of class indices, got {type(y).__name__}")
    if y.shape != (logits.shape[0],):
        raise ValueError(f"y: expected shape ({logits.shape[0]},), got {tuple(y.shape)}")
    return -logits.gather(1, y.long().view(-1, 1)).squeeze(1)


def class_log_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Elflein Eq. 2 in log space: ``log p(y|x) = f(x)[y] - logsumexp f(x)``. (N, C) → (N, C).

    Equivalently ``E(x) - E(x, y)``: the classifier is the ratio of the joint and the marginal.
    """
    _check_logits(logits)
    return torch.log_softmax(logits, dim=1)


def max_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Maximum softmax probability ``max_y p(y|x)`` (Hendrycks & Gimpel 2017). (N,)."""
    return class_log_probabilities(logits).exp().amax(dim=1)


class JEMEnergy(nn.Module):
    """``E(x) = -logsumexp_k f(x)[k]`` (Elflein Eq. 3) of a logit network ``f: (N, *shape) → (N, K)``.

    ``forward(x) → (N,)`` energies; ``logits(x) → (N, K)``. With ``K = 1``, ``E(x) = -f(x)[0]`` exactly
    (the unsupervised CD / SSM / VERA energy); with ``K = C`` classes it is the JEM marginal.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (N, K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x)                    # (N, K)
        if logits.ndim == 2 and logits.shape[1] == 1:
            return -logits[:, 0]                # logsumexp of one logit is that logit, exactly
        return energy_from_logits(logits)       # (N,)
