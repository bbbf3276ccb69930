"""Elflein Experiment 6, Figure 5: what do the EBMs find likely? Start from ID test images and descend the
energy, ``x ← x - α ∇ₓE(x) + σ ε`` (:func:`~ebm_ood.sampling.sgld`, decoupled form, σ = 0 by default:
plain gradient descent on E, clamped to the pixel range [-1, 1]), under the unsupervised (γ = 0) and the
supervised (γ = ``--gamma``) EBM of one method.

The paper: under the unsupervised EBM the images lose their class (semantic content becomes
indistinguishable); under the supervised EBM they keep it. We measure that with the benchmark's shared
CE classifier of the same (dataset, seed): the fraction of descended images still classified as their
starting image's label ("class kept"), next to the energy drop and the mean L2 distance moved.

Run: ``ebm-ood experiment samples [--methods CD] [--steps-sgld 100] [--quick]`` (image datasets).
Writes ``samples.md``, ``.json`` (the image arrays) and ``.png`` (rows: data, unsupervised, supervised).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ebm_ood.commands.benchmark.registry import RunContext, shared_classifier
from ebm_ood.commands.benchmark.runner import fit_method
from ebm_ood.energy import energy_from_logits
from ebm_ood.commands.experiments.common import Settings, add_common_arguments, ebm_spec, load_dataset, settings_from_args
from ebm_ood.commands.experiments.improvement import fmt
from ebm_ood.commands.experiments.output import finish
from ebm_ood.commands.flags import log_stderr
from ebm_ood.sampling import sgld
from ebm_ood.sampling.sgld import DEFAULT_STEP_SIZE
from ebm_ood.tables import md_row

NAME = "samples"
SUMMARY = "Elflein Exp. 6, Fig. 5: what the EBMs find likely (energy descent from ID images)"


@dataclass
class SamplesConfig:
    settings: Settings = field(default_factory=lambda: Settings(methods=("CD",)))
    gamma: float = 1.0  # the supervised model's CE weight
    n_images: int = 16  # ID test images to start from (spread over the classes)
    sgld_steps: int = 100  # descent steps (Elflein's CD: 100 SGLD steps)
    step_size: float = DEFAULT_STEP_SIZE  # α (Elflein's CD: 1)
    noise_std: float = 0.0  # σ (0: gradient descent; Elflein's CD sampler: 0.01)


def starting_images(y: np.ndarray, n: int) -> np.ndarray:
    """Indices of ``n`` samples taken round-robin over the classes (first occurrences), (n,)."""
    by_class = [np.flatnonzero(y == c) for c in np.unique(y)]
    idx = [ix[i] for i in range(max(len(ix) for ix in by_class)) for ix in by_class if i < len(ix)]
    return np.asarray(idx[:n])


def descend(detector, x0: np.ndarray, cfg: SamplesConfig) -> np.ndarray:
    """Run the energy descent from ``x0`` (N, C, H, W) under ``E(x) = -logsumexp f(x)`` of the detector's
    logit network ``net_``; returns x_T (N, C, H, W) float32."""
    net = detector.net_
    energy = lambda x: energy_from_logits(net(x))  # (N,)
    x = torch.as_tensor(x0, dtype=torch.float32, device=detector.device)
    out = sgld(energy, x, n_steps=cfg.sgld_steps, step_size=cfg.step_size, noise_std=cfg.noise_std,
               form="decoupled", clamp=(-1.0, 1.0), module=net)
    return out.cpu().numpy()


def run_experiment(cfg: SamplesConfig, log=None) -> dict:
    """Returns ``{"images": {"data": (N,C,H,W), method: {model: (N,C,H,W)}} (first seed), "summary":
    {method: {model: {"class_kept", "energy_drop", "distance"}}} (mean over seeds), "labels": …}``."""
    s = cfg.settings
    d = load_dataset(s.dataset)
    idx = starting_images(d.y_test, cfg.n_images)
    x0, y0 = d.x_test[idx], d.y_test[idx]
    images, rows = {"data": x0.tolist()}, {}
    for seed in s.seeds:
        ctx = RunContext(dataset=d, seed=seed, preset=s.preset, device=s.device)
        clf = shared_classifier(ctx)
        kept0 = float(np.mean(clf.logits(x0).argmax(1) == y0))
        for m in s.methods:
            for name, g in (("unsupervised", 0.0), ("supervised", cfg.gamma)):
                det = fit_method(ebm_spec(f"{m} {name}", m, s, gamma=g), ctx)
                xt = descend(det, x0, cfg)
                if seed == s.seeds[0]:
                    images.setdefault(m, {})[name] = xt.tolist()
                rows.setdefault(m, {}).setdefault(name, []).append({
                    "class_kept": float(np.mean(clf.logits(xt).argmax(1) == y0)), "class_kept_start": kept0,
                    "energy_drop": float(np.mean(det.score(x0) - det.score(xt))),
                    "distance": float(np.linalg.norm((xt - x0).reshape(len(x0), -1), axis=1).mean())})
                (log or log_stderr)(f"[{s.dataset} seed={seed}] {m} {name}: fitted and descended")
    summary = {m: {name: {q: float(np.mean([r[q] for r in runs])) for q in runs[0]} for name, runs in per.items()}
               for m, per in rows.items()}
    return {**s.header(NAME),
            "gamma": cfg.gamma, "sgld_steps": cfg.sgld_steps, "step_size": cfg.step_size, "noise_std": cfg.noise_std,
            "labels": y0.tolist(), "images": images, "summary": summary}


def render(data: dict) -> str:
    lines = [f"# Elflein Figure 5 — descending the energy from ID test images on {data['dataset']} "
             f"(preset {data['preset']}, seeds {','.join(map(str, data['seeds']))})", "",
             f"{data['sgld_steps']} steps, α = {data['step_size']:g}, σ = {data['noise_std']:g}, clamped to [-1, 1]. "
             "Class kept: the shared CE classifier still predicts the starting label (before descent: "
             "class_kept_start).", "",
             "| method | model | class kept (%) | at start (%) | energy drop | mean L2 moved |", "|---|---|---|---|---|---|"]
    for m, per in data["summary"].items():
        for name, r in per.items():
            lines.append(md_row([m, name, fmt(100 * r['class_kept'], 1), fmt(100 * r['class_kept_start'], 1),
                                 fmt(r['energy_drop']), fmt(r['distance'])]))
    return "\n".join(lines) + "\n"


def draw(data: dict):
    """Image grid: row 0 the starting ID images, then one row per (method, model)."""
    def make(plt):
        rows = [("data", np.asarray(data["images"]["data"]))]
        for m, per in data["images"].items():
            if m != "data":
                rows += [(f"{m} {name}", np.asarray(v)) for name, v in per.items()]
        n = rows[0][1].shape[0]
        fig, axes = plt.subplots(len(rows), n, figsize=(0.7 * n + 1.2, 0.8 * len(rows)), squeeze=False)
        for r, (title, imgs) in enumerate(rows):
            for c in range(n):
                ax = axes[r][c]
                img = imgs[c].transpose(1, 2, 0)
                ax.imshow(img[..., 0] if img.shape[2] == 1 else (img + 1) / 2, cmap="gray", vmin=-1, vmax=1)
                ax.set_xticks([]), ax.set_yticks([])
            axes[r][0].set_ylabel(title, rotation=0, ha="right", fontsize=7)
        fig.tight_layout()
        return fig
    return make


def add_arguments(p) -> None:
    add_common_arguments(p, NAME, methods=("CD",), gamma=True)
    p.add_argument("--n-images", type=int, default=16, help="starting ID test images (default 16)")
    p.add_argument("--steps-sgld", type=int, default=100, help="descent steps (default 100)")
    p.add_argument("--step-size", type=float, default=1.0, help="descent step α (default 1)")
    p.add_argument("--noise", type=float, default=0.0, help="noise σ per step (default 0: gradient descent)")


def run(args) -> int:
    if (not 0 < args.gamma < math.inf or args.n_images < 1 or args.steps_sgld < 0
            or not 0 <= args.step_size < math.inf or not 0 <= args.noise < math.inf):
        raise SystemExit("error: expected a finite --gamma > 0, --n-images >= 1 and non-negative --steps-sgld and "
                         "finite non-negative --step-size, --noise")
    cfg = SamplesConfig(settings_from_args(args, image_only=True), args.gamma, args.n_images, args.steps_sgld,
                        args.step_size, args.noise)
    data = run_experiment(cfg)
    return finish(args.out, NAME, render(data), data, draw(data))
