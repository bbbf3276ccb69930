"""A small Glow (Kingma & Dhariwal 2018): the Elflein NF baseline on images.

Data → base, as one bijection ``x̃ ↦ ε`` with a standard-normal ``ε``:

    x̃ = x + (u - ½)δ                                  dequantisation (u ~ U(0,1) in training, ½ to score)
    y  = logit(b + (1-2b)(x̃ - lo + δ/2)/(Kδ))          LogitPreprocess (RealNVP §4.1)
    for level l = 1..L:
        h ← squeeze(h)                                  (C, H, W) → (4C, H/2, W/2)
        h ← K steps of [ActNorm → InvConv1x1 → AffineCoupling]
        if l < L:  h, z₂ = split(h);  ε_l = (z₂ - μ(h))/σ(h)     (Gaussian split prior)
    ε_L = h                                              (top: N(0, I))

    log p(x̃) = log N(ε; 0, I) + Σ log|det|  (change of variables; every log-det in closed form)

``log p`` is a density in **data units** (the same units as the radial flow's), so ``-log p(x)`` is the
OOD score. Bits per dimension use the discrete likelihood ``P(x) ≈ p(x̃) δ^D``:
``bpd = -(log p(x̃) + D log δ) / (D log 2)``.

Shapes: ``x`` (N, C, H, W) with ``H`` and ``W`` divisible by ``2^L``; ``ε`` flat (N, C·H·W).
Paper scale (Elflein App. C): L = 3, K = 32, 512 hidden channels; the default here is CPU-sized.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ebm_ood.methods.flows.chain import chain_inverse
from ebm_ood.methods.flows.gaussian import standard_normal_log_prob
from ebm_ood.methods.flows.glow_layers import FlowStep, LogitPreprocess, SplitPrior, dequantise, squeeze, unsqueeze


@dataclass
class GlowConfig:
    levels: int = 2  # L: squeeze (+ split) levels
    steps: int = 4  # K: flow steps per level
    hidden: int = 32  # channels in each coupling network
    lu: bool = False  # LU-parametrised 1x1 convolutions (Glow §3.2)
    learned_prior: bool = True  # Glow's learned split prior; False = N(0, I) as in the authors' code
    logit_bound: float = 0.9  # w = (1-bound)/2 + bound·v before the logit (authors' code: 0.9)


def max_levels(height: int, width: int) -> int:
    """The largest ``L`` with ``H`` and ``W`` divisible by ``2^L``."""
    levels = 0
    while height % 2 == 0 and width % 2 == 0 and height > 1 and width > 1:
        height, width, levels = height // 2, width // 2, levels + 1
    return levels


class Glow(nn.Module):
    """Multi-scale Glow on (C, H, W) inputs whose values lie on the grid ``lo + kδ``, ``k = 0..K-1``.

    ``forward(x̃)`` → ``ε`` (N, D), ``log|det|`` (N,). ``log_prob(x, u)``, ``bits_per_dim(x)``,
    ``inverse(ε)`` → ``x̃``, ``sample(n, temperature)``.
    """

    def __init__(self, input_shape: tuple[int, int, int], config: GlowConfig | None = None,
                 lo: float = -1.0, hi: float = 1.0, delta: float = 2.0 / 255.0):
        super().__init__()
        cfg = config or GlowConfig()
        c, h, w = (int(s) for s in input_shape)
        if cfg.levels < 1 or cfg.steps < 1 or cfg.hidden < 1:
            raise ValueError(f"config: levels, steps and hidden must be positive, got {cfg}")
        if cfg.levels > max_levels(h, w):
            raise ValueError(f"input_shape: {h}x{w} images allow at most {max_levels(h, w)} levels "
                             f"(H and W divisible by 2^L), got levels={cfg.levels}")
        self.input_shape, self.config, self.delta = (c, h, w), cfg, float(delta)
        self.pre = LogitPreprocess(lo, hi, delta, cfg.logit_bound)
        self.levels = nn.ModuleList()
        self.priors = nn.ModuleList()
        self.eps_shapes: list[tuple[int, int, int]] = []  # shapes of ε_1 .. ε_L
        for level in range(cfg.levels):
            c, h, w = 4 * c, h // 2, w // 2
            self.levels.append(nn.ModuleList(FlowStep(c, cfg.hidden, cfg.lu) for _ in range(cfg.steps)))
            if level < cfg.levels - 1:
                c_split = c // 2
                self.priors.append(SplitPrior(c - c_split, c_split, cfg.learned_prior))
                self.eps_shapes.append((c_split, h, w))
                c = c - c_split
        self.eps_shapes.append((c, h, w))

    @property
    def dim(self) -> int:
        return math.prod(self.input_shape)

    def forward(self, x: torch.Tensor):
        """Dequantised data ``x̃`` (N, C, H, W) → ``ε`` (N, D), ``Σ log|det|`` (N,)."""
        h, log_det = self.pre(x)
        eps = []
        for level, steps in enumerate(self.levels):
            h = squeeze(h)
            for step in steps:
                h, ld = step(h)
                log_det = log_det + ld
            if level < len(self.levels) - 1:
                c_split = self.eps_shapes[level][0]
                z1, z2 = h[:, : h.shape[1] - c_split], h[:, h.shape[1] - c_split :]
                e, ld = self.priors[level](z1, z2)
                eps.append(e.flatten(1))
                log_det = log_det + ld
                h = z1
        eps.append(h.flatten(1))
        return torch.cat(eps, dim=1), log_det

    def inverse(self, eps: torch.Tensor) -> torch.Tensor:
        """``ε`` (N, D) → ``x̃`` (N, C, H, W)."""
        sizes = [math.prod(s) for s in self.eps_shapes]
        parts = list(torch.split(eps, sizes, dim=1))
        n = eps.shape[0]
        h = parts[-1].reshape(n, *self.eps_shapes[-1])
        for level in reversed(range(len(self.levels))):
            if level < len(self.levels) - 1:
                e = parts[level].reshape(n, *self.eps_shapes[level])
                h = torch.cat([h, self.priors[level].inverse(h, e)], dim=1)
            h = unsqueeze(chain_inverse(self.levels[level], h))
        return self.pre.inverse(h)

    def log_prob(self, x: torch.Tensor, u: torch.Tensor | float = 0.5) -> torch.Tensor:
        """``log p(x̃)`` (N,) in data units at ``x̃ = x + (u - ½)δ`` (``u = ½``: the bin centre)."""
        eps, log_det = self(dequantise(x, self.delta, u))
        return standard_normal_log_prob(eps) + log_det

    def bits_per_dim(self, x: torch.Tensor, u: torch.Tensor | float = 0.5) -> torch.Tensor:
        """``-(log p(x̃) + D log δ) / (D log 2)`` (N,): the discrete likelihood in bits per dimension."""
        d = self.dim
        return -(self.log_prob(x, u) + d * math.log(self.delta)) / (d * math.log(2.0))

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` samples ``x̃ = f⁻¹(T·ε)``, ``ε ~ N(0, I)`` (temperature ``T`` as in Glow §5). (n, C, H, W)."""
        ref = next(self.parameters())
        eps = temperature * torch.randn(n, self.dim, generator=generator, dtype=ref.dtype, device=ref.device)
        return self.inverse(eps)
