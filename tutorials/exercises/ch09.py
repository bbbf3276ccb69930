"""Chapter 09 exercises: composing energies (HEAT Eq. 7), a class-conditional Gaussian prior, and the
hybrid energy as a product of densities (HEAT Eq. 2)."""
from __future__ import annotations

import numpy as np
from scipy import special, stats

from exercises._check import decade, elements_off, as_array, as_callable, as_dict, as_float, close, fail, passed

EX = "ch09 exercise {}"


def check_exercise_1(compose) -> bool:
    """Implement it: ``compose(E (N, K) numpy, beta) -> (N,)``: HEAT Eq. 7 with the mean,
    ``(1/β) log mean_k exp(β E_k)``; β = 0 is the mean, β = ±inf the max/min. Must be stable at large |β|.
    Compared with scipy's logsumexp and with the library's ``compose_energies(..., reduce="mean")``."""
    ex = EX.format(1)
    fn = as_callable(compose, "compose", ex)
    e = np.random.default_rng(1).normal(0, 3, (20, 4))
    k = e.shape[1]
    cases = {0.0: e.mean(1), np.inf: e.max(1), -np.inf: e.min(1)}
    for beta in (-2.0, 0.5, 1.0, 300.0):
        cases[beta] = (special.logsumexp(beta * e, axis=1) - np.log(k)) / beta
    from ebm_ood.heat.compose import compose_energies
    for beta, want in cases.items():
        if np.abs(compose_energies(e, beta=beta, reduce="mean") - want).max() > 1e-9:
            fail(ex, f"internal: the library's compose_energies disagrees with Eq. 7 at β = {beta}")
        got = as_array(fn(e, beta), f"compose(E, {beta})", ex, shape=(20,))
        err = float(np.abs(got - want).max())
        if err > 1e-6:
            summed = np.isfinite(beta) and beta != 0 and abs(err - np.log(k) / abs(beta)) < 1e-6
            hint = ("the mean, not the sum: subtract log K / β" if summed
                    else "shift by the max before exponentiating; treat β = 0 and β = ±inf as limits")
            fail(ex, f"β = {beta}: your composition differs from Eq. 7 by {decade(err)} (the largest error)", hint)
    return passed(ex, "β interpolates between min (β → -∞), mean (β = 0) and max (β → +∞) of the energies.")


MEANS = np.array([[0.0, 0.0], [3.0, 1.0], [-1.0, 2.5]])
COV = np.array([[1.0, 0.3], [0.3, 0.5]])
PI = np.array([0.5, 0.3, 0.2])


def check_exercise_2(gmm_energy) -> bool:
    """``gmm_energy(z (N, 2)) -> (N,)``: ``-log q(z)`` of the normalised mixture ``Σ_c π_c N(z; μ_c, Σ)``
    (``PI``, ``MEANS``, shared ``COV``): the density the HEAT authors' code uses (``GMMPrior(form="code")``,
    there on L2-normalised features). The paper's prior drops ``π_c`` and the normaliser (exercise 4)."""
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
        fail(ex, f"your energies differ from -log q(z) by {decade(err)} (the largest error)", hint)
    return passed(ex, "-log q(z) of the class-Gaussian mixture; HEAT's paper form keeps only the "
                      "logsumexp of -½ d²_c (exercise 4), and HEAT adds a learned residual E_θ to either.")


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


def _chain_var(a: float, eta: float) -> float:
    """Stationary variance of z ← z - (η/2)(1 + a) z + √η w: ``η / (1 - m²)``, ``m = 1 - η(1 + a)/2``."""
    m = 1 - eta / 2 * (1 + a)
    return eta / (1 - m * m)


def check_exercise_3(answer) -> bool:
    """``answer = {"predicted": .., "measure": fn}``: the per-coordinate variance of Langevin samples from the
    hybrid ``E_h = E_q + E_θ`` with prior ``E_q = ½‖z‖²`` and residual ``E_θ = (a/2)‖z‖²``, a = 3, predicted
    from Eq. 2; and ``measure(a, eta) -> float``, that variance measured with ``sgld(..., form="langevin",
    step_size=eta)`` (≥ 2000 chains in 2-D, run to stationarity) — called at (3, 0.01) and at a large step
    the check draws, where the discretised chain is far from 1/(1 + a)."""
    ex = EX.format(3)
    answer = as_dict(answer, ("predicted", "measure"), "answer", ex)
    exact = _exact_var()
    predicted = as_float(answer["predicted"], "predicted", ex)
    if abs(predicted - 1.0) < 0.02:
        fail(ex, "predicted = 1 is the prior's variance: the residual changes it")
    close(ex, "predicted", predicted, exact, 0.03 * exact,
          "adding energies multiplies densities: exp(-½‖z‖²)·exp(-(a/2)‖z‖²) is a Gaussian of precision 1 + a")
    measure = as_callable(answer["measure"], "answer['measure']", ex)
    rng = np.random.default_rng(93)
    a_big = round(float(rng.uniform(1.0, 2.0)), 3)
    eta_big = round(float(rng.uniform(0.5, 0.7)) * 4 / (1 + a_big) / 2, 4)
    for a, eta in ((A_RESIDUAL, ETA), (a_big, eta_big)):
        want = _chain_var(a, eta)
        if (a, eta) != (A_RESIDUAL, ETA) and abs(want - 1 / (1 + a)) < 0.2 * want:
            fail(ex, "internal: the drawn step does not separate the chain from 1/(1 + a)")
        close(ex, f"measure({a}, {eta})", as_float(measure(a, eta), "measure", ex), want, 0.08 * want,
              "run the chains: at a large step the discretised chain's variance is not 1/(1 + a)")
    return passed(ex, f"variance 1/(1 + a) = {1 / (1 + A_RESIDUAL):.3f} (the chain: {exact:.4f}): the residual "
                      "reshapes the prior multiplicatively — as long as the step is small.")


def check_exercise_4(heat_gmm_energy) -> bool:
    """Implement it: ``heat_gmm_energy(z (N, D), means (C, D), cov (D, D)) -> (N,)``, the raw energy of
    HEAT's GMM prior in the paper's form, ``-logsumexp_c(-½ (z - μ_c)ᵀ Σ⁻¹ (z - μ_c))`` (no ``π_c``, no
    normaliser). Compared with the library's ``GMMPrior(form="paper", temperature=1, normalize=False)`` fitted on features
    and labels the check draws (it passes the prior's fitted ``means`` and ``cov``)."""
    ex = EX.format(4)
    import torch
    from ebm_ood.heat.priors import GMMPrior
    fn = as_callable(heat_gmm_energy, "heat_gmm_energy", ex)
    rng = np.random.default_rng(94)
    y = rng.integers(0, 3, 600)
    feats = rng.normal(0, 1, (600, 4)) @ rng.normal(0, 1, (4, 4)) + rng.normal(0, 3, (3, 4))[y]
    prior = GMMPrior(form="paper", temperature=1.0, domain="real", normalize=False).fit(feats, y)
    g = prior.gaussian
    z = torch.as_tensor(rng.normal(0, 3, (40, 4)), dtype=g.means.dtype)
    with torch.no_grad():
        want = prior(z).double().numpy()
    got = as_array(fn(z.double().numpy(), g.means.double().numpy(), g.cov.double().numpy()),
                   "heat_gmm_energy(z, means, cov)", ex, shape=(40,))
    tol = 1e-4 * np.maximum(1.0, np.abs(want))
    if np.any(np.abs(got - want) > tol):
        fail(ex, f"your energies differ from GMMPrior(form='paper'): {elements_off(got, want, tol)}",
             "d²_c = (z - μ_c)ᵀ Σ⁻¹ (z - μ_c); E = -logsumexp_c(-½ d²_c), with no log π_c and no log-normaliser")
    return passed(ex, "HEAT's paper-form prior is a soft minimum of Mahalanobis distances: with one class it is "
                      "½ d², the Mahalanobis score.")
