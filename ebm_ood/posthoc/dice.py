"""DICE, directed sparsification (Sun & Li 2022). Features z (N, D), head W (C, D), b (C,).

Contribution of weight (c, d) on ID data: ``V = W ⊙ z̄`` with ``z̄ = mean_train z`` (broadcast over rows).
Keep the weights whose contribution exceeds the p-th percentile of all C·D entries:
``M = [V > percentile_p(V)]``, ``W̃ = W ⊙ M``. Score: the energy of the sparsified head,
``s(z) = -logsumexp(W̃ z + b)`` (higher = more OOD). p = 90 by default (sparsity 0.9).
"""
from __future__ import annotations

import numpy as np

from ebm_ood.plumbing.checks import check_in_range
from ebm_ood.posthoc.linear_head import HeadDetector, energy_score, logits_of


def dice_mask(weight: np.ndarray, mean_feature: np.ndarray, percentile: float) -> np.ndarray:
    """``M = [W ⊙ z̄ > percentile_p(W ⊙ z̄)]``: (C, D), (D,) → boolean (C, D)."""
    contrib = weight * mean_feature[None, :]
    return contrib > np.percentile(contrib, percentile)


class DICE(HeadDetector):
    """DICE, directed sparsification (Sun & Li 2022): the energy ``-logsumexp(W̃ z + b)`` of the
    sparsified head (module docstring). After fit: ``mask_`` (C, D) boolean, ``sparse_weight_`` W̃ (C, D).

    Parameters
    ----------
    weight : array (C, D), the head's ``W``.
    bias : array (C,), the head's ``b``.
    percentile : float in [0, 100), p: keep the weights whose contribution exceeds the p-th percentile.
    device : torch device or None (CPU).
    batch_size : int, samples per scoring batch.

    Needs
    -----
    Features (N, D) and the backbone's linear head ``W`` (C, D), ``b`` (C,):
    ``FeatureSpaceDetector(bb, DICE.from_backbone(bb))`` with ``bb = Backbone(model, head=model.fc, ...)``.

    Example
    -------
    >>> import numpy as np, ebm_ood
    >>> rng = np.random.default_rng(0)
    >>> z, W, b = rng.normal(size=(100, 6)).astype("float32"), rng.normal(size=(3, 6)), rng.normal(size=3)
    >>> ebm_ood.DICE(W, b, percentile=90).fit(z).score(z[:3]).shape
    (3,)
    """

    name = "DICE"

    def __init__(self, weight, bias, percentile: float = 90.0, device=None, batch_size: int = 4096):
        super().__init__(weight, bias, device, batch_size)
        self.percentile = check_in_range(percentile, "percentile", 0, 100, low_closed=True, high_closed=False)

    def _fit(self, x, y):
        self.check_features(x)
        self.mask_ = dice_mask(self.weight, np.asarray(x, dtype=np.float64).mean(axis=0), self.percentile)
        self.sparse_weight_ = self.weight * self.mask_

    def _fitted_mismatch(self):
        if self.mask_.shape != self.weight.shape or not np.array_equal(self.sparse_weight_, self.weight * self.mask_):
            return "sparse_weight_ is not weight * mask_"
        return None

    def _score(self, x):
        self.check_features(x)
        return energy_score(logits_of(x, self.sparse_weight_, self.bias))
