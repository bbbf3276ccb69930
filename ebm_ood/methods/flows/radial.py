"""Stacked radial flows (Rezende & Mohamed 2015), the Elflein NF baseline on tabular data.

One radial transform with centre ``x₀ ∈ R^d`` and scalars ``α > 0``, ``β ≥ -α``:

    y = x + β h(α, r) (x - x₀),   r = ‖x - x₀‖,   h(α, r) = 1 / (α + r)              (R&M Eq. 14)
    log|det ∂y/∂x| = (d - 1) log(1 + βh) + log(1 + βh + β h'(α, r) r),   h' = -h²      (R&M Eq. 14)

Invertibility needs ``β ≥ -α``. It holds **by construction**: the raw parameters ``α'``, ``β'`` are free
and ``α = softplus(α')``, ``β = -α + softplus(β')`` (Elflein App. C; Pyro's ``Radial``).

Direction. The stack maps **data → base**: ``z = f_K ∘ … ∘ f_1 (x)`` and, by the change of variables,

    log p(x) = log N(f(x); 0, I) + Σ_k log|det ∂f_k/∂x_{k-1}|

so the density needs only the forward pass and the closed-form log-dets (the Elflein code does the same:
Pyro's radial transforms applied to the data). Sampling needs the inverse. Radial maps are usually said to
have no analytic inverse, but a single one does: along the ray from ``x₀``, ``ρ = ‖y - x₀‖ = r (1 + βh(r))
= r + βr/(α + r)`` is strictly increasing in ``r`` (``dρ/dr = 1 + βα/(α+r)² > 0`` when ``β > -α``), and
multiplying out gives the quadratic ``r² + (α + β - ρ) r - αρ = 0`` with exactly one root ``r ≥ 0``;
then ``x = x₀ + (y - x₀) / (1 + βh(r))``. :meth:`RadialLayer.inverse` uses it.

Shapes: ``x`` is (N, d); log-dets are (N,).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ebm_ood.methods.flows.chain import chain_forward, chain_inverse
from ebm_ood.methods.flows.gaussian import standard_normal_log_prob


def radial_parameters(alpha_raw: torch.Tensor, beta_raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``α = softplus(α')``, ``β = -α + softplus(β')`` (Elflein App. C): every raw value gives ``β > -α``."""
    alpha = F.softplus(alpha_raw)
    beta = -alpha + F.softplus(beta_raw)
    return alpha, beta


def radial_transform(x: torch.Tensor, x0: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor):
    """One radial transform and its log-det (R&M Eq. 14).

    ``x`` (N, d), ``x0`` (d,), ``alpha``/``beta`` scalars → ``y`` (N, d), ``log|det J|`` (N,) with
    ``log|det J| = (d-1) log(1 + βh) + log(1 + βh + βh'r)``, ``h = 1/(α+r)``, ``h' = -h²``.
    """
    d = x.shape[1]
    diff = x - x0  # (N, d)
    r = diff.norm(dim=1)  # (N,)
    h = 1.0 / (alpha + r)
    bh = beta * h
    y = x + bh.unsqueeze(1) * diff
    h_prime = -h * h
    log_det = (d - 1) * torch.log1p(bh) + torch.log1p(bh + beta * h_prime * r)
    return y, log_det


def radial_inverse(y: torch.Tensor, x0: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Closed-form inverse of :func:`radial_transform`: solve ``r² + (α+β-ρ) r - αρ = 0`` for ``r ≥ 0``
    (``ρ = ‖y - x₀‖``), then ``x = x₀ + (y - x₀)(α + r)/(α + β + r)``. ``y`` (N, d) → ``x`` (N, d)."""
    diff = y - x0
    rho = diff.norm(dim=1)
    b = alpha + beta - rho
    s = torch.sqrt(b * b + 4.0 * alpha * rho)
    # the two algebraically equal forms of the positive root; pick the one without cancellation
    r = torch.where(b > 0, 2.0 * alpha * rho / (b + s).clamp_min(1e-30), 0.5 * (s - b))
    return x0 + diff * ((alpha + r) / (alpha + beta + r)).unsqueeze(1)


class RadialLayer(nn.Module):
    """One radial transform with free raw parameters ``x₀``, ``α'``, ``β'`` (initialised like Pyro's
    ``Radial``: uniform on ``[-1/√d, 1/√d]``)."""

    def __init__(self, dim: int):
        super().__init__()
        bound = 1.0 / math.sqrt(dim)
        self.x0 = nn.Parameter(torch.empty(dim).uniform_(-bound, bound))
        self.alpha_raw = nn.Parameter(torch.empty(()).uniform_(-bound, bound))
        self.beta_raw = nn.Parameter(torch.empty(()).uniform_(-bound, bound))

    def parameters_ab(self) -> tuple[torch.Tensor, torch.Tensor]:
        return radial_parameters(self.alpha_raw, self.beta_raw)

    def forward(self, x: torch.Tensor):
        """(N, d) → ``y`` (N, d), ``log|det J|`` (N,)."""
        alpha, beta = self.parameters_ab()
        return radial_transform(x, self.x0, alpha, beta)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        alpha, beta = self.parameters_ab()
        return radial_inverse(y, self.x0, alpha, beta)


class RadialFlow(nn.Module):
    """``n_layers`` stacked radial transforms with a standard-normal base (Elflein: 20 layers).

    ``forward(x)`` maps data → base: (N, d) → ``z`` (N, d), ``Σ log|det|`` (N,).
    ``log_prob(x) = log N(z; 0, I) + Σ_k log|det J_k|``; ``inverse(z)`` maps base → data; ``sample(n)``.
    """

    def __init__(self, dim: int, n_layers: int = 20):
        super().__init__()
        if dim < 1 or n_layers < 1:
            raise ValueError(f"dim and n_layers: expected positive integers, got dim={dim}, n_layers={n_layers}")
        self.dim = int(dim)
        self.layers = nn.ModuleList(RadialLayer(dim) for _ in range(n_layers))

    def forward(self, x: torch.Tensor):
        return chain_forward(self.layers, x)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x)`` (N,) by the change of variables (see the module docstring)."""
        z, log_det = self(x)
        return standard_normal_log_prob(z) + log_det

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """Base → data: (N, d) → (N, d), each layer's closed-form inverse in reverse order."""
        return chain_inverse(self.layers, z)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` samples: ``z ~ N(0, I)`` pushed through the inverse stack. (n, d)."""
        ref = self.layers[0].x0
        z = torch.randn(n, self.dim, generator=generator, dtype=ref.dtype, device=ref.device)
        return self.inverse(z)
