"""HEAT detectors on raw inputs: a backbone's features → prior / hybrid / composition, by table name.

``make_heat_detector(backbone, "GMM-std", residual=True)`` is "HEAT-GMM-std" of HEAT Table 1: a
:class:`~ebm_ood.heat.hybrid.HEATDetector` with the right prior on the right features (``z`` for EL and
GMM, std-pooled ``z_std`` for GMM-std), wrapped in :class:`~ebm_ood.backbone.FeatureSpaceDetector`.
"""
from __future__ import annotations

from ebm_ood.backbone import Backbone, FeatureSpaceDetector
from ebm_ood.heat.compose import CompositionDetector
from ebm_ood.heat.hybrid import HEATDetector, heat_config
from ebm_ood.heat.priors import ELPrior, GMMPrior, NoPrior

PRIORS = ("EL", "GMM", "GMM-std")          # HEAT's three priors (Table 1)
_WHICH = {"EL": "z", "GMM": "z", "GMM-std": "z_std", "EBM": "z"}

# The authors' code (heatood, heat/config/ebm/heat_*_c10.yaml and heat/ebm/losses.py): per-prior sampler
# and loss settings, applied by form="code". All use an MLP without skips and L_C = mean pos² + mean neg².
_CODE_COMMON = dict(sampler="code", mlp="plain", control="code", step_size=1e-4, step_end=1e-5,
                    noise_std=5e-3, noise_end=5e-4, lam=10.0)
CODE_SETTINGS = {
    "EL": {**_CODE_COMMON, "sgld_steps": 50, "step_size": 0.1, "step_end": 0.01, "noise_std": 0.1,
           "noise_end": 0.01, "lam": 0.1},          # and starts from N(0, I) (ELPrior init="normal")
    "GMM": {**_CODE_COMMON, "sgld_steps": 40},
    "GMM-std": {**_CODE_COMMON, "sgld_steps": 1},
    "EBM": {**_CODE_COMMON, "sgld_steps": 40},      # no heatood config; the GMM one
}


def make_prior(backbone: Backbone, prior: str, form: str = "paper", reg: float = 1e-6, domain: str = "auto",
               normalize: bool = True, temperature=None):
    """A fresh prior module: "EL" (the backbone's head), "GMM", "GMM-std" (paper/code ``form``), or
    "EBM" (no prior: the plain-EBM baseline of HEAT Table 2 / Fig. 4). ``reg``: the Gaussian's ridge,
    relative to the mean within-class variance; ``domain``: the feature domain ("auto": read from the
    training features; see :mod:`ebm_ood.heat.priors`); ``normalize``: the GMM priors read L2-normalised
    features (default, HEAT's SSD+ prior) or raw ones (False); ``temperature``: the prior's ``T`` (None:
    the prior's default, ``T_G = 1e3`` for GMM / GMM-std and 1 for EL; "auto": the ID energy std)."""
    if form not in ("paper", "code"):
        raise ValueError(f"form: expected 'paper' or 'code', got {form!r}")
    t = {} if temperature is None else {"temperature": temperature}
    if prior == "EL":
        w, b = backbone.weight_bias()
        return ELPrior(w, b, init="gaussian" if form == "paper" else "normal", reg=reg, domain=domain, **t)
    if prior in ("GMM", "GMM-std"):
        return GMMPrior(form=form, reg=reg, domain=domain, normalize=normalize, **t)
    if prior == "EBM":
        return NoPrior(reg=reg, domain=domain)
    raise ValueError(f"prior: expected one of {PRIORS + ('EBM',)}, got {prior!r}")


def make_heat_detector(backbone: Backbone, prior: str, residual: bool = True, preset: str = "default",
                       seed: int = 0, form: str = "paper", reg: float = 1e-6, domain: str = "auto",
                       normalize: bool = True, temperature=None, name: str | None = None,
                       **overrides) -> FeatureSpaceDetector:
    """Prior alone (``residual=False``: "EL", "GMM", "GMM-std") or its hybrid ("HEAT-<prior>"), on raw
    inputs. ``form="code"``: the authors' code throughout (prior form and :data:`CODE_SETTINGS`).
    ``reg``, ``domain``, ``normalize``, ``temperature``: see :func:`make_prior`; ``name``: the table name
    (default "<prior>" or "HEAT-<prior>"). ``overrides`` are
    :class:`~ebm_ood.heat.hybrid.HEATConfig` fields (e.g. ``lam``); they win over ``form``'s settings."""
    if prior == "GMM-std" and not backbone.has_feature_map:
        raise ValueError(f"prior: GMM-std needs a conv backbone (std-pooled spatial features); "
                         f"{type(backbone.net).__name__} has no feature_map (pass Backbone(..., feature_map=...)) "
                         "— or use EL or GMM")
    p = make_prior(backbone, prior, form, reg, domain, normalize, temperature)
    name = name or (f"HEAT-{prior}" if residual else prior)
    settings = {**(CODE_SETTINGS[prior] if form == "code" else {}), **overrides}
    det = HEATDetector(p, heat_config(preset, **settings), residual=residual, device=backbone.device,
                       seed=seed, name=name)
    return FeatureSpaceDetector(backbone, det, which=_WHICH[prior], name=name)


def make_composition(parts: dict, beta: float = 0.0, reduce: str = "mean", refit: bool = True) -> CompositionDetector:
    """HEAT (Eq. 7) over ``parts`` = {name: detector}; β = 0 as in the paper's tables."""
    return CompositionDetector(parts, beta=beta, reduce=reduce, refit=refit, name="HEAT")
