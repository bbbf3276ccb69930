"""HEAT's hybrid EBM (Lafon et al. 2023, §3.1, Alg. 1): a prior energy corrected by a residual EBM.

    Eq. 2   E_h(z) = E_q(z) + E_θ(z)                        (p_h ∝ q · exp(-E_θ), Eq. 1)
    Eq. 3   L_MLE  = mean_{z ~ p_in} E_θ(z) - mean_{z' ~ p_h} E_θ(z')
    Eq. 5   L_C    = mean_{p_in, p_h} (E_h - E_q)² = mean E_θ²
    Eq. 6   L_Tot  = L_MLE + λ L_C                           (λ = 10)
    Eq. 4   z'_{t+1} = z'_t - η/2 ∇E_h(z'_t) + √η w,  z'_0 ~ q      (ebm_ood.sampling.sgld)

``E_θ`` is an MLP with 6 distinct linear layers ("a 6 layers MLP", HEAT §3.2; the authors' code re-uses
one hidden layer object, so its hidden layers share weights — a bug we do not copy), width 2·D (paper:
1024 for 512-d features), Gaussian input noise std 1e-4 during training. ``HEATConfig.mlp``: "plain"
(default, as the paper and the authors' code) or "skip" (residual blocks ``h + act(W h)``). Ours,
documented: the MLP standardises its input with fixed training-feature statistics, and its last layer
starts at zero so that training starts from ``E_h = E_q``. ``E_θ`` sees the features through the prior's
map (:meth:`~ebm_ood.heat.priors._GaussianBuffers.features`: L2-normalised for a normalising GMM prior, as
the authors' code normalises ``z`` before the loss and the scorer). Model selection: none (the last
weights; no OOD data is used).

``HEATConfig.control``: "pooled" (default, Eq. 5 as one expectation over real and sampled z:
``mean(cat(E_θ(z), E_θ(z'))²)``) or "code" (the authors' code: ``mean E_θ(z)² + mean E_θ(z')²``, i.e.
twice the pooled value for equal batch sizes, so their λ = 5 is our λ = 10).

Sampler (``HEATConfig.sampler``): "paper" — Langevin form (Eq. 4), 20 steps, η 1e-4 → 1e-5 linear,
negatives = chain ends, starts ``z'_0 ~ q``. "code" — the authors' code: decoupled step α and noise σ
with quadratic decay within the chain, the starts projected onto the feature domain and every step
projected too (:meth:`~ebm_ood.heat.priors._GaussianBuffers.project`: ReLU for non-negative features,
then L2 for a normalising GMM prior), negatives = chain ends **and** projected starts. The authors' per-prior
settings are :data:`ebm_ood.heat.build.CODE_SETTINGS`. The paper's appendix quotes the noise
5e-3 → 5e-4 too; with Eq. 4 the noise is fixed by η, so those numbers only apply to "code".
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ebm_ood.plumbing.checks import check_bool
from ebm_ood.class_gaussian import DegenerateCovarianceWarning
from ebm_ood.detector import Detector
from ebm_ood.sampling import sgld
from ebm_ood.training import TrainConfig, to_tensor, train
from ebm_ood.presets import preset_config


MLPS, CONTROLS, SAMPLERS = ("plain", "skip"), ("pooled", "code"), ("paper", "code")


class ResidualMLP(nn.Module):
    """``E_θ``: (N, D) -> (N,). ``depth`` distinct linear layers: D→W, (depth-2) hidden W→W layers, W→1,
    LeakyReLU(``slope``) after each but the last; ``skip=True`` makes each hidden layer a residual block
    ``h + act(W h)``.

    The input is standardised with fixed buffers ``shift`` (D,) and ``scale`` (D,) set by
    :meth:`set_input_stats`; the output layer is zero-initialised (``E_θ ≡ 0`` at start).
    """

    def __init__(self, dim: int, width: int | None = None, depth: int = 6, slope: float = 0.2, skip: bool = False):
        super().__init__()
        if depth < 2:
            raise ValueError(f"depth: expected >= 2 linear layers, got {depth}")
        self.skip = bool(skip)
        width = int(width or 2 * dim)
        self.inp = nn.Linear(dim, width)
        self.hidden = nn.ModuleList([nn.Linear(width, width) for _ in range(depth - 2)])  # distinct layers
        self.out = nn.Linear(width, 1)
        nn.init.zeros_(self.out.weight), nn.init.zeros_(self.out.bias)
        self.slope = slope
        self.register_buffer("shift", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))

    def set_input_stats(self, z: np.ndarray) -> None:
        self.shift.copy_(torch.as_tensor(z.mean(0), dtype=torch.float32))
        self.scale.copy_(torch.as_tensor(np.maximum(z.std(0), 1e-6), dtype=torch.float32))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.inp((z - self.shift) / self.scale), self.slope)   # (N, W)
        for layer in self.hidden:
            a = F.leaky_relu(layer(h), self.slope)                              # (N, W)
            h = h + a if self.skip else a
        return self.out(h).squeeze(-1)                                         # (N,)


class HybridEnergy(nn.Module):
    """HEAT Eq. 2: ``E_h(z) = E_q(z) + E_θ(φ(z))``. (N, D) -> (N,); ``φ`` is the prior's feature map
    (``prior.features``: identity, or L2 normalisation for a normalising GMM prior) so that the residual sees
    what the prior sees; ``input_noise`` std is added to the input of ``E_θ`` in training mode only."""

    def __init__(self, prior: nn.Module, residual: nn.Module, input_noise: float = 1e-4):
        super().__init__()
        self.prior, self.residual, self.input_noise = prior, residual, float(input_noise)

    def residual_energy(self, z: torch.Tensor) -> torch.Tensor:
        """``E_θ(φ(z))`` (N,), with input noise while training."""
        features = getattr(self.prior, "features", None)
        if features is not None:
            z = features(z)
        if self.training and self.input_noise > 0:
            z = z + self.input_noise * torch.randn_like(z)
        return self.residual(z)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.prior(z) + self.residual_energy(z)


def mle_loss(e_pos: torch.Tensor, e_neg: torch.Tensor) -> torch.Tensor:
    """HEAT Eq. 3: ``mean E_θ(z) - mean E_θ(z')``; e_pos (B,), e_neg (B',) residual energies."""
    return e_pos.mean() - e_neg.mean()


def control_loss(e_pos: torch.Tensor, e_neg: torch.Tensor, form: str = "pooled") -> torch.Tensor:
    """HEAT Eq. 5: ``mean (E_h - E_q)²`` over real and sampled z, i.e. ``mean E_θ²`` of the pooled
    residual energies (B + B',) (``form="pooled"``); ``form="code"``: ``mean E_θ(z)² + mean E_θ(z')²``."""
    if form == "pooled":
        return torch.cat([e_pos, e_neg]).pow(2).mean()
    if form == "code":
        return e_pos.pow(2).mean() + e_neg.pow(2).mean()
    raise ValueError(f"control: expected one of {CONTROLS}, got {form!r}")


def heat_loss(e_pos: torch.Tensor, e_neg: torch.Tensor, lam: float, control: str = "pooled") -> tuple[torch.Tensor, dict]:
    """HEAT Eq. 6: ``L_MLE + λ L_C``. Returns (loss, logs)."""
    mle, ctrl = mle_loss(e_pos, e_neg), control_loss(e_pos, e_neg, control)
    logs = {"l_mle": float(mle.detach()), "l_c": float(ctrl.detach()),
            "e_pos": float(e_pos.detach().mean()), "e_neg": float(e_neg.detach().mean())}
    # HEAT Eq. 6: L(θ) = L_MLE(θ) + λ L_C(θ)
    return mle + lam * ctrl, logs


@dataclass
class HEATConfig:
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=400, batch_size=128, lr=1e-3, eval_every=50))
    lam: float = 10.0                  # λ in Eq. 6
    width: int | None = None           # MLP width (None: 2·D)
    depth: int = 6                     # linear layers of E_θ
    mlp: str = "plain"                 # "plain" (paper, authors' code) | "skip" (residual blocks)
    control: str = "pooled"            # Eq. 5 as one pooled mean | "code": mean(pos²) + mean(neg²)
    input_noise: float = 1e-4          # std of the Gaussian noise on E_θ's input (training)
    sampler: str = "paper"             # "paper" (Eq. 4) | "code" (authors' code), see module docstring
    sgld_steps: int = 20               # T in Alg. 1
    step_size: float = 1e-4            # η (paper) / α (code), start of the schedule
    step_end: float = 1e-5
    noise_std: float = 5e-3            # σ ("code" only; Langevin noise is √η)
    noise_end: float = 5e-4


HEAT_PRESETS = {
    "quick": {"train": dict(steps=40, batch_size=64, lr=1e-3, eval_every=40, progress=False), "sgld_steps": 5},
    "default": {},  # the HEATConfig defaults
    "full": {
        "train": dict(
            steps=3000,          # ours: HEAT App. B's 20 epochs, counted as steps
            batch_size=128,      # ours: not stated
            lr=5e-6,             # HEAT App. B: Adam, learning rate 5e-6 (no warm-up stated)
            eval_every=500,      # ours: no model selection
        ),
        "lam": 10.0,             # HEAT App. B: "The L2 coefficient is set to 10" (λ, Eq. 6)
        "depth": 6,              # HEAT App. B: "a 6 layers MLP"
        "width": None,           # HEAT App. B: hidden 1024 for 512-d features; None = 2·D
        "input_noise": 1e-4,     # HEAT App. B: "Gaussian noise with std 1e-4"
        "sampler": "paper",      # HEAT Eq. 4 with App. B's linear decay
        "sgld_steps": 20,        # HEAT App. B
        "step_size": 1e-4,       # HEAT App. B: initial step size 1e-4 ...
        "step_end": 1e-5,        # HEAT App. B: ... linearly decayed to 1e-5
        "noise_std": 5e-3,       # HEAT App. B: initial noise 5e-3 ("code" sampler only) ...
        "noise_end": 5e-4,       # HEAT App. B: ... linearly decayed to 5e-4
    },
}


def heat_config(preset: str = "default", **overrides) -> HEATConfig:
    """The ``preset`` row of :data:`HEAT_PRESETS`, with ``overrides`` (HEATConfig fields) set: ``quick``
    (tests: seconds), ``default`` (the benchmark: 400 steps of Adam lr 1e-3, batch 128, 20 SGLD steps;
    chosen on the ID training objective alone: on digits ``L_MLE + λ L_C`` levels off after ~350 such
    steps, while 150 steps at lr 2e-4 stopped at half its plateau; ~20 s per digits hybrid on one thread),
    ``full`` (Lafon App. B: Adam lr 5e-6, 20 SGLD steps, step 1e-4 → 1e-5 (noise 5e-3 → 5e-4 for the "code"
    sampler; the paper's Langevin form fixes the noise by η), λ = 10, input noise std 1e-4, 6 layers of
    width 2·D = 1024 for 512-d features). The paper trains 20 epochs; the trainer counts steps, so
    ``full`` runs 3,000 steps of batch 128 whatever the dataset size."""
    return replace(preset_config(HEATConfig, HEAT_PRESETS, preset, train=TrainConfig), **overrides)


def negative_chains(hybrid: HybridEnergy, n: int, cfg: HEATConfig,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Alg. 1 inner loop: ``z'_0 ~ q`` (projected onto the feature domain for the "code" sampler), then
    ``T`` SGLD steps on ``E_h``. Returns (starts (n, D), ends (n, D))."""
    z0 = hybrid.prior.sample(n, generator).to(next(hybrid.residual.parameters()).device)
    if cfg.sampler == "paper":
        zt = sgld(hybrid, z0, n_steps=cfg.sgld_steps, step_size=cfg.step_size, step_end=cfg.step_end,
                  form="langevin", schedule="linear", module=hybrid, generator=generator)
        return z0, zt
    project = hybrid.prior.project                                    # ReLU (if non-negative) [+ L2]
    z0 = project(z0)                                                  # the code projects the starts too
    zt = sgld(hybrid, z0, n_steps=cfg.sgld_steps, step_size=cfg.step_size, step_end=cfg.step_end,
              noise_std=cfg.noise_std, noise_end=cfg.noise_end, form="decoupled", schedule="poly",
              project=project, module=hybrid, generator=generator)
    return z0, zt


def sample_negatives(hybrid: HybridEnergy, n: int, cfg: HEATConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """The negatives of Alg. 1 (:func:`negative_chains`): the chain ends (n, D) or, with the code's
    sampler, (2n, D) = chain ends and starts."""
    z0, zt = negative_chains(hybrid, n, cfg, generator)
    return zt if cfg.sampler == "paper" else torch.cat([zt, z0])


def fit_stable_prior(prior: nn.Module, z: np.ndarray, y, cfg: HEATConfig, name: str = "HEAT") -> nn.Module:
    """Fit ``prior`` on ``z`` (N, D), labels ``y``; if its energy is too stiff for the sampler's first
    gradient step ``a`` (η/2 for "paper", α for "code"): ``a · max_curvature > 1``, which happens when the
    covariance is degenerate (a dead feature channel: zero within-class variance), refit it once with the
    ridge raised to ``reg' = 2a / (T s)`` (``s`` the mean within-class variance, so the smallest variance
    is at least ``2a / T``; set on ``prior.reg`` in place) and warn. Priors without ``max_curvature`` are
    fitted as they are."""
    prior = prior.fit(z, y)
    curvature = getattr(prior, "max_curvature", lambda: None)()
    step = cfg.step_size / 2 if cfg.sampler == "paper" else cfg.step_size
    if curvature is None or step * curvature <= 1.0:
        return prior
    t = float(prior.t_)
    new_reg = max(2 * step / (t * _ridge_scale(prior.gaussian, prior.reg)), 10 * prior.reg)
    dead = _dead_channels(z, y)
    warnings.warn(f"{name}: the prior's covariance is degenerate for SGLD (smallest variance "
                  f"{1 / (curvature * t):.3g}, temperature {t:.3g}"
                  + (f"; {len(dead)} feature channel(s) with zero within-class variance, e.g. {dead[:5]}" if dead else "")
                  + f"): a gradient step {step:.3g} would overshoot by {step * curvature:.3g}x, so the ridge is "
                  f"raised from reg={prior.reg:.3g} to reg={new_reg:.3g} (relative to the mean within-class "
                  f"variance); make_heat_detector(..., reg=...) sets it", DegenerateCovarianceWarning, stacklevel=3)
    prior.reg = new_reg
    return prior.fit(z, y)


def _ridge_scale(g, reg: float) -> float:
    """The ``s`` of a relative ridge ``reg · s`` already in ``g.cov``: ``tr(Σ) / D = s (1 + reg)``."""
    return float(torch.trace(g.cov)) / g.dim / (1.0 + reg)


def _dead_channels(z: np.ndarray, y) -> list[int]:
    """Feature channels whose within-class variance is zero (every class constant on them)."""
    z = np.asarray(z, np.float64)
    labels = np.zeros(len(z), np.int64) if y is None else np.asarray(y)
    spread = sum(np.ptp(z[labels == c], axis=0) for c in np.unique(labels))
    return np.flatnonzero(spread == 0).tolist()


def train_hybrid(prior: nn.Module, z: np.ndarray, cfg: HEATConfig, *, device="cpu", seed: int = 0,
                 name: str = "HEAT") -> tuple[HybridEnergy, object]:
    """Fit ``E_θ`` on top of a fitted ``prior`` with Alg. 1 on features ``z`` (N, D). Returns
    (hybrid in eval mode, training history)."""
    for field_, value, allowed in (("sampler", cfg.sampler, SAMPLERS), ("mlp", cfg.mlp, MLPS),
                                   ("control", cfg.control, CONTROLS)):
        if value not in allowed:
            raise ValueError(f"{field_}: expected one of {allowed}, got {value!r}")
    torch.manual_seed(seed)
    residual = ResidualMLP(z.shape[1], cfg.width, cfg.depth, skip=cfg.mlp == "skip")
    with torch.no_grad():   # E_θ's input statistics on what it sees: the prior's feature map of z
        residual.set_input_stats(prior.features(torch.as_tensor(z)).numpy() if hasattr(prior, "features") else z)
    hybrid = HybridEnergy(prior, residual, cfg.input_noise).to(device)
    zt = to_tensor(z, device)
    gen = torch.Generator().manual_seed(seed + 1)

    def step(zb, _yb, _t):
        z_neg = sample_negatives(hybrid, zb.shape[0], cfg, gen)      # z' ~ p_h (SGLD from q)
        hybrid.train()
        e_pos, e_neg = hybrid.residual_energy(zb), hybrid.residual_energy(z_neg)
        return heat_loss(e_pos, e_neg, cfg.lam, cfg.control)         # Eq. 6

    hist = train({"residual": residual}, step, zt, None, replace(cfg.train, seed=seed), name=name)
    hybrid.eval()
    return hybrid, hist


class HEATDetector(Detector):
    """HEAT-<prior> on feature vectors (N, D): fit the prior, then its residual EBM (Alg. 1);
    score = the energy ``E_h(z) = E_q(z) + E_θ(z)`` (Eq. 2), higher = more OOD. ``residual=False`` scores
    with the prior alone (the EL / GMM / GMM-std baselines). Labels are used by class-conditional priors
    when given. The prior is fitted with :func:`fit_stable_prior` either way, so "X" and "HEAT-X" share
    it. After fit: ``hybrid_`` (HybridEnergy or None), ``prior_``, ``history_``. The usual way to build
    one on your model is :func:`ebm_ood.make_heat_detector`. Cost: training the residual EBM (SGLD
    chains) takes seconds to minutes where the post-hoc detectors take milliseconds (README, "Your own
    model").

    Parameters
    ----------
    prior : nn.Module, the prior energy ``E_q`` (:mod:`ebm_ood.heat.priors`: ``GMMPrior``, ``ELPrior``, ...).
    config : HEATConfig or None, training settings (:func:`~ebm_ood.heat.hybrid.heat_config`).
    residual : bool, train the residual EBM ``E_θ`` (True) or score with the prior alone (False).
    device : torch device or None (CPU).
    seed : int, fixes initialisation and sampling.
    name : str or None, the name in tables (default "HEAT-<prior>").
    batch_size : int, samples per scoring batch.

    Needs
    -----
    Features (N, D) (class labels for class-conditional priors); GMM: features, EL: the head's logits,
    GMM-std: a feature map. :func:`ebm_ood.make_heat_detector` wires the right ones from a Backbone.

    Example
    -------
    >>> import numpy as np, ebm_ood
    >>> rng = np.random.default_rng(0)
    >>> from ebm_ood.heat.hybrid import heat_config
    >>> from ebm_ood.heat.priors import GMMPrior
    >>> z, y = rng.normal(size=(200, 4)).astype("float32"), np.arange(200) % 2
    >>> det = ebm_ood.HEATDetector(GMMPrior(), heat_config("quick")).fit(z, y)
    >>> det.score(z[:3]).shape
    (3,)
    """

    input_kind = "features"

    def __init__(self, prior: nn.Module, config: HEATConfig | None = None, residual: bool = True,
                 device=None, seed: int = 0, name: str | None = None, batch_size: int = 4096):
        super().__init__(device, batch_size)
        self.prior, self.config, self.seed = prior, config or HEATConfig(), int(seed)
        self.residual = check_bool(residual, "residual")
        self.name = name or (f"HEAT-{prior.name}" if residual else prior.name)

    def _fit(self, x, y):
        if x.ndim != 2:
            raise ValueError(f"x: HEAT works on feature vectors (N, D), got shape {x.shape}; "
                             "wrap it in FeatureSpaceDetector to use raw inputs")
        self.hybrid_, self.history_ = None, None
        # the same ridge rule with and without the residual, so that HEAT-X and X share one prior
        self.prior_ = fit_stable_prior(self.prior, x, y, self.config, self.name).to(self.device)
        if self.residual:
            self.hybrid_, self.history_ = train_hybrid(self.prior_, x, self.config, device=self.device,
                                                       seed=self.seed, name=self.name)

    def energy(self, z: torch.Tensor) -> torch.Tensor:
        """The fitted scorer as a torch function (N, D) -> (N,): ``E_h`` or ``E_q``."""
        self.check_fitted()
        return self.hybrid_(z) if self.hybrid_ is not None else self.prior_(z)

    def _score(self, x):
        return self.map_batches(self.energy, x)
