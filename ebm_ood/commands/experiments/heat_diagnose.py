"""What HEAT's residual ``E_θ`` learns, per prior and seed, on the benchmark's own detectors.
``ebm-ood experiment heat-diagnose [--dataset NAME] [--priors EL,GMM] [--quick] [--seeds N]``.

For each prior (EL, GMM, GMM-std; those of the dataset kind; ``--priors "GMM (raw)"`` adds the GMM prior
on raw features) the prior alone and its hybrid are fitted
exactly as the benchmark's rows are (:func:`~ebm_ood.commands.benchmark.runner.fit_method` on the shared CE
backbone), then, in the prior's feature space ``φ`` (L2-normalised for the GMM priors, raw for EL):

* negatives: ``--negatives`` chains of Alg. 1 drawn from the trained hybrid (:func:`negative_chains`,
  the sampler training uses); ``move`` = median ``‖φ(z'_T) - φ(z'_0)‖``, against the ID scale: the median
  distance of an ID test feature to its nearest ID training feature (``id_nn``) and the features' spread
  ``sqrt(tr Cov φ(z_train))``; where the negatives sit: median distance to the nearest ID training feature
  at the start and at the end of the chains;
* spreads: the std of ``E_q`` and of ``E_θ`` on ID training features, and their ratio;
* means of ``E_θ`` (and of ``E_q``) on ID test, each OOD set and the negatives' ends: where the residual
  lowers the energy (``E_θ < 0``) and where it raises it;
* FPR95 (%) of the prior and of the hybrid per seed, averaged over the OOD sets, and their change.

Nothing here is chosen on OOD data: the OOD sets are only scored.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from ebm_ood.commands.benchmark.registry import methods_for, priors_for, shared_backbone
from ebm_ood.commands.benchmark.runner import fit_method
from ebm_ood.commands.experiments.common import dataset_from_args
from ebm_ood.commands.experiments.heat_common import context, summarize_detector, ood_names
from ebm_ood.commands.experiments.output import finish
from ebm_ood.commands.flags import add_run_arguments, check_run_arguments, start_run, log_stderr, preset_of
from ebm_ood.heat.build import _WHICH
from ebm_ood.heat.hybrid import negative_chains

NAME = "heat-diagnose"
RAW_GMM = "GMM (raw)"   # the benchmark's row of the GMM prior on raw features (its hybrid: "HEAT-GMM (raw)")
SUMMARY = "HEAT: what the residual E_θ learns (negatives' moves, spreads, E_θ on ID vs OOD, FPR95 per seed)"


def add_arguments(p) -> None:
    p.add_argument("--dataset", default="digits", help="ID dataset (default: digits)")
    p.add_argument("--priors", default=None,
                   help="comma-separated HEAT priors (default: every prior of the dataset kind: EL, GMM[, GMM-std]); "
                        "'GMM (raw)': the GMM prior on raw, not L2-normalised, features")
    p.add_argument("--negatives", type=int, default=1000, help="SGLD chains drawn per hybrid (default 1000)")
    add_run_arguments(p, os.path.join("results", "experiments", NAME), "tiny settings (seconds): quick presets",
                      full=False)


def nn_distance(a: np.ndarray, b: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Euclidean distance from each row of ``a`` (N, D) to its nearest row of ``b`` (M, D): (N,) float64."""
    bt = torch.as_tensor(b, dtype=torch.float64)
    out = [torch.cdist(torch.as_tensor(a[i:i + chunk], dtype=torch.float64), bt).min(dim=1).values
           for i in range(0, len(a), chunk)]
    return torch.cat(out).numpy() if out else np.zeros(0)


@torch.no_grad()
def _energies(hybrid, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(E_q (N,), E_θ (N,)) of the hybrid in eval mode on features ``z`` (N, D), float64."""
    t = torch.as_tensor(z, dtype=torch.float32)
    return hybrid.prior(t).double().numpy(), hybrid.residual_energy(t).double().numpy()


def diagnose_hybrid(hybrid, cfg, z_train: np.ndarray, z_test: np.ndarray, z_ood: dict[str, np.ndarray],
                    n_negatives: int, seed: int) -> dict:
    """The measurements of the module docstring for one trained ``hybrid`` (eval mode) with its training
    config ``cfg``, on features (N, D) of ID train / ID test / each OOD set. Negatives are drawn with
    ``torch.Generator().manual_seed(seed)``. Returns a dict of floats (per-set dicts for the means)."""
    hybrid.eval()
    phi = lambda z: hybrid.prior.features(torch.as_tensor(z, dtype=torch.float32)).double().numpy()
    z0, zt = negative_chains(hybrid, n_negatives, cfg, torch.Generator().manual_seed(seed))
    z0, zt = z0.detach().cpu().numpy(), zt.detach().cpu().numpy()
    f_train, f_test, f0, ft = phi(z_train), phi(z_test), phi(z0), phi(zt)
    eq_train, et_train = _energies(hybrid, z_train)
    sets = {"id_test": z_test, **z_ood, "negatives": zt}
    means = {k: _energies(hybrid, v) for k, v in sets.items()}
    prior_std, residual_std = float(eq_train.std()), float(et_train.std())
    return {
        "move": float(np.median(np.linalg.norm(ft - f0, axis=1))),
        "id_nn": float(np.median(nn_distance(f_test, f_train))),
        "feature_spread": float(np.sqrt(np.trace(np.cov(f_train.T, bias=True)))),
        "neg_start_nn": float(np.median(nn_distance(f0, f_train))),
        "neg_end_nn": float(np.median(nn_distance(ft, f_train))),
        "prior_id_std": prior_std,
        "residual_id_std": residual_std,
        "spread_ratio": residual_std / prior_std if prior_std > 0 else float("inf"),
        "residual_mean": {k: float(e[1].mean()) for k, e in means.items()},
        "prior_mean": {k: float(e[0].mean()) for k, e in means.items()},
        "residual_negative_fraction": {k: float((e[1] < 0).mean()) for k, e in means.items()},
    }


def _features(ctx, x: np.ndarray, which: str) -> np.ndarray:
    return getattr(shared_backbone(ctx).extract(x), which)


def run_experiment(d, seeds: list[int], preset: str, device: str, priors: list[str], n_negatives: int, log=None) -> dict:
    """Every measurement per prior and seed: ``{prior: [per-seed dict]}``, each with ``fpr95_prior``,
    ``fpr95_hybrid`` (average over OOD sets, %), ``per_set`` FPR95s and :func:`diagnose_hybrid`'s keys."""
    names = ood_names(d)
    out = {p: [] for p in priors}
    for seed in seeds:
        ctx = context(d, seed, preset, device)
        for p in priors:
            prior_spec, hybrid_spec = methods_for("heat", [p, f"HEAT-{p}"])
            prior_det, hybrid_det = fit_method(prior_spec, ctx), fit_method(hybrid_spec, ctx)
            ev_p, ev_h = summarize_detector(prior_det, d), summarize_detector(hybrid_det, d)
            which = _WHICH[p.split(" ")[0]]
            inner = hybrid_det.inner
            row = diagnose_hybrid(inner.hybrid_, inner.config, _features(ctx, d.x_train, which),
                                  _features(ctx, d.x_test, which),
                                  {o: _features(ctx, d.ood[o].x, which) for o in names}, n_negatives, seed)
            row.update(seed=seed, fpr95_prior=ev_p["average"]["fpr95"], fpr95_hybrid=ev_h["average"]["fpr95"],
                       per_set={o: {"prior": ev_p[o]["fpr95"], "hybrid": ev_h[o]["fpr95"]} for o in names})
            out[p].append(row)
            if log:
                log(f"[seed {seed}] {p}: FPR95 {row['fpr95_prior']:.2f} -> {row['fpr95_hybrid']:.2f}, move "
                    f"{row['move']:.3g} vs ID NN {row['id_nn']:.3g}, E_θ/E_q ID std {row['spread_ratio']:.3g}")
    return out


def _mean(rows, key) -> float:
    return float(np.mean([r[key] for r in rows]))


def markdown(dataset: str, preset: str, seeds: list[int], results: dict, names: list[str]) -> str:
    """The three tables of the result (FPR95 per seed; negatives and spreads; E_θ means per set)."""
    lines = [f"HEAT residual diagnostics on {dataset} ({len(seeds)} seed(s), preset {preset}); distances in the "
             "prior's feature space (its own map: L2-normalised for GMM / GMM-std, raw for EL and GMM (raw)).", "",
             "| prior | " + " | ".join(f"seed {s}: prior → hybrid (Δ)" for s in seeds) + " | mean prior → hybrid |",
             "|---|" + "---|" * (len(seeds) + 1)]
    for p, rows in results.items():
        cells = [f"{r['fpr95_prior']:.2f} → {r['fpr95_hybrid']:.2f} ({r['fpr95_hybrid'] - r['fpr95_prior']:+.2f})"
                 for r in rows]
        lines.append(f"| {p} | " + " | ".join(cells) + f" | {_mean(rows, 'fpr95_prior'):.2f} → {_mean(rows, 'fpr95_hybrid'):.2f} |")
    lines += ["", "Negatives and spreads (mean over seeds): median SGLD move, median ID test → ID train nearest-neighbour "
              "distance, feature spread sqrt(tr Cov), median distance of the chains' starts / ends to the nearest ID "
              "training feature; std on ID training features of E_q and E_θ.", "",
              "| prior | move | ID NN | spread | start → ID | end → ID | std E_q | std E_θ | E_θ / E_q |",
              "|---|---|---|---|---|---|---|---|---|"]
    for p, rows in results.items():
        lines.append(f"| {p} | " + " | ".join(f"{_mean(rows, k):.3g}" for k in (
            "move", "id_nn", "feature_spread", "neg_start_nn", "neg_end_nn", "prior_id_std", "residual_id_std",
            "spread_ratio")) + " |")
    sets = ["id_test", *names, "negatives"]
    lines += ["", "Mean E_θ per set (mean over seeds; E_θ < 0 lowers the hybrid's energy there), and the prior's mean "
              "E_q minus its ID test mean for scale.", "",
              "| prior | quantity | " + " | ".join(sets) + " |", "|---|---|" + "---|" * len(sets)]
    for p, rows in results.items():
        et = [float(np.mean([r["residual_mean"][s] for r in rows])) for s in sets]
        eq = [float(np.mean([r["prior_mean"][s] - r["prior_mean"]["id_test"] for r in rows])) for s in sets]
        lines.append(f"| {p} | E_θ | " + " | ".join(f"{v:+.3g}" for v in et) + " |")
        lines.append(f"| {p} | E_q − E_q(ID) | " + " | ".join(f"{v:+.3g}" for v in eq) + " |")
    return "\n".join(lines)


def run(args) -> int:
    d = dataset_from_args(args)
    kind_priors = [*priors_for(d.kind), RAW_GMM]
    priors = list(priors_for(d.kind)) if args.priors is None else [p.strip() for p in args.priors.split(",") if p.strip()]
    bad = [p for p in priors if p not in kind_priors]
    if bad or not priors:
        raise SystemExit(f"error: --priors: {', '.join(bad) or 'none given'} not among the priors of "
                         f"{d.kind} data: {', '.join(kind_priors)}")
    if args.negatives < 2:
        raise SystemExit(f"error: --negatives: expected an integer >= 2, got {args.negatives}")
    device = check_run_arguments(args)
    start_run(args)
    preset, seeds = preset_of(args), list(args.seeds)
    results = run_experiment(d, seeds, preset, device, priors, args.negatives, log=log_stderr)
    text = markdown(args.dataset, preset, seeds, results, ood_names(d))
    data = {"dataset": args.dataset, "seeds": seeds, "preset": preset, "negatives": args.negatives, "priors": results}
    return finish(args.out, NAME, text, data)
