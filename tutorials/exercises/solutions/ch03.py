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
    """``σ² = 2αT``; the Langevin form has ``α = η/2``, ``σ = √η``, hence T = 1."""
    cfg = cd_config("default", "tabular")

    def temperature(form, step_size, noise_std):
        return 1.0 if form == "langevin" else noise_std**2 / (2 * step_size)

    def gradient_step(form, step_size):
        return step_size / 2 if form == "langevin" else step_size
    return {"T_decoupled": cfg.noise_std**2 / (2 * cfg.step_size), "temperature": temperature,
            "gradient_step": gradient_step}


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


def exercise_4():
    """Slots, then the restart mask, then fresh U(-1, 1) starts for the restarted rows."""
    def buffer_sample(buffer, batch_size, reinit_prob, generator):
        idx = torch.randint(0, len(buffer), (batch_size,), generator=generator)
        reinit = torch.rand(batch_size, generator=generator) < reinit_prob
        x = buffer[idx]
        n_new = int(reinit.sum())
        if n_new:
            x[reinit] = torch.rand((n_new, *buffer.shape[1:]), generator=generator) * 2.0 - 1.0
        return x, idx
    return buffer_sample
