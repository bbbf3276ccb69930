"""Persistent contrastive divergence (PCD): train ``p_θ(x) ∝ exp(-E_θ(x))`` with SGLD negatives.

Elflein §3 (Hinton 2002; Du & Mordatch 2019): the maximum-likelihood gradient is
``∇θ NLL = E_data[∇θ E_θ(x⁺)] - E_{p_θ}[∇θ E_θ(x⁻)]``; it is the gradient of the surrogate loss

    L_CD = mean_i E(x⁺_i) - mean_j E(x⁻_j)                (x⁻ held fixed: no gradient through the sampler)

with negatives ``x⁻`` drawn by SGLD chains that start from a persistent replay buffer (Tieleman 2008).
The energy is JEM-style (Elflein Eq. 3): a network ``f(x) ∈ R^K`` and ``E(x) = -logsumexp_k f(x)[k]``.
Unsupervised CD uses ``K = 1`` logit, so ``E(x) = -f(x)[0]``; with supervision (``gamma > 0``, "CD-S")
``K = C`` classes and the loss gains ``γ · CrossEntropy(f(x⁺), y)``.

Paper vs the authors' code (every difference: ``docs/paper_vs_code.md``), and what we do:

* L2 energy penalty ``α (mean_i E(x⁺_i)² + mean_j E(x⁻_j)²)`` (Du & Mordatch): the paper's text does
  not mention it, the code uses α = 1. ``l2_weight`` (default 1, the code; 0 = the bare loss above).
* SGLD form: the code's decoupled ``x ← x - α∇E + σε`` (α = 1, σ = 0.01) by default — the paper only
  says "step size 1"; ``sgld_form="langevin"`` gives ``x ← x - (η/2)∇E + √η ε``.
* Input noise: paper "Gaussian noise of variance 0.1" → ``data_noise_std = √0.1`` on images (0 on tabular),
  on training batches. The authors' image config adds std 0.1 (``sigma: 0.1``, variance 0.01), also to
  validation batches: ``data_noise_std=0.1`` gives their amount on training batches.
* Supervised runs (code): class-conditional SGLD on ``E(x, y) = -f(x)[y]`` with ``y ~ U{0..C-1}``, the
  buffer split into per-class chunks, 20 steps (``conditional_sgld_steps``).
* Model selection: the code used OOD validation data; we use ID data only. By default the last weights
  are kept (``select="last"``): the CD loss is no measure of fit, so no ID-only criterion ranks CD's
  checkpoints. It is not a likelihood (the ``log Z`` it leaves out changes from one checkpoint to the next),
  and it sits near 0 whenever the chains keep up with the model; with the penalty it is lowest,
  ``-1/(2α)`` at ``E⁺ = -1/(2α)``, ``E⁻ = +1/(2α)``, when the model separates the data from chains that
  lag behind it. ``select="val_loss"`` (an option) keeps the checkpoint with the lowest training objective
  on the ID validation set against the latest SGLD negatives, i.e. the largest such gap (often an early
  checkpoint).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch.nn import functional as F

from ebm_ood.detector import Detector
from ebm_ood.methods.labels import labels_for_gamma
from ebm_ood.energy import JEMEnergy, energy_from_logits
from ebm_ood.nn import build_network
from ebm_ood.sampling import ReplayBuffer, class_conditional_energy, sgld
from ebm_ood.sampling.sgld import DEFAULT_STEP_SIZE, FORMS
from ebm_ood.training import TrainConfig, seed_everything, to_tensor, train
from ebm_ood.presets import FULL_BATCH_SIZE, FULL_EPOCHS, FULL_STEPS, PerKind, derived_default, preset_config
from ebm_ood.plumbing.checks import check_positive

SELECT = ("val_loss", "last")


# ----------------------------------------------------------------------------------------- equations
def contrastive_divergence_loss(e_pos: torch.Tensor, e_neg: torch.Tensor) -> torch.Tensor:
    """Elflein §3 (CD, Hinton 2002): ``L = mean_i E(x⁺_i) - mean_j E(x⁻_j)``. (N,), (M,) → scalar.

    With ``x⁻`` detached, ``∇θ L = E_data[∇θ E] - E_model[∇θ E]``, the maximum-likelihood gradient.
    """
    # L_CD(θ) = (1/N) Σ_i E_θ(x⁺_i) - (1/M) Σ_j E_θ(x⁻_j)
    return e_pos.mean() - e_neg.mean()


def energy_l2_penalty(e_pos: torch.Tensor, e_neg: torch.Tensor) -> torch.Tensor:
    """Du & Mordatch's energy regulariser (Elflein code, weight 1): ``mean_i E(x⁺_i)² + mean_j E(x⁻_j)²``.

    (N,), (M,) → scalar; keeps energies near 0 so CD cannot drift both sets off together.
    """
    return (e_pos ** 2).mean() + (e_neg ** 2).mean()


def cd_objective(model: JEMEnergy, x_pos: torch.Tensor, x_neg: torch.Tensor, y_pos: torch.Tensor | None = None,
                 *, l2_weight: float = 1.0, gamma: float = 0.0) -> tuple[torch.Tensor, dict]:
    """The CD training loss of one batch (Elflein §3, + JEM supervision):

    ``L = mean E(x⁺) - mean E(x⁻) + α (mean E(x⁺)² + mean E(x⁻)²) + γ · CE(f(x⁺), y)``.

    x_pos: (N, *shape) data, x_neg: (M, *shape) negatives (detached), y_pos: (N,) int64 labels (needed
    iff ``gamma > 0``; with ``gamma == 0`` the CE term is not computed at all, so the result is the
    unsupervised loss bit for bit). Returns the scalar loss and logs ``{"e_pos", "e_neg", ...}`` (floats)
    for the trainer's divergence guard.
    """
    n = x_pos.shape[0]
    logits = model.logits(torch.cat([x_pos, x_neg.detach()]))  # (N + M, K): one pass for both sets
    energy = energy_from_logits(logits)                         # (N + M,)
    e_pos, e_neg = energy[:n], energy[n:]
    loss = contrastive_divergence_loss(e_pos, e_neg)
    if l2_weight:
        loss = loss + l2_weight * energy_l2_penalty(e_pos, e_neg)
    logs = {"e_pos": e_pos.mean().item(), "e_neg": e_neg.mean().item()}
    if gamma > 0:
        if y_pos is None:
            raise ValueError("y_pos: labels are needed when gamma > 0 (supervised CD)")
        ce = F.cross_entropy(logits[:n], y_pos)
        loss = loss + gamma * ce
        logs["ce"] = ce.item()
    return loss, logs


# ----------------------------------------------------------------------------------------- config
@dataclass
class CDConfig:
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=1000, batch_size=64, lr=1e-3, warmup=100, eval_every=100))
    sgld_steps: int = 20  # SGLD steps per negative batch (paper: 100)
    step_size: float = DEFAULT_STEP_SIZE  # α (decoupled) or η (langevin)
    noise_std: float = 0.01  # σ of the decoupled form (code: 0.01); ignored by the Langevin form
    sgld_form: str = "decoupled"  # "decoupled" (code) | "langevin"
    clamp: tuple[float, float] | None = None  # code: no clamping
    buffer_size: int = 10_000  # replay buffer capacity (paper: 10,000)
    reinit_prob: float = 0.05  # ρ: chance a chain restarts from U(-1, 1)
    l2_weight: float = 1.0  # α of the L2 energy penalty (code: 1; paper text: none)
    data_noise_std: float = 0.0  # Gaussian noise on x⁺ (paper: variance 0.1 on images → √0.1)
    gamma: float = 0.0  # weight of CrossEntropy(f(x), y) (CD-S); 0 = unsupervised, labels ignored
    conditional_sgld: bool = True  # with gamma > 0: class-conditional SGLD, per-class buffer chunks (code)
    conditional_sgld_steps: int = 20  # SGLD steps of the class-conditional sampler (code: 20)
    select: str = "last"  # "last": the final weights; "val_loss": the lowest CD objective on ID validation data
    widen: int = 2  # WRN widening factor (images)
    bottleneck: float | None = None  # 1x1-conv bottleneck factor (images)
    bottleneck_form: str = "expand"  # "expand": C → ⌊f·C⌋ → C (the authors'); "reduce": C → ⌊f·C⌋ (ebm_ood.nn.wrn)
    mlp_width: int = 100  # tabular MLP width (paper: 100)
    mlp_depth: int = 5  # tabular MLP layers (paper: 5)


_INPUT_NOISE = PerKind(tabular=0.0, image=math.sqrt(0.1))  # std of the noise on x⁺: variance 0.1 on images

CD_FULL = {
    "train": dict(
        steps=FULL_STEPS,             # Elflein App. B: tabular 10,000 steps
        epochs=FULL_EPOCHS,           # Elflein App. B: images 50 epochs (steps = 50 · ⌈N / batch⌉)
        batch_size=FULL_BATCH_SIZE,   # configs/dataset/*.yaml: 32 CIFAR-10, 64 FMNIST, 512 tabular
        lr=1e-3,             # Elflein App. B: "initial learning rate to 0.001"
        betas=(0.9, 0.999),  # Elflein App. B: Adam's defaults
        warmup=2500,         # Elflein App. B: "across all models"
        eval_every=500,      # ours: not stated
    ),
    "sgld_steps": 100,       # Elflein App. B
    "step_size": 1.0,        # Elflein App. B: "step size α to 1"
    "noise_std": 0.01,       # not stated: the authors' fc_mcmc.yaml / img_mcmc.yaml (sgld_std)
    "reinit_prob": 0.05,     # Elflein App. B
    "buffer_size": 10_000,   # Elflein App. B
    "l2_weight": 1.0,        # not stated: the authors' uncertainty_est/models/ebm/mcmc.py
    "data_noise_std": _INPUT_NOISE,  # Elflein App. B: "noise with variance 0.1"; on images only, as img_mcmc.yaml
    "widen": 2,              # Elflein App. C: WideResNet-10-2
    "mlp_width": 100,        # not stated: fc_mcmc.yaml (hidden_dims 100)
    "mlp_depth": 5,          # Elflein App. C: "5-layer MLP"
}

CD_PRESETS = {
    "quick": {
        "train": dict(steps=40, batch_size=32, lr=1e-3, warmup=10, eval_every=20),
        "sgld_steps": 5, "buffer_size": 500, "data_noise_std": _INPUT_NOISE,
        "widen": 1, "mlp_width": 32, "mlp_depth": 3,
    },
    # Cost reductions: 20 / 15 SGLD steps per batch instead of 100 (the sampler is ~90 % of a step's time);
    # a smaller replay buffer, so that each chain is continued several times within the shorter run;
    # WRN-10-1 on images.
    "default": derived_default(CD_FULL, sgld_steps=PerKind(tabular=20, image=15),
                               buffer_size=PerKind(tabular=2000, image=1000), widen=1),
    "full": CD_FULL,
}


def cd_config(preset: str = "default", kind: str = "image", dataset: str | None = None) -> CDConfig:
    """The ``preset`` row of :data:`CD_PRESETS` for ``kind``: ``quick`` (tests: seconds), ``default``
    (``full``'s schedule × ``presets.DEFAULT_FACTOR``, with 20 / 15 SGLD steps, a 2,000 / 1,000 buffer and
    WRN-10-1), ``full`` (Elflein App. B: 100 SGLD steps of size 1,
    buffer 10,000, ρ = 0.05, lr 1e-3, warm-up 2,500, input noise of variance 0.1 on images, 10,000 steps on
    tabular data). The paper trains images for 50 epochs: ``full`` counts them at the authors' batch sizes
    (``presets.FULL_BATCH_SIZE``: 32 CIFAR-10, 64 FMNIST, 512 tabular; give ``dataset``), ``50 · ⌈N / batch⌉`` steps. Kept from the authors' code (see ``CDConfig``): the
    decoupled SGLD noise σ = 0.01 and the L2 energy penalty of weight 1."""
    return preset_config(CDConfig, CD_PRESETS, preset, kind, dataset, train=TrainConfig)


def _check_config(c: CDConfig) -> None:
    if c.sgld_form not in FORMS:
        raise ValueError(f"sgld_form: expected one of {FORMS}, got {c.sgld_form!r}")
    if c.select not in SELECT:
        raise ValueError(f"select: expected one of {SELECT}, got {c.select!r}")
    for name in ("sgld_steps", "conditional_sgld_steps", "buffer_size"):
        if int(getattr(c, name)) != getattr(c, name) or getattr(c, name) < 1:
            raise ValueError(f"{name}: expected a positive integer, got {getattr(c, name)!r}")
    check_positive(c.step_size, "step_size")
    for name in ("noise_std", "l2_weight", "data_noise_std", "gamma"):
        check_positive(getattr(c, name), name, allow_zero=True)


# ----------------------------------------------------------------------------------------- detector
class CDDetector(Detector):
    """An EBM trained by persistent contrastive divergence; ``score(x) = E(x)``, an energy (higher = more
    OOD).

    After ``fit``: ``model_`` (:class:`JEMEnergy`), ``net_`` (its logit network), ``buffer_``
    (:class:`ReplayBuffer` of SGLD chain states), ``history_``.

    Parameters
    ----------
    config : CDConfig or None, training settings (:func:`~ebm_ood.methods.contrastive_divergence.cd_config`).
    device : torch device or None (CPU).
    seed : int, fixes initialisation, batches and sampling.
    net : nn.Module or None, a logit network (K outputs: 1, or C when ``gamma > 0``) instead of the
        paper's MLP / SmallWRN.
    **overrides : CDConfig fields, e.g. ``gamma=1.0`` (supervised, needs y).

    Needs
    -----
    Nothing from a backbone: it trains its own network from scratch on raw inputs, vectors (N, D) or
    images (N, C, H, W) (``kind="tabular"`` / ``"image"`` presets); ``fit(x)`` on ID data.

    Example
    -------
    >>> import numpy as np, ebm_ood
    >>> rng = np.random.default_rng(0)
    >>> from ebm_ood.methods.contrastive_divergence import cd_config
    >>> x = rng.normal(size=(200, 4)).astype("float32")
    >>> ebm_ood.CDDetector(cd_config("quick", kind="tabular")).fit(x).score(x[:3]).shape
    (3,)
    """

    name = "CD"
    needs_labels = False

    def __init__(self, config: CDConfig | None = None, device=None, seed: int = 0, net=None, **overrides):
        super().__init__(device)
        self.config = replace(config or CDConfig(), **overrides)
        _check_config(self.config)
        self.seed, self.net = seed, net

    def _fit(self, x, y):
        c = self.config
        supervised = c.gamma > 0
        y = labels_for_gamma("CD", c.gamma, y)
        seed_everything(self.seed)  # one seed: weights, buffer, SGLD noise, input noise
        x_tr, y_tr, x_va, y_va = self.split_validation(x, y, self.seed)
        n_logits = self.num_classes_ if supervised else 1
        net = self.net or build_network(self.input_shape_, n_logits, widen=c.widen, bottleneck=c.bottleneck,
                                        mlp_width=c.mlp_width, depth=c.mlp_depth, bottleneck_form=c.bottleneck_form)
        self.net_ = net.to(self.device)
        self.model_ = model = JEMEnergy(self.net_)
        if supervised:
            with torch.no_grad():
                k = self.net_(to_tensor(x[:1], self.device)).shape[1]
            if k != self.num_classes_:
                raise ValueError(f"net: CD-S (gamma > 0) needs {self.num_classes_} logits (one per class), got {k}")
        conditional = supervised and c.conditional_sgld
        n_cls = self.num_classes_ if conditional else None
        self.buffer_ = buf = ReplayBuffer(self.input_shape_, capacity=max(c.buffer_size, n_cls or 1),
                                          reinit_prob=c.reinit_prob, n_classes=n_cls, device=self.device)
        xt, yt = to_tensor(x_tr, self.device), to_tensor(y_tr, self.device, torch.long)  # y_tr: None unless supervised
        xv = to_tensor(x_va, self.device)
        yv = to_tensor(y_va, self.device, torch.long) if supervised and y_va is not None else None
        last_neg: dict = {}

        def step(xb, yb, _):
            b = xb.shape[0]
            if conditional:  # code: y ~ U{0..C-1}, SGLD on E(x, y) = -f(x)[y], chunk y of the buffer
                y_neg = torch.randint(0, n_cls, (b,))
                x0, idx = buf.sample(b, y_neg)
                energy, n_steps = class_conditional_energy(self.net_, y_neg.to(self.device)), c.conditional_sgld_steps
            else:
                x0, idx = buf.sample(b)
                energy, n_steps = model, c.sgld_steps
            x_neg = sgld(energy, x0, n_steps=n_steps, step_size=c.step_size, noise_std=c.noise_std,
                         form=c.sgld_form, clamp=c.clamp, module=model)     # (B, *shape), detached
            buf.update(idx, x_neg)
            last_neg["x"] = x_neg
            x_pos = xb + c.data_noise_std * torch.randn_like(xb) if c.data_noise_std else xb
            return cd_objective(model, x_pos, x_neg, yb, l2_weight=c.l2_weight, gamma=c.gamma)

        def validate() -> float:
            """Negative validation loss (higher = better): the training objective on the clean ID
            validation set against the latest SGLD negatives (no OOD data)."""
            model.eval()
            with torch.no_grad():
                loss, _ = cd_objective(model, xv, last_neg["x"], yv, l2_weight=c.l2_weight,
                                       gamma=c.gamma if yv is not None else 0.0)  # unlabelled validation: no CE
            return -loss.item()

        cfg = replace(c.train, seed=self.seed)
        self.history_ = train({"net": self.net_}, step, xt, yt, cfg, name=self.name,
                              validate=validate if c.select == "val_loss" else None, stateful={"buffer": buf},
                              identity=c)

    def _score(self, x):
        self.model_.eval()
        return self.map_batches(self.model_, x)

    def buffer_samples(self, n: int = 64) -> np.ndarray:
        """The first ``n`` stored chain states, (n, *input_shape) numpy (for plots; at most the capacity)."""
        self.check_fitted()
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n: expected a positive integer, got {n!r}")
        return self.buffer_.buffer[:n].cpu().numpy()
