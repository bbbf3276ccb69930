"""The normalizing-flow baseline (Elflein's ``NF``): radial flow on tabular data, Glow on images.

Training: maximum likelihood, ``loss = -mean log p(x)`` over mini-batches, Adam lr 1e-3, model selection
and early stopping on the mean ID **validation** log-likelihood (Elflein App. B: patience 10), through
the shared trainer. Glow trains on freshly dequantised ``x̃ = x + (u - ½)δ``, ``u ~ U(0, 1)``, and is
validated and scored at bin centres (``u = ½``) so scores are deterministic.

OOD score: ``-log p(x)`` (higher = more OOD). Images outside Glow's support (values beyond the training
range, e.g. un-normalised images) have density zero; :class:`~.glow_layers.LogitPreprocess` clamps them to
the edge of the support, where ``-log p`` is already very large, so every score stays finite.

Paper vs code. The paper gives lr 1e-3 and early stopping with patience 10; the authors' code uses AdamW
with the weight decay of its configs (0 at their last commit; ``img_glow.yaml`` had 5e-5 before) and
trains Glow on ``[0, 1]`` images with 256 levels. We use the shared trainer's Adam without weight decay
(``TrainConfig.weight_decay`` sets it) and dequantise at the data's own grid (digits: 17 levels), so
bits/dim are comparable to the ``log2 K`` of a uniform model.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ebm_ood.detector import Detector
from ebm_ood.methods.flows.glow import Glow, GlowConfig, max_levels
from ebm_ood.methods.flows.radial import RadialFlow
from ebm_ood.training import TrainConfig, batched_mean, to_tensor, train
from ebm_ood.presets import FULL_BATCH_SIZE, FULL_EPOCHS, FULL_STEPS, PerKind, derived_default, preset_config
from ebm_ood.plumbing.checks import check_array


@dataclass
class FlowConfig:
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=3000, batch_size=64, lr=1e-3, eval_every=100, patience=10, guard_keys=("nll",), max_abs=1e7))
    radial_layers: int = 20  # stacked radial transforms (tabular)
    glow: GlowConfig = field(default_factory=GlowConfig)  # images
    data_range: tuple[float, float] = (-1.0, 1.0)  # images: the range of the quantisation grid
    quantisation: float | None = None  # images: δ; None = the smallest gap between training values


_NLL_GUARD = dict(guard_keys=("nll",), max_abs=1e7)  # the divergence guard watches the NLL, not energies

FLOW_FULL = {
    "train": dict(
        steps=FULL_STEPS,             # Elflein App. B: tabular 10,000 steps
        epochs=FULL_EPOCHS,           # Elflein App. B: images 50 epochs (steps = 50 · ⌈N / batch⌉)
        batch_size=FULL_BATCH_SIZE,   # configs/dataset/*.yaml: 32 CIFAR-10, 64 FMNIST, 512 tabular
        lr=1e-3,             # Elflein App. B
        betas=(0.9, 0.999),  # Elflein App. B: Adam's defaults
        warmup=2500,         # Elflein App. B: "across all models"
        eval_every=500,      # ours: not stated
        patience=10,         # Elflein App. B: early stopping "with patience 10" (here: validations)
        **_NLL_GUARD,        # ours
    ),
    "radial_layers": 20,                            # Elflein App. C: "20 stacked radial transforms"
    "glow": dict(levels=3, steps=32, hidden=512),   # Elflein App. C: Glow L = 3, K = 32, C = 512
}

FLOW_PRESETS = {
    "quick": {
        "train": dict(steps=60, batch_size=64, lr=1e-3, warmup=0, eval_every=20, patience=None, **_NLL_GUARD),
        "radial_layers": 20, "glow": dict(levels=2, steps=2, hidden=16),
    },
    # Cost reduction: Glow with L = 2, K = 4 and 32 channels (GlowConfig's defaults) instead of 3 · 32 steps of
    # 512 channels.
    "default": derived_default(FLOW_FULL, glow={}),
    "full": FLOW_FULL,
}


def flow_config(preset: str = "default", kind: str = "image", dataset: str | None = None) -> FlowConfig:
    """The ``preset`` row of :data:`FLOW_PRESETS` for ``kind``: ``quick`` (tests, seconds), ``default``
    (``full``'s schedule × ``presets.DEFAULT_FACTOR``, Glow L = 2, K = 4, 32 channels), ``full`` (Elflein App. B/C: 20 radial layers; Glow L = 3,
    K = 32, 512 channels; lr 1e-3, warm-up 2,500, early stopping with patience 10 — here 10 validations,
    one every 500 steps; 10,000 steps on tabular data).
    The paper trains images for 50 epochs: ``full`` counts them at the authors' batch sizes
    (``presets.FULL_BATCH_SIZE``: 32 CIFAR-10, 64 FMNIST, 512 tabular; give ``dataset``), ``50 · ⌈N / batch⌉`` steps. (early stopping may end it sooner)"""
    return preset_config(FlowConfig, FLOW_PRESETS, preset, kind, dataset, train=TrainConfig, glow=GlowConfig)


def check_spread(x: np.ndarray) -> None:
    """Glow's first ActNorm scales each channel of the squeezed images (channel ``c``, pixel offset
    ``(i mod 2, j mod 2)``) by ``1/std`` over the batch; training images ``x`` (N, C, H, W) with zero
    variance in such a channel (e.g. constant images) cannot be fitted: a ValueError saying so."""
    for c in range(x.shape[1]):
        for di in range(min(2, x.shape[2])):
            for dj in range(min(2, x.shape[3])):
                part = x[:, c, di::2, dj::2]
                if part.size and float(part.max()) == float(part.min()):
                    where = "every training image is the same constant" if float(x.max()) == float(x.min()) else \
                        f"channel {c}, pixels (i, j) with i % 2 == {di}, j % 2 == {dj}, is constant in every image"
                    raise ValueError(f"x: {where} ({float(part.min()):g}): zero variance, so NF (Glow) cannot be "
                                     "fitted (its ActNorm initialisation scales each channel by 1/std); this is not "
                                     "a learning-rate problem: train on images that vary")


def infer_quantisation(x: np.ndarray, lo: float, hi: float, max_levels_: int = 4096) -> float:
    """δ of the grid the values of ``x`` lie on: the smallest gap between distinct values when there are
    at most ``max_levels_`` of them (digits: 1/8, 17 levels), else ``(hi - lo)/255`` (8-bit images)."""
    values = np.unique(x)
    if 1 < len(values) <= max_levels_:
        return float(np.diff(values).min())
    return (hi - lo) / 255.0


class NormalizingFlowDetector(Detector):
    """Normalizing-flow baseline: score ``-log p(x)``, an exact negative log-likelihood (an energy whose
    ``log Z`` is 0). After ``fit``: ``flow_`` (a :class:`RadialFlow` or :class:`Glow`), ``history_``,
    ``val_log_likelihood_`` (mean ID validation ``log p``), ``levels_`` (Glow levels actually used:
    capped so ``H`` and ``W`` stay divisible by ``2^L``).

    Parameters
    ----------
    config : FlowConfig or None, training settings (:func:`~ebm_ood.methods.flows.detector.flow_config`):
        a radial flow on vectors, Glow on images.
    device : torch device or None (CPU).
    seed : int, fixes initialisation and batches.
    **overrides : FlowConfig fields.

    Needs
    -----
    Nothing from a backbone: it trains its own network from scratch on raw inputs, vectors (N, D) or
    images (N, C, H, W) (``kind="tabular"`` / ``"image"`` presets); ``fit(x)`` on ID data.

    Example
    -------
    >>> import numpy as np, ebm_ood
    >>> rng = np.random.default_rng(0)
    >>> from ebm_ood.methods.flows.detector import flow_config
    >>> x = rng.normal(size=(200, 4)).astype("float32")
    >>> ebm_ood.NormalizingFlowDetector(flow_config("quick", kind="tabular")).fit(x).score(x[:3]).shape
    (3,)
    """

    name = "NF"

    def __init__(self, config: FlowConfig | None = None, device=None, seed: int = 0, **overrides):
        super().__init__(device)
        self.config = replace(config or FlowConfig(), **overrides)
        self.seed = seed

    # ------------------------------------------------------------------------------------------ fit
    def _build(self, x: np.ndarray) -> torch.nn.Module:
        if x.ndim == 2:
            return RadialFlow(x.shape[1], self.config.radial_layers)
        if x.ndim != 4:
            raise ValueError(f"x: NF expects tabular (N, D) or image (N, C, H, W) data, got shape {x.shape}")
        lo, hi = self.config.data_range
        if x.min() < lo - 1e-6 or x.max() > hi + 1e-6:
            raise ValueError(f"x: Glow training images must lie in data_range={self.config.data_range}, "
                             f"got values in [{x.min():.3g}, {x.max():.3g}]")
        check_spread(x)
        self.delta_ = self.config.quantisation or infer_quantisation(x, lo, hi)
        cfg = self.config.glow
        self.levels_ = min(cfg.levels, max_levels(x.shape[2], x.shape[3]))
        return Glow(x.shape[1:], replace(cfg, levels=self.levels_), lo=lo, hi=hi, delta=self.delta_)

    def _fit(self, x, y):
        torch.manual_seed(self.seed)
        x_tr, _, x_va, _ = self.split_validation(x, None, self.seed)
        flow = self._build(x).to(self.device)
        self.flow_ = flow
        xt, xv = to_tensor(x_tr, self.device), to_tensor(x_va, self.device)
        is_glow = isinstance(flow, Glow)
        if is_glow:  # ActNorm's data-dependent initialisation on one large batch
            flow.train()
            with torch.no_grad():
                idx = torch.randperm(xt.shape[0])[:512]
                flow(xt[idx])

        def step(xb, _, __):
            log_p = flow.log_prob(xb, torch.rand_like(xb)) if is_glow else flow.log_prob(xb)
            loss = -log_p.mean()
            return loss, {"nll": loss.item()}

        def validate() -> float:
            flow.eval()
            with torch.no_grad():
                return batched_mean(flow.log_prob, xv, batch_size=self.batch_size)

        self.history_ = train({"flow": flow}, step, xt, None, replace(self.config.train, seed=self.seed),
                              name="NF", validate=validate, identity=self.config)
        self.val_log_likelihood_ = self.history_.best_value

    # ------------------------------------------------------------------------------------------ score
    def _checked(self, x) -> np.ndarray:
        self.check_fitted()
        return check_array(x, "x", ndim=len(self.input_shape_) + 1, shape=self.input_shape_)

    def log_prob(self, x) -> np.ndarray:
        """``log p(x)`` (N,) under the trained flow (Glow: at bin centres) for ``x`` (N, *input_shape)."""
        return self._log_prob(self._checked(x))

    def _log_prob(self, x: np.ndarray) -> np.ndarray:
        self.flow_.eval()
        return self.map_batches(self.flow_.log_prob, x)

    def bits_per_dim(self, x) -> np.ndarray:
        """Glow only: ``-(log p(x) + D log δ)/(D log 2)`` (N,)."""
        x = self._checked(x)
        if not isinstance(self.flow_, Glow):
            raise ValueError("bits_per_dim: defined for quantised images (Glow), not for tabular data")
        self.flow_.eval()
        return self.map_batches(self.flow_.bits_per_dim, x)

    def _score(self, x):
        scores = -self._log_prob(x)
        # an input whose density underflows gets the largest finite score instead of +inf
        return np.nan_to_num(scores, nan=np.finfo(np.float64).max, posinf=np.finfo(np.float64).max)
