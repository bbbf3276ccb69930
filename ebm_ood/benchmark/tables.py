"""Paper-style Markdown tables from benchmark results (values in percent, mean ± std over seeds).

* Elflein Table 1 style: one metric (AUC-PR), rows = methods, columns = OOD sets split into *natural*
  and *non-natural*, plus the average of each group.
* HEAT Table 1/4 style: FPR95 ↓ / AUROC ↑ per OOD set (near = natural, far = non-natural) and averages.
"""
from __future__ import annotations

import numpy as np

from ebm_ood.data.registry import NATURAL, NON_NATURAL

METRIC_LABELS = {"aupr_in": "AUPR-In", "aupr_out": "AUPR-Out", "auroc": "AUROC", "fpr95": "FPR95"}


def _cell(row: dict, metric: str) -> str:
    return f"{100 * row[metric]:.1f} ± {100 * row[metric + '_std']:.1f}"


def _group_avg(res: dict, names: list[str], metric: str) -> str:
    if not names:
        return "–"
    return f"{100 * np.mean([res[n][metric] for n in names]):.1f}"


def elflein_table(dataset_results: dict, groups: dict[str, str], metric: str = "aupr_in") -> str:
    """``dataset_results``: {method: {ood_set: {metric, metric_std}}}; ``groups``: ood_set → group."""
    nat = [n for n, g in groups.items() if g == NATURAL]
    non = [n for n, g in groups.items() if g == NON_NATURAL]
    cols = nat + non
    head = ["Method"] + [f"{n} (nat.)" for n in nat] + [f"{n} (non-nat.)" for n in non] + ["Avg nat.", "Avg non-nat."]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, res in dataset_results.items():
        if "error" in res:
            lines.append(f"| {method} | failed: {res['error']} |" + " |" * (len(head) - 2))
            continue
        cells = [_cell(res[c], metric) for c in cols]
        lines.append("| " + " | ".join([method] + cells + [_group_avg(res, nat, metric), _group_avg(res, non, metric)]) + " |")
    return "\n".join(lines)


def heat_table(dataset_results: dict, groups: dict[str, str]) -> str:
    """FPR95 ↓ / AUROC ↑ per OOD set and on average (near = natural, far = non-natural)."""
    cols = [n for n, g in groups.items() if g in (NATURAL, NON_NATURAL)]
    head = ["Method"] + [f"{n} FPR95↓ / AUROC↑" for n in cols] + ["Avg FPR95↓", "Avg AUROC↑"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, res in dataset_results.items():
        if "error" in res:
            lines.append(f"| {method} | failed: {res['error']} |" + " |" * (len(head) - 2))
            continue
        cells = [f"{100 * res[c]['fpr95']:.1f} / {100 * res[c]['auroc']:.1f}" for c in cols]
        avg_f = 100 * np.mean([res[c]["fpr95"] for c in cols])
        avg_a = 100 * np.mean([res[c]["auroc"] for c in cols])
        lines.append("| " + " | ".join([method] + cells + [f"{avg_f:.1f}", f"{avg_a:.1f}"]) + " |")
    return "\n".join(lines)


def timing_table(timings: dict) -> str:
    lines = ["| Dataset | Method | Wall time (s, all seeds) |", "|---|---|---|"]
    for d, per in timings.items():
        for m, t in per.items():
            lines.append(f"| {d} | {m} | {t:.1f} |")
    return "\n".join(lines)
