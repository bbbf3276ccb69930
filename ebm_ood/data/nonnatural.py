"""Non-natural OOD sets (Elflein App. D) and the Experiment 5 smoothness sets, built on the fly."""
from __future__ import annotations

import numpy as np


def noise_set(n: int, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """*Noise*: the first half N(0, 1), the second half U(-1, 1), per element. (n, *shape) float32."""
    n_gauss = n // 2
    gauss = rng.standard_normal((n_gauss, *shape))
    unif = rng.uniform(-1.0, 1.0, size=(n - n_gauss, *shape))
    return np.concatenate([gauss, unif]).astype(np.float32)


def constant_set(n: int, shape: tuple[int, ...], rng: np.random.Generator, low=-1.0, high=1.0) -> np.ndarray:
    """*Constant*: one scalar from U(low, high) fills each sample. (n, *shape) float32."""
    c = rng.uniform(low, high, size=(n,) + (1,) * len(shape))
    return np.broadcast_to(c, (n, *shape)).astype(np.float32)


def smoothness_set(n: int, shape: tuple[int, int, int], pool: int, rng: np.random.Generator) -> np.ndarray:
    """Experiment 5: U(-1, 1) noise average-pooled with window ``pool`` then nearest-upsampled back.

    ``shape = (C, H, W)`` with H, W divisible by ``pool``; ``pool = 1`` is plain uniform noise.
    """
    c, h, w = shape
    if h % pool or w % pool:
        raise ValueError(f"pool: expected a divisor of the image size {h}x{w}, got {pool}")
    u = rng.uniform(-1.0, 1.0, size=(n, c, h, w))
    pooled = u.reshape(n, c, h // pool, pool, w // pool, pool).mean(axis=(3, 5))
    return np.repeat(np.repeat(pooled, pool, axis=2), pool, axis=3).astype(np.float32)
