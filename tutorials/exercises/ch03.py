"""Chapter 03 exercises: CD as moment matching, the sampler's temperature, and what the L2 penalty pins."""
from __future__ import annotations

import numpy as np

from exercises._check import as_dict, as_float, close, fail, passed

EX = "ch03 exercise {}"


def ring_data(n: int = 2000, seed: int = 0) -> np.ndarray:
    """The chapter's eight-mode ring (radius 0.7, std 0.05), (n, 2) float32."""
    rng = np.random.default_rng(seed)
    angles = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    modes = 0.7 * np.stack([np.cos(angles), np.sin(angles)], 1)
    return (modes[rng.integers(0, 8, n)] + rng.normal(0, 0.05, (n, 2))).astype(np.float32)


def check_exercise_1(theta) -> bool:
    """``theta``: where CD with exact model samples converges for the energy family ``E_θ(x) = θ‖x‖²/2``
    (a Gaussian of precision θ) on ``ring_data()``. Train it (``contrastive_divergence_loss`` on
    ``x⁺ = ring_data()`` and ``x⁻ ~ N(0, I/θ)``), or solve for the fixed point."""
    ex = EX.format(1)
    got = as_float(theta, "theta", ex)
    x = ring_data().astype(np.float64)
    grid = np.linspace(0.1, 20.0, 199_001)
    # CD's fixed point is a maximum of the Gaussian log-likelihood: brute-force it over θ
    loglik = x.shape[1] / 2 * np.log(grid / (2 * np.pi)) - grid / 2 * (x**2).sum(1).mean()
    best = float(grid[np.argmax(loglik)])
    close(ex, "theta", got, best, 0.03 * best,
          "at the fixed point the data and model averages of ∂E/∂θ = ‖x‖²/2 agree: E_data‖x‖² = d/θ")
    return passed(ex, f"θ* = {best:.3f}: CD matches the moments ∂E/∂θ of data and model, i.e. maximum "
                      "likelihood within the family.")


def check_exercise_2(answer) -> bool:
    """``answer = {"T_decoupled": ..., "T_langevin": ..., "alpha_langevin": ...}``: the temperature the
    chapter's sampler (``cd_config("default", "tabular")``: decoupled, its ``step_size`` α and ``noise_std``
    σ) targets; the temperature of ``sgld_form="langevin"`` with ``step_size=1e-3``; and the gradient step
    (the factor on ∇E) that Langevin step takes."""
    ex = EX.format(2)
    answer = as_dict(answer, ("T_decoupled", "T_langevin", "alpha_langevin"), "answer", ex)
    from ebm_ood.methods.contrastive_divergence import cd_config
    cfg = cd_config("default", "tabular")
    # x' = x - α∇E + σ w samples exp(-E/T) with σ² = 2αT (the Langevin form has α = η/2, σ = √η)
    close(ex, "T_decoupled", as_float(answer["T_decoupled"], "T_decoupled", ex),
          cfg.noise_std**2 / (2 * cfg.step_size), 1e-9, "σ² = 2 α T")
    close(ex, "T_langevin", as_float(answer["T_langevin"], "T_langevin", ex), 1.0, 1e-9,
          "HEAT Eq. 4 uses α = η/2 and σ = √η")
    close(ex, "alpha_langevin", as_float(answer["alpha_langevin"], "alpha_langevin", ex), 0.5e-3, 1e-12,
          "HEAT Eq. 4: z ← z - (η/2)∇E + √η w")
    return passed(ex, "the code's sampler runs at T = 5·10⁻⁵: almost gradient descent, so buffer samples sit "
                      "in the wells; the Langevin form at T = 1 spreads them over the whole density.")


E_POS = np.array([-1.2, -0.4, 0.3, -0.8, -1.0, 0.1])
E_NEG = np.array([0.9, 2.1, 1.4, 0.2, 3.0])


def check_exercise_3(c) -> bool:
    """``c``: the constant which, added to every energy (``E_POS + c``, ``E_NEG + c``), minimises
    ``contrastive_divergence_loss + 1.0 · energy_l2_penalty`` for the arrays ``E_POS`` and ``E_NEG``."""
    ex = EX.format(3)
    got = as_float(c, "c", ex)
    grid = np.linspace(-5.0, 5.0, 100_001)
    cd = E_POS.mean() - E_NEG.mean()                                   # does not depend on c
    penalty = ((E_POS[None] + grid[:, None]) ** 2).mean(1) + ((E_NEG[None] + grid[:, None]) ** 2).mean(1)
    best = float(grid[np.argmin(cd + penalty)])
    if abs(got) < 1e-12 and abs(best) > 1e-3:
        fail(ex, "c = 0 is not the minimum: the penalty is not at its minimum for the energies as given")
    close(ex, "c", got, best, 1e-3, "the CD term does not change with c; minimise the penalty in c")
    return passed(ex, f"c* = {best:.4f}, the level that centres the positive and negative energies around 0: "
                      "CD alone leaves this level free, the penalty fixes it.")
