"""Reference solutions for chapter 04."""
from __future__ import annotations

import numpy as np
import torch

from ebm_ood.methods.score_matching import exact_score_matching_loss
from exercises.ch04 import H, gaussian_data


def exercise_1():
    """Minimise Hyvärinen's objective over a symmetric A with the library's exact loss."""
    x = torch.as_tensor(gaussian_data())
    b = torch.eye(2, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([b], lr=1.0, max_iter=30)

    def closure():
        opt.zero_grad()
        a = 0.5 * (b + b.T)
        loss = exact_score_matching_loss(lambda z: 0.5 * ((z @ a) * z).sum(1), x)
        loss.backward()
        return loss

    opt.step(closure)
    return (0.5 * (b + b.T)).detach().numpy()


def exercise_2():
    """Var(vᵀHv) = 2 Σ_{i≠j} H_ij² (Rademacher), 2 ‖H‖_F² (Gaussian)."""
    off = (H**2).sum() - (np.diag(H) ** 2).sum()
    return {"rademacher": 2 * off, "gaussian": 2 * (H**2).sum()}


def exercise_3():
    """One pass for the score plus D = 64 rows of the Jacobian; sliced: the score plus one batched HVP."""
    return {"exact": 1 + 64, "sliced": 2}
