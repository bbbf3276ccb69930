"""Elflein Figure 2: the unnormalised density ``p̃(x) = exp(-E(x))`` of ID test inputs scaled by α
(growing L2 norm ``‖α x‖``), for EBMs trained with several weights γ of the CE term.

The paper observes that for larger γ the EBM assigns *exponentially increasing* density far from the data
(as ReLU classifiers grow confident far away, Hein et al. 2019), which is why non-natural inputs — farther
from the data than natural ones — get harder to detect. We plot ``log p̃(α x) - log p̃(x) = E(x) - E(α x)``
averaged over the inputs (exponential growth of ``p̃`` = linear growth on this log scale; subtracting
the value at α = 1 makes models with different energy offsets comparable). The table's last column,
``Δ log p̃`` at the largest α, is the summary: > 0 means density grows away from the data.

Run: ``ebm-ood experiment density-vs-norm [--methods CD] [--gammas 0,0.1,1,10] [--quick]``.
Writes ``density_vs_norm.md``, ``.json`` and ``.png``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ebm_ood.commands.benchmark.registry import RunContext
from ebm_ood.commands.benchmark.runner import fit_method
from ebm_ood.commands.experiments.common import Settings, add_common_arguments, ebm_spec, load_dataset, settings_from_args
from ebm_ood.commands.experiments.improvement import fmt
from ebm_ood.commands.experiments.output import finish
from ebm_ood.commands.flags import log_stderr, parse_floats

NAME = "density_vs_norm"
SUMMARY = "Elflein Fig. 2: the unnormalised density of ID inputs scaled by α, for several γ"
GAMMAS = (0.0, 0.1, 1.0, 10.0)
ALPHAS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)


@dataclass
class DensityConfig:
    settings: Settings = field(default_factory=lambda: Settings(methods=("CD",)))
    gammas: tuple[float, ...] = GAMMAS  # γ = 0 is the unsupervised EBM
    alphas: tuple[float, ...] = ALPHAS  # input scales; must contain 1
    n_inputs: int = 200  # ID test inputs scaled


def log_density_curve(detector, x: np.ndarray, alphas) -> np.ndarray:
    """``log p̃(α x) - log p̃(x) = E(x) - E(α x)`` for every α, averaged over the inputs. x: (N, *shape);
    returns (len(alphas),). ``detector.score`` is the energy ``E``."""
    e1 = detector.score(x)  # (N,)
    return np.array([float(np.mean(e1 - detector.score(np.float32(a) * x))) for a in alphas])


def run_experiment(cfg: DensityConfig, log=None) -> dict:
    """Returns ``{"curves": {method: {γ: [Δ log p̃ per α] (mean over seeds)}}, "norms": [mean ‖α x‖], …}``."""
    if 1.0 not in cfg.alphas:
        raise ValueError(f"alphas: must contain 1 (the reference), got {cfg.alphas}")
    if cfg.n_inputs < 1:
        raise ValueError(f"n_inputs: expected a positive integer, got {cfg.n_inputs}")
    s = cfg.settings
    d = load_dataset(s.dataset)
    x = d.x_test[: cfg.n_inputs]
    norms = [float(np.linalg.norm((a * x).reshape(len(x), -1), axis=1).mean()) for a in cfg.alphas]
    per_seed = {m: {f"{g:g}": [] for g in cfg.gammas} for m in s.methods}
    for seed in s.seeds:
        ctx = RunContext(dataset=d, seed=seed, preset=s.preset, device=s.device)
        for m in s.methods:
            for g in cfg.gammas:
                det = fit_method(ebm_spec(f"{m} γ={g:g}", m, s, gamma=g), ctx)
                per_seed[m][f"{g:g}"].append(log_density_curve(det, x, cfg.alphas).tolist())
                (log or log_stderr)(f"[{s.dataset} seed={seed}] {m} γ={g:g}: fitted")
    curves = {m: {g: np.mean(v, axis=0).tolist() for g, v in per.items()} for m, per in per_seed.items()}
    return {**s.header(NAME), "alphas": list(cfg.alphas), "norms": norms, "gammas": list(cfg.gammas), "curves": curves,
            "per_seed": per_seed}


def render(data: dict) -> str:
    head = ["method", "γ"] + [f"α={a:g}" for a in data["alphas"]]
    lines = [f"# Elflein Figure 2 — log p̃(αx) - log p̃(x) = E(x) - E(αx) on {data['dataset']} "
             f"(preset {data['preset']}, seeds {','.join(map(str, data['seeds']))})", "",
             "Mean over ID test inputs; mean ‖αx‖: " + ", ".join(f"{n:.1f}" for n in data["norms"]) + ".", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m, per in data["curves"].items():
        for g, ys in per.items():
            lines.append("| " + " | ".join([m, g] + [fmt(y, 2) for y in ys]) + " |")
    return "\n".join(lines) + "\n"


def draw(data: dict):
    def make(plt):
        methods = list(data["curves"])
        fig, axes = plt.subplots(1, len(methods), figsize=(4.2 * len(methods), 3.4), squeeze=False)
        for ax, m in zip(axes[0], methods):
            for g, ys in data["curves"][m].items():
                ax.plot(data["norms"], ys, "-o", ms=3, label=f"γ = {g}")
            ax.set_xscale("log")
            ax.set_yscale("symlog", linthresh=1.0)  # log-like for |Δ| > 1: models differ by orders of magnitude
            ax.axhline(0, color="grey", lw=0.5)
            ax.set_xlabel("mean ‖α x‖₂")
            ax.set_title(f"{m} on {data['dataset']}")
        axes[0][0].set_ylabel("log p̃(αx) − log p̃(x)")
        axes[0][-1].legend(fontsize=8)
        fig.tight_layout()
        return fig
    return make


def add_arguments(p) -> None:
    add_common_arguments(p, "density-vs-norm", methods=("CD",))
    p.add_argument("--gammas", default=",".join(f"{g:g}" for g in GAMMAS), help="comma list of γ (0 = unsupervised)")
    p.add_argument("--alphas", default=",".join(f"{a:g}" for a in ALPHAS), help="input scales α (must include 1)")
    p.add_argument("--n-inputs", type=int, default=200, help="ID test inputs to scale (default 200)")


def run(args) -> int:
    alphas = parse_floats(args.alphas, "--alphas", lambda a: a >= 0, "non-negative numbers")
    if 1.0 not in alphas:
        raise SystemExit("error: --alphas: must include 1 (the reference scale)")
    gammas = parse_floats(args.gammas, "--gammas", lambda g: g >= 0, "non-negative numbers")
    if args.n_inputs < 1:
        raise SystemExit(f"error: --n-inputs: expected a positive integer, got {args.n_inputs}")
    data = run_experiment(DensityConfig(settings_from_args(args), gammas, alphas, args.n_inputs))
    return finish(args.out, NAME, render(data), data, draw(data))
