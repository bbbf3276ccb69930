"""Elflein Figure 1 (and Figures 6–8): AUC-PR of every OOD set as a function of the weight γ of the
cross-entropy term, on a log grid (0.01 … 100), one panel per EBM method, one curve per OOD set
(solid: natural, dashed: non-natural). The unsupervised model (γ = 0) is drawn as the curves' left
markers at the axis edge and listed in the table.

The paper's reading: larger γ helps the natural sets and hurts the non-natural ones, so γ needs tuning.

Run: ``ebm-ood experiment gamma-sweep [--methods CD] [--gammas 0.01,0.1,1,10,100] [--quick]``.
Writes ``gamma_sweep.md`` (AUC-PR per γ and set), ``gamma_sweep.json`` and ``gamma_sweep.png``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ebm_ood.tables import chance_line, md_row, mean_std, metric_caption
from ebm_ood.data import NATURAL
from ebm_ood.commands.experiments.common import (Settings, add_common_arguments, ebm_spec, groups_of, load_dataset, run_cells, settings_from_args)
from ebm_ood.commands.experiments.output import finish
from ebm_ood.commands.flags import parse_floats

NAME = "gamma_sweep"
SUMMARY = "Elflein Fig. 1: AUC-PR of every OOD set against the weight γ of the CE term"
GAMMAS = (0.01, 0.1, 1.0, 10.0, 100.0)
QUICK_GAMMAS = (0.01, 1.0, 100.0)


@dataclass
class GammaSweepConfig:
    settings: Settings = field(default_factory=Settings)
    gammas: tuple[float, ...] = GAMMAS  # γ > 0 on a log grid; γ = 0 (unsupervised) is always added


def label(method: str, gamma: float) -> str:
    return f"{method} γ={gamma:g}"


def run_experiment(cfg: GammaSweepConfig, log=None) -> dict:
    """Returns ``{"aupr": {method: {γ: {ood_set: AUC-PR}}}, "groups": …}`` (γ as a string key, "0" first);
    a failed run is ``{"error": reason}`` in place of the per-set dict."""
    s = cfg.settings
    grid = (0.0,) + tuple(cfg.gammas)
    specs = [ebm_spec(label(m, g), m, s, gamma=g) for m in s.methods for g in grid]
    results = run_cells(s, specs, log)
    groups = groups_of(load_dataset(s.dataset))
    aupr = {m: {f"{g:g}": ({"error": results[label(m, g)]["error"]} if "error" in results[label(m, g)] else
                           {o: results[label(m, g)][o][s.metric] for o in groups}) for g in grid} for m in s.methods}
    std = {m: {f"{g:g}": {o: results[label(m, g)][o][f"{s.metric}_std"] for o in groups}
               for g in grid if "error" not in results[label(m, g)]} for m in s.methods}
    return {**s.header(NAME), "gammas": list(grid), "groups": groups, "aupr": aupr, "aupr_std": std, "results": results}


def render(data: dict) -> str:
    groups = data["groups"]
    parts = [f"# Elflein Figure 1 — {metric_caption(data['metric'])} (%) vs γ on {data['dataset']} "
             f"(preset {data['preset']}, seeds {','.join(map(str, data['seeds']))}; mean ± std over seeds)", ""]
    for m, per in data["aupr"].items():
        head = ["γ"] + [f"{o} ({'nat.' if g == NATURAL else 'non-nat.'})" for o, g in groups.items()]
        lines = [f"## {m}", "", md_row(head), "|" + "---|" * len(head)]
        for g, row in per.items():
            sd = data["aupr_std"][m].get(g, {})
            cells = [f"failed: {row['error']}"] + [""] * (len(groups) - 1) if "error" in row else \
                [mean_std(100 * row[o], 100 * sd[o], len(data["seeds"])) for o in groups]
            lines.append(md_row([g] + cells))
        parts += lines + [""]
    parts += [chance_line(data["results"], groups, data["metric"]), ""]
    return "\n".join(parts)


def draw(data: dict):
    """One panel per method: AUC-PR vs γ (log x), natural solid, non-natural dashed; γ = 0 as a marker."""
    def make(plt):
        methods = list(data["aupr"])
        fig, axes = plt.subplots(1, len(methods), figsize=(4.2 * len(methods), 3.4), squeeze=False)
        gs = [g for g in data["gammas"] if g > 0]
        for ax, m in zip(axes[0], methods):
            per = data["aupr"][m]
            for i, (o, grp) in enumerate(data["groups"].items()):
                ys = [per[f"{g:g}"].get(o, float("nan")) for g in gs]
                line, = ax.plot(gs, ys, "-o" if grp == NATURAL else "--s", ms=3, label=o, color=f"C{i}")
                if o in per["0"]:
                    ax.plot([gs[0] / 3], [per["0"][o]], marker="x", color=line.get_color())
            ax.set_xscale("log")
            ax.set_ylim(0, 1.02)
            ax.set_xlabel("γ (× = unsupervised, γ = 0)")
            ax.set_title(f"{m} on {data['dataset']}")
        axes[0][0].set_ylabel("AUC-PR")
        axes[0][-1].legend(fontsize=7, loc="lower left")
        fig.tight_layout()
        return fig
    return make


def add_arguments(p) -> None:
    add_common_arguments(p, "gamma-sweep")
    p.add_argument("--gammas", default=None, help=f"comma list of γ > 0 (default {','.join(map(str, GAMMAS))}; "
                   f"--quick: {','.join(map(str, QUICK_GAMMAS))})")


def run(args) -> int:
    gammas = (parse_floats(args.gammas, "--gammas", lambda g: g > 0, "values > 0") if args.gammas is not None else
              QUICK_GAMMAS if args.quick else GAMMAS)
    data = run_experiment(GammaSweepConfig(settings_from_args(args), gammas))
    return finish(args.out, NAME, render(data), data, draw(data))
