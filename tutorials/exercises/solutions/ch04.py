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
    """The score, one Hessian-vector product by double backprop, and the two forms of the square term."""
    def ssm_loss(energy, x, v, variance_reduction):
        x = x.detach().requires_grad_(True)
        s = -torch.autograd.grad(energy(x).sum(), x, create_graph=True)[0]   # (N, D)
        sv = (s * v).sum(1)
        hv = torch.autograd.grad(sv.sum(), x, create_graph=True)[0]          # (∇ₓs)ᵀ v
        square = 0.5 * (s**2).sum(1) if variance_reduction else 0.5 * sv**2
        return ((hv * v).sum(1) + square).detach()
    return ssm_loss
