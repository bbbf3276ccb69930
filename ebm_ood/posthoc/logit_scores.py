"""Scores read directly from a classifier's logits (input: logits (N, C); higher = more OOD).

* MSP (Hendrycks & Gimpel 2017): ``s(x) = -max_y softmax(f(x))[y]``
* MaxLogit (Hendrycks et al. 2022): ``s(x) = -max_y f(x)[y]``
* Energy (Liu et al. 2020): ``s(x) = E(x; T) = -T · logsumexp_y (f(x)[y] / T)``, T = 1 by default

HEAT's EL prior (:mod:`ebm_ood.heat`) is a standardised, fitted variant of the energy score.
Use them on raw inputs through ``FeatureSpaceDetector(backbone, MSP(), which="logits")``.
"""
from __future__ import annotations

import numpy as np
import torch

from ebm_ood.plumbing.checks import check_positive
from ebm_ood.detector import Detector
from ebm_ood.energy import energy_from_logits, max_softmax


class _LogitDetector(Detector):
    """Nothing to learn: ``fit`` only records the number of logits C (so a wrong C is caught at score)."""

    input_kind = "logits"
    backbone_needs = ("features", "head")

    def _fit(self, x, y):
        if x.ndim != 2:
            raise ValueError(f"x: expected logits of shape (N, C), got {x.shape}")


class MSP(_LogitDetector):
    """Maximum softmax probability, negated: ``-max_y p(y|x)`` (Hendrycks & Gimpel 2017; Elflein Eq. 2).
    A probability, not an energy: in [-1, -1/C]. Nothing is learned.

    Parameters
    ----------
    device : torch device or None (CPU).
    batch_size : int, samples per scoring batch.

    Needs
    -----
    Logits (N, C): ``FeatureSpaceDetector(Backbone(model, head=...), MSP(), which="logits")``.

    Example
    -------
    >>> import numpy as np, ebm_ood
    >>> rng = np.random.default_rng(0)
    >>> logits = rng.normal(size=(100, 5)).astype("float32")
    >>> ebm_ood.MSP().fit(logits).score(logits[:3]).shape
    (3,)
    """

    name = "MSP"

    def _score(self, x):
        return -max_softmax(torch.from_numpy(np.asarray(x, dtype=np.float64))).numpy()


class MaxLogit(_LogitDetector):
    """Maximum logit, negated: ``-max_y f(x)[y]`` (Hendrycks et al. 2022, "Scaling OOD detection").
    Not an energy (the energy is ``-logsumexp_y f(x)[y]``, of which this is the low-temperature limit).

    Parameters
    ----------
    device : torch device or None (CPU).
    batch_size : int, samples per scoring batch.

    Needs
    -----
    Logits (N, C): ``FeatureSpaceDetector(Backbone(model, head=...), MaxLogit(), which="logits")``.

    Example
    -------
    >>> import numpy as np, ebm_ood
    >>> rng = np.random.default_rng(0)
    >>> logits = rng.normal(size=(100, 5)).astype("float32")
    >>> bool((ebm_ood.MaxLogit().fit(logits).score(logits) == -logits.max(1)).all())
    True
    """

    name = "MaxLogit"

    def _score(self, x):
        return -np.asarray(x, dtype=np.float64).max(axis=1)


class Energy(_LogitDetector):
    """Energy score ``-T · logsumexp_y (f(x)[y] / T)`` (Liu et al. 2020, "Energy-based out-of-distribution
    detection"; Elflein Eq. 3 at T = 1): logits (N, C) -> (N,) float64, higher = more OOD. An energy:
    ``-log p(x)`` up to a constant under the JEM reading of the classifier.

    Parameters
    ----------
    temperature : float > 0, the temperature T (default 1: the plain energy score).
    device : torch device or None (CPU).
    batch_size : int, samples per scoring batch.

    Needs
    -----
    Logits (N, C): ``FeatureSpaceDetector(Backbone(model, head=...), Energy(), which="logits")``.

    Example
    -------
    >>> import numpy as np, ebm_ood
    >>> from scipy.special import logsumexp
    >>> logits = np.random.default_rng(0).normal(size=(100, 5)).astype("float32")
    >>> bool(np.allclose(ebm_ood.Energy().fit(logits).score(logits), -logsumexp(logits.astype("float64"), axis=1)))
    True
    """

    name = "Energy"

    def __init__(self, temperature: float = 1.0, device=None, batch_size: int = 512):
        super().__init__(device, batch_size)
        check_positive(temperature, "temperature")
        self.temperature = float(temperature)

    def _score(self, x):
        logits = torch.from_numpy(np.asarray(x, dtype=np.float64))
        return energy_from_logits(logits, self.temperature).numpy()
