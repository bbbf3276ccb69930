"""Mahalanobis detector (Lee et al. 2018), tied covariance, on features z (N, D) with labels.

Fit the class-conditional Gaussian with one shared covariance (:mod:`ebm_ood.class_gaussian`):
class means ``μ_c`` and ``Σ = (1/N) Σ_c Σ_{i∈c} (z_i - μ_c)(z_i - μ_c)ᵀ + reg·I``. Score (higher = more OOD):

    s(z) = min_c (z - μ_c)ᵀ Σ⁻¹ (z - μ_c)

This is the single-layer version without input pre-processing (as in HEAT Table 4). ``reg`` is relative:
``reg · tr(Σ₀) / D`` (Σ₀: Σ before the ridge, i.e. ``reg`` times the mean within-class variance) is added
to the diagonal so that degenerate features (dead ReLUs) stay invertible. With no within-class variance
at all (every class's features identical) the ridge is relative to the features' mean second moment
instead, with a :class:`~ebm_ood.class_gaussian.DegenerateCovarianceWarning`; all-zero features raise.
"""
from __future__ import annotations

from ebm_ood.plumbing.checks import check_positive
from ebm_ood.class_gaussian import fit_class_gaussian
from ebm_ood.detector import Detector
from ebm_ood.posthoc.knn import l2_normalize


class Mahalanobis(Detector):
    """Tied-covariance Mahalanobis distance to the nearest class mean,
    ``min_c (z - μ_c)ᵀ Σ⁻¹ (z - μ_c)`` (Lee et al. 2018; module docstring). Not an energy, but twice the
    energy of the closest class's Gaussian up to a constant. After fit: ``gaussian_``
    (:class:`~ebm_ood.class_gaussian.ClassGaussian`).

    Parameters
    ----------
    reg : float, ridge relative to the mean within-class variance (default 1e-6).
    batch_size : int, samples per scoring batch.
    device : torch device or None (CPU).

    Needs
    -----
    Features (N, D) and class labels y at fit: ``FeatureSpaceDetector(Backbone(model, ...), Mahalanobis())``.

    Example
    -------
    >>> import numpy as np, ebm_ood
    >>> rng = np.random.default_rng(0)
    >>> z, y = rng.normal(size=(100, 4)).astype("float32"), np.arange(100) % 3
    >>> ebm_ood.Mahalanobis().fit(z, y).score(z[:3]).shape
    (3,)
    """

    name = "Mahalanobis"
    input_kind = "features"
    needs_labels = True
    normalize = False  # SSD+ L2-normalises the features first

    def __init__(self, reg: float = 1e-6, batch_size: int = 65536, device=None):
        super().__init__(device, batch_size)
        check_positive(reg, "reg", allow_zero=True)
        self.reg = float(reg)

    def _prep(self, x):
        return l2_normalize(x) if self.normalize else x

    def _fit(self, x, y):
        if x.ndim != 2:
            raise ValueError(f"x: expected features of shape (N, D), got {x.shape}")
        # statistics streamed in float64 batches of batch_size: memory O(C·D + D²) beyond the input
        self.gaussian_ = fit_class_gaussian(self._prep(x), y, self.num_classes_, self.batch_size, self.reg,
                                            relative=True)

    def _fitted_mismatch(self):
        return self.gaussian_.layout_problem(self.num_classes_, self.input_shape_[0])

    def _score(self, x):
        return self.gaussian_.mahalanobis(self._prep(x)).min(axis=1)
