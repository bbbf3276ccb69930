"""Every method the benchmark knows, in one table: :data:`METHODS` maps a table name ("CD", "HEAT-GMM", ...)
to a :class:`MethodSpec` whose ``build(ctx)`` returns an unfitted detector configured for ``ctx.preset``
and the dataset kind. The runner (:mod:`ebm_ood.commands.benchmark.runner`) only calls ``fit``/``score`` on it.

Read a method's path from here: its ``build_*`` function names the class it constructs and the preset
table its settings come from; every import is at the top of this module.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable

from torch import nn

from ebm_ood.backbone import Backbone, FeatureSpaceDetector
from ebm_ood.commands.benchmark.classifier_file import load_classifier
from ebm_ood.data import OODDataset
from ebm_ood.heat.build import PRIORS, make_composition, make_heat_detector
from ebm_ood.methods.ce import CEClassifier, ce_config
from ebm_ood.methods.contrastive_divergence import CDDetector, cd_config
from ebm_ood.methods.flows import NormalizingFlowDetector, flow_config
from ebm_ood.methods.score_matching import SSMDetector, ssm_config
from ebm_ood.methods.vera import VERADetector, vera_config
from ebm_ood.posthoc import DICE, KNN, MSP, ODIN, MaxLogit, Mahalanobis, ReAct, SSDPlus, ViM

SUITES = ("elflein", "heat")


@dataclass
class RunContext:
    """What a method's ``build`` may use: the dataset, the seed, the preset ("quick" | "default" |
    "full"), the device, your own classifier (``"FILE.py:FUNCTION"``, see
    :mod:`~ebm_ood.commands.benchmark.classifier_file`; default: the CE classifier trained here), and a
    per-(dataset, seed) cache for shared pieces (e.g. the trained classifier used by HEAT and the -E
    methods; see :func:`shared`)."""

    dataset: OODDataset
    seed: int
    preset: str = "default"
    device: str = "cpu"
    classifier: str | None = None
    cache: dict = field(default_factory=dict)

    def shared(self, key: str, make: Callable[[], object]):
        """Build ``make()`` once per context and reuse it (e.g. one backbone for every HEAT detector)."""
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]


@dataclass
class MethodSpec:
    name: str  # as shown in tables, e.g. "CD" or "HEAT-GMM"
    build: Callable[[RunContext], object]  # -> unfitted Detector
    suites: tuple[str, ...] = ("elflein",)
    uses_labels: bool = False  # fit receives y_train
    kinds: tuple[str, ...] = ("tabular", "image")  # dataset kinds it applies to
    description: str = ""
    standalone: bool = False  # uses nothing shared within a seed (so --jobs may run it in a unit of its own)

    def __post_init__(self):
        for s in self.suites:
            if s not in SUITES:
                raise ValueError(f"suites: unknown suite {s!r}; valid: {SUITES}")


# --- CE baseline (Elflein) --------------------------------------------------------------------------
def build_ce(ctx: RunContext) -> CEClassifier:
    return CEClassifier(ce_config(ctx.preset, ctx.dataset.kind, ctx.dataset.name), device=ctx.device, seed=ctx.seed)


def shared_classifier(ctx: RunContext) -> CEClassifier:
    """The CE classifier of this (dataset, seed), trained once and shared: the CE row itself, the
    post-hoc detectors' and HEAT's backbone, the -E methods. Returned fitted, so the runner does not
    train it again."""
    d = ctx.dataset
    return ctx.shared("ce-classifier", lambda: build_ce(ctx).fit(d.x_train, d.y_train, validation=(d.x_val, d.y_val)))


# --- Elflein's generative models: CD, SSM, VERA (§3) and the NF baseline ---------------------------
# Each is unsupervised here (γ = 0); the supervised -S variants belong to the supervision experiment.
GENERATIVE = {  # table name -> (detector class, its preset function ``config(preset, kind)``)
    "CD": (CDDetector, cd_config),
    "SSM": (SSMDetector, ssm_config),
    "VERA": (VERADetector, vera_config),
    "NF": (NormalizingFlowDetector, flow_config),
}


def build_cd(ctx: RunContext) -> CDDetector:
    return CDDetector(cd_config(ctx.preset, ctx.dataset.kind, ctx.dataset.name), device=ctx.device, seed=ctx.seed)


def build_ssm(ctx: RunContext) -> SSMDetector:
    return SSMDetector(ssm_config(ctx.preset, ctx.dataset.kind, ctx.dataset.name), device=ctx.device, seed=ctx.seed)


def build_vera(ctx: RunContext) -> VERADetector:
    return VERADetector(vera_config(ctx.preset, ctx.dataset.kind, ctx.dataset.name), device=ctx.device, seed=ctx.seed)


def build_flow(ctx: RunContext) -> NormalizingFlowDetector:
    return NormalizingFlowDetector(flow_config(ctx.preset, ctx.dataset.kind, ctx.dataset.name), device=ctx.device, seed=ctx.seed)


# --- Post-hoc baselines (HEAT Table 4), all on the shared CE classifier ------------------------------
def shared_network(ctx: RunContext) -> nn.Module | Backbone:
    """The classifier the post-hoc detectors and HEAT build on: yours (``ctx.classifier``), else the CE
    classifier of this (dataset, seed), trained once (:func:`shared_classifier`)."""
    if ctx.classifier:
        return ctx.shared("user-classifier", lambda: load_classifier(ctx.classifier))
    return shared_classifier(ctx).net_


FEATURE_BATCH = 64  # images per forward pass of the shared backbone (``ebm-ood bench units``: features row)


def shared_backbone(ctx: RunContext) -> Backbone:
    """The shared classifier as a feature extractor (one feature cache for every HEAT-suite method), run
    on :data:`FEATURE_BATCH` inputs at a time: the conv net's activations then stay in the CPU caches
    (at Backbone's default of 512, a 28x28 image costs about twice as long)."""
    def make() -> Backbone:
        net = shared_network(ctx)
        return net if isinstance(net, Backbone) else Backbone(net, device=ctx.device, batch_size=FEATURE_BATCH)
    return ctx.shared("backbone", make)


def _posthoc(make: Callable[[Backbone], object], which: str = "z") -> Callable[[RunContext], FeatureSpaceDetector]:
    """``build(ctx)``: ``make(backbone)`` → a feature-space detector, wrapped to take raw inputs."""
    def build(ctx: RunContext) -> FeatureSpaceDetector:
        backbone = shared_backbone(ctx)
        return FeatureSpaceDetector(backbone, make(backbone), which=which)
    return build


def build_odin(ctx: RunContext) -> ODIN:
    net = shared_network(ctx)
    return ODIN(net.net if isinstance(net, Backbone) else net, device=ctx.device)


# --- HEAT (Lafon et al. 2023): the priors alone, their hybrids, and the composition -----------------
def heat_part(ctx: RunContext, prior: str, residual: bool = True, normalize: bool = True):
    """The prior ("EL", "GMM", "GMM-std") or its hybrid on the shared backbone, one instance per context
    (so the "HEAT" composition reuses the hybrids the HEAT-<prior> rows fitted). ``normalize=False``: the
    GMM priors on raw features, named "<row> (raw)"."""
    name = f"{'HEAT-' if residual else ''}{prior}{'' if normalize else ' (raw)'}"
    return ctx.shared(f"heat:{name}", lambda: make_heat_detector(shared_backbone(ctx), prior, residual, ctx.preset,
                                                                 ctx.seed, normalize=normalize, name=name))


def priors_for(kind: str) -> tuple[str, ...]:
    """The HEAT priors that apply to a dataset kind: GMM-std needs spatial (conv) feature maps to take a
    standard deviation over, so tabular data (MLP features) has EL and GMM only."""
    return PRIORS if kind == "image" else tuple(p for p in PRIORS if p != "GMM-std")


def heat_composition(ctx: RunContext, beta: float = 0.0, priors: tuple[str, ...] | None = None):
    """HEAT = Eq. 7 over the hybrids of ``priors`` (default: every prior of the dataset kind — HEAT-EL,
    HEAT-GMM, HEAT-GMM-std on images); parts already fitted in this context are reused, not retrained."""
    priors = priors or priors_for(ctx.dataset.kind)
    return make_composition({f"HEAT-{p}": heat_part(ctx, p) for p in priors}, beta=beta, refit=False)


def _heat_specs() -> list[MethodSpec]:
    def kinds(priors) -> tuple[str, ...]:
        return ("image",) if "GMM-std" in priors else ("tabular", "image")

    specs = [MethodSpec(p, lambda ctx, p=p: heat_part(ctx, p, residual=False), ("heat",), True, kinds([p]),
                        f"HEAT prior {p} alone") for p in PRIORS]
    specs += [MethodSpec(f"HEAT-{p}", lambda ctx, p=p: heat_part(ctx, p), ("heat",), True, kinds([p]),
                         f"hybrid EBM on the {p} prior (HEAT Eq. 2)") for p in PRIORS]
    # the GMM prior on raw features, next to the default on L2-normalised ones (SSD+'s features)
    specs += [MethodSpec(f"{pre}GMM (raw)", lambda ctx, r=bool(pre): heat_part(ctx, "GMM", r, normalize=False),
                         ("heat",), True, ("tabular", "image"),
                         f"{'hybrid EBM on the ' if pre else ''}GMM prior on raw (not L2-normalised) features")
              for pre in ("", "HEAT-")]
    # HEAT Table 3: every pair of hybrids composed (the singletons are the HEAT-<prior> rows above); on
    # tabular data the one pair (EL+GMM) is the whole composition, so pairs are image-only.
    specs += [MethodSpec(f"HEAT ({'+'.join(pair)})", lambda ctx, pair=pair: heat_composition(ctx, priors=pair),
                         ("heat",), True, ("image",),
                         f"composition of the {' and '.join(pair)} hybrids, beta = 0 (HEAT Table 3)")
              for pair in itertools.combinations(PRIORS, 2)]
    return specs + [MethodSpec("HEAT", heat_composition, ("heat",), True,
                               description="composition of every hybrid of the dataset kind, beta = 0 (HEAT Eq. 7)")]


_SPECS = [
    MethodSpec("CE", shared_classifier, ("elflein",), True,
               description="cross-entropy classifier, energy score (Elflein baseline)"),
    MethodSpec("CD", build_cd, description="EBM by persistent contrastive divergence, SGLD + replay buffer, energy score",
               standalone=True),
    MethodSpec("SSM", build_ssm, description="EBM by sliced score matching (SSM-VR, Rademacher projections), energy score",
               standalone=True),
    MethodSpec("VERA", build_vera, description="EBM trained against a generator with an entropy-gradient estimator, "
               "energy score", standalone=True),
    MethodSpec("NF", build_flow, description="normalizing flow, -log p(x): 20 radial layers (tabular) / Glow (images)",
               standalone=True),
    MethodSpec("MSP", _posthoc(lambda bb: MSP(), "logits"), ("heat",), description="-max softmax (Hendrycks & Gimpel 2017)"),
    MethodSpec("MaxLogit", _posthoc(lambda bb: MaxLogit(), "logits"), ("heat",), description="-max logit (Hendrycks et al. 2022)"),
    MethodSpec("ODIN", build_odin, ("heat",), description="temperature 1000 + input perturbation 0.0014 (Liang et al. 2018)"),
    MethodSpec("Mahalanobis", _posthoc(lambda bb: Mahalanobis()), ("heat",), True,
               description="min class Mahalanobis distance, tied covariance (Lee et al. 2018)"),
    MethodSpec("SSD+", _posthoc(lambda bb: SSDPlus()), ("heat",), True,
               description="Mahalanobis on L2-normalised features (Sehwag et al. 2021)"),
    MethodSpec("KNN", _posthoc(lambda bb: KNN(k=50)), ("heat",), description="50th-neighbour distance, L2-normalised features (Sun et al. 2022)"),
    MethodSpec("ViM", _posthoc(ViM.from_backbone), ("heat",), description="virtual-logit matching (Wang et al. 2022)"),
    MethodSpec("DICE", _posthoc(DICE.from_backbone), ("heat",), description="energy of the 90 %-sparsified head (Sun & Li 2022)"),
    MethodSpec("ReAct", _posthoc(ReAct.from_backbone), ("heat",),
               description="energy on features clipped at the 90th percentile (Sun et al. 2021)"),
    *_heat_specs(),
]
METHODS: dict[str, MethodSpec] = {s.name: s for s in _SPECS}  # table order


def methods_for(suite: str, names: list[str] | None = None) -> list[MethodSpec]:
    """Every method of ``suite`` ("elflein", "heat" or "all") in table order; or, with ``names``, those
    methods (case-insensitive, from any suite, in the given order, each once). Unknown names list the
    valid ones."""
    if suite not in SUITES + ("all",):
        raise ValueError(f"suite: unknown {suite!r}; valid: {', '.join(SUITES + ('all',))}")
    if not names:
        return [m for m in METHODS.values() if suite == "all" or suite in m.suites]
    by_lower = {k.lower(): m for k, m in METHODS.items()}
    unknown = [n for n in names if n.lower() not in by_lower]
    if unknown:
        raise ValueError(f"methods: unknown {', '.join(unknown)}; valid: {', '.join(METHODS)}")
    return list({n.lower(): by_lower[n.lower()] for n in names}.values())
