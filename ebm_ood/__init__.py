"""ebm_ood: out-of-distribution detection with energy-based models, from first principles.

The top level holds the papers' concepts; ``plumbing/`` (below everything) and ``commands/`` (the ``ebm-ood``
command, above everything) can be skipped. Imports flow one way through the layers of the table ``LAYERS`` in
``tests/repository/test_structure.py``, which checks every import against it; the README's Layout is rendered
from that table.

The public API (every detector: ``fit(x, y=None)`` then ``score(x)``, one score per sample, higher = more
OOD; ``x`` an array, a tensor or a DataLoader):

* your own trained model as a feature extractor: :class:`Backbone`, :class:`FeatureSpaceDetector`;
* post-hoc detectors: :class:`MSP`, :class:`MaxLogit`, :class:`Energy`, :class:`ODIN`, :class:`Mahalanobis`,
  :class:`SSDPlus`, :class:`KNN`, :class:`ViM`, :class:`DICE`, :class:`ReAct`;
* HEAT (Lafon et al. 2023): :func:`make_heat_detector`, :class:`HEATDetector`, :func:`make_composition`;
* the Elflein et al. (2021) EBMs: :class:`CEClassifier`, :class:`CDDetector`, :class:`SSMDetector`,
  :class:`VERADetector`, :class:`NormalizingFlowDetector`;
* :func:`evaluate` (AUROC, AUPR, FPR95 per OOD set) → :class:`Evaluation`, :func:`save` / :func:`load` (no
  pickle), :func:`set_num_threads` (the library runs on 1 thread unless you choose: ``ebm_ood/plumbing/threads.py``).
"""
__version__ = "0.1.0"

from ebm_ood.backbone import Backbone, FeatureSpaceDetector
from ebm_ood.detector import Detector
from ebm_ood.evaluation import Evaluation, evaluate
from ebm_ood.heat.build import make_composition, make_heat_detector
from ebm_ood.heat.hybrid import HEATDetector
from ebm_ood.methods.ce import CEClassifier
from ebm_ood.methods.contrastive_divergence import CDDetector
from ebm_ood.methods.flows.detector import NormalizingFlowDetector
from ebm_ood.methods.score_matching import SSMDetector
from ebm_ood.methods.vera import VERADetector
from ebm_ood.persist import load, save
from ebm_ood.posthoc import DICE, KNN, MSP, Energy, ODIN, MaxLogit, Mahalanobis, ODINConfig, ReAct, SSDPlus, ViM
from ebm_ood.plumbing.threads import set_num_threads

__all__ = [
    "__version__", "Backbone", "FeatureSpaceDetector", "Detector", "evaluate", "Evaluation", "save", "load",
    "set_num_threads",
    "MSP", "MaxLogit", "Energy", "ODIN", "ODINConfig", "Mahalanobis", "SSDPlus", "KNN", "ViM", "DICE", "ReAct",
    "make_heat_detector", "make_composition", "HEATDetector",
    "CEClassifier", "CDDetector", "SSMDetector", "VERADetector", "NormalizingFlowDetector",
]
