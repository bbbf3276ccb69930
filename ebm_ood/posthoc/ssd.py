"""SSD+ (Sehwag et al. 2021, supervised variant): the tied-covariance Mahalanobis detector on
L2-normalised features ``ẑ = z / ‖z‖`` (the clusters are the classes). Score (higher = more OOD):

    s(z) = min_c (ẑ - μ_c)ᵀ Σ⁻¹ (ẑ - μ_c),   μ_c, Σ fitted on normalised training features.

HEAT reads SSD+ as its GMM prior (HEAT §3.1). The SSD authors' code fits one covariance per cluster; we
follow HEAT's shared-covariance reading.
"""
from __future__ import annotations

from ebm_ood.posthoc.mahalanobis import Mahalanobis


class SSDPlus(Mahalanobis):
    name = "SSD+"
    normalize = True
