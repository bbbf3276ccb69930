"""HEAT Fig. 4: the fraction of ID training data given to the density model (10 % … 100 %; the backbone
keeps all of it) for GMM, a plain EBM (E_θ alone, no prior) and HEAT-GMM.
``ebm-ood experiment heat-lowdata [--quick] [--seeds N]``."""
from __future__ import annotations

import numpy as np

from ebm_ood.benchmark.methods import shared_backbone
from ebm_ood.experiments.common import finish, log_stderr
from ebm_ood.experiments.heat_common import add_arguments as _add, context, evaluate, mean_over_seeds, settings
from ebm_ood.heat.build import make_heat_detector

NAME = "heat-lowdata"
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


def add_arguments(p) -> None:
    _add(p, NAME)


def run(args) -> int:
    d, seeds, preset = settings(args)
    fractions = QUICK_FRACTIONS if args.quick else FRACTIONS
    res = {m: {f: [] for f in fractions} for m in MODELS}
    for seed in seeds:
        ctx = context(d, seed, preset, args.device)
        bb = shared_backbone(ctx)
        for f in fractions:
            idx = stratified_subset(d.y_train, f, seed)
            for m, (prior, residual) in MODELS.items():
                det = make_heat_detector(bb, prior, residual, preset, seed)
                res[m][f].append(evaluate(det.fit(d.x_train[idx], d.y_train[idx]), d))
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
