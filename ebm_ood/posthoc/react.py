"""ReAct, rectified activations (Sun et al. 2021). Features z (N, D), head W (C, D), b (C,).

Clip every activation at ``c = percentile_p`` of all training activations (N·D values):
``z̄ = min(z, c)``; score = energy of the head on the clipped features,
``s(z) = -logsumexp(W z̄ + b)`` (higher = more OOD). p = 90 by default.
"""
from __future__ import annotations

import numpy as np

from ebm_ood.posthoc.linear_head import HeadDetector, energy_score, logits_of


class ReAct(HeadDetector):
    """After fit: ``threshold_`` c."""

    name = "ReAct"

    def __init__(self, weight, bias, percentile: float = 90.0, device=None, batch_size: int = 4096):
        super().__init__(weight, bias, device, batch_size)
        if not 0 < percentile <= 100:
            raise ValueError(f"percentile: expected a number in (0, 100], got {percentile!r}")
        self.percentile = float(percentile)

    def _fit(self, x, y):
        self.check_features(x)
        self.threshold_ = float(np.percentile(x, self.percentile))

    def _score(self, x):
        self.check_features(x)
        return energy_score(logits_of(np.minimum(x, self.threshold_), self.weight, self.bias))
