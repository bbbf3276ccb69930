"""Composition of energies (HEAT Eq. 7, §3.2, App. A.2) and the composed detector.

    Eq. 7   E_HEAT^β(z) = 1/β · log Σ_k exp(β E_k(z))

on energies **standardised** with their mean and std on ID training data (App. A.2). Limits:
β → +∞ max_k E_k; β → -∞ min_k E_k; β = -1 ``-logsumexp(-E)`` (a mixture of experts, sum of
probabilities); β → 0 the sum of energies up to the diverging constant ``log K / β`` (product of experts).

``reduce="mean"`` (default) computes ``1/β · log( (1/K) Σ_k exp(β E_k) )``: Eq. 7 minus ``log K / β``,
the same ranking (so the same OOD metrics) for every fixed β, continuous in β, with the **mean** of the
energies at β = 0 (the paper's "β = 0"). ``reduce="sum"`` is Eq. 7 verbatim for β ≠ 0 and the **sum** at
β = 0 (the authors' code).
"""
from __future__ import annotations

import math

import numpy as np

from ebm_ood.detector import Detector
from ebm_ood.plumbing.checks import check_array

_SMALL = 1e-4  # |β| · spread below which the second-order expansion is used (error < 1e-12 · spread)


def compose_energies(energies, beta: float = 0.0, reduce: str = "mean") -> np.ndarray:
    """HEAT Eq. 7 on ``energies`` (N, K) → (N,) float64, numerically stable for every β.

    beta: any float, ``math.inf`` (max) or ``-math.inf`` (min). reduce: "mean" | "sum" (see module).
    """
    e = check_array(energies, "energies", ndim=2, float_only=False).astype(np.float64)
    if reduce not in ("mean", "sum"):
        raise ValueError(f"reduce: expected 'mean' or 'sum', got {reduce!r}")
    beta = float(beta)
    if math.isnan(beta):
        raise ValueError("beta: expected a number or ±inf, got nan")
    k = e.shape[1]
    if beta == math.inf:
        return e.max(axis=1)
    if beta == -math.inf:
        return e.min(axis=1)
    const = 0.0 if reduce == "mean" else math.log(k)   # log Σ = log mean + log K
    mean = e.mean(axis=1)
    if beta == 0.0:
        return mean if reduce == "mean" else e.sum(axis=1)
    spread = e.max(axis=1) - e.min(axis=1)
    out = np.empty(e.shape[0])
    small = np.abs(beta) * spread < _SMALL
    if small.any():   # 1/β log mean exp(β E) = mean + β/2 var + O(β² spread³)
        out[small] = mean[small] + 0.5 * beta * e[small].var(axis=1) + const / beta
    big = ~small
    if big.any():
        m = e[big].max(axis=1) if beta > 0 else e[big].min(axis=1)        # shift: exponents <= 0
        s = np.log(np.exp(beta * (e[big] - m[:, None])).mean(axis=1))
        # HEAT Eq. 7: E^β(z) = (1/β) log Σ_k exp(β E_k(z)) = m + (1/β) log Σ_k exp(β (E_k - m))
        out[big] = m + s / beta + const / beta
    return out


class Standardizer:
    """Per-column ``(E - mean) / std`` with statistics from ID training energies (HEAT App. A.2)."""

    def fit(self, energies) -> "Standardizer":
        e = check_array(energies, "energies", ndim=2, float_only=False).astype(np.float64)
        self.mean_, self.std_ = e.mean(axis=0), np.maximum(e.std(axis=0), 1e-12)
        return self

    def transform(self, energies) -> np.ndarray:
        e = check_array(energies, "energies", ndim=2, float_only=False).astype(np.float64)
        if e.shape[1] != self.mean_.shape[0]:
            raise ValueError(f"energies: expected {self.mean_.shape[0]} columns, got {e.shape[1]}")
        return (e - self.mean_) / self.std_


class CompositionDetector(Detector):
    """HEAT's final scorer: several detectors (HEAT-EL, HEAT-GMM, HEAT-GMM-std), their scores
    standardised with ID training statistics and composed with Eq. 7.

    parts: {name: Detector}, all taking the same inputs. refit: fit the parts in ``fit`` (False: parts
    already fitted on the same data are reused, e.g. shared in the benchmark).
    """

    def __init__(self, parts: dict, beta: float = 0.0, reduce: str = "mean", refit: bool = True,
                 name: str = "HEAT"):
        if not parts:
            raise ValueError("parts: expected at least one detector")
        first = next(iter(parts.values()))
        super().__init__(first.device, first.batch_size)
        self.parts, self.beta, self.reduce, self.refit, self.name = dict(parts), beta, reduce, refit, name
        self.needs_labels = any(getattr(p, "needs_labels", False) for p in parts.values())
        compose_energies(np.zeros((1, len(parts))), beta, reduce)   # validates beta and reduce early

    def _fit(self, x, y):
        for p in self.parts.values():
            if self.refit or not getattr(p, "fitted_", False):
                p.fit(x, y, validation=self.validation_)
        self.standardizer_ = Standardizer().fit(self._raw(x))

    def _raw(self, x) -> np.ndarray:
        return np.stack([p.score(x) for p in self.parts.values()], axis=1)   # (N, K)

    def part_scores(self, x) -> np.ndarray:
        """Standardised part energies (N, K), columns in ``parts`` order."""
        self.check_fitted()
        return self.standardizer_.transform(self._raw(x))

    def _score(self, x):
        return compose_energies(self.part_scores(x), self.beta, self.reduce)
