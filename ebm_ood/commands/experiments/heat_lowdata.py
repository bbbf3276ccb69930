"""HEAT Fig. 4: the fraction of ID training data given to the density model (10 % … 100 %; the backbone
keeps all of it) for GMM, a plain EBM (E_θ alone, no prior) and HEAT-GMM.
``ebm-ood experiment heat-lowdata [--quick] [--seeds N]``."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ebm_ood.commands.benchmark.registry import MethodSpec, RunContext, shared_backbone
from ebm_ood.commands.benchmark.runner import fit_method
from ebm_ood.commands.experiments.output import finish
from ebm_ood.commands.flags import log_stderr
from ebm_ood.commands.experiments.heat_common import add_arguments as _add, context, summarize_detector, mean_over_seeds, settings
from ebm_ood.heat.build import make_heat_detector

NAME = "heat-lowdata"
SUMMARY = "HEAT Fig. 4: the fraction of ID training data against FPR95 (GMM, plain EBM, HEAT-GMM)"
FRACTIONS = (0.1, 0.25, 0.5, 0.75, 1.0)
QUICK_FRACTIONS = (0.25, 1.0)
MODELS = {"GMM": ("GMM", False), "EBM": ("EBM", True), "HEAT-GMM": ("GMM", True)}


def stratified_subset(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of ``fraction`` of each class (at least 2 per class), sorted."""
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        keep.append(rng.choice(idx, max(2, int(round(fraction * len(idx)))), replace=False))
    return np.sort(np.concatenate(keep))


def model_spec(model: str) -> MethodSpec:
    """One of :data:`MODELS` on the shared backbone of the context."""
    prior, residual = MODELS[model]
    return MethodSpec(model, suites=("heat",), uses_labels=True,
                      build=lambda ctx: make_heat_detector(shared_backbone(ctx), prior, residual, ctx.preset, ctx.seed))


def add_arguments(p) -> None:
    _add(p, NAME)


def run(args) -> int:
    d, seeds, preset, device = settings(args)
    fractions = QUICK_FRACTIONS if args.quick else FRACTIONS
    specs = {m: model_spec(m) for m in MODELS}
    res = {m: {f: [] for f in fractions} for m in MODELS}
    for seed in seeds:
        bb = shared_backbone(context(d, seed, preset, device))  # trained on all the ID training data
        for f in fractions:
            idx = stratified_subset(d.y_train, f, seed)
            # the density models see the subset; the backbone is shared, not retrained on it
            sub = RunContext(dataset=replace(d, x_train=d.x_train[idx], y_train=d.y_train[idx]), seed=seed,
                             preset=preset, device=device, cache={"backbone": bb})
            for m, spec in specs.items():
                res[m][f].append(summarize_detector(fit_method(spec, sub), d))
                log_stderr(f"[seed {seed}] {int(100 * f)} % {m}: AUROC {res[m][f][-1]['average']['auroc']:.2f}")
    rows = {m: {f: mean_over_seeds(r) for f, r in v.items()} for m, v in res.items()}
    lines = [f"HEAT Fig. 4 analog on {args.dataset} ({len(seeds)} seed(s), preset {preset}): average AUROC ↑ / FPR95 ↓.",
             "", "| training data | " + " | ".join(MODELS) + " |", "|---|" + "---|" * len(MODELS)]
    for f in fractions:
        lines.append(f"| {int(100 * f)} % | " + " | ".join(f"{rows[m][f]['auroc']:.2f} / {rows[m][f]['fpr95']:.2f}" for m in MODELS) + " |")

    def draw(plt):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for m in MODELS:
            ax.plot([100 * f for f in fractions], [rows[m][f]["auroc"] for f in fractions], "o-", label=m)
        ax.set_xlabel("ID training data (%)"), ax.set_ylabel("average AUROC (%)"), ax.legend()
        ax.set_title(f"{args.dataset}: low-data regime")
        return fig

    data = {"dataset": args.dataset, "seeds": seeds, "preset": preset,
            "models": {m: {str(f): r for f, r in v.items()} for m, v in rows.items()}}
    return finish(args.out, NAME, "\n".join(lines), data, draw)
