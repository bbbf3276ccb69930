"""Reference solutions for chapter 03."""
from __future__ import annotations

import torch

from ebm_ood.methods.contrastive_divergence import cd_config, contrastive_divergence_loss, energy_l2_penalty
from exercises.ch03 import E_NEG, E_POS, ring_data


def exercise_1():
    """Train θ = exp(s) by CD with exact samples from N(0, I/θ)."""
    g = torch.Generator().manual_seed(0)
    x_pos = torch.as_tensor(ring_data(), dtype=torch.float64)
    s = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([s], lr=0.05)
    tail = []
    for step in range(200):
        theta = s.exp()
        x_neg = torch.randn(4000, 2, generator=g, dtype=torch.float64) / theta.detach().sqrt()
        energy = lambda x: theta * (x**2).sum(1) / 2                          # noqa: E731
        loss = contrastive_divergence_loss(energy(x_pos), energy(x_neg))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step >= 150:
            tail.append(float(s.detach().exp()))
    return sum(tail) / len(tail)


def exercise_2():
    cfg = cd_config("default", "tabular")
    return {"T_decoupled": cfg.noise_std**2 / (2 * cfg.step_size), "T_langevin": 1.0, "alpha_langevin": 1e-3 / 2}


def exercise_3():
    """Minimise the loss over c with autograd."""
    c = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([c], lr=1.0, max_iter=50)
    e_pos, e_neg = torch.as_tensor(E_POS), torch.as_tensor(E_NEG)

    def closure():
        opt.zero_grad()
        loss = contrastive_divergence_loss(e_pos + c, e_neg + c) + energy_l2_penalty(e_pos + c, e_neg + c)
        loss.backward()
        return loss

    opt.step(closure)
    return float(c.detach())
