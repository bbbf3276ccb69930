"""Reference solutions for chapter 01."""
from __future__ import annotations

import numpy as np
import torch


def exercise_1():
    """``-T logsumexp(f / T)``, written with torch."""
    return lambda logits, t: -t * torch.logsumexp(logits / t, dim=1)


def exercise_2():
    """Trapezoid rule in both directions of the meshgrid (rows vary x2, columns x1)."""
    trapezoid = getattr(np, "trapezoid", None) or np.trapz

    def z_on_grid(energy, g1, g2):
        inner = trapezoid(np.exp(-energy), g1[0], axis=1)
        return float(trapezoid(inner, g2[:, 0]))
    return z_on_grid


def exercise_3():
    """``E(x) = -logsumexp(f + b) = -logsumexp f - b``; ``E(x, y) = -f[y] - b``; the difference is unchanged."""
    return lambda b: {"E(x)": -b, "E(x,y)": -b, "log p(y|x)": 0.0}
