"""Detectors: ``fit(x, y=None) -> self`` then ``score(x) -> (N,)`` numpy, higher = more OOD."""
from ebm_ood.detector import Detector
from ebm_ood.posthoc.dice import DICE
from ebm_ood.posthoc.knn import KNN
from ebm_ood.posthoc.logit_scores import MSP, MaxLogit
from ebm_ood.posthoc.mahalanobis import Mahalanobis
from ebm_ood.posthoc.odin import ODIN, ODINConfig
from ebm_ood.posthoc.react import ReAct
from ebm_ood.posthoc.ssd import SSDPlus
from ebm_ood.posthoc.vim import ViM

__all__ = ["Detector", "DICE", "KNN", "MSP", "MaxLogit", "Mahalanobis", "ODIN", "ODINConfig", "ReAct", "SSDPlus", "ViM"]
