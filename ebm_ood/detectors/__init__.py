"""Detectors: ``fit(x, y=None) -> self`` then ``score(x) -> (N,)`` numpy, higher = more OOD."""
from ebm_ood.detectors.base import Detector
from ebm_ood.detectors.dice import DICE
from ebm_ood.detectors.knn import KNN
from ebm_ood.detectors.logit_scores import MSP, MaxLogit
from ebm_ood.detectors.mahalanobis import Mahalanobis
from ebm_ood.detectors.odin import ODIN, ODINConfig
from ebm_ood.detectors.react import ReAct
from ebm_ood.detectors.ssd import SSDPlus
from ebm_ood.detectors.vim import ViM

__all__ = ["Detector", "DICE", "KNN", "MSP", "MaxLogit", "Mahalanobis", "ODIN", "ODINConfig", "ReAct", "SSDPlus", "ViM"]
