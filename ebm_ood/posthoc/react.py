"""ReAct, rectified activations (Sun et al. 2021). Features z (N, D), head W (C, D), b (C,).

Clip every activation at ``c = percentile_p`` of all training activations (N·D values):
``z̄ = min(z, c)``; score = energy of the head on the clipped features,
``s(z) = -logsumexp(W z̄ + b)`` (higher = more OOD). p = 90 by default.
"""
from __future__ import annotations

import numpy as np

from ebm_ood.plumbing.checks import check_in_range
from ebm_ood.posthoc.linear_head import HeadDetector, energy_score, logits_of


class ReAct(HeadDetector):
    """ReAct, rectified activations (Sun et al. 2021): the energy ``-logsumexp(W min(z, c) + b)`` of the
    head on clipped features (module docstring). After fit: ``clip_`` c.

    Parameters
    ----------
    weight : array (C, D), the head's ``W``.
    bias : array (C,), the head's ``b``.
    percentile : float, p: clip at the p-th percentile of the training activations (default 90).
    device : torch device or None (CPU).
    batch_size : int, samples per scoring batch.

    Needs
    -----
    Features (N, D) and the backbone's linear head ``W`` (C, D), ``b`` (C,):
    ``FeatureSpaceDetector(bb, ReAct.from_backbone(bb))`` with ``bb = Backbone(model, head=model.fc, ...)``.

    Example
    -------
    >>> import numpy as np, ebm_ood
    >>> rng = np.random.default_rng(0)
    >>> z, W, b = rng.normal(size=(100, 6)).astype("float32"), rng.normal(size=(3, 6)), rng.normal(size=3)
    >>> ebm_ood.ReAct(W, b).fit(z).score(z[:3]).shape
    (3,)
    """

    name = "ReAct"

    def __init__(self, weight, bias, percentile: float = 90.0, device=None, batch_size: int = 4096):
        super().__init__(weight, bias, device, batch_size)
        self.percentile = check_in_range(percentile, "percentile", 0, 100, low_closed=False, high_closed=True)

    def _fit(self, x, y):
        self.check_features(x)
        self.clip_ = float(np.percentile(x, self.percentile))

    def _score(self, x):
        self.check_features(x)
        return energy_score(logits_of(np.minimum(x, self.clip_), self.weight, self.bias))
