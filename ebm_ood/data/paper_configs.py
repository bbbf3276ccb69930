"""The papers' hyperparameters per dataset, for ``--full`` runs on the prepared real datasets.

Plain frozen dataclasses; ``paper_config(dataset, method)`` returns one :class:`TrainConfig`
(change fields with ``dataclasses.replace``). Values come from
the papers' texts (Elflein et al. 2021, App. B; Lafon et al. 2023, App. B) as condensed in
``shared/papers.md``; where the official code differs, the field ``code_differs`` says how. ``None`` means the
paper does not state the value (we do not guess it); the caller keeps its own default then.
"""
from __future__ import annotations

from dataclasses import dataclass, field

TABULAR_SETS = ("segment", "sensorless")
IMAGE_SETS = ("fmnist", "cifar10")
HEAT_SETS = ("cifar10", "cifar100")


@dataclass(frozen=True)
class TrainConfig:
    method: str
    lr: float | None  # None: not stated (SSM)
    steps: int | None = None  # optimisation steps (tabular: 10,000)
    epochs: int | None = None  # or epochs (images: 50; HEAT: 20)
    batch_size: int | None = None  # not stated in either paper
    warmup_steps: int = 2500  # linear lr warm-up, all Elflein models
    adam_betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    architecture: str = ""
    extra: dict = field(default_factory=dict)  # method-specific settings (names as in papers.md)
    code_differs: str = ""


def _schedule(dataset: str) -> dict:
    """Elflein App. B: tabular sets 10,000 steps, image sets 50 epochs."""
    if dataset in TABULAR_SETS:
        return {"steps": 10_000, "architecture": "MLP, 5 layers, width 100"}
    if dataset in IMAGE_SETS:
        return {"epochs": 50, "architecture": "WideResNet-10-2 (LeakyReLU 0.2, no normalisation)"}
    raise ValueError(f"dataset: expected one of {', '.join(TABULAR_SETS + IMAGE_SETS)}, got {dataset!r}")


def elflein_config(dataset: str, method: str) -> TrainConfig:
    """Elflein et al. 2021, App. B, for ``method`` in ce, cd, ssm, vera, flow."""
    s = _schedule(dataset)
    image = dataset in IMAGE_SETS
    if method == "ce":
        return TrainConfig("ce", lr=1e-4 if image else 1e-3, weight_decay=5e-4,
                           extra={"early_stopping": "validation accuracy"}, **s)
    if method == "cd":
        return TrainConfig("cd", lr=1e-3, extra={
            "sgld_steps": 100, "sgld_step_size": 1.0, "buffer_size": 10_000, "reinit_prob": 0.05,
            "input_noise_variance": 0.1 if image else 0.0}, **s,
            code_differs="SGLD noise sigma 0.01 decoupled from the step; L2 energy penalty weight 1; "
                         "buffer initialised U(-1, 1); supervised runs use 20 class-conditional SGLD steps")
    if method == "ssm":
        return TrainConfig("ssm", lr=None, extra={"projection": "rademacher", "n_projections": 1,
                                                  "variance_reduced": True}, **s)
    if method == "vera":
        return TrainConfig("vera", lr=3e-4, extra={
            "generator_lr": 6e-4, "generator_betas": (0.0, 0.9), "entropy_weight": 1e-4, "eta_init": 0.1,
            "eta_clamp": (0.01, 0.3), "n_importance_samples": 20, "grad_penalty": 0.1,
            "latent_dim": 128 if image else 16,
            "note": "App. B states lr 3e-4 (EBM) and 6e-4 (generator); shared/papers.md records 3e-5 and 6e-5"},
            **s)
    if method == "flow":
        arch = "Glow L=3, K=32, C=512" if image else "20 stacked radial flows"
        return TrainConfig("flow", lr=1e-3, extra={"early_stopping_patience": 10},
                           **dict(s, architecture=arch))
    raise ValueError(f"method: expected one of ce, cd, ssm, vera, flow, got {method!r}")


def heat_config(dataset: str) -> TrainConfig:
    """Lafon et al. 2023, App. B: the residual EBM on ResNet-34 penultimate features (CIFAR-10 and -100)."""
    if dataset not in HEAT_SETS:
        raise ValueError(f"dataset: expected one of {', '.join(HEAT_SETS)} for HEAT, got {dataset!r}")
    return TrainConfig(
        "heat", lr=5e-6, epochs=20, warmup_steps=0, architecture="MLP, 6 layers, 512 -> 1024 -> ... -> 1",
        extra={"backbone": "resnet34", "sgld_steps": 20, "step_size": (1e-4, 1e-5), "noise": (5e-3, 5e-4),
               "decay": "linear", "input_noise_std": 1e-4, "l2_coef": 10.0, "gmm_temperature": 1e3, "beta": 0.0},
        code_differs="step and noise decayed quadratically within each chain; negatives are chain ends and "
                     "starts; per-prior settings differ (steps 1-200, lambda 0.1-40)")


def paper_config(dataset: str, method: str) -> TrainConfig:
    """The paper's configuration for ``method`` on ``dataset`` (HEAT for ``method == "heat"``)."""
    return heat_config(dataset) if method == "heat" else elflein_config(dataset, method)
