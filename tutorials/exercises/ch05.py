"""Chapter 05 exercises: log Z as a maximum over q, and the exact posterior of a linear generator."""
from __future__ import annotations

import math

import numpy as np
from scipy import integrate, stats

from exercises._check import as_array, as_callable, as_dict, as_float, close, fail, passed

EX = "ch05 exercise {}"
S = 0.5                                               # E(x) = x² / (2 S²) in exercise 1
W = np.array([[1.0, 0.0], [0.5, 1.0], [-0.3, 0.8]])   # (D = 3, k = 2) linear generator x = W z + σ ε
SIGMA = 0.3
X0 = np.array([0.4, -1.0, 0.7])


def check_exercise_1(answer) -> bool:
    """``answer = {"sigma_best": ..., "log_z": ...}``: over ``q = N(0, σ²)`` maximise VERA's bound
    ``E_q[-E(x)] + H(q)`` for ``E(x) = x²/(2·0.5²)``; give the maximising σ and the maximum."""
    ex = EX.format(1)
    answer = as_dict(answer, ("sigma_best", "log_z"), "answer", ex)
    log_z = math.log(integrate.quad(lambda x: math.exp(-x * x / (2 * S * S)), -np.inf, np.inf)[0])
    nodes, weights = np.polynomial.hermite_e.hermegauss(40)          # E_{N(0,1)}[f] by Gauss-Hermite
    sigmas = np.linspace(0.05, 2.0, 39_001)
    bound = [-(weights * (s * nodes) ** 2).sum() / math.sqrt(2 * math.pi) / (2 * S * S)
             + 0.5 * math.log(2 * math.pi * math.e * s * s) for s in sigmas]
    best = float(sigmas[int(np.argmax(bound))])
    close(ex, "sigma_best", as_float(answer["sigma_best"], "sigma_best", ex), best, 1e-3,
          "differentiate -σ²/(2s²) + ½ log(2πeσ²) in σ")
    close(ex, "log_z", as_float(answer["log_z"], "log_z", ex), log_z, 1e-4,
          "at the optimum q = p and the bound is tight: it equals log Z")
    return passed(ex, f"the bound is tight at q = p (σ = {best:.3f}): log Z = {log_z:.4f}. VERA trains the "
                      "generator to climb this bound.")


def check_exercise_2(log_q) -> bool:
    """``log_q(x (N, 3)) -> (N,)``: the exact log-density of the linear generator ``x = W z + σ ε``
    (``z ~ N(0, I₂)``, ``ε ~ N(0, I₃)``, σ = ``SIGMA``)."""
    ex = EX.format(2)
    fn = as_callable(log_q, "log_q", ex)
    x = np.random.default_rng(2).normal(0, 1.5, (10, 3))
    got = as_array(fn(x), "log_q(x)", ex, shape=(10,))
    want = stats.multivariate_normal(np.zeros(3), W @ W.T + SIGMA**2 * np.eye(3)).logpdf(x)
    err = float(np.abs(got - want).max())
    if err > 1e-6:
        fail(ex, f"your log q(x) differs from log N(x; 0, WWᵀ + σ²I) by up to {err:.3g}",
             "x is a sum of independent Gaussians: add their covariances")
    return passed(ex, "log q(x) of a linear generator is a Gaussian log-density.")


def check_exercise_3(log_weights) -> bool:
    """``log_weights`` (K,), K ≥ 8: the importance log-weights ``log p(x|z_k) + log p(z_k) - log r(z_k|x)``
    at ``X0`` with ``z_k`` drawn from the exact posterior ``r(z|x) = p(z|x)`` of the linear generator."""
    ex = EX.format(3)
    w = as_array(log_weights, "log_weights", ex)
    if w.ndim != 1 or len(w) < 8:
        fail(ex, f"log_weights: expected a 1-D array of at least 8 weights, got shape {w.shape}")
    want = float(stats.multivariate_normal(np.zeros(3), W @ W.T + SIGMA**2 * np.eye(3)).logpdf(X0))
    if w.max() - w.min() > 1e-6:
        fail(ex, f"the weights vary by {w.max() - w.min():.3g}; with the exact posterior every weight is the same",
             "posterior covariance (I + WᵀW/σ²)⁻¹, mean Σ_post Wᵀ x / σ²")
    close(ex, "the (constant) log-weight", float(w.mean()), want, 1e-6, "it must equal log q(x) at X0")
    return passed(ex, "with the exact posterior, p(x, z)/p(z|x) = q(x) for every z: zero-variance "
                      "importance sampling. PosteriorProposal learns an approximation of it.")
