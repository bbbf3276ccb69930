"""Elflein Experiment 2, Table 2: does supervision help? Every EBM with ``+ γ · CE(f(x), y)`` (CD-S with
class-conditional SGLD, SSM-S, VERA-S) against the same method unsupervised (γ = 0, same seed).

Table 2 reports the % improvement in AUC-PR of the ``-S`` model over the unsupervised one, averaged over
the natural and over the non-natural OOD sets (mean of per-set improvements,
:func:`~ebm_ood.commands.experiments.improvement.group_improvement`); App. A uses γ = 1. The paper finds +29.61 % on
natural and -11.74 % on non-natural sets on average.

Run: ``ebm-ood experiment supervision [--dataset digits|tabular] [--gamma 1] [--quick]``.
Writes ``supervision.md`` (Table 2 + the AUC-PR table) and ``supervision.json``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ebm_ood.tables import elflein_table, metric_caption
from ebm_ood.commands.experiments.common import Settings, add_common_arguments, ebm_spec, run_variants, settings_from_args
from ebm_ood.commands.experiments.improvement import improvement_table
from ebm_ood.commands.experiments.output import finish

NAME = "supervision"
SUMMARY = "Elflein Exp. 2, Table 2: each EBM supervised (γ · CE) against the same EBM unsupervised"


@dataclass
class SupervisionConfig:
    settings: Settings = field(default_factory=Settings)
    gamma: float = 1.0  # weight of the CE term of the -S models (Elflein App. A: γ = 1)


def run_experiment(cfg: SupervisionConfig, log=None) -> dict:
    """Train M and M-S for every method. Returns ``{"results": {label: {ood: metrics}}, "improvement":
    {method: {"natural": %, "non-natural": %}}, "groups": {ood: group}, ...}``."""
    s = cfg.settings
    results, groups, improvement = run_variants(s, lambda m: ebm_spec(f"{m}-S", m, s, gamma=cfg.gamma),
                                                base=lambda m: ebm_spec(m, m, s, gamma=0.0), log=log)
    return {**s.header(NAME), "gamma": cfg.gamma, "groups": groups, "results": results, "improvement": improvement}


def render(data: dict) -> str:
    return "\n".join([
        f"# Elflein Table 2 — supervision (γ = {data['gamma']}) on {data['dataset']} "
        f"(preset {data['preset']}, seeds {','.join(map(str, data['seeds']))})", "",
        f"% improvement in {metric_caption(data['metric'])} of M-S over M, mean over the OOD sets of each group.",
        "", improvement_table(data["improvement"], data["dataset"]), "",
        f"## {metric_caption(data['metric'])} (%) per OOD set", "",
        elflein_table(data["results"], data["groups"], data["metric"]), ""])


def add_arguments(p) -> None:
    add_common_arguments(p, NAME, gamma=True)


def run(args) -> int:
    if not 0 < args.gamma < math.inf:
        raise SystemExit(f"error: --gamma: expected a finite number > 0, got {args.gamma}")
    data = run_experiment(SupervisionConfig(settings_from_args(args), args.gamma))
    return finish(args.out, NAME, render(data), data)
