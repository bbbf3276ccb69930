"""Reference solutions for chapter 10."""
from __future__ import annotations

import numpy as np
import torch

from ebm_ood.sampling import ops, philox
from exercises.ch10 import OFFSET, SEED


def exercise_1():
    def draw(offset):
        x = torch.zeros(4096)
        ops.sgld_step_(x, torch.zeros(4096), 0.0, 1.0, seed=SEED, offset=offset)
        return x.double().numpy()
    a, b, c = draw(OFFSET), draw(OFFSET), draw(OFFSET + 1)
    return {"same_offset": float(np.corrcoef(a, b)[0, 1]), "next_offset": float(np.corrcoef(a, c)[0, 1])}


def exercise_2():
    words = lambda c1: [int(w) for w in philox.philox4x32_10((0, c1, OFFSET, 0), (SEED, 0))]  # noqa: E731
    return {"low": words(0), "high": words(1)}


def exercise_3():
    """The library's twin computes exactly this noise."""
    return lambda seed, offset, numel: philox.normal(numel, seed, offset).double().numpy()
