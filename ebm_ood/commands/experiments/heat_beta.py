"""HEAT Fig. 3b: β of the composition (Eq. 7) vs FPR95, and the Table-3 analog (every subset of the
three hybrids composed at β = 0). ``ebm-ood experiment heat-beta [--quick] [--seeds N]``."""
from __future__ import annotations

import itertools
import math

import numpy as np

from ebm_ood.commands.benchmark.registry import methods_for
from ebm_ood.commands.benchmark.runner import fit_method
from ebm_ood.tables import md_row, mean_std
from ebm_ood.commands.experiments.output import finish
from ebm_ood.commands.flags import log_stderr
from ebm_ood.commands.experiments.heat_common import (add_arguments as _add, context, evaluate_scores, mean_over_seeds,
                                                      ood_names, settings)
from ebm_ood.heat.compose import CompositionDetector, compose_energies
from ebm_ood.metrics import auroc, fpr_at_tpr

NAME = "heat-beta"
SUMMARY = "HEAT Fig. 3b and Table 3: the composition's β against FPR95; every subset of hybrids"
BETAS = (-math.inf, -10.0, -5.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 5.0, 10.0, math.inf)
QUICK_BETAS = (-math.inf, -1.0, 0.0, 1.0, math.inf)


def add_arguments(p) -> None:
    _add(p, NAME)


def run(args) -> int:
    d, seeds, preset, device = settings(args)
    betas = QUICK_BETAS if args.quick else BETAS
    heat = methods_for("heat", ["HEAT"])[0]  # the composition at β = 0; other β re-compose its part scores
    per_beta = {b: [] for b in betas}
    tables = []
    for seed in seeds:
        comp = fit_method(heat, context(d, seed, preset, device))
        s_id = comp.part_scores(d.x_test)
        s_ood = {o: comp.part_scores(d.ood[o].x) for o in ood_names(d)}
        for b in betas:
            per_beta[b].append(evaluate_scores(compose_energies(s_id, b), {o: compose_energies(s, b) for o, s in s_ood.items()}))
        log_stderr(f"[seed {seed}] β = 0: FPR95 {per_beta[0.0][-1]['average']['fpr95']:.2f}")
        tables.append(composition_subsets_table(comp, d, beta=0.0))
    rows = {b: mean_over_seeds(r) for b, r in per_beta.items()}
    lines = [f"HEAT Fig. 3b analog on {args.dataset} ({len(seeds)} seed(s), preset {preset}): average over OOD sets.",
             "", "| β | HEAT FPR95 ↓ | HEAT AUROC ↑ |", "|---|---|---|"]
    lines += [f"| {b:g} | {mean_std(r['fpr95'], r['fpr95_std'], len(seeds), 2)} | {r['auroc']:.2f} |" for b, r in rows.items()]
    lines += ["", f"Table 3 analog (seed {seeds[0]}):", "", tables[0][1]]

    def draw(plt):
        finite = [b for b in rows if math.isfinite(b)]
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(finite, [rows[b]["fpr95"] for b in finite], "o-", label="HEAT (Eq. 7)")
        for b, style in ((-math.inf, ":"), (math.inf, "--")):
            if b in rows:
                ax.axhline(rows[b]["fpr95"], color="gray", ls=style, label="min" if b < 0 else "max")
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlabel("β"), ax.set_ylabel("average FPR95 (%)"), ax.legend()
        ax.set_title(f"{args.dataset}: composition temperature β")
        return fig

    data = {"dataset": args.dataset, "seeds": seeds, "preset": preset,
            "heat": {str(b): r for b, r in rows.items()}, "subsets": [t[0] for t in tables]}
    return finish(args.out, NAME, "\n".join(lines), data, draw)


def composition_subsets_table(detector: CompositionDetector, dataset, beta: float = 0.0, reduce: str = "mean",
                              ood_names: list[str] | None = None) -> tuple[list[dict], str]:
    """HEAT Table 3 analog: every non-empty subset of a fitted composition's parts, composed with Eq. 7.

    dataset: an OODDataset (its ``x_test`` is the ID test set; ``ood_names`` default: the natural and
    non-natural OOD sets). Returns (rows, markdown); a row is ``{"parts": [...], ood: {"fpr95", "auroc"},
    "average": {...}}`` with fractions in [0, 1]; the table prints percentages.
    """
    names = list(detector.parts)
    ood_names = ood_names or [k for k, v in dataset.ood.items() if v.group in ("natural", "non-natural")]
    s_id = detector.part_scores(dataset.x_test)
    s_ood = {o: detector.part_scores(dataset.ood[o].x) for o in ood_names}
    rows = []
    for r in range(1, len(names) + 1):
        for subset in itertools.combinations(range(len(names)), r):
            cols = list(subset)
            cid = compose_energies(s_id[:, cols], beta, reduce)
            row = {"parts": [names[i] for i in cols]}
            for o in ood_names:
                co = compose_energies(s_ood[o][:, cols], beta, reduce)
                row[o] = {"fpr95": fpr_at_tpr(cid, co), "auroc": auroc(cid, co)}
            row["average"] = {m: float(np.mean([row[o][m] for o in ood_names])) for m in ("fpr95", "auroc")}
            rows.append(row)
    head = md_row(list(names) + list(ood_names) + ["average"])
    sep = "|" + "---|" * (len(names) + len(ood_names) + 1)
    lines = [f"Composition of subsets (HEAT Eq. 7, β = {beta}); FPR95 ↓ / AUROC ↑ in %.", "", head, sep]
    for row in rows:
        marks = ["✓" if n in row["parts"] else "" for n in names]
        cells = [f"{100 * row[o]['fpr95']:.1f} / {100 * row[o]['auroc']:.1f}" for o in ood_names + ["average"]]
        lines.append(md_row(marks + cells))
    return rows, "\n".join(lines) + "\n"
