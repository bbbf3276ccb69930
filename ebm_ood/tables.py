"""Paper-style Markdown tables from benchmark results (values in percent, mean ± std over seeds).

* Elflein Table 1 style: one metric, rows = methods, columns = OOD sets split into *natural* and
  *non-natural*, plus the average of each group. Default ``aupr_out_bal``: the authors' protocol (sets
  truncated to equal length, AUC-PR with OOD positive; :mod:`ebm_ood.metrics`). :func:`metric_caption`
  says which protocol a table uses and :func:`chance_line` what random scores would give.
* HEAT Table 1/4 style: FPR95 ↓ / AUROC ↑ per OOD set (near = natural, far = non-natural) and averages.
"""
from __future__ import annotations

import numpy as np

from ebm_ood.data import NATURAL, NON_NATURAL
from ebm_ood.metrics import chance_level

ELFLEIN_METRIC = "aupr_out_bal"  # the paper's tables, as the authors' code computes them
METRIC_LABELS = {
    "aupr_out_bal": "AUC-PR, OOD positive, balanced sets as in the authors' code",
    "aupr_in_bal": "AUC-PR, ID positive as in the paper's text, balanced sets",
    "auroc_bal": "AUROC, balanced sets",
    "aupr_in": "AUPR-In, ID positive, full unbalanced sets",
    "aupr_out": "AUPR-Out, OOD positive, full unbalanced sets",
    "auroc": "AUROC, full sets",
    "fpr95": "FPR95, full sets",
}


def md_cell(text) -> str:
    """``text`` as one Markdown table cell: ``|`` escaped as ``\\|`` and line breaks as spaces, so a name such
    as ``cifar|svhn`` (an OOD set, a method, a dataset folder, an error message) never shifts the columns."""
    return " ".join(str(text).replace("\\", "\\\\").replace("|", "\\|").splitlines()) if str(text) else ""


def md_row(cells) -> str:
    """One Markdown table row of :func:`md_cell` cells."""
    return "| " + " | ".join(md_cell(c) for c in cells) + " |"


def _failed_row(method: str, error: str, width: int) -> str:
    return f"| {md_cell(method)} | failed: {md_cell(error)} |" + " |" * (width - 2)


def metric_caption(metric: str) -> str:
    """The table caption of ``metric`` (a key of :data:`METRIC_LABELS`); unknown keys are an error."""
    if metric not in METRIC_LABELS:
        raise ValueError(f"metric: expected one of {', '.join(METRIC_LABELS)}, got {metric!r}")
    return METRIC_LABELS[metric]


def chance_line(dataset_results: dict, groups: dict[str, str], metric: str) -> str:
    """``Chance level (random scores): set x %, ...`` from the set sizes stored with the results
    (:func:`ebm_ood.metrics.chance_level`); one number when every set has the same."""
    rows = [r for r in dataset_results.values() if "error" not in r]
    names = [n for n, g in groups.items() if g in (NATURAL, NON_NATURAL)]
    if not rows or not all("n_id" in rows[0].get(n, {}) for n in names):
        return "Chance level: set sizes not recorded."
    levels = {n: 100 * chance_level(metric, int(rows[0][n]["n_id"]), int(rows[0][n]["n_ood"])) for n in names}
    if len({f"{v:.1f}" for v in levels.values()}) == 1:
        return f"Chance level (random scores): {next(iter(levels.values())):.1f} % on every set."
    return "Chance level (random scores): " + ", ".join(f"{n} {v:.1f} %" for n, v in levels.items()) + "."


def mean_std(mean: float, std: float, n_seeds: int, digits: int = 1) -> str:
    """``mean ± std`` over seeds; ``mean`` alone for one seed (one run has no spread to show, not a spread
    of 0)."""
    text = "–" if mean is None or not np.isfinite(mean) else f"{mean:.{digits}f}"
    return text if n_seeds <= 1 or text == "–" else f"{text} ± {std:.{digits}f}"


def _cell(row: dict, metric: str) -> str:
    return mean_std(100 * row[metric], 100 * row[metric + "_std"], row.get("seeds", 2))


def _group_avg(res: dict, names: list[str], metric: str) -> str:
    if not names:
        return "–"
    return f"{100 * np.mean([res[n][metric] for n in names]):.1f}"


def elflein_table(dataset_results: dict, groups: dict[str, str], metric: str = ELFLEIN_METRIC) -> str:
    """``dataset_results``: {method: {ood_set: {metric, metric_std}}}; ``groups``: ood_set → group.
    The table, then its :func:`chance_line`."""
    metric_caption(metric)
    nat = [n for n, g in groups.items() if g == NATURAL]
    non = [n for n, g in groups.items() if g == NON_NATURAL]
    cols = nat + non
    head = ["Method"] + [f"{n} (nat.)" for n in nat] + [f"{n} (non-nat.)" for n in non] + ["Avg nat.", "Avg non-nat."]
    lines = [md_row(head), "|" + "---|" * len(head)]
    for method, res in dataset_results.items():
        if "error" in res:
            lines.append(_failed_row(method, res["error"], len(head)))
            continue
        cells = [_cell(res[c], metric) for c in cols]
        lines.append(md_row([method] + cells + [_group_avg(res, nat, metric), _group_avg(res, non, metric)]))
    return "\n".join(lines + ["", chance_line(dataset_results, groups, metric)])


def heat_table(dataset_results: dict, groups: dict[str, str]) -> str:
    """FPR95 ↓ / AUROC ↑ per OOD set and on average (near = natural, far = non-natural)."""
    cols = [n for n, g in groups.items() if g in (NATURAL, NON_NATURAL)]
    head = ["Method"] + [f"{n} FPR95↓ / AUROC↑" for n in cols] + ["Avg FPR95↓", "Avg AUROC↑"]
    lines = [md_row(head), "|" + "---|" * len(head)]
    for method, res in dataset_results.items():
        if "error" in res:
            lines.append(_failed_row(method, res["error"], len(head)))
            continue
        cells = [f"{100 * res[c]['fpr95']:.1f} / {100 * res[c]['auroc']:.1f}" for c in cols]
        avg_f = 100 * np.mean([res[c]["fpr95"] for c in cols])
        avg_a = 100 * np.mean([res[c]["auroc"] for c in cols])
        lines.append(md_row([method] + cells + [f"{avg_f:.1f}", f"{avg_a:.1f}"]))
    return "\n".join(lines)


def timing_table(timings: dict) -> str:
    lines = ["| Dataset | Method | Wall time (s, all seeds) |", "|---|---|---|"]
    for d, per in timings.items():
        for m, t in per.items():
            lines.append(md_row([d, m, f"{t:.1f}"]))
    return "\n".join(lines)
