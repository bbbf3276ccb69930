"""The classifier's last layer ``f(z) = W z + b`` as seen by post-hoc detectors (ViM, DICE, ReAct).

Feature-space detectors take the head's weights as constructor arguments so that they stay plain
functions of features: ``W`` (C, D), ``b`` (C,), features ``z`` (N, D), logits ``z Wᵀ + b`` (N, C).
:meth:`HeadDetector.from_backbone` reads them from a :class:`ebm_ood.backbone.Backbone`.
"""
from __future__ import annotations

import numpy as np
import torch

from ebm_ood.detector import Detector
from ebm_ood.energy import energy_from_logits
from ebm_ood.plumbing.checks import check_array


def check_head(weight, bias) -> tuple[np.ndarray, np.ndarray]:
    """Validate a linear head and return ``(W (C, D), b (C,))`` as float64 copies."""
    w = check_array(weight, "weight", ndim=2).astype(np.float64)
    b = check_array(bias, "bias", ndim=1).astype(np.float64)
    if b.shape[0] != w.shape[0]:
        raise ValueError(f"bias: expected {w.shape[0]} entries (one per row of weight {w.shape}), got {b.shape[0]}")
    return w, b


def logits_of(z: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``z Wᵀ + b``: (N, D), (C, D), (C,) → (N, C), float64."""
    return np.asarray(z, dtype=np.float64) @ weight.T + bias


def energy_score(logits: np.ndarray) -> np.ndarray:
    """Energy score ``-logsumexp_c logits`` (Elflein Eq. 3 at T = 1; reuses :mod:`ebm_ood.energy`). (N,)."""
    return energy_from_logits(torch.from_numpy(np.asarray(logits, dtype=np.float64))).numpy()


class HeadDetector(Detector):
    """Base for detectors that use features ``z`` (N, D) together with the classifier head (W, b)."""

    input_kind = "features"
    backbone_needs = ("features", "linear_head")

    def __init__(self, weight, bias, device=None, batch_size: int = 4096):
        super().__init__(device, batch_size)
        self.weight, self.bias = check_head(weight, bias)

    @classmethod
    def from_backbone(cls, backbone, **kwargs):
        """Build from a :class:`ebm_ood.backbone.Backbone` (its head's ``W``, ``b``)."""
        backbone.require(cls.backbone_needs, getattr(cls, "name", cls.__name__))
        w, b = backbone.weight_bias()
        return cls(w, b, **kwargs)

    def check_features(self, x: np.ndarray) -> None:
        """Features must be (N, D) with D = the head's input size."""
        if x.ndim != 2 or x.shape[1] != self.weight.shape[1]:
            raise ValueError(f"x: expected features of shape (N, {self.weight.shape[1]}) to match the head's "
                             f"weight {self.weight.shape}, got {x.shape}")
