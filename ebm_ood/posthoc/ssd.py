"""SSD+ (Sehwag et al. 2021, supervised variant): the tied-covariance Mahalanobis detector on
L2-normalised features ``ẑ = z / ‖z‖`` (the clusters are the classes). Score (higher = more OOD):

    s(z) = min_c (ẑ - μ_c)ᵀ Σ⁻¹ (ẑ - μ_c),   μ_c, Σ fitted on normalised training features.

HEAT reads SSD+ as its GMM prior (HEAT §3.1). The SSD authors' code fits one covariance per cluster; we
follow HEAT's shared-covariance reading.
"""
from __future__ import annotations

from ebm_ood.posthoc.mahalanobis import Mahalanobis


class SSDPlus(Mahalanobis):
    """SSD+: :class:`~ebm_ood.posthoc.mahalanobis.Mahalanobis` on L2-normalised features
    (module docstring). Not an energy (a squared distance, like Mahalanobis).

    Parameters
    ----------
    reg : float, ridge relative to the mean within-class variance (default 1e-6).
    batch_size : int, samples per scoring batch.
    device : torch device or None (CPU).

    Needs
    -----
    Features (N, D) and class labels y at fit: ``FeatureSpaceDetector(Backbone(model, ...), SSDPlus())``.

    Example
    -------
    >>> import numpy as np, ebm_ood
    >>> rng = np.random.default_rng(0)
    >>> z, y = rng.normal(size=(100, 4)).astype("float32"), np.arange(100) % 3
    >>> ebm_ood.SSDPlus().fit(z, y).score(z[:3]).shape
    (3,)
    """

    name = "SSD+"
    normalize = True
