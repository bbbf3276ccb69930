"""Reference solutions for chapter 05."""
from __future__ import annotations

import math

import numpy as np
import torch  # noqa: F401

from ebm_ood.methods.vera import gaussian_log_density
from exercises.ch05 import SIGMA, W


def exercise_1():
    """d/dσ [-σ²/(2s²) + ½ log(2πeσ²)] = 0 gives σ = s; the bound is then ½ log(2π s²) = log Z."""
    return lambda s: {"sigma_best": s, "log_z": 0.5 * math.log(2 * math.pi * s * s)}


def exercise_2():
    """log N(x; 0, WWᵀ + σ²I) via a Cholesky factor."""
    cov = W @ W.T + SIGMA**2 * np.eye(3)
    chol = np.linalg.cholesky(cov)

    def log_q(x):
        u = np.linalg.solve(chol, np.asarray(x, dtype=np.float64).T)        # (3, N)
        return -0.5 * (u**2).sum(0) - np.log(np.diag(chol)).sum() - 1.5 * math.log(2 * math.pi)
    return log_q


def exercise_3():
    """Draw z from the Gaussian posterior and evaluate the three log-densities with the library."""
    w = torch.as_tensor(W)

    def posterior_weights(x0):
        x = torch.as_tensor(x0, dtype=torch.float64)
        cov = torch.linalg.inv(torch.eye(2, dtype=torch.float64) + w.T @ w / SIGMA**2)
        mean = cov @ w.T @ x / SIGMA**2
        chol = torch.linalg.cholesky(cov)
        g = torch.Generator().manual_seed(0)
        z = mean + torch.randn(4000, 2, generator=g, dtype=torch.float64) @ chol.T
        log_post = torch.distributions.MultivariateNormal(mean, cov).log_prob(z)
        log_lik = gaussian_log_density(x.expand(len(z), 3), z @ w.T, SIGMA)
        log_prior = gaussian_log_density(z, torch.zeros_like(z), 1.0)
        return z.numpy(), (log_lik + log_prior - log_post).numpy()
    return posterior_weights


def exercise_4():
    """Log-weights, a softmax over the proposal draws, the weighted mean of -(x - g(h)) / σ²."""
    def score_estimate(x, h, log_xi, g, sigma):
        m, n = h.shape[:2]
        mu = g(h.reshape(m * n, -1)).view(m, n, -1)                      # (M, N, 3)
        log_w = gaussian_log_density(h, torch.zeros_like(h), 1.0) + gaussian_log_density(x[None], mu, sigma) - log_xi
        weights = torch.softmax(log_w, dim=0)[..., None]
        return -(weights * (x[None] - mu)).sum(0) / sigma**2
    return score_estimate
