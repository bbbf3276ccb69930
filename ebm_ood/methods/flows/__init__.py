"""Normalizing flows, the Elflein NF baseline: stacked radial flows (tabular) and a small Glow (images).

* :mod:`.radial` — radial transforms, closed-form log-dets and inverses, the 20-layer stack.
* :mod:`.glow_layers` — squeeze, ActNorm, invertible 1x1 conv, affine coupling, split prior, logit.
* :mod:`.glow` — the multi-scale Glow built from those layers.
* :mod:`.detector` — the ``NF`` detector (``-log p(x)`` score) and its ``flow_config`` presets.
"""
from ebm_ood.methods.flows.detector import FlowConfig, NormalizingFlowDetector, flow_config
from ebm_ood.methods.flows.glow import Glow, GlowConfig
from ebm_ood.methods.flows.radial import RadialFlow

__all__ = ["FlowConfig", "NormalizingFlowDetector", "flow_config", "Glow", "GlowConfig", "RadialFlow"]
