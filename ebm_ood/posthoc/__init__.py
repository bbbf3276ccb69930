"""Detectors: ``fit(x, y=None) -> self`` then ``score(x) -> (N,)`` numpy, higher = more OOD.

All but ODIN work on vectors: features ``z`` (N, D) (Mahalanobis, SSD+, KNN; ViM, DICE, ReAct also take the
classifier's linear head ``W``, ``b`` at construction, e.g. ``ViM.from_backbone(backbone)``) or logits
(N, C) (MSP, MaxLogit, Energy). On raw inputs use ``ebm_ood.backbone.FeatureSpaceDetector(backbone, detector)``
(``which="logits"`` for MSP, MaxLogit, Energy). ODIN takes the network itself (it needs input gradients).
"""
from ebm_ood.detector import Detector
from ebm_ood.posthoc.dice import DICE
from ebm_ood.posthoc.knn import KNN
from ebm_ood.posthoc.logit_scores import MSP, Energy, MaxLogit
from ebm_ood.posthoc.mahalanobis import Mahalanobis
from ebm_ood.posthoc.odin import ODIN, ODINConfig
from ebm_ood.posthoc.react import ReAct
from ebm_ood.posthoc.ssd import SSDPlus
from ebm_ood.posthoc.vim import ViM

__all__ = ["Detector", "DICE", "Energy", "KNN", "MSP", "MaxLogit", "Mahalanobis", "ODIN", "ODINConfig", "ReAct", "SSDPlus", "ViM"]
