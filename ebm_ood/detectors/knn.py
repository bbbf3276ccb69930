"""KNN detector (Sun et al. 2022, "Out-of-distribution detection with deep nearest neighbors").

Features are L2-normalised, ``ẑ = z / ‖z‖``; the score is the Euclidean distance from ``ẑ`` to its k-th
nearest normalised training feature (higher = more OOD). k = 50 as in HEAT Table 4, capped at
``n_train - 1`` so that scoring a training point still has k neighbours besides itself.
Search: scikit-learn ``NearestNeighbors`` (exact, brute force).
"""
from __future__ import annotations

import numpy as np

from ebm_ood.detectors.base import Detector


def l2_normalize(z: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """``z / max(‖z‖, eps)`` row-wise. (N, D) → (N, D), float64."""
    z = np.asarray(z, dtype=np.float64)
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), eps)


class KNN(Detector):
    """k-th nearest-neighbour distance on L2-normalised features. After fit: ``k_`` (the k used), ``index_``."""

    name = "KNN"

    def __init__(self, k: int = 50, normalize: bool = True, device=None, batch_size: int = 4096):
        super().__init__(device, batch_size)
        if not (isinstance(k, (int, np.integer)) and k >= 1):
            raise ValueError(f"k: expected an integer >= 1, got {k!r}")
        self.k, self.normalize = int(k), normalize

    def _prep(self, x):
        return l2_normalize(x) if self.normalize else np.asarray(x, dtype=np.float64)

    def _fit(self, x, y):
        if x.ndim != 2:
            raise ValueError(f"x: expected features of shape (N, D), got {x.shape}")
        from sklearn.neighbors import NearestNeighbors  # imported lazily: sklearn is slow to import

        n = x.shape[0]
        self.k_ = min(self.k, max(1, n - 1))
        self.index_ = NearestNeighbors(n_neighbors=self.k_, algorithm="brute").fit(self._prep(x))

    def _score(self, x):
        dist, _ = self.index_.kneighbors(self._prep(x), n_neighbors=self.k_)  # (N, k), ascending
        return dist[:, -1]
