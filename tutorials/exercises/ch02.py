"""Chapter 02 exercises: the bias and the stability limit of Langevin steps, equipartition at a temperature,
and why short chains cannot recover mixture weights."""
from __future__ import annotations

import numpy as np

from exercises._check import as_array, as_callable, as_dict, as_float, close, elements_off, fail, passed

EX = "ch02 exercise {}"
SIGMA = np.array([[1.0, 0.8], [0.8, 1.0]])
MODES = np.array([[-2.0, -2.0], [-2.0, 2.0], [2.0, -2.0], [2.0, 2.0]])
S_MODE = 0.5
WEIGHTS = np.array([0.7, 0.1, 0.1, 0.1])


def _lyapunov(step: float, noise_std: float, n_iter: int = 20000) -> np.ndarray:
    """Covariance of ``u <- M u + noise_std w``, ``M = I - step Σ⁻¹``, after ``n_iter`` steps from u = 0 (or
    at stationarity, once it stops moving): iterates ``C <- M C Mᵀ + noise_std² I`` from C = 0."""
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
                     f"covariance: {elements_off(got, want, 0.05 * float(np.abs(want).max()))}",
                 "it is not Σ: the discretised chain has its own fixed point C = M C Mᵀ + η I" if
                 np.abs(got - SIGMA).max() < 1e-3 else "run more chains/steps, or solve C = M C Mᵀ + η I")
    eta_max = as_float(answer["eta_max"], "answer['eta_max']", ex)
    grid = np.linspace(0.01, 3.0, 2991)
    brute = float(grid[np.argmax([not _stable(e) for e in grid])])
    close(ex, "eta_max", eta_max, brute, 0.01, "the largest eigenvalue of Σ⁻¹ sets it: |1 - η λ / 2| < 1")
    return passed(ex, f"the chain's covariance grows with η and it diverges above η = {brute:.2f}.")


def _mean_energy(step: float, noise_std: float) -> float:
    """``E[½ xᵀΣ⁻¹x]`` of the decoupled chain ``x <- x - α Σ⁻¹x + σ w`` at stationarity (exact, discrete)."""
    return 0.5 * float(np.trace(np.linalg.inv(SIGMA) @ _lyapunov(step, noise_std)))


def check_exercise_2(answer) -> bool:
    """``answer = {"predicted": float, "measure": fn}``: the mean energy ``E[½ xᵀΣ⁻¹x]`` of the decoupled
    sampler (``form="decoupled"``, α = 0.01, σ = 0.1, so T = σ²/(2α) = 0.5) at stationarity, predicted from
    the temperature; and ``measure(step_size, noise_std) -> float``, the mean energy measured with ``sgld``
    (≥ 2000 chains run to stationarity) — called at α = 0.01, σ = 0.1 and at a large step the check draws,
    where the discretised chain is far from equipartition."""
    ex = EX.format(2)
    answer = as_dict(answer, ("predicted", "measure"), "answer", ex)
    exact = _mean_energy(0.01, 0.1)
    predicted = as_float(answer["predicted"], "answer['predicted']", ex)
    close(ex, "predicted", predicted, exact, 0.05 * exact,
          "equipartition: at temperature T each of the d quadratic directions holds T/2 on average")
    measure = as_callable(answer["measure"], "answer['measure']", ex)
    rng = np.random.default_rng(20)
    big_step, big_noise = (round(float(v), 3) for v in (rng.uniform(0.2, 0.3), rng.uniform(0.3, 0.6)))
    for step, noise, hint in ((0.01, 0.1, "start the chains near 0 and run ≥ 1500 steps: α λ_min ≈ 0.0056 "
                                          "per step is a slow contraction"),
                              (big_step, big_noise, "this step is large: measure it, equipartition T·d/2 "
                                                    "holds only as α → 0")):
        want = _mean_energy(step, noise)
        if step == big_step and abs(noise**2 / (2 * step) - want) < 0.2 * want:
            fail(ex, "internal: the drawn step does not separate the chain from equipartition")
        got = as_float(measure(step, noise), f"measure({step}, {noise})", ex)
        close(ex, f"measure({step}, {noise})", got, want, 0.1 * want, hint)
    return passed(ex, f"mean energy = T·d/2 = {exact:.3f} for a small step (T = 0.5, d = 2); at α = {big_step} "
                      f"the discretised chain holds {_mean_energy(big_step, big_noise) / (big_noise**2 / (2 * big_step)):.2f}"
                      " times that: the step size biases the sampler.")


def _basin_shares(center=(0.0, 0.0), n: int = 100) -> np.ndarray:
    """Share of starts in the 8 × 8 box centred at ``center`` whose noiseless descent on the weighted mixture
    ends in each mode."""
    g = (np.arange(n) + 0.5) / n * 8 - 4
    x = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2) + np.asarray(center, dtype=np.float64)
    for _ in range(150):
        d = x[:, None, :] - MODES[None]
        logit = np.log(WEIGHTS)[None] - (d**2).sum(-1) / (2 * S_MODE**2)
        r = np.exp(logit - logit.max(1, keepdims=True))
        r /= r.sum(1, keepdims=True)
        x = x - 0.05 * (r[:, :, None] * d).sum(1) / S_MODE**2
    nearest = ((x[:, None, :] - MODES[None]) ** 2).sum(-1).argmin(1)
    return np.bincount(nearest, minlength=4) / len(x)


def check_exercise_3(shares) -> bool:
    """``shares(center (2,)) -> (4,)``: the fraction of 2000 Langevin chains (η = 0.02, 200 steps, started
    uniformly in the 8 × 8 box centred at ``center``; ``(0, 0)`` is the chapter's U(-4, 4)²) nearest to each
    mode, for the mixture with weights (0.7, 0.1, 0.1, 0.1) on the modes in the chapter's order. Called at
    (0, 0) and at a centre the check draws."""
    ex = EX.format(3)
    fn = as_callable(shares, "shares", ex)
    drawn = np.round(np.random.default_rng(30).uniform(-1.5, 1.5, 2), 2)
    for center in (np.zeros(2), drawn):
        got = as_array(fn(center.copy()), f"shares({center.tolist()})", ex, shape=(4,))
        basins = _basin_shares(center)
        if np.abs(got - WEIGHTS).max() < 0.05:
            fail(ex, f"shares {got.round(3).tolist()} are the target's weights: short chains do not get there",
                 "measure it: a chain would have to climb a barrier of ≈ 8/(2 s²) = 16 nats to change mode")
        if np.abs(got - basins).max() > 0.05:
            fail(ex, f"shares({center.tolist()}) = {got.round(3).tolist()}: {elements_off(got, basins, 0.05)}",
                 "run the chains from that box and count the nearest mode of each end point")
    return passed(ex, f"the chains keep the basin they start in ({_basin_shares().round(2).tolist()} from "
                      f"U(-4, 4)², {_basin_shares(drawn).round(2).tolist()} from the shifted box), not the weights "
                      f"{WEIGHTS.tolist()}: only the replay buffer's restarts and long mixing could reweight.")


def _library_chain(energy, x0: "torch.Tensor", n_steps: int, eta: float, seed: int):
    import torch
    from ebm_ood.sampling import sgld
    return sgld(energy, x0, n_steps=n_steps, step_size=eta, form="langevin",
                generator=torch.Generator().manual_seed(seed))


def check_exercise_4(langevin_chain) -> bool:
    """Implement it: ``langevin_chain(energy, x0 (N, d), n_steps, eta, noise) -> x_T`` runs HEAT Eq. 4,
    ``z <- z - (η/2) ∇E(z) + √η w_t``, with ``w_t = noise(t)`` (a tensor shaped like ``x0``) and the gradient
    from ``torch.autograd.grad``. Compared with the library's ``sgld(..., form="langevin")`` on the same noise
    (its Philox stream), for an energy, η and start the check draws."""
    ex = EX.format(4)
    import torch
    from ebm_ood.sampling import ops, philox
    fn = as_callable(langevin_chain, "langevin_chain", ex)
    rng = np.random.default_rng(40)
    centres = torch.as_tensor(rng.normal(0, 2, (3, 2)))
    scale = float(rng.uniform(0.4, 0.9))
    eta, n_steps, seed = round(float(rng.uniform(0.01, 0.05)), 4), 25, int(rng.integers(1, 2**31))

    def energy(x):
        return -torch.logsumexp(-((x[:, None, :] - centres[None]) ** 2).sum(2) / (2 * scale**2), dim=1)

    x0 = torch.as_tensor(rng.uniform(-4, 4, (64, 2)))
    key = ops.draw_seed(torch.Generator().manual_seed(seed))     # the Philox key sgld draws from that generator
    noise = lambda t: philox.normal(x0.numel(), key, t).view(x0.shape).to(x0.dtype)    # noqa: E731
    want = _library_chain(energy, x0, n_steps, eta, seed).numpy()
    got = as_array(fn(energy, x0.clone(), n_steps, eta, noise), "langevin_chain(...)", ex, shape=tuple(x0.shape))
    if not np.allclose(got, want, rtol=0, atol=1e-9):
        fail(ex, f"your chain ends away from the library's: {elements_off(got, want, 1e-9)}",
             "z - (η/2)·∇E(z) + √η·noise(t) for t = 0 .. n_steps-1; the gradient of energy(z).sum() in z")
    return passed(ex, "your loop is the library's sgld: the fused op only fuses this update into one kernel.")
