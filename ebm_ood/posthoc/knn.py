"""KNN detector (Sun et al. 2022, "Out-of-distribution detection with deep nearest neighbors").

Features are L2-normalised, ``ẑ = z / ‖z‖``; the score is the Euclidean distance from ``ẑ`` to its k-th
nearest normalised training feature (higher = more OOD). k = 50 as in HEAT Table 4, capped at
``n_train - 1`` so that scoring a training point still has k neighbours besides itself.
Search (brute force, no index structure): a float32 matrix product ranks the training features for a block
of queries, ``torch.topk`` finds the k-th nearest, and its distance is recomputed in float64 (the float32
form ``2 - 2 q·t`` loses all digits for near neighbours). The float32 ranking can only misorder training
points whose squared distances agree to float32 resolution (~1e-7 of ‖q‖‖t‖), so the score equals an exact
float64 search whenever the k-th neighbour stands apart by more than that, and differs from it by at most
that resolution when points tie (``tests/posthoc/test_baselines.py`` checks both against brute force).
"""
from __future__ import annotations

import numpy as np
import torch

from ebm_ood.plumbing.checks import check_bool, check_int
from ebm_ood.detector import Detector


def l2_normalize(z: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """``z / max(‖z‖, eps)`` row-wise. (N, D) → (N, D), float64."""
    z = np.asarray(z, dtype=np.float64)
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), eps)


BLOCK_ELEMENTS = 1 << 24           # queries x training features per block: a 64 MB float32 affinity block


class KNN(Detector):
    """k-th nearest-neighbour distance on L2-normalised features (Sun et al. 2022). A distance, not an
    energy. After fit: ``k_`` (the k used: ``min(k, n_train - 1)``), ``index_``.

    Parameters
    ----------
    k : int >= 1, which neighbour's distance is the score (default 50).
    normalize : bool, L2-normalise features first (default True, as the paper).
    device : torch device or None (CPU).
    batch_size : int, queries per search block.

    Needs
    -----
    Features (N, D) only: ``FeatureSpaceDetector(Backbone(model, ...), KNN(k=10))``.

    Example
    -------
    >>> import numpy as np, ebm_ood
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=(100, 4)).astype("float32")
    >>> ebm_ood.KNN(k=5).fit(z).score(z[:3]).shape
    (3,)
    """

    name = "KNN"
    input_kind = "features"

    def __init__(self, k: int = 50, normalize: bool = True, device=None, batch_size: int = 4096):
        super().__init__(device, batch_size)
        self.k, self.normalize = check_int(k, "k"), check_bool(normalize, "normalize")

    def _prep(self, x):
        return l2_normalize(x) if self.normalize else np.asarray(x, dtype=np.float64)

    def _fit(self, x, y):
        if x.ndim != 2:
            raise ValueError(f"x: expected features of shape (N, D), got {x.shape}")
        n = x.shape[0]
        self.k_ = min(self.k, max(1, n - 1))
        self.index_ = self._prep(x)                                    # (N, D) float64, exact distances
        self.index32_ = torch.from_numpy(self.index_.astype(np.float32))  # (N, D) float32, ranking
        self.sq_norms_ = (self.index32_ * self.index32_).sum(1)            # (N,) for unnormalised features

    def _fitted_mismatch(self):
        n = self.index_.shape[0] if self.index_.ndim == 2 else 0
        if self.index_.shape[1:] != tuple(self.input_shape_) or tuple(self.index32_.shape) != self.index_.shape:
            return f"index_ {self.index_.shape} / index32_ {tuple(self.index32_.shape)} do not hold (N, {self.input_shape_})"
        if tuple(self.sq_norms_.shape) != (n,):
            return f"sq_norms_ has shape {tuple(self.sq_norms_.shape)}, expected ({n},)"
        if self.k_ != min(self.k, max(1, n - 1)):
            return f"k_ = {self.k_!r}, but k = {self.k} and {n} training features give {min(self.k, max(1, n - 1))}"
        return None

    def _score(self, x):
        q = self._prep(x)                                              # (M, D) float64
        block = max(1, BLOCK_ELEMENTS // self.index_.shape[0])
        out = np.empty(len(q), dtype=np.float64)
        for i in range(0, len(q), block):
            qb = q[i : i + block]
            # argmin ‖q - t‖² = argmax (2 q·t - ‖t‖²); with unit rows ‖t‖² = 1 for every t
            affinity = torch.from_numpy(qb.astype(np.float32)) @ self.index32_.T    # (B, N)
            if not self.normalize:
                affinity.mul_(2.0).sub_(self.sq_norms_)
            kth = torch.topk(affinity, self.k_, dim=1, sorted=True).indices[:, -1].numpy()  # (B,)
            out[i : i + block] = np.linalg.norm(qb - self.index_[kth], axis=1)
        return out
