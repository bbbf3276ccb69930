"""Elflein Experiment 5, Figure 4: do EBMs key on low-level features? Histograms of the log density
``log p̃(x) = -E(x)`` of the smoothness sets ``smooth-k`` (U(-1, 1) noise average-pooled with window k
and upsampled back; larger k = smoother) against the ID test set, under three EBMs of one method:

* unsupervised (γ = 0) — paper, Fig. 4a: smoother noise gets *higher* likelihood;
* supervised (γ = ``--gamma``) — Fig. 4b: likelihood is not affected by smoothness;
* unsupervised with 1×1 bottlenecks (factor ``--factor``) — Fig. 4c/d: the ID test set gets higher
  likelihood *relative to* the noise sets than without bottleneck.

The table gives, per model, the mean log density of each set relative to the ID test set
(``mean E(test) - mean E(set)``; < 0: less likely than ID data) and the AUROC of separating ID test from
each set (higher: better detected).

Every image dataset has smoothness sets: ``digits`` (8×8) pools 1, 2, 4; the prepared 28×28 and 32×32
datasets the paper's pools 2, 3, 4 and 16 (1,000 images each; :mod:`ebm_ood.data.prepared`). At 28×28
(FMNIST as distributed) pool 16 leaves one value per image, a constant set; ``data_scripts/prepare.py
--grey-size 32`` prepares the MNIST family at the authors' 32×32.

Run: ``ebm-ood experiment smoothness [--dataset digits|fmnist|cifar10] [--methods CD] [--quick]``.
Writes ``smoothness.md``, ``.json`` and ``.png``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ebm_ood.commands.benchmark.registry import RunContext
from ebm_ood.commands.benchmark.runner import fit_method
from ebm_ood.data.embedded import SMOOTHNESS
from ebm_ood.commands.experiments.bottleneck import method_overrides
from ebm_ood.commands.experiments.common import (Settings, add_common_arguments, ebm_spec, load_dataset, settings_from_args, supports)
from ebm_ood.commands.experiments.improvement import fmt
from ebm_ood.commands.experiments.output import finish
from ebm_ood.commands.flags import log_stderr
from ebm_ood.metrics import auroc
from ebm_ood.tables import md_row

NAME = "smoothness"
SUMMARY = "Elflein Exp. 5, Fig. 4: log densities of ever smoother noise images against ID images"


@dataclass
class SmoothnessConfig:
    settings: Settings = field(default_factory=lambda: Settings(methods=("CD",)))
    gamma: float = 1.0  # the supervised model's CE weight
    factor: float = 0.2  # the bottlenecked model's factor


def models(method: str, cfg: SmoothnessConfig) -> dict[str, dict]:
    """``{model name: config overrides}``: unsupervised, supervised, bottleneck (if the method has one)."""
    base = method_overrides(method, None) if supports(method, "bottleneck") else {}
    out = {"unsupervised": {**base, "gamma": 0.0}, "supervised": {**base, "gamma": cfg.gamma}}
    if supports(method, "bottleneck"):
        out[f"bottleneck {cfg.factor:g}"] = {**method_overrides(method, cfg.factor), "gamma": 0.0}
    return out


def run_experiment(cfg: SmoothnessConfig, log=None) -> dict:
    """Returns ``{"energies": {method: {model: {set: [E per sample]}}} (first seed), "summary": {method:
    {model: {set: {"rel_log_density", "auroc"}}}} (mean over seeds)}``."""
    s = cfg.settings
    d = load_dataset(s.dataset)
    sets = d.ood_names(SMOOTHNESS)
    if not sets:
        raise ValueError(f"dataset {s.dataset!r} has no smoothness sets (group {SMOOTHNESS!r})")
    energies, rows = {}, {}
    for seed in s.seeds:
        ctx = RunContext(dataset=d, seed=seed, preset=s.preset, device=s.device)
        for m in s.methods:
            for name, over in models(m, cfg).items():
                det = fit_method(ebm_spec(f"{m} {name}", m, s, **over), ctx)
                e = {"ID test": det.score(d.x_test), **{k: det.score(d.ood[k].x) for k in sets}}
                if seed == s.seeds[0]:
                    energies.setdefault(m, {})[name] = {k: v.tolist() for k, v in e.items()}
                row = {k: {"rel_log_density": float(e["ID test"].mean() - e[k].mean()), "auroc": auroc(e["ID test"], e[k])}
                       for k in sets}
                rows.setdefault(m, {}).setdefault(name, []).append(row)
                (log or log_stderr)(f"[{s.dataset} seed={seed}] {m} {name}: fitted")
    summary = {m: {name: {k: {q: float(np.mean([r[k][q] for r in runs])) for q in ("rel_log_density", "auroc")}
                          for k in sets} for name, runs in per.items()} for m, per in rows.items()}
    return {**s.header(NAME),
            "gamma": cfg.gamma, "factor": cfg.factor, "sets": sets, "energies": energies, "summary": summary}


def render(data: dict) -> str:
    sets = data["sets"]
    head = ["method", "model"] + [f"{k}: Δ log p̃ / AUROC" for k in sets]
    lines = [f"# Elflein Figure 4 — smoothness sets vs ID test on {data['dataset']} (preset {data['preset']}, "
             f"seeds {','.join(map(str, data['seeds']))})", "",
             "Δ log p̃ = mean E(ID test) - mean E(set) (< 0: the set is less likely than ID data); AUROC (%) of "
             "ID test vs the set. Larger k = smoother noise.", "",
             md_row(head), "|" + "---|" * len(head)]
    for m, per in data["summary"].items():
        for name, row in per.items():
            cells = [f"{fmt(row[k]['rel_log_density'])} / {fmt(100 * row[k]['auroc'], 1)}" for k in sets]
            lines.append(md_row([m, name] + cells))
    return "\n".join(lines) + "\n"


def draw(data: dict):
    """Rows: methods; columns: models; each panel: histograms of log p̃ = -E per set (first seed)."""
    def make(plt):
        methods = list(data["energies"])
        ncol = max(len(v) for v in data["energies"].values())
        fig, axes = plt.subplots(len(methods), ncol, figsize=(4 * ncol, 3 * len(methods)), squeeze=False)
        for r, m in enumerate(methods):
            for c, (name, per) in enumerate(data["energies"][m].items()):
                ax = axes[r][c]
                bins = np.histogram_bin_edges(-np.concatenate([np.asarray(e) for e in per.values()]), 40)
                for k, e in per.items():
                    ax.hist(-np.asarray(e), bins=bins, density=True, alpha=0.45, label=k)
                ax.set_title(f"{m} {name}")
                ax.set_xlabel("log p̃(x) = −E(x)")
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        return fig
    return make


def add_arguments(p) -> None:
    add_common_arguments(p, NAME, methods=("CD",), gamma=True)
    p.add_argument("--factor", type=float, default=0.2, help="bottleneck factor (default 0.2)")


def run(args) -> int:
    if not 0 < args.gamma < math.inf or not 0 < args.factor <= 1:
        raise SystemExit(f"error: expected a finite --gamma > 0 and --factor in (0, 1], got {args.gamma}, {args.factor}")
    data = run_experiment(SmoothnessConfig(settings_from_args(args, image_only=True), args.gamma, args.factor))
    return finish(args.out, NAME, render(data), data, draw(data))
