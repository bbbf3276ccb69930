"""The class-conditional Gaussian with one shared covariance (Lee et al. 2018; HEAT's GMM prior).

    q(z) = Σ_c π_c N(z; μ_c, Σ),   π_c = N_c / N,   μ_c = mean of class c,
    Σ = (1/N) Σ_c Σ_{i: y_i = c} (z_i - μ_c)(z_i - μ_c)ᵀ + reg·I     (ML "tied" covariance)

Fitting streams: :class:`ClassGaussianStats` accumulates per-class counts, per-class means and ONE
within-class scatter matrix in float64 with Chan et al.'s parallel update, so memory is O(C·D + D²)
whatever N is (ImageNet-sized feature sets fit on one machine) and the result equals the in-memory fit.

:class:`ClassGaussian` holds the fitted parameters as float64 torch tensors. Its methods take numpy
(returns numpy float64) or torch (returns torch in the input's dtype and device, differentiable in
``z``, so energies built on it can drive SGLD). Used by HEAT's GMM priors (``ebm_ood.heat.priors``) and
by the Mahalanobis / SSD+ baselines.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from ebm_ood.plumbing.checks import check_array, check_labels


def _gram(a: torch.Tensor) -> torch.Tensor:
    """``aᵀ a`` for a float64 CPU tensor (B, D) → (D, D). numpy computes ``a.T @ a`` of one array with the
    BLAS symmetric rank-k update (syrk), half the multiply-adds of the general product torch would run."""
    a_np = a.numpy()
    return torch.from_numpy(a_np.T @ a_np)


def _as_tensor64(a) -> torch.Tensor:
    """A float64 CPU tensor (a detached copy of a tensor; numpy arrays converted)."""
    if isinstance(a, torch.Tensor):
        return a.detach().to("cpu", torch.float64)
    return torch.as_tensor(np.asarray(a), dtype=torch.float64)


class ClassGaussianStats:
    """Streaming sufficient statistics of a class-conditional Gaussian with shared covariance.

    State (float64): ``counts`` (C,), ``means`` (C, D) running class means, ``scatter`` (D, D) =
    Σ_c Σ_{i∈c} (z_i - μ_c)(z_i - μ_c)ᵀ with the running means. Memory O(C·D + D²).
    """

    def __init__(self, num_classes: int, dim: int):
        if int(num_classes) < 1 or int(dim) < 1:
            raise ValueError(f"num_classes, dim: expected positive integers, got {num_classes}, {dim}")
        self.num_classes, self.dim = int(num_classes), int(dim)
        self.counts = torch.zeros(self.num_classes, dtype=torch.float64)
        self.means = torch.zeros(self.num_classes, self.dim, dtype=torch.float64)
        self.scatter = torch.zeros(self.dim, self.dim, dtype=torch.float64)

    @torch.no_grad()
    def update(self, z, y) -> "ClassGaussianStats":
        """Add a batch: ``z`` (B, D) features, ``y`` (B,) integer labels in [0, C). Returns self.

        Chan et al. (1979) merge per class c, batch part b into running part a (n = n_a + n_b):
        ``μ = μ_a + (n_b/n) δ``, ``M2 = M2_a + M2_b + (n_a n_b / n) δ δᵀ`` with ``δ = μ_b - μ_a``;
        summing M2 over classes gives one scatter matrix.
        """
        z = _as_tensor64(check_array(z, "z", ndim=2, shape=(self.dim,), allow_empty=True))
        y_np = check_labels(y, "y", z.shape[0], self.num_classes) if z.shape[0] else np.zeros(0, np.int64)
        if z.shape[0] == 0:
            return self
        y = torch.as_tensor(np.asarray(y_np), dtype=torch.int64)
        n_b = torch.bincount(y, minlength=self.num_classes).to(torch.float64)             # (C,)
        sum_b = torch.zeros_like(self.means).index_add_(0, y, z)                          # (C, D)
        mean_b = sum_b / n_b.clamp_min(1.0)[:, None]                                      # (C, D)
        centred = z - mean_b[y]                                                           # (B, D)
        n = self.counts + n_b
        delta = mean_b - self.means                                                       # (C, D)
        w = torch.where(n > 0, self.counts * n_b / n.clamp_min(1.0), torch.zeros_like(n))  # (C,)
        self.scatter += _gram(centred) + (delta * w[:, None]).T @ delta
        self.means += delta * torch.where(n > 0, n_b / n.clamp_min(1.0), torch.zeros_like(n))[:, None]
        self.counts = n
        return self

    def finalize(self, reg: float = 1e-12, relative: bool = False) -> "ClassGaussian":
        """The fitted :class:`ClassGaussian`: ``Σ = scatter / N + reg·I``. Every class needs a sample.

        ``relative=True`` scales the ridge to the data, ``reg · s`` with ``s = tr(scatter / N) / D`` the mean
        within-class variance (scale-free; keeps degenerate features such as dead ReLUs invertible). When
        there is no within-class variance at all (``s`` below 1e-12 of the features' mean second moment
        ``m = (tr(scatter) + Σ_c N_c ‖μ_c‖²) / (N D)``: every class's samples identical) ``s = m`` is used
        instead, with a :class:`DegenerateCovarianceWarning`; all-zero features raise ``ValueError``."""
        if not reg >= 0:
            raise ValueError(f"reg: expected reg >= 0, got {reg}")
        empty = torch.nonzero(self.counts == 0).flatten().tolist()
        if empty:
            raise ValueError(f"y: classes {empty} have no samples; every class 0..{self.num_classes - 1} needs one")
        total = self.counts.sum()
        if relative:
            reg = reg * self.ridge_scale()
        cov = self.scatter / total + reg * torch.eye(self.dim, dtype=torch.float64)
        return ClassGaussian.from_parameters(self.means.clone(), cov, self.counts.clone(),
                                             within_var=self.scatter.diagonal() / total)

    def ridge_scale(self) -> float:
        """The data's scale for a relative ridge (see :meth:`finalize`): mean within-class variance, or the
        mean second moment when the within-class variance is (numerically) zero."""
        total = float(self.counts.sum())
        within = float(self.scatter.diagonal().sum()) / total / self.dim
        second = within + float((self.counts[:, None] * self.means**2).sum()) / total / self.dim
        if within > 1e-12 * second:
            return within
        if not second > 0:
            raise ValueError("z: every feature is zero; the covariance is degenerate (no variance and no scale), "
                             "so no Gaussian can be fitted")
        warnings.warn(f"z: the features have no within-class variance (within-class scatter {within:.3g}); the "
                      f"covariance is degenerate, so the ridge is taken relative to the features' mean second "
                      f"moment {second:.3g} instead", DegenerateCovarianceWarning, stacklevel=4)
        return second


class DegenerateCovarianceWarning(UserWarning):
    """The within-class covariance had to be regularised with the features' overall scale (see
    :meth:`ClassGaussianStats.ridge_scale`)."""


@dataclass
class ClassGaussian:
    """Fitted class-conditional Gaussian, all float64 torch tensors.

    means (C, D); cov (D, D); chol (D, D) lower, ``L Lᵀ = Σ``; whiten (D, D) = L⁻¹; precision (D, D) = Σ⁻¹;
    counts (C,); log_weights (C,) = log π_c (class frequencies); logdet = log |Σ|.
    """

    means: torch.Tensor
    cov: torch.Tensor
    chol: torch.Tensor
    whiten: torch.Tensor
    precision: torch.Tensor
    counts: torch.Tensor
    log_weights: torch.Tensor
    logdet: torch.Tensor

    @classmethod
    def from_parameters(cls, means, cov, counts=None, within_var=None) -> "ClassGaussian":
        """Build from means (C, D), covariance (D, D) and optional class counts (C,) (default: equal).
        ``within_var`` (D,), optional: the per-channel variance before any ridge, named in the error when
        ``cov`` is not positive definite."""
        means, cov = _as_tensor64(means), _as_tensor64(cov)
        if means.ndim != 2 or cov.shape != (means.shape[1], means.shape[1]):
            raise ValueError(f"means, cov: expected (C, D) and (D, D), got {tuple(means.shape)}, {tuple(cov.shape)}")
        counts = torch.ones(means.shape[0], dtype=torch.float64) if counts is None else _as_tensor64(counts)
        if counts.shape != (means.shape[0],) or not bool((counts > 0).all()):
            raise ValueError(f"counts: expected {means.shape[0]} positive class counts, got {counts.tolist()}")
        chol, info = torch.linalg.cholesky_ex(cov)
        if int(info) != 0:
            dead = [] if within_var is None else torch.nonzero(_as_tensor64(within_var) <= 0).flatten().tolist()
            why = (f"{len(dead)} of {cov.shape[0]} feature channels have zero within-class variance "
                   f"(e.g. channels {dead[:5]}: dead units)" if dead else
                   "the features span fewer dimensions than D (e.g. fewer samples than dimensions)")
            raise ValueError(f"cov: the within-class covariance is degenerate (not positive definite): {why}; "
                             f"use a ridge reg > 0 (relative to the data's scale)")
        eye = torch.eye(cov.shape[0], dtype=torch.float64)
        whiten = torch.linalg.solve_triangular(chol, eye, upper=False)
        return cls(means=means, cov=cov, chol=chol, whiten=whiten, precision=whiten.T @ whiten, counts=counts,
                   log_weights=torch.log(counts / counts.sum()), logdet=2 * torch.log(torch.diagonal(chol)).sum())

    @property
    def num_classes(self) -> int:
        return self.means.shape[0]

    def layout_problem(self, num_classes: int, dim: int) -> str | None:
        """How the stored tensors' shapes disagree with ``num_classes`` C and feature size ``dim`` D (means
        (C, D), cov / chol / whiten / precision (D, D), counts / log_weights (C,), logdet ()), or None."""
        want = {"means": (num_classes, dim), "cov": (dim, dim), "chol": (dim, dim), "whiten": (dim, dim),
                "precision": (dim, dim), "counts": (num_classes,), "log_weights": (num_classes,), "logdet": ()}
        for name, shape in want.items():
            got = getattr(self, name)
            if not isinstance(got, torch.Tensor) or tuple(got.shape) != shape:
                return f"{name} has shape {tuple(getattr(got, 'shape', ()))}, expected {shape}"
        return None

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def _input(self, z):
        """(tensor float64 on the parameters' device, how to convert the output back)."""
        if isinstance(z, torch.Tensor):
            if z.ndim != 2 or z.shape[1] != self.dim:
                raise ValueError(f"z: expected shape (N, {self.dim}), got {tuple(z.shape)}")
            dtype = z.dtype if z.is_floating_point() else torch.float64
            return z.to(self.means.device, torch.float64), lambda out: out.to(z.device, dtype)
        arr = check_array(z, "z", ndim=2, shape=(self.dim,), allow_empty=True)
        return torch.as_tensor(arr, dtype=torch.float64, device=self.means.device), lambda out: out.detach().cpu().numpy()

    def mahalanobis(self, z):
        """Squared Mahalanobis distances ``(z - μ_c)ᵀ Σ⁻¹ (z - μ_c)``: z (N, D) → (N, C).

        Computed as ``‖L⁻¹z - L⁻¹μ_c‖²`` (whitened coordinates) in float64."""
        zt, back = self._input(z)
        w = zt @ self.whiten.T                                   # (N, D) whitened features
        m = self.means @ self.whiten.T                           # (C, D) whitened means
        d2 = (w * w).sum(1, keepdim=True) - 2 * w @ m.T + (m * m).sum(1)[None, :]
        return back(d2.clamp_min(0.0))

    def log_joint(self, z):
        """``log π_c + log N(z; μ_c, Σ)``: z (N, D) → (N, C)."""
        zt, back = self._input(z)
        d2 = self.mahalanobis(zt)
        const = -0.5 * (self.dim * math.log(2 * math.pi) + self.logdet)
        return back(self.log_weights[None, :] + const - 0.5 * d2)

    def log_density(self, z):
        """``log q(z) = logsumexp_c [log π_c + log N(z; μ_c, Σ)]``: z (N, D) → (N,)."""
        zt, back = self._input(z)
        return back(torch.logsumexp(self.log_joint(zt), dim=1))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, dtype=torch.float32):
        """Draw ``c ~ π`` and ``z = μ_c + L ε``, ``ε ~ N(0, I)``. Returns (z (n, D) ``dtype``, c (n,) int64)."""
        if int(n) < 0:
            raise ValueError(f"n: expected n >= 0, got {n}")
        dev = self.means.device
        c = torch.multinomial(self.log_weights.exp().cpu(), int(n), replacement=True, generator=generator)
        eps = torch.randn(int(n), self.dim, generator=generator, dtype=torch.float64)
        z = self.means.cpu()[c] + eps @ self.chol.cpu().T
        return z.to(dev, dtype), c.to(dev)

    def to(self, device) -> "ClassGaussian":
        """A copy with every tensor on ``device`` (still float64)."""
        return ClassGaussian(**{k: getattr(self, k).to(device) for k in self.__dataclass_fields__})


def fit_class_gaussian(z, y, num_classes: int | None = None, batch_size: int | None = None,
                       reg: float = 1e-12, relative: bool = False) -> ClassGaussian:
    """Fit on features ``z`` (N, D) with labels ``y`` (N,), in batches of ``batch_size`` (default: one pass
    over everything). ``num_classes`` defaults to ``max(y) + 1``; ``reg``, ``relative``: the ridge
    (:meth:`ClassGaussianStats.finalize`)."""
    z = check_array(z, "z", ndim=2)
    y = check_labels(y, "y", z.shape[0], num_classes)
    c = int(num_classes) if num_classes is not None else int(np.max(y)) + 1
    stats = ClassGaussianStats(c, z.shape[1])
    bs = z.shape[0] if batch_size is None else int(batch_size)
    if bs < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    for i in range(0, z.shape[0], bs):
        stats.update(z[i : i + bs], y[i : i + bs])
    return stats.finalize(reg, relative)
