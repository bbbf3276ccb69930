"""Reference solutions for chapter 09."""
from __future__ import annotations

import numpy as np
import torch

from ebm_ood.heat.compose import compose_energies
from ebm_ood.sampling import sgld
from exercises.ch09 import A_RESIDUAL, COV, ETA, MEANS, PI


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
    torch.manual_seed(0)
    prior = lambda z: 0.5 * (z**2).sum(1)                                # noqa: E731
    residual = lambda z: 0.5 * A_RESIDUAL * (z**2).sum(1)                # noqa: E731
    z = sgld(lambda z: prior(z) + residual(z), torch.randn(4000, 2, dtype=torch.float64), n_steps=300,
             step_size=ETA, form="langevin")
    return {"predicted": 1 / (1 + A_RESIDUAL), "measured": float(z.var(dim=0).mean())}
