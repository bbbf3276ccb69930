"""Baseline CE: a classifier trained with cross-entropy; its OOD score is an energy read from its logits.

Scores (higher = more OOD):
* ``"energy"`` (default; Elflein's CE baseline, Liu et al. 2020): ``E(x) = -T·logsumexp(f(x)/T)`` (Elflein Eq. 3)
* ``"msp"``: ``-max_y p(y|x)`` (Hendrycks & Gimpel 2017)
* ``"maxlogit"``: ``-max_y f(x)[y]``

Training (Elflein App. B): Adam, lr 1e-3 (tabular) / 1e-4 (images, ``full`` preset), weight decay 5e-4,
model selection by ID validation accuracy (never by OOD data). The ``default`` preset uses lr 1e-3 on
images too, so the small digits network converges within the benchmark's budget.

Speed, not method: on images the network this module builds trains in ``torch.channels_last`` memory
format (``CEConfig.channels_last``; the convolutions run about 0.8x the time on CPU) and is put back in the
default format when training ends, so scoring, feature extraction and saved files see an ordinary network.
The two formats round the convolutions' sums differently, so the trained weights differ in their bits, not
in their accuracy. A network you pass (``net=``) is trained in the format it has.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch.nn import functional as F

from ebm_ood.detector import Detector
from ebm_ood.energy import energy_from_logits, max_softmax
from ebm_ood.nn import build_network
from ebm_ood.training import TrainConfig, batched_mean, to_tensor, train
from ebm_ood.presets import FULL_BATCH_SIZE, FULL_EPOCHS, FULL_STEPS, PerKind, preset_config
from ebm_ood.plumbing.checks import check_array

SCORES = ("energy", "msp", "maxlogit")


@dataclass
class CEConfig:
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=1500, batch_size=64, lr=1e-3, weight_decay=5e-4, eval_every=100, patience=5))
    widen: int = 2  # WRN widening factor (images); the tabular MLP has width 100
    bottleneck: float | None = None  # 1x1-conv bottleneck factor (images)
    score: str = "energy"
    temperature: float = 1.0
    channels_last: bool = True  # images: train the network we build in channels-last memory format (speed only)


CE_PRESETS = {
    "quick": {"train": dict(steps=60, batch_size=64, lr=1e-3, weight_decay=5e-4, eval_every=20), "widen": 1},
    "default": {},  # the CEConfig defaults
    "full": {
        "train": dict(
            steps=FULL_STEPS,             # Elflein App. B: tabular 10,000 steps
            epochs=FULL_EPOCHS,           # Elflein App. B: images 50 epochs (steps = 50 · ⌈N / batch⌉)
            batch_size=FULL_BATCH_SIZE,   # configs/dataset/*.yaml: 32 CIFAR-10, 64 FMNIST, 512 tabular
            lr=PerKind(tabular=1e-3, image=1e-4),         # Elflein App. B
            betas=(0.9, 0.999),                           # Elflein App. B: Adam's defaults
            weight_decay=5e-4,                            # Elflein App. B
            warmup=2500,                                  # Elflein App. B: "across all models"
            eval_every=500,                               # ours: not stated
            patience=10,  # Elflein App. B: early stopping on accuracy; 10: fc_ce_baseline.yaml
        ),
        "widen": 2,  # Elflein App. C: WideResNet-10-2
    },
}


def ce_config(preset: str = "default", kind: str = "image", dataset: str | None = None) -> CEConfig:
    """The ``preset`` row of :data:`CE_PRESETS` for ``kind``: ``quick`` (tests), ``default`` (benchmark
    budget), ``full`` (Elflein App. B: lr 1e-3 tabular / 1e-4 images, weight decay 5e-4, the 2,500-step
    warm-up App. B states "across all models", early stopping on ID validation accuracy; tabular 10,000
    steps). The paper trains images for 50 epochs: ``full`` counts them at the authors' batch sizes
    (``presets.FULL_BATCH_SIZE``: 32 CIFAR-10, 64 FMNIST, 512 tabular; give ``dataset``), ``50 · ⌈N / batch⌉`` steps.
    The early-stopping patience (10 validations) is the authors' code's."""
    return preset_config(CEConfig, CE_PRESETS, preset, kind, dataset, train=TrainConfig)


VALIDATION_BATCH = 64  # samples per forward pass of the validation: the activations stay in cache (`bench units`)


@torch.no_grad()
def classification_accuracy(net, x: torch.Tensor, y: torch.Tensor, batch_size: int = VALIDATION_BATCH) -> float:
    """Fraction of ``x`` (N, *shape) whose arg-max logit equals ``y`` (N,); ``net`` is put in eval mode."""
    net.eval()
    return batched_mean(lambda xb, yb: net(xb).argmax(1) == yb, x, y, batch_size=batch_size)


class CEClassifier(Detector):
    """Cross-entropy classifier detector: trains a classifier, then scores it with ``config.score``:
    ``"energy"`` (default, an energy: ``-T·logsumexp(f(x)/T)``), ``"msp"`` or ``"maxlogit"`` (not
    energies; module docstring). After ``fit``: ``net_`` (the trained network), ``history_``.

    Parameters
    ----------
    config : CEConfig or None, training and scoring settings (:func:`~ebm_ood.methods.ce.ce_config`).
    device : torch device or None (CPU).
    seed : int, fixes initialisation, batches and the validation split.
    net : nn.Module or None, your classifier to train (x -> (N, C) logits) instead of the paper's network.
    **overrides : CEConfig fields, e.g. ``score="msp"``.

    Needs
    -----
    Nothing from a backbone: it trains its own network from scratch on raw inputs, vectors (N, D) or
    images (N, C, H, W) (``kind="tabular"`` / ``"image"`` presets); ``fit(x)`` on ID data. Class labels y are required.

    Example
    -------
    >>> import numpy as np, ebm_ood
    >>> rng = np.random.default_rng(0)
    >>> from ebm_ood.methods.ce import ce_config
    >>> x, y = rng.normal(size=(200, 4)).astype("float32"), np.arange(200) % 2
    >>> ebm_ood.CEClassifier(ce_config("quick", kind="tabular")).fit(x, y).score(x[:3]).shape
    (3,)
    """

    name = "CE"
    needs_labels = True

    def __init__(self, config: CEConfig | None = None, device=None, seed: int = 0, net=None, **overrides):
        super().__init__(device)
        self.config = replace(config or CEConfig(), **overrides)
        if self.config.score not in SCORES:
            raise ValueError(f"score: expected one of {SCORES}, got {self.config.score!r}")
        self.seed, self.net = seed, net

    def _fit(self, x, y):
        torch.manual_seed(self.seed)
        x_tr, y_tr, x_va, y_va = self.split_validation(x, y, self.seed)
        if y_va is None:
            raise ValueError("validation: CE needs labelled validation data (x_val, y_val)")
        net = self.net or build_network(self.input_shape_, self.num_classes_, widen=self.config.widen, bottleneck=self.config.bottleneck)
        self.net_ = net.to(self.device)
        channels_last = self.net is None and self.config.channels_last and len(self.input_shape_) == 3
        xt, yt = to_tensor(x_tr, self.device), to_tensor(y_tr, self.device, torch.long)
        xv, yv = to_tensor(x_va, self.device), to_tensor(y_va, self.device, torch.long)

        def step(xb, yb, _):
            loss = F.cross_entropy(self.net_(xb), yb)
            return loss, {"ce": loss.item()}

        cfg = replace(self.config.train, seed=self.seed)
        if channels_last:
            self.net_.to(memory_format=torch.channels_last)     # 4-D weights; activations follow them
        try:
            self.history_ = train({"net": self.net_}, step, xt, yt, cfg, name="CE",
                                  validate=lambda: classification_accuracy(self.net_, xv, yv), identity=self.config)
        finally:
            if channels_last:
                self.net_.to(memory_format=torch.contiguous_format)
        self.val_accuracy_ = self.history_.best_value

    def logits(self, x) -> np.ndarray:
        """(N, C) float32 logits of the trained classifier for ``x`` (N, *input_shape)."""
        self.check_fitted()
        x = check_array(x, "x", ndim=len(self.input_shape_) + 1, shape=self.input_shape_)
        self.net_.eval()
        with torch.no_grad():
            return np.concatenate([self.net_(b).cpu().numpy() for b in self.batches(x)])

    def _score(self, x):
        self.net_.eval()
        kind, T = self.config.score, self.config.temperature
        if kind == "energy":
            fn = lambda b: energy_from_logits(self.net_(b), T)
        elif kind == "msp":
            fn = lambda b: -max_softmax(self.net_(b))
        else:
            fn = lambda b: -self.net_(b).amax(dim=1)
        return self.map_batches(fn, x)

