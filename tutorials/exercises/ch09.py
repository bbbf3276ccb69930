"""Chapter 09 exercises: composing energies (HEAT Eq. 7), a class-conditional Gaussian prior, and the
hybrid energy as a product of densities (HEAT Eq. 2)."""
from __future__ import annotations

import numpy as np
from scipy import special, stats

from exercises._check import _band, elements_off, as_array, as_callable, as_dict, as_float, close, fail, passed

EX = "ch09 exercise {}"


def check_exercise_1(compose) -> bool:
    """``compose(E (N, K) numpy, beta) -> (N,)``: HEAT Eq. 7 with the mean, ``(1/β) log mean_k exp(β E_k)``;
    β = 0 is the mean, β = ±inf the max/min. Must be stable at large |β|."""
    ex = EX.format(1)
    fn = as_callable(compose, "compose", ex)
    e = np.random.default_rng(1).normal(0, 3, (20, 4))
    k = e.shape[1]
    cases = {0.0: e.mean(1), np.inf: e.max(1), -np.inf: e.min(1)}
    for beta in (-2.0, 0.5, 1.0, 300.0):
        cases[beta] = (special.logsumexp(beta * e, axis=1) - np.log(k)) / beta
    for beta, want in cases.items():
        got = as_array(fn(e, beta), f"compose(E, {beta})", ex, shape=(20,))
        err = float(np.abs(got - want).max())
        if err > 1e-6:
            summed = np.isfinite(beta) and beta != 0 and abs(err - np.log(k) / abs(beta)) < 1e-6
            hint = ("the mean, not the sum: subtract log K / β" if summed
                    else "shift by the max before exponentiating; treat β = 0 and β = ±inf as limits")
            fail(ex, f"β = {beta}: your composition differs from Eq. 7 by {_band(err)} (the largest error)", hint)
    return passed(ex, "β interpolates between min (β → -∞), mean (β = 0) and max (β → +∞) of the energies.")


MEANS = np.array([[0.0, 0.0], [3.0, 1.0], [-1.0, 2.5]])
COV = np.array([[1.0, 0.3], [0.3, 0.5]])
PI = np.array([0.5, 0.3, 0.2])


def check_exercise_2(gmm_energy) -> bool:
    """``gmm_energy(z (N, 2)) -> (N,)``: ``E_q(z) = -log q(z)`` of the mixture ``Σ_c π_c N(z; μ_c, Σ)``
    (``PI``, ``MEANS``, shared ``COV``), the GMM prior of HEAT."""
    ex = EX.format(2)
    fn = as_callable(gmm_energy, "gmm_energy", ex)
    z = np.random.default_rng(2).normal(0, 2, (30, 2))
    got = as_array(fn(z), "gmm_energy(z)", ex, shape=(30,))
    comp = np.stack([stats.multivariate_normal(m, COV).logpdf(z) for m in MEANS], 1) + np.log(PI)
    want = -special.logsumexp(comp, axis=1)
    err = float(np.abs(got - want).max())
    if err > 1e-6:
        hint = "the mixture needs log π_c inside the logsumexp" if \
            np.abs(got + special.logsumexp(comp - np.log(PI), axis=1)).max() < 1e-6 else \
            "-log Σ_c π_c N(z; μ_c, Σ): a logsumexp over classes, with the Gaussian's normaliser"
        fail(ex, f"your energies differ from -log q(z) by {_band(err)} (the largest error)", hint)
    return passed(ex, "the GMM prior energy; HEAT adds a learned residual E_θ to it.")


A_RESIDUAL, ETA = 3.0, 0.01


def _exact_var() -> float:
    """Stationary variance of z ← z - (η/2)(1 + a) z + √η w, by iterating v ← m² v + η."""
    m, v = 1 - ETA / 2 * (1 + A_RESIDUAL), 0.0
    for _ in range(100_000):
        v_next = m * m * v + ETA
        if abs(v_next - v) < 1e-15:
            break
        v = v_next
    return v


def check_exercise_3(answer) -> bool:
    """``answer = {"predicted": .., "measured": ..}``: the per-coordinate variance of Langevin samples
    (``form="langevin"``, η = 0.01) from the hybrid ``E_h = E_q + E_θ`` with prior ``E_q = ½‖z‖²`` and
    residual ``E_θ = (a/2)‖z‖²``, a = 3: predicted from Eq. 2, and measured (≥ 2000 chains, 2-D)."""
    ex = EX.format(3)
    answer = as_dict(answer, ("predicted", "measured"), "answer", ex)
    exact = _exact_var()
    predicted = as_float(answer["predicted"], "predicted", ex)
    if abs(predicted - 1.0) < 0.02:
        fail(ex, "predicted = 1 is the prior's variance: the residual changes it")
    close(ex, "predicted", predicted, exact, 0.03 * exact,
          "adding energies multiplies densities: exp(-½‖z‖²)·exp(-(a/2)‖z‖²) is a Gaussian of precision 1 + a")
    close(ex, "measured", as_float(answer["measured"], "measured", ex), exact, 0.08 * exact)
    return passed(ex, f"variance 1/(1 + a) = {1 / (1 + A_RESIDUAL):.3f} (the chain: {exact:.4f}): the residual "
                      "reshapes the prior multiplicatively.")
