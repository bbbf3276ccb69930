"""VERA (Grathwohl et al. 2021, "No MCMC for me"; Elflein §3): train an EBM with a generator instead of MCMC.

``log Z(θ) = max_q E_q[-E(x)] + H(q)``, so with a learned sampler ``q`` the maximum-likelihood gradient
becomes ``E_data[∇θE] - E_q[∇θE]`` and ``q`` is trained to maximise ``E_q[-E(x)] + λ H(q)``.

* Generator: ``x = g(h) + σ ε``, ``h ~ N(0, I)``, ``ε ~ N(0, I)``; σ learned, clamped to [0.01, 0.3].
* Entropy gradient: ``∇_φ H(q) = -E_q[∇ₓ log q(x)ᵀ ∂x/∂φ]`` (reparametrisation; ``E_q[∇_φ log q] = 0``),
  with the score ``∇ₓ log q(x) = E_{q(h|x)}[-(x - g(h)) / σ²]`` estimated by self-normalised importance
  sampling from the posterior proposal ``ξ(h'|x) = N(h, η²I)`` (``h`` the latent that made ``x``)::

      w_m = softmax_m[ log q(x, h'_m) - log ξ(h'_m|x) ],   ∇ₓ log q(x) ≈ -Σ_m w_m (x - g(h'_m)) / σ²

  η is trained by its own ELBO ``E_ξ[log q(x, h') - log ξ(h'|x)]``.
* EBM loss ``mean E(x_data) - mean E(x_gen) + 0.1 · mean ½‖∇ₓE(x_data)‖²``; generator loss
  ``mean E(x_gen) - λ H`` (λ = 1e-4), where ``H`` enters through the surrogate ``-(score.detach()·x_gen)``.

Paper vs code (see ``vera_config``; every difference: ``docs/paper_vs_code.md``): Elflein App. B gives
lr 3e-4 (EBM) / 6e-4 (generator) with Adam β = (0, 0.9) — our ``full`` preset. The authors' current configs
use 3e-5 / 6e-5 (``fc_vera.yaml``, ``img_vera.yaml``; the supervised tabular config 1e-3 / 1e-3), a 2,500-step
warm-up, posterior lr 3e-5 and a BatchNorm MLP generator (a ResNet generator on images); we use a
LeakyReLU(0.2) MLP generator without batch norm and a small transposed-conv generator. App. B's sentence on
clamping to [0.01, 0.3] names η, but the code clamps the generator's σ (``min_sigma``/``max_sigma``) and
initialises η at 0.1 without a clamp; and App. B states β = (0, 0.9) for the generator only, while the code
passes that pair to every optimizer. ``form="paper"`` (default, :data:`VERA_FORMS`) clamps η to
[0.01, 0.3] as well and gives the EBM and posterior optimizers Adam's default β; ``form="code"`` follows
the code (its η is per latent dimension, ours one scalar).
**Gradient penalty.** The code differentiates the batch *mean* of the log density,
``∇ₓ mean_n log p(x_n) = ∇ₓ log p(x_n) / N``, so its weight 0.1 acts as 0.1/N² on the per-sample
penalty; ``grad_penalty_form="batch_mean"`` reproduces that, ``"per_sample"`` (default) penalises each
sample's own gradient. **Update order.** The code takes the EBM step first and computes the generator loss
with the updated EBM; we compute both losses from the same EBM and step all optimizers together.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ebm_ood.detector import Detector
from ebm_ood.methods.labels import labels_for_gamma
from ebm_ood.energy import JEMEnergy, energy_from_logits
from ebm_ood.nn import MLP, build_network
from ebm_ood.training import TrainConfig, to_tensor, train
from ebm_ood.presets import FULL_BATCH_SIZE, FULL_EPOCHS, FULL_STEPS, PerKind, derived_default, preset_config
from ebm_ood.plumbing.checks import check_positive


# ----------------------------------------------------------------------------- generators
class ConvGenerator(nn.Module):
    """``h (N, d) -> (N, C, H, W)`` in [-1, 1]: linear to (2w, H/4, W/4), two stride-2 transposed convs,
    LeakyReLU(0.2), tanh. ``H`` and ``W`` must be divisible by 4."""

    def __init__(self, latent_dim: int, out_shape: tuple[int, int, int], width: int = 32, slope: float = 0.2):
        super().__init__()
        c, h, w = out_shape
        if h % 4 or w % 4:
            raise ValueError(f"out_shape: height and width must be divisible by 4, got {out_shape}")
        self.shape0 = (2 * width, h // 4, w // 4)
        self.fc = nn.Linear(latent_dim, int(np.prod(self.shape0)))
        self.up1 = nn.ConvTranspose2d(2 * width, width, 4, 2, 1)  # (H/4, W/4) -> (H/2, W/2)
        self.up2 = nn.ConvTranspose2d(width, c, 4, 2, 1)  # (H/2, W/2) -> (H, W)
        self.slope = slope

    def forward(self, h):
        z = F.leaky_relu(self.fc(h), self.slope).view(-1, *self.shape0)
        z = F.leaky_relu(self.up1(z), self.slope)
        return torch.tanh(self.up2(z))


class Generator(nn.Module):
    """``q(x) = ∫ N(x; g(h), σ²I) N(h; 0, I) dh`` with a learned ``σ = exp(log_sigma)`` in [σ_min, σ_max]."""

    def __init__(self, g: nn.Module, latent_dim: int, sigma_init: float = 0.01, sigma_min: float = 0.01,
                 sigma_max: float = 0.3):
        super().__init__()
        if not 0 < sigma_min <= sigma_init <= sigma_max:
            raise ValueError(f"sigma_init: expected sigma_min <= sigma_init <= sigma_max, got {sigma_min}, {sigma_init}, {sigma_max}")
        self.g, self.latent_dim = g, int(latent_dim)
        self.log_sigma = nn.Parameter(torch.tensor(math.log(sigma_init)))
        self.bounds = (math.log(sigma_min), math.log(sigma_max))

    @property
    def sigma(self) -> torch.Tensor:
        return self.log_sigma.clamp(*self.bounds).exp()

    @torch.no_grad()
    def clamp_(self) -> None:
        """Project σ back into its range (called before every step, i.e. after the previous update)."""
        self.log_sigma.clamp_(*self.bounds)

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, h)``: ``h ~ N(0, I)`` (n, d) and ``x = g(h) + σ ε`` (n, *shape), reparametrised."""
        h = torch.randn(n, self.latent_dim, device=self.log_sigma.device, dtype=self.log_sigma.dtype)
        mu = self.g(h)
        return mu + self.sigma * torch.randn_like(mu), h


class PosteriorProposal(nn.Module):
    """``ξ(h'|x) = N(h, η²I)`` centred on the latent ``h`` that generated ``x``; η learned (init 0.1),
    clamped to ``eta_bounds`` when given (the paper's [0.01, 0.3])."""

    def __init__(self, eta_init: float = 0.1, eta_bounds: tuple[float, float] | None = None):
        super().__init__()
        if eta_bounds is not None and not 0 < eta_bounds[0] <= eta_init <= eta_bounds[1]:
            raise ValueError(f"eta_clamp: expected low <= eta_init <= high with low > 0, got {eta_bounds}, {eta_init}")
        self.bounds = None if eta_bounds is None else (math.log(eta_bounds[0]), math.log(eta_bounds[1]))
        self.log_eta = nn.Parameter(torch.tensor(math.log(eta_init)))

    @property
    def eta(self) -> torch.Tensor:
        return self.log_eta.exp() if self.bounds is None else self.log_eta.clamp(*self.bounds).exp()

    @torch.no_grad()
    def clamp_(self) -> None:
        """Project the parameter back into the bounds (after an optimizer step); no-op without bounds."""
        if self.bounds is not None:
            self.log_eta.clamp_(*self.bounds)

    def sample(self, h: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(h', log ξ(h'|x))`` of shapes (M, N, d) and (M, N); ``h'`` reparametrised in η."""
        eta = self.eta
        hp = h.unsqueeze(0) + eta * torch.randn(m, *h.shape, device=h.device, dtype=h.dtype)
        return hp, gaussian_log_density(hp, h.unsqueeze(0), eta)


def gaussian_log_density(z: torch.Tensor, mean: torch.Tensor, std, event_dims: int = 1) -> torch.Tensor:
    """``log N(z; mean, std² I)`` summed over the last ``event_dims`` dimensions (broadcasting ``mean``)."""
    std = torch.as_tensor(std, dtype=z.dtype, device=z.device)
    k = int(np.prod(z.shape[z.ndim - event_dims:]))
    sq = ((z - mean) / std).pow(2).sum(dim=tuple(range(-event_dims, 0)))
    return -0.5 * sq - k * torch.log(std) - 0.5 * k * math.log(2 * math.pi)


# ----------------------------------------------------------------------------- the entropy-gradient estimator
def importance_score(x: torch.Tensor, h_prop: torch.Tensor, log_xi: torch.Tensor, g: Callable,
                     sigma) -> tuple[torch.Tensor, torch.Tensor]:
    """Self-normalised importance-sampling estimate of ``∇ₓ log q(x)`` for ``q(x|h) = N(g(h), σ²I)``.

    ``x`` (N, *shape); proposal samples ``h_prop`` (M, N, d) with ``log_xi = log ξ(h'|x)`` (M, N).
    ``log w_m = log N(h'_m; 0, I) + log N(x; g(h'_m), σ²I) - log ξ(h'_m|x)`` and
    ``∇ₓ log q(x) ≈ -Σ_m softmax_m(log w)_m (x - g(h'_m)) / σ²``.

    Returns ``(score, log_w)``: the score (N, *shape), **detached** (it only enters through the
    entropy surrogate), and the unnormalised log weights (M, N) with their graph (for η's ELBO).
    """
    m, n = h_prop.shape[:2]
    ev = x.ndim - 1
    mu = g(h_prop.reshape(m * n, -1)).view(m, n, *x.shape[1:])  # g(h'_m), (M, N, *shape)
    log_joint = gaussian_log_density(h_prop, torch.zeros_like(h_prop), 1.0) \
        + gaussian_log_density(x.unsqueeze(0), mu, sigma, ev)  # log q(x, h'_m), (M, N)
    log_w = log_joint - log_xi
    w = torch.softmax(log_w.detach(), dim=0).view(m, n, *([1] * ev))
    score = -(w * (x.detach().unsqueeze(0) - mu.detach())).sum(0) / torch.as_tensor(sigma).detach() ** 2
    return score, log_w


def entropy_surrogate(x_gen: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
    """A scalar whose gradient w.r.t. the generator is ``∇_φ H(q) = -E_q[∇ₓ log q(x)ᵀ ∂x/∂φ]``:
    ``-mean_n score_n · x_n`` with the score held fixed. ``x_gen``, ``score``: (N, *shape)."""
    return -(score.detach() * x_gen).flatten(1).sum(1).mean()


PENALTY_FORMS = ("per_sample", "batch_mean")


def gradient_penalty(e: torch.Tensor, x: torch.Tensor, form: str = "per_sample") -> torch.Tensor:
    """``mean_n ½‖∇ₓₙ E(xₙ)‖²`` for energies ``e`` (N,) computed from ``x`` (N, *shape), with its graph.

    ``form="batch_mean"`` is the authors' code: the gradient of ``mean_n E(xₙ)``, i.e. each sample's
    gradient divided by N, so the value is the per-sample form divided by N²."""
    if form not in PENALTY_FORMS:
        raise ValueError(f"grad_penalty_form: expected one of {', '.join(PENALTY_FORMS)}, got {form!r}")
    grad = torch.autograd.grad(e.sum() if form == "per_sample" else e.mean(), x, create_graph=True)[0]
    return 0.5 * grad.flatten(1).pow(2).sum(1).mean()


def variational_log_z(e_q: torch.Tensor, entropy) -> torch.Tensor:
    """The identity VERA rests on (Elflein §3; Grathwohl et al. 2021): ``log Z = max_q E_q[-E(x)] + H(q)``.
    For any ``q`` the right side is a lower bound, ``log Z - KL(q ‖ p)``, tight at ``q = p``; this returns its
    Monte-Carlo value ``mean(-e_q) + H(q)`` from energies ``e_q`` (N,) of samples of ``q`` and its entropy."""
    return -e_q.mean() + entropy


def vera_ebm_loss(e_data: torch.Tensor, e_gen: torch.Tensor, penalty: torch.Tensor, weight: float = 0.1) -> torch.Tensor:
    """``mean E(x_data) - mean E(x_gen) + weight · mean ½‖∇ₓE(x_data)‖²`` (VERA's EBM step)."""
    return e_data.mean() - e_gen.mean() + weight * penalty


def vera_generator_loss(e_gen: torch.Tensor, x_gen: torch.Tensor, score: torch.Tensor, entropy_weight: float) -> torch.Tensor:
    """``mean E(x_gen) - λ H(q)``, the entropy entering through :func:`entropy_surrogate`."""
    return e_gen.mean() - entropy_weight * entropy_surrogate(x_gen, score)


# ----------------------------------------------------------------------------- method + detector
@dataclass
class VERAConfig:
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=2000, batch_size=64, lr=1e-3, betas=(0.0, 0.9), warmup=200, eval_every=200, lrs={"gen": 2e-3, "post": 1e-3}))
    latent_dim: int = 16
    n_importance: int = 20  # M
    entropy_weight: float = 1e-4  # λ
    grad_penalty: float = 0.1  # weight of mean ½‖∇ₓE(x_data)‖²
    grad_penalty_form: str = "per_sample"  # "batch_mean": the authors' code (weight 0.1/N² per sample)
    sigma_init: float = 0.01
    sigma_min: float = 0.01
    sigma_max: float = 0.3
    eta_init: float = 0.1
    form: str = "paper"  # Elflein App. B's η clamp and β pairs; "code": the authors' code's (see VERA_FORMS)
    gamma: float = 0.0  # weight of γ·CrossEntropy(f(x), y) (VERA-S); 0 = unsupervised, y ignored
    num_outputs: int | None = None  # logits of f; default: num_classes when γ > 0, else 1 (the authors' code)
    gen_width: int = 100  # MLP generator (tabular)
    gen_channels: int = 32  # transposed-conv generator (images)
    widen: int = 2
    bottleneck: float | None = None
    bottleneck_form: str = "expand"  # see ebm_ood.nn.wrn


VERA_FORMS = {
    # η clamp (None: not clamped) and the Adam betas of the EBM and posterior optimizers (None: train.betas,
    # the one pair the authors' code passes to every optimizer); the generator always uses train.betas.
    "code": {"eta_clamp": None, "ebm_betas": None},
    # Elflein App. B: "initialize ... η with 0.1 and clamp it in the range [0.01, 0.3]"; β = (0, 0.9) is
    # stated for the generator only, every other optimizer "Adam with default parameters β1 = 0.9, β2 = 0.999"
    "paper": {"eta_clamp": (0.01, 0.3), "ebm_betas": (0.9, 0.999)},
}


VERA_FULL = {
    "train": dict(
        steps=FULL_STEPS,             # Elflein App. B: tabular 10,000 steps
        epochs=FULL_EPOCHS,           # Elflein App. B: images 50 epochs (steps = 50 · ⌈N / batch⌉)
        batch_size=FULL_BATCH_SIZE,   # configs/dataset/*.yaml: 32 CIFAR-10, 64 FMNIST, 512 tabular
        lr=3e-4,                       # Elflein App. B: the EBM's learning rate
        betas=(0.0, 0.9),              # Elflein App. B, for the generator; the authors' code: both optimizers
        warmup=2500,                   # Elflein App. B: "across all models"
        eval_every=500,                # ours: not stated
        lrs={"gen": 6e-4,              # Elflein App. B: the generator's learning rate
             "post": 3e-5},            # not stated: the authors' fc_vera.yaml / img_vera.yaml (post_lr)
    ),
    "latent_dim": PerKind(tabular=16, image=128),  # Elflein App. B
    "entropy_weight": 1e-4,            # Elflein App. B: λ from a grid over [1e-4, 1]
    "eta_init": 0.1,                   # Elflein App. B
    "sigma_min": 0.01,                 # Elflein App. B's clamp [0.01, 0.3], on σ as the authors' code (min_sigma)
    "sigma_max": 0.3,                  # Elflein App. B's clamp [0.01, 0.3], on σ as the authors' code (max_sigma)
    "n_importance": 20,                # Elflein App. B: Grathwohl et al.'s defaults; vera_utils.py
    "grad_penalty": 0.1,               # Elflein App. B: Grathwohl et al.'s defaults; fc_vera.yaml
    "gen_width": 100,                  # Elflein App. B: generator MLP "hidden dimension 100"
    "widen": 2,                        # Elflein App. C: WideResNet-10-2
}

VERA_PRESETS = {
    "quick": {
        "train": dict(steps=100, batch_size=64, lr=2e-3, betas=(0.0, 0.9), eval_every=50,
                      lrs={"gen": 4e-3, "post": 1e-3}),
        "n_importance": 10, "widen": 1, "gen_channels": 16,
    },
    # λ = 1 (the maximum-likelihood weight) and σ₀ = 0.1: within this budget the paper's λ = 1e-4, σ₀ = 0.01
    # leave the EBM flat, seen on ID data alone (seed 0): the std of E over the ID validation set is 0.00 on
    # tabular and 0.08 on digits (0.62 and 4.6 with λ = 1, σ₀ = 0.1), and on digits the generator collapses,
    # its samples' per-pixel std 14 % of the training images' (σ ends at 0.022; 90 % with λ = 1).
    # Cost reduction: WRN-10-1 on images (as CD's and SSM's).
    "default": derived_default(VERA_FULL, entropy_weight=1.0, sigma_init=0.1, widen=1),
    "full": VERA_FULL,
}


def vera_config(preset: str = "default", kind: str = "image", dataset: str | None = None) -> VERAConfig:
    """The ``preset`` row of :data:`VERA_PRESETS` for ``kind``: ``quick`` (tests), ``default`` (``full``'s
    schedule × ``presets.DEFAULT_FACTOR``, with λ = 1 and σ₀ = 0.1 so that it learns within budget, and
    WRN-10-1 on images),
    ``full`` (Elflein App. B: lr 3e-4 EBM / 6e-4 generator, Adam β = (0, 0.9), λ = 1e-4, η₀ = 0.1, latent
    dimension 16 (tabular) / 128 (images), warm-up 2,500, 10,000 steps on tabular data; from the authors'
    code, where the paper defers to Grathwohl et al.'s defaults: M = 20, gradient penalty 0.1, posterior
    lr 3e-5). ``form="paper"`` (every preset): App. B's β pairs (β = (0, 0.9) for the generator, Adam's defaults
    for the EBM and posterior optimizers) and its η clamp to [0.01, 0.3]; ``form="code"`` gives the authors'
    code's: one β pair for every optimizer, η not clamped.
    The paper trains images for 50 epochs: ``full`` counts them at the authors' batch sizes
    (``presets.FULL_BATCH_SIZE``: 32 CIFAR-10, 64 FMNIST, 512 tabular; give ``dataset``), ``50 · ⌈N / batch⌉`` steps."""
    return preset_config(VERAConfig, VERA_PRESETS, preset, kind, dataset, train=TrainConfig)


def make_generator(input_shape: tuple[int, ...], config: VERAConfig) -> Generator:
    """The paper's generators: a 5-layer MLP (width 100, LeakyReLU 0.2) from a 16-d latent for (D,);
    :class:`ConvGenerator` for (C, H, W)."""
    if len(input_shape) == 1:
        g = MLP(config.latent_dim, input_shape[0], width=config.gen_width, depth=5)
    elif len(input_shape) == 3:
        g = ConvGenerator(config.latent_dim, input_shape, width=config.gen_channels)
    else:
        raise ValueError(f"input_shape: expected (D,) or (C, H, W), got {input_shape}")
    return Generator(g, config.latent_dim, config.sigma_init, config.sigma_min, config.sigma_max)


class VERADetector(Detector):
    """An EBM trained with VERA; OOD score ``E(x) = -logsumexp f(x)``, an energy. After ``fit``:
    ``net_``, ``generator_``, ``proposal_``, ``history_``. No model selection (no ID-only criterion
    exists that does not need ``log Z``): the final weights are kept.

    Parameters
    ----------
    config : VERAConfig or None, training settings (:func:`~ebm_ood.methods.vera.vera_config`).
    device : torch device or None (CPU).
    seed : int, fixes initialisation, batches and sampling.
    **overrides : VERAConfig fields.

    Needs
    -----
    Nothing from a backbone: it trains its own network from scratch on raw inputs, vectors (N, D) or
    images (N, C, H, W) (``kind="tabular"`` / ``"image"`` presets); ``fit(x)`` on ID data.

    Example
    -------
    >>> import numpy as np, ebm_ood
    >>> rng = np.random.default_rng(0)
    >>> from ebm_ood.methods.vera import vera_config
    >>> x = rng.normal(size=(200, 4)).astype("float32")
    >>> ebm_ood.VERADetector(vera_config("quick", kind="tabular")).fit(x).score(x[:3]).shape
    (3,)
    """

    name = "VERA"
    needs_labels = False

    def __init__(self, config: VERAConfig | None = None, device=None, seed: int = 0, **overrides):
        super().__init__(device)
        self.config = replace(config or VERAConfig(), **overrides)
        check_positive(self.config.gamma, "gamma", allow_zero=True)
        if self.config.n_importance < 1:
            raise ValueError(f"n_importance: expected >= 1, got {self.config.n_importance}")
        if self.config.form not in VERA_FORMS:
            raise ValueError(f"form: expected one of {', '.join(VERA_FORMS)}, got {self.config.form!r}")
        if self.config.grad_penalty_form not in PENALTY_FORMS:
            raise ValueError(f"grad_penalty_form: expected one of {', '.join(PENALTY_FORMS)}, "
                             f"got {self.config.grad_penalty_form!r}")
        self.seed = seed

    def _fit(self, x, y):
        cfg = self.config
        y = labels_for_gamma("VERA", cfg.gamma, y)
        torch.manual_seed(self.seed)
        out = cfg.num_outputs or (self.num_classes_ if y is not None else 1)
        self.net_ = build_network(self.input_shape_, out, widen=cfg.widen, bottleneck=cfg.bottleneck,
                                  bottleneck_form=cfg.bottleneck_form).to(self.device)
        self.generator_ = make_generator(self.input_shape_, cfg).to(self.device)
        form = VERA_FORMS[cfg.form]
        self.proposal_ = PosteriorProposal(cfg.eta_init, form["eta_clamp"]).to(self.device)
        net, gen, post = self.net_, self.generator_, self.proposal_
        xt, yt = to_tensor(x, self.device), to_tensor(y, self.device, torch.long)

        def step(xb, yb, _):
            gen.clamp_()
            post.clamp_()
            x_gen, h = gen.sample(xb.shape[0])  # (B, *shape), (B, d)
            xd = xb.detach().requires_grad_(True)
            logits = net(xd)
            e_data, e_gen = energy_from_logits(logits), energy_from_logits(net(x_gen))
            ebm = vera_ebm_loss(e_data, e_gen, gradient_penalty(e_data, xd, cfg.grad_penalty_form), cfg.grad_penalty)
            h_prop, log_xi = post.sample(h.detach(), cfg.n_importance)
            score, log_w = importance_score(x_gen.detach(), h_prop, log_xi, gen.g, gen.sigma.detach())
            logs = {"e_pos": e_data.mean().item(), "e_neg": e_gen.mean().item(),
                    "sigma": gen.sigma.item(), "eta": post.eta.item()}
            if cfg.gamma > 0:
                ce = F.cross_entropy(logits, yb)
                ebm = ebm + cfg.gamma * ce
                logs["ce"] = ce.item()
            losses = {"ebm": ebm, "gen": vera_generator_loss(e_gen, x_gen, score, cfg.entropy_weight),
                      "post": -log_w.mean()}  # η maximises its ELBO E_ξ[log q(x, h') - log ξ(h'|x)]
            return losses, logs

        groups = {"ebm": ["ebm"], "gen": ["gen"], "post": ["post"]}
        tcfg = replace(cfg.train, seed=self.seed)
        if form["ebm_betas"] is not None:
            tcfg = replace(tcfg, group_betas={"ebm": form["ebm_betas"], "post": form["ebm_betas"], **tcfg.group_betas})
        self.history_ = train({"ebm": net, "gen": gen, "post": post}, step, xt, yt, tcfg, name=self.name,
                              groups=groups, identity=cfg)

    def sample(self, n: int) -> np.ndarray:
        """``n`` generator samples ``x = g(h) + σε`` as numpy (n, *input_shape)."""
        self.check_fitted()
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n: expected a positive integer, got {n!r}")
        with torch.no_grad():
            return self.generator_.sample(int(n))[0].cpu().numpy()

    def _score(self, x):
        self.net_.eval()
        return self.map_batches(JEMEnergy(self.net_), x)
