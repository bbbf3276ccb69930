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
    """Experiment 5 (Elflein App. A.1): U(-1, 1) noise per pixel, average-pooled with window and stride
    ``pool``, then resized back to ``shape`` by nearest-neighbour upsampling. (n, C, H, W) float32.

    Any ``1 <= pool <= min(H, W)`` works: pooling keeps the ``⌊H/pool⌋ × ⌊W/pool⌋`` whole windows (the
    remainder rows/columns are dropped, as ``torch.nn.functional.avg_pool2d`` does), and the upsampling
    takes output pixel ``i`` from pooled pixel ``⌊i · h'/H⌋`` (``F.interpolate(mode="nearest")``).
    ``pool = 1`` is plain uniform noise; the paper uses pools 2, 3, 4 and 16.
    """
    c, h, w = shape
    if isinstance(pool, bool) or not isinstance(pool, (int, np.integer)) or not 1 <= pool <= min(h, w):
        raise ValueError(f"pool: expected an integer in [1, {min(h, w)}] for images of size {h}x{w}, got {pool!r}")
    u = rng.uniform(-1.0, 1.0, size=(n, c, h, w))
    hp, wp = h // pool, w // pool
    pooled = u[:, :, : hp * pool, : wp * pool].reshape(n, c, hp, pool, wp, pool).mean(axis=(3, 5))
    rows, cols = (np.arange(h) * hp) // h, (np.arange(w) * wp) // w
    return pooled[:, :, rows][:, :, :, cols].astype(np.float32)
