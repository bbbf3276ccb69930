"""Chapter 01 exercises: temperature, normalising on a grid, and the logit shift (Elflein Eq. 1–3)."""
from __future__ import annotations

import math

import numpy as np
import torch

from exercises._check import decade, as_array, as_callable, as_dict, as_float, close, fail, off_by, passed

EX = "ch01 exercise {}"


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    m = a.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def check_exercise_1(energy_at_temperature) -> bool:
    """``energy_at_temperature(logits (N, C) tensor, T) -> (N,)`` must equal ``-T logsumexp(f / T)`` for
    T = 0.1, 1, 10 and two temperatures drawn by the check (float64 numpy reference, and the library's
    ``ebm_ood.energy.energy_from_logits``), and tend to ``-max_y f`` as T → 0 (checked at T = 1e-3)."""
    ex = EX.format(1)
    fn = as_callable(energy_at_temperature, "energy_at_temperature", ex)
    f = np.random.default_rng(1).normal(0.0, 3.0, (50, 4))
    from ebm_ood.energy import energy_from_logits
    drawn = np.random.default_rng(11).uniform(0.2, 5.0, 2)
    for t in (0.1, 1.0, 10.0, *(round(float(d), 4) for d in drawn)):
        got = as_array(fn(torch.as_tensor(f), t), f"energy_at_temperature(logits, {t})", ex, shape=(50,))
        want = -t * _logsumexp(f / t, axis=1)
        library = energy_from_logits(torch.as_tensor(f), temperature=t).numpy()
        if np.abs(library - want).max() > 1e-9 * max(1.0, float(np.abs(want).max())):
            fail(ex, f"internal: the library's energy_from_logits disagrees with numpy at T = {t}")
        err = float(np.abs(got - want).max())
        if err > 1e-6 * max(1.0, float(np.abs(want).max())):
            fail(ex, f"at T = {t} your energies differ from -T logsumexp(f/T) (and from the library's "
                     f"energy_from_logits) by up to {decade(err)}",
                 "multiply by T outside the logsumexp, divide the logits by T inside" if t != 1.0 else "")
    got = as_array(fn(torch.as_tensor(f), 1e-3), "energy_at_temperature(logits, 1e-3)", ex, shape=(50,))
    err = float(np.abs(got + f.max(axis=1)).max())
    if err > 1e-2:
        fail(ex, f"at T = 1e-3 your energy is {decade(err)} away from -max_y f(x)[y]")
    return passed(ex, "-T logsumexp(f/T) -> -max f as T -> 0: the energy becomes the max-logit score.")


def check_exercise_2(z_on_grid) -> bool:
    """``z_on_grid(energy (n, n), g1 (n, n), g2 (n, n)) -> Z`` by quadrature of ``exp(-E)`` over the
    ``np.meshgrid`` box. Checked on two energies with known ``Z``: ``½‖x‖²`` (Z = 2π) and a correlated
    Gaussian (Z = 2π √det Σ), and on a shifted energy (Z scales by ``exp(-c)``)."""
    ex = EX.format(2)
    fn = as_callable(z_on_grid, "z_on_grid", ex)
    g = np.linspace(-7.0, 7.0, 281)
    g1, g2 = np.meshgrid(g, g)
    x = np.stack([g1, g2], axis=-1)
    sigma = np.array([[1.0, 0.6], [0.6, 0.8]])
    prec = np.linalg.inv(sigma)
    cases = [("E = ½‖x‖²", 0.5 * (x**2).sum(-1), 2 * math.pi),
             ("E = ½ xᵀΣ⁻¹x", 0.5 * np.einsum("...i,ij,...j->...", x, prec, x),
              2 * math.pi * math.sqrt(np.linalg.det(sigma))),
             ("E = ½‖x‖² + 3", 0.5 * (x**2).sum(-1) + 3.0, 2 * math.pi * math.exp(-3.0))]
    for name, energy, z_true in cases:
        z = as_float(fn(energy, g1, g2), f"z_on_grid({name})", ex)
        if abs(z - z_true) > 1e-3 * z_true:
            fail(ex, f"for {name} on [-7, 7]² you get Z = {z:.6g}, {off_by(z, z_true)} against the closed form",
                 "integrate exp(-E) (not E, not exp(E)) and multiply by the cell area dx1·dx2")
    return passed(ex, "quadrature of exp(-E) recovers Z: now apply it to the classifier's grid_energy.")


def check_exercise_3(changes) -> bool:
    """``changes(b) -> {"E(x)": ..., "E(x,y)": ..., "log p(y|x)": ...}``: how much each quantity moves when
    ``b`` is added to every logit, as a function of ``b`` (checked at values of ``b`` drawn by the check)."""
    ex = EX.format(3)
    keys = ("E(x)", "E(x,y)", "log p(y|x)")
    fn = as_callable(changes, "changes", ex)
    rng = np.random.default_rng(3)
    f = rng.normal(0.0, 2.0, (20, 5))

    def quantities(logits):
        lse = _logsumexp(logits, axis=1)
        return {"E(x)": -lse, "E(x,y)": -logits[:, 0], "log p(y|x)": logits[:, 0] - lse}
    for b in (2.5, *(round(float(v), 3) for v in rng.uniform(-4.0, 4.0, 2))):
        answer = as_dict(fn(b), keys, f"changes({b})", ex)
        before, after = quantities(f), quantities(f + b)
        for k in keys:
            got = as_float(answer[k], f"changes({b})[{k!r}]", ex)
            close(ex, f"the change of {k} at b = {b}", got, float(np.mean(after[k] - before[k])), 1e-6,
                  "write each quantity with the shifted logits f + b and simplify")
    return passed(ex, "E(x) and E(x, y) move by -b, p(y|x) does not: cross-entropy only sees p(y|x), so it "
                      "leaves the level of the energy free.")
