"""Chapter 03 exercises: CD as moment matching, the sampler's temperature, and what the L2 penalty pins."""
from __future__ import annotations

import numpy as np

from exercises._check import as_array, as_callable, as_dict, as_float, close, fail, passed

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
    """``answer = {"T_decoupled": float, "temperature": fn, "gradient_step": fn}``: the temperature the
    chapter's sampler (``cd_config("default", "tabular")``: decoupled, its ``step_size`` α and ``noise_std``
    σ) targets; ``temperature(form, step_size, noise_std) -> T`` and ``gradient_step(form, step_size) -> the
    factor on ∇E`` for ``form`` "decoupled" or "langevin" (``sgld``'s forms), checked at settings the check
    draws."""
    ex = EX.format(2)
    answer = as_dict(answer, ("T_decoupled", "temperature", "gradient_step"), "answer", ex)
    from ebm_ood.methods.contrastive_divergence import cd_config
    from ebm_ood.sampling.sgld import _coefficients
    cfg = cd_config("default", "tabular")
    # x' = x - a∇E + s w samples exp(-E/T) with s² = 2aT; (a, s) straight from the library's update table
    a, s = _coefficients("decoupled", cfg.step_size, None, cfg.noise_std, None, 1, "constant")[0]
    close(ex, "T_decoupled", as_float(answer["T_decoupled"], "T_decoupled", ex), s**2 / (2 * a), 1e-9 * s**2 / a,
          "σ² = 2 α T")
    temperature = as_callable(answer["temperature"], "answer['temperature']", ex)
    gradient_step = as_callable(answer["gradient_step"], "answer['gradient_step']", ex)
    rng = np.random.default_rng(32)
    for form in ("decoupled", "langevin"):
        for step, noise in np.round(rng.uniform(1e-3, 1.0, (2, 2)), 4):
            a, s = _coefficients(form, float(step), None, float(noise), None, 1, "constant")[0]
            close(ex, f"temperature({form!r}, {step}, {noise})",
                  as_float(temperature(form, float(step), float(noise)), "temperature", ex), s**2 / (2 * a),
                  1e-9 * s**2 / a, "HEAT Eq. 4 uses α = η/2 and σ = √η; the decoupled form takes α and σ as given")
            close(ex, f"gradient_step({form!r}, {step})",
                  as_float(gradient_step(form, float(step)), "gradient_step", ex), a, 1e-12,
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


def check_exercise_4(buffer_sample) -> bool:
    """Implement it: ``buffer_sample(buffer (C, d) tensor, batch_size, reinit_prob, generator) -> (x, idx)``,
    the persistent-CD replay buffer's draw: ``idx`` uniform slots with replacement (``torch.randint`` with
    ``generator``), then a restart mask ``torch.rand(B, generator=generator) < reinit_prob``, the stored states
    ``buffer[idx]`` (a copy) with the restarted rows replaced by fresh ``U(-1, 1)`` draws from ``generator``.
    Compared with the library's ``ReplayBuffer.sample`` on the same generator (bit for bit), at a capacity,
    batch size and restart probability the check draws."""
    ex = EX.format(4)
    import torch
    from ebm_ood.sampling.replay_buffer import ReplayBuffer
    fn = as_callable(buffer_sample, "buffer_sample", ex)
    rng = np.random.default_rng(34)
    for capacity, batch, p, seed in ((int(rng.integers(50, 200)), int(rng.integers(30, 80)), 0.05, 1),
                                     (int(rng.integers(50, 200)), int(rng.integers(30, 80)),
                                      round(float(rng.uniform(0.2, 0.6)), 3), int(rng.integers(2, 2**31)))):
        library = ReplayBuffer((2,), capacity=capacity, reinit_prob=p, generator=torch.Generator().manual_seed(seed))
        library.update(torch.arange(capacity), torch.as_tensor(rng.normal(0, 3, (capacity, 2)), dtype=torch.float32))
        stored = library.buffer.clone()
        state = library.generator.get_state()
        want_x, want_idx = library.sample(batch)
        mine = torch.Generator()
        mine.set_state(state)
        out = fn(stored.clone(), batch, p, mine)
        if not isinstance(out, tuple) or len(out) != 2:
            fail(ex, f"expected a pair (x, idx), got {type(out).__name__}")
        got_idx = as_array(out[1], "idx", ex, shape=(batch,))
        got_x = as_array(out[0], "x", ex, shape=(batch, 2))
        if not np.array_equal(got_idx, want_idx.numpy()):
            fail(ex, f"capacity {capacity}, batch {batch}: your slots differ from the library's in "
                     f"{int((got_idx != want_idx.numpy()).sum())} of {batch} draws",
                 "draw the slots first: torch.randint(0, capacity, (batch,), generator=generator)")
        if not np.array_equal(got_x, want_x.numpy()):
            restarted = library.last_reinit.numpy()
            wrong = ~np.all(got_x == want_x.numpy(), axis=1)
            fail(ex, f"capacity {capacity}, batch {batch}, ρ = {p}: {int(wrong.sum())} of {batch} rows differ "
                     f"({int((wrong & restarted).sum())} of them restarted rows)",
                 "then the mask torch.rand(batch, generator=generator) < reinit_prob, and for the restarted rows "
                 "torch.rand((n, d), generator=generator) * 2 - 1")
    return passed(ex, "your draw is the library's: about ρ of every batch restarts from noise, the rest continue "
                      "their chains — persistent CD's memory, with a way out of stuck modes.")
