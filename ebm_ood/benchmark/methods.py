"""Every method the benchmark knows, registered in table order. Each block: a ``build(ctx)`` returning an
unfitted detector configured for ``ctx.preset`` and the dataset kind, and its :class:`MethodSpec`."""
from __future__ import annotations

import importlib
import itertools

from ebm_ood.benchmark.registry import MethodSpec, RunContext, register_method
from ebm_ood.methods.ce import CEClassifier, ce_config


# --- CE baseline (Elflein) --------------------------------------------------------------------------
def build_ce(ctx: RunContext) -> CEClassifier:
    return CEClassifier(ce_config(ctx.preset, ctx.dataset.kind), device=ctx.device, seed=ctx.seed)


def shared_classifier(ctx: RunContext) -> CEClassifier:
    """The CE classifier of this (dataset, seed), trained once and shared (HEAT backbone, -E methods)."""
    d = ctx.dataset
    return ctx.shared("ce-classifier", lambda: build_ce(ctx).fit(d.x_train, d.y_train, validation=(d.x_val, d.y_val)))


register_method(MethodSpec("CE", build_ce, suites=("elflein",), uses_labels=True,
                           description="cross-entropy classifier, energy score (Elflein baseline)"))


# --- Elflein's generative models: CD, SSM, VERA (§3) and the NF baseline ---------------------------
# Each is unsupervised here (γ = 0); the supervised -S variants belong to the supervision experiment.
GENERATIVE = {  # table name -> (module, detector class, config preset function ``config(preset, kind)``, description)
    "CD": ("ebm_ood.methods.contrastive_divergence", "CDDetector", "cd_config",
           "EBM by persistent contrastive divergence, SGLD + replay buffer, energy score"),
    "SSM": ("ebm_ood.methods.score_matching", "SSMDetector", "ssm_config",
            "EBM by sliced score matching (SSM-VR, Rademacher projections), energy score"),
    "VERA": ("ebm_ood.methods.vera", "VERADetector", "vera_config",
             "EBM trained against a generator with an entropy-gradient estimator, energy score"),
    "NF": ("ebm_ood.methods.flows", "NormalizingFlowDetector", "flow_config",
           "normalizing flow, -log p(x): 20 radial layers (tabular) / Glow (images)"),
}


def generative(name: str):
    """``(detector class, config preset function)`` of the generative method ``name`` (imported on first
    use); the experiments build their EBMs from the same pair."""
    module, detector, config, _ = GENERATIVE[name]
    mod = importlib.import_module(module)
    return getattr(mod, detector), getattr(mod, config)


def _build_generative(name: str):
    """``build(ctx)``: the method's detector with its config for ``ctx.preset`` and the dataset kind."""
    def build(ctx: RunContext):
        cls, config = generative(name)
        return cls(config(ctx.preset, ctx.dataset.kind), device=ctx.device, seed=ctx.seed)
    return build


for _name, (*_, _desc) in GENERATIVE.items():
    register_method(MethodSpec(_name, _build_generative(_name), suites=("elflein",), uses_labels=False,
                               description=_desc))


# --- Post-hoc baselines (HEAT Table 4), all on the shared CE classifier ------------------------------
def shared_backbone(ctx: RunContext):
    """The shared CE classifier as a feature extractor (one feature cache for every HEAT-suite method)."""
    from ebm_ood.features import Backbone

    return ctx.shared("backbone", lambda: Backbone(shared_classifier(ctx).net_, device=ctx.device))


def _posthoc(make, which: str = "z"):
    """``build(ctx)``: ``make(backbone)`` → a feature-space detector, wrapped to take raw inputs."""
    def build(ctx: RunContext):
        from ebm_ood.features import FeatureSpaceDetector

        backbone = shared_backbone(ctx)
        return FeatureSpaceDetector(backbone, make(backbone), which=which)
    return build


def build_odin(ctx: RunContext):
    from ebm_ood.detectors.odin import ODIN

    return ODIN(shared_classifier(ctx).net_, device=ctx.device)


def _register_posthoc_baselines() -> None:
    from ebm_ood.detectors import DICE, KNN, MSP, ViM, MaxLogit, Mahalanobis, ReAct, SSDPlus

    specs = [
        ("MSP", _posthoc(lambda bb: MSP(), "logits"), False, "-max softmax (Hendrycks & Gimpel 2017)"),
        ("MaxLogit", _posthoc(lambda bb: MaxLogit(), "logits"), False, "-max logit (Hendrycks et al. 2022)"),
        ("ODIN", build_odin, False, "temperature 1000 + input perturbation 0.0014 (Liang et al. 2018)"),
        ("Mahalanobis", _posthoc(lambda bb: Mahalanobis()), True, "min class Mahalanobis distance, tied covariance (Lee et al. 2018)"),
        ("SSD+", _posthoc(lambda bb: SSDPlus()), True, "Mahalanobis on L2-normalised features (Sehwag et al. 2021)"),
        ("KNN", _posthoc(lambda bb: KNN(k=50)), False, "50th-neighbour distance, L2-normalised features (Sun et al. 2022)"),
        ("ViM", _posthoc(lambda bb: ViM.from_backbone(bb)), False, "virtual-logit matching (Wang et al. 2022)"),
        ("DICE", _posthoc(lambda bb: DICE.from_backbone(bb)), False, "energy of the 90 %-sparsified head (Sun & Li 2022)"),
        ("ReAct", _posthoc(lambda bb: ReAct.from_backbone(bb)), False, "energy on features clipped at the 90th percentile (Sun et al. 2021)"),
    ]
    for name, build, labels, desc in specs:
        register_method(MethodSpec(name, build, suites=("heat",), uses_labels=labels, description=desc))


_register_posthoc_baselines()


# --- HEAT (Lafon et al. 2023): the priors alone, their hybrids, and the composition -----------------
def heat_part(ctx: RunContext, prior: str, residual: bool = True):
    """The prior ("EL", "GMM", "GMM-std") or its hybrid on the shared backbone, one instance per context
    (so the "HEAT" composition reuses the hybrids the HEAT-<prior> rows fitted)."""
    from ebm_ood.heat.build import make_heat_detector

    key = f"heat:{'HEAT-' if residual else ''}{prior}"
    return ctx.shared(key, lambda: make_heat_detector(shared_backbone(ctx), prior, residual, ctx.preset, ctx.seed))


def priors_for(kind: str) -> tuple[str, ...]:
    """The HEAT priors that apply to a dataset kind: GMM-std needs spatial (conv) feature maps to take a
    standard deviation over, so tabular data (MLP features) has EL and GMM only."""
    from ebm_ood.heat.build import PRIORS

    return PRIORS if kind == "image" else tuple(p for p in PRIORS if p != "GMM-std")


def heat_composition(ctx: RunContext, beta: float = 0.0, priors: tuple[str, ...] | None = None):
    """HEAT = Eq. 7 over the hybrids of ``priors`` (default: every prior of the dataset kind — HEAT-EL,
    HEAT-GMM, HEAT-GMM-std on images); parts already fitted in this context are reused, not retrained."""
    from ebm_ood.heat.build import make_composition

    priors = priors or priors_for(ctx.dataset.kind)
    return make_composition({f"HEAT-{p}": heat_part(ctx, p) for p in priors}, beta=beta, refit=False)


def _register_heat() -> None:
    from ebm_ood.heat.build import PRIORS

    def kinds(priors) -> tuple[str, ...]:
        return ("image",) if "GMM-std" in priors else ("tabular", "image")

    for p in PRIORS:
        register_method(MethodSpec(p, lambda ctx, p=p: heat_part(ctx, p, residual=False), suites=("heat",),
                                   uses_labels=True, kinds=kinds([p]), description=f"HEAT prior {p} alone"))
    for p in PRIORS:
        register_method(MethodSpec(f"HEAT-{p}", lambda ctx, p=p: heat_part(ctx, p), suites=("heat",), uses_labels=True,
                                   kinds=kinds([p]), description=f"hybrid EBM on the {p} prior (HEAT Eq. 2)"))
    # HEAT Table 3: every pair of hybrids composed (the singletons are the HEAT-<prior> rows above); on
    # tabular data the one pair (EL+GMM) is the whole composition, so pairs are image-only.
    for pair in itertools.combinations(PRIORS, 2):
        register_method(MethodSpec(f"HEAT ({'+'.join(pair)})", lambda ctx, pair=pair: heat_composition(ctx, priors=pair),
                                   suites=("heat",), uses_labels=True, kinds=("image",),
                                   description=f"composition of the {' and '.join(pair)} hybrids, beta = 0 (HEAT Table 3)"))
    register_method(MethodSpec("HEAT", heat_composition, suites=("heat",), uses_labels=True,
                               description="composition of every hybrid of the dataset kind, beta = 0 (HEAT Eq. 7)"))


_register_heat()
