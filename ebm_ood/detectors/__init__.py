"""Detectors: ``fit(x, y=None) -> self`` then ``score(x) -> (N,)`` numpy, higher = more OOD."""
from ebm_ood.detectors.base import Detector

__all__ = ["Detector"]
