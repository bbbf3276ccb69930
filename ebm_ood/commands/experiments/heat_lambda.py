"""HEAT Fig. 3a: the weight λ of the control loss (Eq. 6) vs FPR95 of HEAT-GMM, with the GMM prior alone
as reference. ``ebm-ood experiment heat-lambda [--quick] [--seeds N]``."""
from __future__ import annotations

from ebm_ood.commands.benchmark.registry import MethodSpec, methods_for, shared_backbone
from ebm_ood.commands.benchmark.runner import fit_method
from ebm_ood.tables import mean_std
from ebm_ood.commands.experiments.output import finish
from ebm_ood.commands.flags import log_stderr
from ebm_ood.commands.experiments.heat_common import add_arguments as _add, context, summarize_detector, mean_over_seeds, settings
from ebm_ood.heat.build import make_heat_detector

NAME = "heat-lambda"
SUMMARY = "HEAT Fig. 3a: the control-loss weight λ against FPR95 of HEAT-GMM"
LAMBDAS = (0.1, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)
QUICK_LAMBDAS = (0.1, 10.0, 100.0)


def add_arguments(p) -> None:
    _add(p, NAME)


def heat_gmm_spec(lam: float) -> MethodSpec:
    """HEAT-GMM with control weight ``lam`` on the shared backbone."""
    return MethodSpec(f"HEAT-GMM λ={lam:g}", suites=("heat",), uses_labels=True,
                      build=lambda ctx: make_heat_detector(shared_backbone(ctx), "GMM", True, ctx.preset, ctx.seed, lam=lam))


def run(args) -> int:
    d, seeds, preset, device = settings(args)
    lambdas = QUICK_LAMBDAS if args.quick else LAMBDAS
    prior, specs = methods_for("heat", ["GMM"])[0], {lam: heat_gmm_spec(lam) for lam in lambdas}
    gmm, heat = [], {lam: [] for lam in lambdas}
    for seed in seeds:
        ctx = context(d, seed, preset, device)
        gmm.append(summarize_detector(fit_method(prior, ctx), d))
        for lam in lambdas:
            heat[lam].append(summarize_detector(fit_method(specs[lam], ctx), d))
            log_stderr(f"[seed {seed}] λ = {lam}: FPR95 {heat[lam][-1]['average']['fpr95']:.2f}")
    base = mean_over_seeds(gmm)
    rows = {lam: mean_over_seeds(r) for lam, r in heat.items()}
    lines = [f"HEAT Fig. 3a analog on {args.dataset} ({len(seeds)} seed(s), preset {preset}): average over OOD sets.",
             "", "| λ | HEAT-GMM FPR95 ↓ | HEAT-GMM AUROC ↑ |", "|---|---|---|",
             f"| GMM (prior alone) | {base['fpr95']:.2f} | {base['auroc']:.2f} |"]
    lines += [f"| {lam:g} | {mean_std(r['fpr95'], r['fpr95_std'], len(seeds), 2)} | {r['auroc']:.2f} |" for lam, r in rows.items()]

    def draw(plt):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.semilogx(list(rows), [r["fpr95"] for r in rows.values()], "o-", label="HEAT-GMM")
        ax.axhline(base["fpr95"], color="gray", ls="--", label="GMM")
        ax.set_xlabel("λ (Eq. 6)"), ax.set_ylabel("average FPR95 (%)"), ax.legend()
        ax.set_title(f"{args.dataset}: control weight λ")
        return fig

    data = {"dataset": args.dataset, "seeds": seeds, "preset": preset, "gmm": base,
            "heat_gmm": {str(k): v for k, v in rows.items()}, "per_seed": {"gmm": gmm, "heat_gmm": {str(k): v for k, v in heat.items()}}}
    return finish(args.out, NAME, "\n".join(lines), data, draw)
