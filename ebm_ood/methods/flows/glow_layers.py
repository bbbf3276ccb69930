"""The layers of Glow (Kingma & Dhariwal 2018), each an invertible map with a closed-form log-det.

Every layer maps (N, C, H, W) → (N, C', H', W') and returns ``(y, log|det ∂y/∂x|)`` with the log-det of
shape (N,); ``inverse(y)`` undoes it. Glow Table 1 is the reference for the formulas:

* :func:`squeeze` — space-to-depth, (C, H, W) → (4C, H/2, W/2); a permutation, ``log|det| = 0``.
* :class:`ActNorm` — ``y = s ⊙ (x + b)`` per channel, initialised from the first batch so that ``y`` has
  zero mean and unit variance per channel; ``log|det| = H·W·Σ_c log|s_c|``.
* :class:`InvConv1x1` — ``y = W x`` at every pixel; ``log|det| = H·W·log|det W|``. LU option (Glow §3.2):
  ``W = P L (U + diag(sign(s) ⊙ exp(log|s|)))`` with ``P`` fixed, so ``log|det| = H·W·Σ log|s|``.
* :class:`AffineCoupling` — ``x = (x_a, x_b)`` along channels; ``(s̃, t) = NN(x_a)``, ``s = scale·tanh(s̃)``,
  ``y_b = x_b ⊙ exp(s) + t``, ``y_a = x_a``; ``log|det| = Σ s``. (Glow's paper uses ``sigmoid(s̃ + 2)``;
  ``scale·tanh`` is the form in the ``chrischute/glow`` code the Elflein authors used.)
* :class:`SplitPrior` — after a level, half the channels ``z_2`` leave with a Gaussian prior
  ``N(μ(z_1), σ(z_1)²)`` (Glow's learned split prior; ``learned=False`` gives the code's ``N(0, I)``).
  Written as the affine flow ``ε = (z_2 - μ)/σ`` with ``log|det| = -Σ log σ`` so the whole model is a
  bijection to standard-normal ``ε``.
* :class:`LogitPreprocess` — data ``x̃`` (dequantised, in ``[lo - δ/2, hi + δ/2]``) → unit cube
  ``v = (x̃ - lo + δ/2)/(Kδ)`` → ``w = b + (1 - 2b) v`` → ``y = logit(w)`` (RealNVP §4.1);
  ``log|det| = -D log(Kδ) + D log(1 - 2b) + Σ [softplus(y) + softplus(-y)]``.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ebm_ood.methods.flows.chain import chain_forward, chain_inverse


# ----------------------------------------------------------------------------------------- squeeze
def squeeze(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) → (N, 4C, H/2, W/2): each 2×2 spatial block becomes 4 channels (log-det 0)."""
    n, c, h, w = x.shape
    x = x.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(n, c * 4, h // 2, w // 2)


def unsqueeze(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`squeeze`: (N, 4C, H, W) → (N, C, 2H, 2W)."""
    n, c, h, w = x.shape
    x = x.reshape(n, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(n, c // 4, h * 2, w * 2)


# ----------------------------------------------------------------------------------------- actnorm
class ActNorm(nn.Module):
    """``y = exp(log_s) ⊙ (x + b)`` per channel (Glow Table 1); data-dependent initialisation: the first
    forward pass in training mode sets ``b = -mean_c``, ``s = 1/std_c`` of that batch."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        std = x.std(dim=(0, 2, 3), keepdim=True, unbiased=False)
        self.bias.copy_(-mean)
        self.log_scale.copy_(-torch.log(std + 1e-6))
        self.initialized.fill_(True)

    def forward(self, x: torch.Tensor):
        if self.training and not bool(self.initialized):
            self.initialize(x)
        y = (x + self.bias) * torch.exp(self.log_scale)
        log_det = x.shape[2] * x.shape[3] * self.log_scale.sum()
        return y, log_det.expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * torch.exp(-self.log_scale) - self.bias


# ----------------------------------------------------------------------------------------- 1x1 conv
class InvConv1x1(nn.Module):
    """Invertible 1×1 convolution ``y_ij = W x_ij`` (Glow §3.2), ``W`` initialised as a random rotation.

    ``lu=True`` stores ``W = P L (U + diag(sign_s ⊙ exp(log_s)))``: ``P`` fixed, ``L`` unit lower
    triangular, ``U`` strictly upper triangular; then ``log|det W| = Σ log_s`` costs O(C) instead of O(C³).
    """

    def __init__(self, channels: int, lu: bool = False, generator: torch.Generator | None = None):
        super().__init__()
        self.lu = bool(lu)
        q, _ = torch.linalg.qr(torch.randn(channels, channels, generator=generator))
        if not self.lu:
            self.weight = nn.Parameter(q)
            return
        p, l, u = torch.linalg.lu(q)
        s = torch.diagonal(u)
        self.register_buffer("perm", p)
        self.register_buffer("sign_s", torch.sign(s))
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.register_buffer("eye", torch.eye(channels))
        self.lower = nn.Parameter(l)
        self.upper = nn.Parameter(torch.triu(u, 1))
        self.log_s = nn.Parameter(torch.log(torch.abs(s)))

    def matrix(self) -> torch.Tensor:
        """The (C, C) matrix ``W``."""
        if not self.lu:
            return self.weight
        lower = self.lower * self.lower_mask + self.eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.perm @ lower @ upper

    def log_abs_det_w(self) -> torch.Tensor:
        if self.lu:
            return self.log_s.sum()
        return torch.linalg.slogdet(self.weight)[1]

    def forward(self, x: torch.Tensor):
        w = self.matrix()
        y = torch.einsum("ij,njhw->nihw", w, x)
        log_det = x.shape[2] * x.shape[3] * self.log_abs_det_w()
        return y, log_det.expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        w_inv = torch.linalg.inv(self.matrix())
        return torch.einsum("ij,njhw->nihw", w_inv, y)


# ----------------------------------------------------------------------------------------- coupling
class ZeroConv2d(nn.Conv2d):
    """3×3 convolution initialised at zero (Glow §3.3): each coupling starts as the identity."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(c_in, c_out, 3, padding=1)
        nn.init.zeros_(self.weight)
        nn.init.zeros_(self.bias)


class AffineCoupling(nn.Module):
    """Affine coupling (Glow Table 1): ``(s̃, t) = NN(x_a)``, ``s = scale ⊙ tanh(s̃)``,
    ``y_b = x_b ⊙ exp(s) + t``; ``log|det| = Σ s``. ``NN`` = conv3×3 → ReLU → conv1×1 → ReLU → zero conv3×3.
    ``scale`` is a learned per-channel vector initialised at 1 (as in the authors' code)."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        if channels < 2:
            raise ValueError(f"channels: affine coupling needs at least 2 channels, got {channels}")
        self.c_a = channels // 2
        c_b = channels - self.c_a
        self.net = nn.Sequential(
            nn.Conv2d(self.c_a, hidden, 3, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 1), nn.ReLU(),
            ZeroConv2d(hidden, 2 * c_b),
        )
        self.scale = nn.Parameter(torch.ones(1, c_b, 1, 1))

    def _s_t(self, x_a: torch.Tensor):
        h = self.net(x_a)
        s_raw, t = h[:, 0::2], h[:, 1::2]
        return self.scale * torch.tanh(s_raw), t

    def forward(self, x: torch.Tensor):
        x_a, x_b = x[:, : self.c_a], x[:, self.c_a :]
        s, t = self._s_t(x_a)
        y_b = x_b * torch.exp(s) + t
        return torch.cat([x_a, y_b], dim=1), s.flatten(1).sum(1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        y_a, y_b = y[:, : self.c_a], y[:, self.c_a :]
        s, t = self._s_t(y_a)
        return torch.cat([y_a, (y_b - t) * torch.exp(-s)], dim=1)


class FlowStep(nn.Module):
    """One step of flow: actnorm → invertible 1×1 conv → affine coupling (Glow Fig. 2a)."""

    def __init__(self, channels: int, hidden: int, lu: bool = False):
        super().__init__()
        self.layers = nn.ModuleList([ActNorm(channels), InvConv1x1(channels, lu), AffineCoupling(channels, hidden)])

    def forward(self, x: torch.Tensor):
        return chain_forward(self.layers, x)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return chain_inverse(self.layers, y)


# ----------------------------------------------------------------------------------------- split prior
class SplitPrior(nn.Module):
    """Gaussian prior of the split-off half ``z_2`` given the kept half ``z_1`` (Glow §3, multi-scale):
    ``(μ, log σ) = ZeroConv(z_1)``; as a flow ``ε = (z_2 - μ) e^{-log σ}``, ``log|det| = -Σ log σ``.
    ``learned=False`` fixes ``μ = 0``, ``σ = 1`` (the ``chrischute/glow`` code)."""

    def __init__(self, c_kept: int, c_split: int, learned: bool = True):
        super().__init__()
        self.c_split = c_split
        self.conv = ZeroConv2d(c_kept, 2 * c_split) if learned else None

    def _mean_log_std(self, z1: torch.Tensor):
        if self.conv is None:
            zeros = z1.new_zeros(z1.shape[0], self.c_split, *z1.shape[2:])
            return zeros, zeros
        h = self.conv(z1)
        return h[:, 0::2], h[:, 1::2]

    def forward(self, z1: torch.Tensor, z2: torch.Tensor):
        mean, log_std = self._mean_log_std(z1)
        eps = (z2 - mean) * torch.exp(-log_std)
        return eps, -log_std.flatten(1).sum(1)

    def inverse(self, z1: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        mean, log_std = self._mean_log_std(z1)
        return mean + eps * torch.exp(log_std)


# ----------------------------------------------------------------------------------------- pre-processing
def dequantise(x: torch.Tensor, delta: float, u: torch.Tensor | float = 0.5) -> torch.Tensor:
    """Uniform dequantisation: a value on the grid ``lo + kδ`` becomes ``x̃ = x + (u - ½)δ``, ``u ∈ [0, 1)``
    (``u ~ U(0,1)`` in training; ``u = ½``, the bin centre, when scoring, so scores are deterministic)."""
    return x + (u - 0.5) * delta


class LogitPreprocess(nn.Module):
    """``x̃`` in data units → logit space (RealNVP §4.1), with its log-det.

    ``v = (x̃ - lo + δ/2)/(Kδ) ∈ [0, 1]`` with ``K = (hi - lo)/δ + 1`` levels; ``w = b + (1 - 2b) v``;
    ``y = logit(w)``. ``bound = 1 - 2b`` (0.9 in the authors' code). ``w`` is clamped to
    ``[w_eps, 1 - w_eps]`` so inputs far outside the data range (e.g. un-normalised images) land on the
    edge of the model's support, where the density is tiny, instead of producing NaN.
    """

    def __init__(self, lo: float, hi: float, delta: float, bound: float = 0.9, w_eps: float = 1e-6):
        super().__init__()
        if not (hi > lo and delta > 0 and 0 < bound <= 1):
            raise ValueError(f"LogitPreprocess: need hi > lo, delta > 0, 0 < bound <= 1; got lo={lo}, hi={hi}, delta={delta}, bound={bound}")
        self.lo, self.delta, self.bound, self.w_eps = float(lo), float(delta), float(bound), float(w_eps)
        self.levels = round((hi - lo) / delta) + 1
        self.width = self.levels * self.delta  # Kδ: the dequantised range

    def forward(self, x: torch.Tensor):
        d = x[0].numel()
        v = (x - self.lo + 0.5 * self.delta) / self.width
        w = (0.5 * (1.0 - self.bound) + self.bound * v).clamp(self.w_eps, 1.0 - self.w_eps)
        y = torch.log(w) - torch.log1p(-w)
        log_det = (F.softplus(y) + F.softplus(-y)).flatten(1).sum(1) + d * (math.log(self.bound) - math.log(self.width))
        return y, log_det

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        v = (torch.sigmoid(y) - 0.5 * (1.0 - self.bound)) / self.bound
        return v * self.width + self.lo - 0.5 * self.delta
