"""An EBM's density itself (Elflein Eq. 1): ``p(x) = exp(-E(x)) / Z``, ``Z = ∫ exp(-E(x)) dx``.

``Z`` is intractable in general — the reason the Elflein methods score OOD data with ``E(x)`` alone (the
``log Z`` term is one constant for all inputs, so rankings do not need it). In one to three dimensions it
can be summed on a grid (chapter 01 of the tutorials checks ``Z`` of ``½ x²`` with it):

* :func:`grid_log_normalizer` — ``log Z ≈ log Σ_i exp(-E(x_i)) ΔV`` over the cell midpoints ``x_i`` of a
  regular grid on a box (midpoint rule; the box must hold almost all the mass);
* :func:`log_density` — ``log p(x) = -E(x) - log Z``.
"""
from __future__ import annotations

import math
from typing import Callable

import torch


def grid_log_normalizer(energy_fn: Callable[[torch.Tensor], torch.Tensor], lows, highs, n: int = 200) -> float:
    """``log Z`` of ``exp(-E)`` on the box ``[lows, highs]`` (D ≤ 3 values each) by the midpoint rule with
    ``n`` cells per axis. ``energy_fn``: (M, D) float64 → (M,)."""
    lows, highs = [float(v) for v in lows], [float(v) for v in highs]
    d = len(lows)
    if not 1 <= d <= 3 or len(highs) != d or any(h <= lo for lo, h in zip(lows, highs)):
        raise ValueError(f"lows, highs: expected 1 to 3 bounds with low < high, got {lows}, {highs}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n: expected an integer >= 2, got {n!r}")
    axes = [lo + (torch.arange(n, dtype=torch.float64) + 0.5) * (h - lo) / n for lo, h in zip(lows, highs)]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, d)  # (n^D, D)
    with torch.no_grad():
        e = energy_fn(grid).to(torch.float64)
    cell = math.prod((h - lo) / n for lo, h in zip(lows, highs))
    return float(torch.logsumexp(-e, dim=0)) + math.log(cell)


def log_density(energy_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, log_z: float) -> torch.Tensor:
    """Elflein Eq. 1 in logs: ``log p(x) = -E(x) - log Z``. ``x`` (N, *shape) → (N,)."""
    return -energy_fn(x) - log_z
