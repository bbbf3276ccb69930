"""Reference solutions for chapter 02 (measured with ``ebm_ood.sampling.sgld``)."""
from __future__ import annotations

import torch

from ebm_ood.sampling import sgld

SIGMA = torch.tensor([[1.0, 0.8], [0.8, 1.0]], dtype=torch.float64)
PRECISION = torch.linalg.inv(SIGMA)
MODES = torch.tensor([[-2.0, -2.0], [-2.0, 2.0], [2.0, -2.0], [2.0, 2.0]], dtype=torch.float64)


def gaussian_energy(x):
    return 0.5 * ((x @ PRECISION) * x).sum(dim=1)


def exercise_1():
    """Measure the covariance with 8000 chains; the threshold is ``4 / λ_max(Σ⁻¹)``."""
    torch.manual_seed(0)
    out = {}
    for eta in (0.2, 0.5):
        x = sgld(gaussian_energy, torch.zeros(4000, 2, dtype=torch.float64), n_steps=120, step_size=eta,
                 form="langevin")
        out[f"cov_{eta}"] = torch.cov(x.T).numpy()
    out["eta_max"] = 4.0 / float(torch.linalg.eigvalsh(PRECISION).max())
    return out


def exercise_2():
    """Equipartition: ``T · d / 2`` with T = 0.5, d = 2; measured from 2000 chains started at 0."""
    def measure(step_size, noise_std):
        x = sgld(gaussian_energy, torch.zeros(2000, 2, dtype=torch.float64), n_steps=1500, step_size=step_size,
                 noise_std=noise_std, form="decoupled", generator=torch.Generator().manual_seed(0))
        return float(gaussian_energy(x).mean())
    return {"predicted": 0.5 * 2 / 2, "measure": measure}


def exercise_3():
    """Run the weighted mixture from the box and count the chains per mode."""
    log_w = torch.log(torch.tensor([0.7, 0.1, 0.1, 0.1], dtype=torch.float64))

    def energy(x):
        d2 = ((x[:, None, :] - MODES[None]) ** 2).sum(dim=2)
        return -torch.logsumexp(log_w - d2 / (2 * 0.5**2), dim=1)

    def shares(center):
        g = torch.Generator().manual_seed(0)
        x0 = torch.rand(2000, 2, dtype=torch.float64, generator=g) * 8 - 4 + torch.as_tensor(center)
        x = sgld(energy, x0, n_steps=200, step_size=0.02, form="langevin", generator=g)
        nearest = torch.cdist(x, MODES).argmin(dim=1)
        return (torch.bincount(nearest, minlength=4).double() / len(x)).numpy()
    return shares


def exercise_4():
    """HEAT Eq. 4 written out: one autograd gradient and one update per step."""
    def langevin_chain(energy, x0, n_steps, eta, noise):
        x = x0.detach().clone()
        for t in range(n_steps):
            x.requires_grad_(True)
            (g,) = torch.autograd.grad(energy(x).sum(), x)
            x = (x.detach() - eta / 2 * g + eta**0.5 * noise(t)).detach()
        return x
    return langevin_chain
