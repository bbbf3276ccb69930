"""Sliced score matching (Elflein §3; Song et al. 2019): train ``p(x) ∝ exp(-E(x))`` without sampling.

The model's score is ``s(x) = ∇ₓ log p(x) = -∇ₓE(x)`` (it does not involve ``Z``). Hyvärinen's (2005)
score-matching objective, up to a constant equal to the Fisher divergence to the data,

    J(θ)      = E_x[ tr ∇ₓs(x) + ½ ‖s(x)‖² ]                              (exact; D backward passes)

is made cheap by random projections ``v`` with ``E[v vᵀ] = I`` (Rademacher or Gaussian):

    J_SSM(θ)    = E_v E_x[ vᵀ ∇ₓs(x) v + ½ (vᵀ s(x))² ]                   (sliced)
    J_SSM-VR(θ) = E_v E_x[ vᵀ ∇ₓs(x) v + ½ ‖s(x)‖² ]                      (variance reduced; the paper's)

``vᵀ∇ₓs v`` is a Hessian-vector product obtained by a second backward pass (``create_graph=True``).
All three agree in expectation; ``exact_score_matching_loss`` is the reference.

The energy network is JEM-style, ``E(x) = -logsumexp f(x)`` (Elflein Eq. 3). **Activation.** The paper's
networks use LeakyReLU, whose second derivative is zero almost everywhere; with it, autograd's
``tr ∇ₓs = tr Jᵀ(diag p - p pᵀ)J ≥ 0`` and the objective is minimised by a flat energy (the kinks'
curvature is invisible to autograd). The authors' code trains exactly that (LeakyReLU MLP, one output).
We default to a *smooth* LeakyReLU, ``a·x + (1-a)·softplus(x)`` (same slopes at ±∞), and
keep ``activation="leaky_relu"`` as the code's option. For images the energy network is the paper's
WRN-10-2 (:class:`~ebm_ood.nn.SmallWRN`) with the same activation rule; ``image_network="mlp"`` gives the MLP
on flattened pixels.

**Projections.** The paper (App. B) and the authors' code (``SSM(noise_type="radermacher")``, never
overridden in their configs) both draw Rademacher ``v``; ``projection="gaussian"`` is the option.
**Input noise.** The paper states none for SSM; the authors' image config adds N(0, 0.1²) to every training
and validation batch (``sigma: 0.1``), and so do the image presets (``data_noise_std=0.1``; 0 on tabular data):
without noise the objective is unbounded below on images with constant pixels (``SSM_FULL``). **SSM-S weighting.** The
paper adds ``γ·CE`` to the per-sample objective; the authors' image loss divides the SSM term by ``C·H``
(:func:`ssm_reduction_divisor`), so their cross-entropy weighs 96× (3×32×32) more: ``ssm_reduction="last_axis"``. ``docs/paper_vs_code.md``
lists every difference from the authors' code.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ebm_ood.detector import Detector
from ebm_ood.methods.labels import labels_for_gamma
from ebm_ood.energy import JEMEnergy
from ebm_ood.nn import MLP, SmallWRN
from ebm_ood.training import TrainConfig, batched_mean, to_tensor, train
from ebm_ood.presets import FULL_BATCH_SIZE, FULL_EPOCHS, FULL_STEPS, PerKind, derived_default, preset_config
from ebm_ood.plumbing.checks import check_positive

PROJECTIONS = ("rademacher", "gaussian")
ACTIVATIONS = ("smooth_leaky_relu", "leaky_relu")
SSM_REDUCTIONS = ("per_sample", "last_axis")


# ----------------------------------------------------------------------------- the objective
def model_score(energy_fn: Callable, x: torch.Tensor, create_graph: bool = True) -> torch.Tensor:
    """``s(x) = -∇ₓE(x)``. ``energy_fn: (N, *shape) -> (N,)``; returns (N, *shape).

    ``x`` must be a tensor that requires grad (it is the leaf we differentiate against). Samples must be
    independent under ``energy_fn`` (no batch norm), so ``∇ₓ Σ_n E(x_n)`` is the per-sample gradient.
    """
    e = energy_fn(x)
    if e.shape != (x.shape[0],):
        raise ValueError(f"energy_fn: expected energies of shape ({x.shape[0]},), got {tuple(e.shape)}")
    return -torch.autograd.grad(e.sum(), x, create_graph=create_graph)[0]


def random_projections(shape: tuple[int, ...], kind: str = "rademacher", generator: torch.Generator | None = None,
                       device=None, dtype=torch.float32) -> torch.Tensor:
    """Projection vectors ``v`` with ``E[v vᵀ] = I``: Rademacher (±1) or standard Gaussian, of ``shape``."""
    if kind == "rademacher":
        return torch.randint(0, 2, shape, generator=generator, device=device).to(dtype) * 2 - 1
    if kind == "gaussian":
        return torch.randn(shape, generator=generator, device=device, dtype=dtype)
    raise ValueError(f"projection: expected one of {PROJECTIONS}, got {kind!r}")


def sliced_score_matching_loss(energy_fn: Callable, x: torch.Tensor, n_projections: int = 1,
                               projection: str = "rademacher", variance_reduction: bool = True,
                               generator: torch.Generator | None = None, create_graph: bool = True,
                               reduce: bool = True) -> torch.Tensor:
    """SSM / SSM-VR (Song et al. 2019; Elflein §3), averaged over ``n_projections`` vectors per sample.

    ``SSM:    vᵀ∇ₓs(x)v + ½ (vᵀs(x))²``      ``SSM-VR: vᵀ∇ₓs(x)v + ½ ‖s(x)‖²``  with ``s = -∇ₓE``.

    ``x``: (N, *shape). Returns the batch mean (scalar) or, with ``reduce=False``, the per-sample
    average over projections, (N,). ``create_graph=True`` keeps the graph so the loss can be
    differentiated w.r.t. the parameters of ``energy_fn``.
    """
    if n_projections < 1:
        raise ValueError(f"n_projections: expected >= 1, got {n_projections}")
    n = x.shape[0]
    xr = x.detach().repeat(n_projections, *([1] * (x.ndim - 1))).requires_grad_(True)  # (K·N, *shape)
    v = random_projections(tuple(xr.shape), projection, generator, xr.device, xr.dtype)  # (K·N, *shape)
    s = model_score(energy_fn, xr, create_graph=True)  # (K·N, *shape)
    sv = (s * v).flatten(1).sum(1)  # vᵀ s(x), (K·N,)
    # Hessian-vector product by double backprop: ∇ₓ(vᵀ s) = (∇ₓs)ᵀ v
    hv = torch.autograd.grad(sv.sum(), xr, create_graph=create_graph)[0]
    vhv = (hv * v).flatten(1).sum(1)  # vᵀ ∇ₓs v, (K·N,)
    half_sq = 0.5 * s.flatten(1).pow(2).sum(1) if variance_reduction else 0.5 * sv.pow(2)
    if not create_graph:
        half_sq = half_sq.detach()
    per_sample = (vhv + half_sq).view(n_projections, n).mean(0)  # (N,)
    return per_sample.mean() if reduce else per_sample


def exact_score_matching_loss(energy_fn: Callable, x: torch.Tensor, create_graph: bool = True,
                              reduce: bool = True) -> torch.Tensor:
    """Hyvärinen's objective ``tr ∇ₓs(x) + ½ ‖s(x)‖²`` with the full Jacobian trace (D backward passes;
    small D only). ``x``: (N, *shape); returns the batch mean or the (N,) per-sample values."""
    xr = x.detach().clone().requires_grad_(True)
    s = model_score(energy_fn, xr, create_graph=True).flatten(1)  # (N, D)
    trace = torch.zeros(x.shape[0], dtype=s.dtype, device=s.device)
    for d in range(s.shape[1]):
        # row d of each sample's Jacobian: ∇ₓ s_d(x); its d-th entry is ∂s_d/∂x_d
        row = torch.autograd.grad(s[:, d].sum(), xr, create_graph=create_graph, retain_graph=True)[0]
        trace = trace + row.flatten(1)[:, d]
    half_sq = 0.5 * s.pow(2).sum(1)
    per_sample = trace + (half_sq if create_graph else half_sq.detach())
    return per_sample.mean() if reduce else per_sample


def ssm_reduction_divisor(shape: tuple[int, ...], reduction: str = "per_sample") -> int:
    """What the per-sample SSM objective is divided by before it joins ``γ·CE``, for inputs
    ``(N, *shape)``. ``"per_sample"`` (the paper's): 1. ``"last_axis"`` (the authors' ``SSM.training_step``:
    ``torch.sum(·, dim=-1)`` then a mean over every other axis): the product of all but the last sample
    axis, ``C·H`` for ``(C, H, W)`` images (96 on 3×32×32, 32 on 1×32×32), 1 for ``(D,)`` vectors."""
    if reduction not in SSM_REDUCTIONS:
        raise ValueError(f"ssm_reduction: expected one of {SSM_REDUCTIONS}, got {reduction!r}")
    return int(np.prod(shape[:-1])) if reduction == "last_axis" else 1


def supervised_ssm_loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, gamma: float = 0.0,
                        reduction: str = "per_sample", n_projections: int = 1, projection: str = "rademacher",
                        variance_reduction: bool = True, generator: torch.Generator | None = None,
                        ) -> tuple[torch.Tensor, dict]:
    """The SSM / SSM-S training loss of the logit network ``net: (N, *shape) → (N, K)`` with
    ``E(x) = -logsumexp f(x)``:

        L = J_SSM(-VR)(x) / d + γ · CrossEntropy(f(x), y),   d = :func:`ssm_reduction_divisor`

    ``x``: (N, *shape); ``y``: (N,) class indices, used when ``γ > 0``. Returns ``(loss, logs)`` with the
    undivided SSM term and the cross-entropy as floats in ``logs``."""
    energy = JEMEnergy(net)
    ssm = sliced_score_matching_loss(energy, x, n_projections, projection, variance_reduction, generator)
    d = ssm_reduction_divisor(tuple(x.shape[1:]), reduction)
    loss, logs = (ssm if d == 1 else ssm / d), {"ssm": ssm.item()}
    if gamma > 0:
        ce = F.cross_entropy(net(x), y)
        loss = loss + gamma * ce
        logs["ce"] = ce.item()
    return loss, logs


# ----------------------------------------------------------------------------- the energy network
class SmoothLeakyReLU(nn.Module):
    """``a·x + (1-a)·softplus(x)``: LeakyReLU(a)'s asymptotes with a non-zero second derivative."""

    def __init__(self, slope: float = 0.2):
        super().__init__()
        self.slope = float(slope)

    def forward(self, x):
        return self.slope * x + (1 - self.slope) * F.softplus(x)


def score_matching_network(input_shape: tuple[int, ...], out_dim: int, activation: str = "smooth_leaky_relu",
                           image_network: str = "wrn", widen: int = 2, bottleneck: float | None = None,
                           bottleneck_form: str = "expand") -> nn.Module:
    """The logits network ``f`` for ``E(x) = -logsumexp f(x)``: on vectors (D,) the paper's 5-layer MLP with
    ``activation``; on images (C, H, W) the paper's WideResNet-10-2 (``image_network="wrn"``: SmallWRN of
    widening ``widen`` with ``activation``) or, with ``image_network="mlp"``, the MLP on the flattened pixels
    (C·H·W → 100×4 → ``out_dim``)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {ACTIVATIONS}, got {activation!r}")
    if len(input_shape) not in (1, 3):
        raise ValueError(f"input_shape: expected (D,) or (C, H, W), got {input_shape}")
    if len(input_shape) == 3 and image_network == "wrn":
        return SmallWRN(input_shape[0], out_dim, width=widen, bottleneck=bottleneck, bottleneck_form=bottleneck_form,
                        activation=activation)
    if len(input_shape) == 3 and image_network != "mlp":
        raise ValueError(f"image_network: expected 'mlp' or 'wrn', got {image_network!r}")
    mlp = MLP(int(np.prod(input_shape)), out_dim)
    if activation == "smooth_leaky_relu":
        for i, m in enumerate(mlp.body):
            if isinstance(m, nn.LeakyReLU):
                mlp.body[i] = SmoothLeakyReLU(m.negative_slope)
    return nn.Sequential(nn.Flatten(), mlp) if len(input_shape) == 3 else mlp


# ----------------------------------------------------------------------------- method + detector
@dataclass
class SSMConfig:
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=1500, batch_size=64, lr=3e-4, warmup=100, eval_every=100))
    variance_reduction: bool = True  # SSM-VR (the paper) or plain SSM
    projection: str = "rademacher"  # the paper's and the authors' code's; "gaussian" is the option
    n_projections: int = 1
    gamma: float = 0.0  # weight of γ·CrossEntropy(f(x), y) (the "-S" variants); 0 = unsupervised, y ignored
    num_outputs: int | None = None  # logits of f; default: num_classes when γ > 0, else 1 (the authors' code)
    activation: str = "smooth_leaky_relu"  # "leaky_relu" = the paper's / code's network
    image_network: str = "wrn"  # images: the paper's WideResNet-10-2 (SmallWRN); "mlp": the flattened-pixel MLP
    widen: int = 2
    bottleneck: float | None = None
    bottleneck_form: str = "expand"  # see ebm_ood.nn.wrn
    val_projections: int = 8  # projections per validation sample (fixed seed) for model selection
    data_noise_std: float = 0.0  # std of Gaussian noise on training and validation inputs (paper: none;
    #                              the authors' image config: 0.1)
    ssm_reduction: str = "per_sample"  # "last_axis": the SSM term / (C·H) on images, as the authors' code
    #                                    (so γ·CE weighs C·H times more); see ssm_reduction_divisor


SSM_FULL = {
    "train": dict(
        steps=FULL_STEPS,             # Elflein App. B: tabular 10,000 steps
        epochs=FULL_EPOCHS,           # Elflein App. B: images 50 epochs (steps = 50 · ⌈N / batch⌉)
        batch_size=FULL_BATCH_SIZE,   # configs/dataset/*.yaml: 32 CIFAR-10, 64 FMNIST, 512 tabular
        lr=PerKind(tabular=1e-3, image=1e-4),  # not stated: the authors' fc_ssm.yaml / img_ssm.yaml
        betas=(0.9, 0.999),  # Elflein App. B: Adam's defaults
        warmup=2500,         # Elflein App. B: "across all models"
        eval_every=250,      # ours: not stated
    ),
    "variance_reduction": True,  # Elflein App. B: SSM-VR
    "projection": "rademacher",  # Elflein App. B: "multivariate Rademacher distribution"
    "n_projections": 1,          # Elflein App. B: "a single projection vector"
    # Without input noise the SSM objective has no lower bound on images with constant pixels (4 of the
    # embedded digits' 64): on ID validation data it fell without end (seed 0: -13,566 after 50 epochs,
    # ×1.4 per 125 steps, energies ~4·10⁵), where with it it levels off (-551).
    "data_noise_std": PerKind(tabular=0.0, image=0.1),  # not stated: img_ssm.yaml (sigma 0.1); fc_ssm.yaml none
}

SSM_PRESETS = {
    "quick": {"train": dict(steps=60, batch_size=64, lr=1e-3, eval_every=20)},
    # Cost reduction: WRN-10-1 on images (as CD's), the SSM-VR step's double backward pass being its cost.
    "default": derived_default(SSM_FULL, widen=1),
    "full": SSM_FULL,
}


def ssm_config(preset: str = "default", kind: str = "image", dataset: str | None = None) -> SSMConfig:
    """The ``preset`` row of :data:`SSM_PRESETS` for ``kind``: ``quick`` (tests, seconds), ``default``
    (``full``'s schedule × ``presets.DEFAULT_FACTOR``, WRN-10-1 on images), ``full`` (Elflein App. B: SSM-VR with one Rademacher
    projection, warm-up 2,500, 10,000 steps on tabular data; on images the paper's WRN-10-2). The paper states no learning rate: ``full``
    takes the authors' configs' (``fc_ssm.yaml`` 1e-3 on tabular data, ``img_ssm.yaml`` 1e-4 on images;
    their AdamW and StepLR decay are not reproduced).
    The paper trains images for 50 epochs: ``full`` counts them at the authors' batch sizes
    (``presets.FULL_BATCH_SIZE``: 32 CIFAR-10, 64 FMNIST, 512 tabular; give ``dataset``), ``50 · ⌈N / batch⌉`` steps."""
    return preset_config(SSMConfig, SSM_PRESETS, preset, kind, dataset, train=TrainConfig)


class SSMDetector(Detector):
    """An EBM trained by sliced score matching; OOD score ``E(x)``, an energy. After ``fit``: ``net_``,
    ``history_``.

    Parameters
    ----------
    config : SSMConfig or None, training settings (:func:`~ebm_ood.methods.score_matching.ssm_config`).
    device : torch device or None (CPU).
    seed : int, fixes initialisation, batches and projections.
    **overrides : SSMConfig fields.

    Needs
    -----
    Nothing from a backbone: it trains its own network from scratch on raw inputs, vectors (N, D) or
    images (N, C, H, W) (``kind="tabular"`` / ``"image"`` presets); ``fit(x)`` on ID data.

    Example
    -------
    >>> import numpy as np, ebm_ood
    >>> rng = np.random.default_rng(0)
    >>> from ebm_ood.methods.score_matching import ssm_config
    >>> x = rng.normal(size=(200, 4)).astype("float32")
    >>> ebm_ood.SSMDetector(ssm_config("quick", kind="tabular")).fit(x).score(x[:3]).shape
    (3,)
    """

    name = "SSM"
    needs_labels = False

    def __init__(self, config: SSMConfig | None = None, device=None, seed: int = 0, **overrides):
        super().__init__(device)
        self.config = replace(config or SSMConfig(), **overrides)
        if self.config.projection not in PROJECTIONS:
            raise ValueError(f"projection: expected one of {PROJECTIONS}, got {self.config.projection!r}")
        check_positive(self.config.gamma, "gamma", allow_zero=True)
        check_positive(self.config.data_noise_std, "data_noise_std", allow_zero=True)
        ssm_reduction_divisor((1,), self.config.ssm_reduction)  # validates the name
        self.seed = seed

    def _fit(self, x, y):
        cfg = self.config
        y = labels_for_gamma("SSM", cfg.gamma, y)
        torch.manual_seed(self.seed)
        x_tr, y_tr, x_va, _ = self.split_validation(x, y, self.seed)
        out = cfg.num_outputs or (self.num_classes_ if y is not None else 1)
        self.net_ = score_matching_network(self.input_shape_, out, cfg.activation, cfg.image_network,
                                           cfg.widen, cfg.bottleneck, cfg.bottleneck_form).to(self.device)
        energy = JEMEnergy(self.net_)
        xt, yt, xv = to_tensor(x_tr, self.device), to_tensor(y_tr, self.device, torch.long), to_tensor(x_va, self.device)

        def step(xb, yb, _):
            if cfg.data_noise_std > 0:
                xb = xb + cfg.data_noise_std * torch.randn_like(xb)
            return supervised_ssm_loss(self.net_, xb, yb, cfg.gamma, cfg.ssm_reduction, cfg.n_projections,
                                       cfg.projection, cfg.variance_reduction)

        def validate():  # higher is better: minus the SSM-VR objective on ID validation data, fixed projections
            gen = torch.Generator(device=self.device).manual_seed(self.seed)
            xv_noisy = xv if cfg.data_noise_std == 0 else \
                xv + cfg.data_noise_std * torch.randn(xv.shape, generator=gen, device=xv.device, dtype=xv.dtype)
            return -batched_mean(lambda b: sliced_score_matching_loss(energy, b, cfg.val_projections, "rademacher", True,
                                                                      gen, create_graph=False, reduce=False),
                                 xv_noisy, batch_size=256)

        self.history_ = train({"net": self.net_}, step, xt, yt, replace(cfg.train, seed=self.seed), name=self.name,
                              validate=validate, identity=cfg)

    def _score(self, x):
        self.net_.eval()
        return self.map_batches(JEMEnergy(self.net_), x)
