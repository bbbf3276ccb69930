"""Reference solutions for chapter 09."""
from __future__ import annotations

import numpy as np
import torch

from ebm_ood.heat.compose import compose_energies
from ebm_ood.sampling import sgld
from exercises.ch09 import A_RESIDUAL, COV, MEANS, PI


def exercise_1():
    return lambda e, beta: compose_energies(e, beta=beta, reduce="mean")


def exercise_2():
    prec = np.linalg.inv(COV)
    log_norm = -np.log(2 * np.pi) - 0.5 * np.log(np.linalg.det(COV))

    def gmm_energy(z):
        d = z[:, None, :] - MEANS[None]                                  # (N, C, 2)
        comp = np.log(PI) + log_norm - 0.5 * np.einsum("nci,ij,ncj->nc", d, prec, d)
        m = comp.max(1, keepdims=True)
        return -(m[:, 0] + np.log(np.exp(comp - m).sum(1)))
    return gmm_energy


def exercise_3():
    def measure(a, eta):
        energy = lambda z: 0.5 * (1 + a) * (z**2).sum(1)                  # noqa: E731  prior + residual
        z = sgld(energy, torch.randn(4000, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)),
                 n_steps=600, step_size=eta, form="langevin", generator=torch.Generator().manual_seed(1))
        return float(z.var(dim=0).mean())
    return {"predicted": 1 / (1 + A_RESIDUAL), "measure": measure}


def exercise_4():
    def heat_gmm_energy(z, means, cov):
        d = z[:, None, :] - means[None]                                  # (N, C, D)
        d2 = np.einsum("nci,ij,ncj->nc", d, np.linalg.inv(cov), d)
        m = (-0.5 * d2).max(1, keepdims=True)
        return -(m[:, 0] + np.log(np.exp(-0.5 * d2 - m).sum(1)))
    return heat_gmm_energy
