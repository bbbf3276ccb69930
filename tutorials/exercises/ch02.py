"""Chapter 02 exercises: the bias and the stability limit of Langevin steps, equipartition at a temperature,
and why short chains cannot recover mixture weights."""
from __future__ import annotations

import numpy as np

from exercises._check import as_array, as_dict, as_float, close, fail, passed

EX = "ch02 exercise {}"
SIGMA = np.array([[1.0, 0.8], [0.8, 1.0]])
MODES = np.array([[-2.0, -2.0], [-2.0, 2.0], [2.0, -2.0], [2.0, 2.0]])
S_MODE = 0.5
WEIGHTS = np.array([0.7, 0.1, 0.1, 0.1])


def _lyapunov(step: float, noise_std: float, n_iter: int = 20000) -> np.ndarray:
    """Stationary covariance of ``u <- M u + noise_std w``, ``M = I - step Σ⁻¹``, by iterating
    ``C <- M C Mᵀ + noise_std² I`` from C = 0 (no eigen-decomposition)."""
    m = np.eye(2) - step * np.linalg.inv(SIGMA)
    c = np.zeros((2, 2))
    for _ in range(n_iter):
        c_next = m @ c @ m.T + noise_std**2 * np.eye(2)
        if np.abs(c_next - c).max() < 1e-13:
            return c_next
        c = c_next
    return c


def _stable(eta: float) -> bool:
    """HEAT Eq. 4 on ``½ xᵀΣ⁻¹x`` contracts iff the spectral radius of ``I - (η/2)Σ⁻¹`` is below 1."""
    return float(np.abs(np.linalg.eigvals(np.eye(2) - 0.5 * eta * np.linalg.inv(SIGMA))).max()) < 1.0


def check_exercise_1(answer) -> bool:
    """``answer = {"cov_0.2": (2, 2), "cov_0.5": (2, 2), "eta_max": float}``: the covariance the Langevin
    chain (HEAT Eq. 4, ``form="langevin"``) settles to at η = 0.2 and η = 0.5 on the chapter's Gaussian
    (closed form or measured with ≥ 4000 chains), and the step size above which it diverges."""
    ex = EX.format(1)
    answer = as_dict(answer, ("cov_0.2", "cov_0.5", "eta_max"), "answer", ex)
    for eta in (0.2, 0.5):
        got = as_array(answer[f"cov_{eta}"], f"answer['cov_{eta}']", ex, shape=(2, 2))
        want = _lyapunov(eta / 2, np.sqrt(eta))
        err = float(np.abs(got - want).max())
        if err > 0.05 * float(np.abs(want).max()):
            fail(ex, f"at η = {eta} your covariance {got.round(3).tolist()} is off the chain's stationary "
                     f"covariance {want.round(3).tolist()} by {err:.3g}",
                 "it is not Σ: the discretised chain has its own fixed point C = M C Mᵀ + η I" if
                 np.abs(got - SIGMA).max() < 1e-3 else "run more chains/steps, or solve C = M C Mᵀ + η I")
    eta_max = as_float(answer["eta_max"], "answer['eta_max']", ex)
    grid = np.linspace(0.01, 3.0, 2991)
    brute = float(grid[np.argmax([not _stable(e) for e in grid])])
    close(ex, "eta_max", eta_max, brute, 0.01, "the largest eigenvalue of Σ⁻¹ sets it: |1 - η λ / 2| < 1")
    return passed(ex, f"the chain's covariance grows with η and it diverges above η = {brute:.2f}.")


def check_exercise_2(answer) -> bool:
    """``answer = {"predicted": float, "measured": float}``: the mean energy ``E[½ xᵀΣ⁻¹x]`` of the decoupled
    sampler (``form="decoupled"``, α = 0.01, σ = 0.1, so T = σ²/(2α) = 0.5) at stationarity: predicted
    from the temperature, and measured with ``sgld`` (≥ 2000 chains)."""
    ex = EX.format(2)
    answer = as_dict(answer, ("predicted", "measured"), "answer", ex)
    c = _lyapunov(0.01, 0.1)
    exact = 0.5 * float(np.trace(np.linalg.inv(SIGMA) @ c))
    predicted = as_float(answer["predicted"], "answer['predicted']", ex)
    close(ex, "predicted", predicted, exact, 0.05 * exact,
          "equipartition: at temperature T each of the d quadratic directions holds T/2 on average")
    measured = as_float(answer["measured"], "answer['measured']", ex)
    close(ex, "measured", measured, exact, 0.1 * exact,
          "start the chains near 0 or run ≥ 1500 steps: α λ_min ≈ 0.0056 per step is a slow contraction")
    return passed(ex, f"mean energy = T·d/2 = {exact:.3f} (the exact discrete chain; T = 0.5, d = 2).")


def _basin_shares(n: int = 100) -> np.ndarray:
    """Share of starts in U(-4, 4)² whose noiseless descent on the weighted mixture ends in each mode."""
    g = (np.arange(n) + 0.5) / n * 8 - 4
    x = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    for _ in range(150):
        d = x[:, None, :] - MODES[None]
        logit = np.log(WEIGHTS)[None] - (d**2).sum(-1) / (2 * S_MODE**2)
        r = np.exp(logit - logit.max(1, keepdims=True))
        r /= r.sum(1, keepdims=True)
        x = x - 0.05 * (r[:, :, None] * d).sum(1) / S_MODE**2
    nearest = ((x[:, None, :] - MODES[None]) ** 2).sum(-1).argmin(1)
    return np.bincount(nearest, minlength=4) / len(x)


def check_exercise_3(shares) -> bool:
    """``shares`` (4,): the fraction of 2000 Langevin chains (η = 0.02, 200 steps, started in U(-4, 4)²)
    nearest to each mode, for the mixture with weights (0.7, 0.1, 0.1, 0.1) on the modes in the chapter's
    order."""
    ex = EX.format(3)
    got = as_array(shares, "shares", ex, shape=(4,))
    basins = _basin_shares()
    if np.abs(got - WEIGHTS).max() < 0.05:
        fail(ex, f"shares {got.round(3).tolist()} are the target's weights: short chains do not get there",
             "measure it: a chain would have to climb a barrier of ≈ 8/(2 s²) = 16 nats to change mode")
    if np.abs(got - basins).max() > 0.05:
        fail(ex, f"shares {got.round(3).tolist()}; starting points fall into the basins as "
                 f"{basins.round(3).tolist()}")
    return passed(ex, f"the chains keep the basin they start in ({basins.round(2).tolist()}), not the weights "
                      f"{WEIGHTS.tolist()}: only the replay buffer's restarts and long mixing could reweight.")
