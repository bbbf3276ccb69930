"""What the HEAT experiments (Fig. 3a λ sweep, Fig. 3b β sweep, Fig. 4 low data) share: flags, the
per-seed backbone (the benchmark's shared CE classifier), evaluation as FPR95 / AUROC averaged over the
natural and non-natural OOD sets, and mean over seeds."""
from __future__ import annotations

import argparse
import os

import numpy as np

from ebm_ood.benchmark.registry import RunContext
from ebm_ood.cli import add_threads_argument, apply_threads, check_out_dir, parse_seeds
from ebm_ood.data.registry import NATURAL, NON_NATURAL, get_dataset
from ebm_ood.metrics import auroc, fpr_at_tpr
from ebm_ood.training import seed_everything


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    """``--dataset --seeds --quick --device --threads --out`` (out: results/<name>)."""
    p.add_argument("--dataset", default="digits", help="ID dataset (default: digits)")
    p.add_argument("--seeds", type=parse_seeds, default=[0], help="number of seeds or a comma list (default: 1)")
    p.add_argument("--quick", action="store_true", help="tiny settings (seconds): quick presets, fewer grid points")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    add_threads_argument(p)
    p.add_argument("--out", default=os.path.join("results", "experiments", name), help="output folder")


def settings(args):
    """(dataset, seeds, preset) after checking the flags, before any training."""
    try:
        d = get_dataset(args.dataset)
    except ValueError as err:
        raise SystemExit(f"error: --dataset: {err}")
    if d.kind != "image":
        raise SystemExit(f"error: --dataset {args.dataset!r} is {d.kind}; HEAT needs std-pooled conv features (an image dataset)")
    check_out_dir(args.out)
    apply_threads(args.threads)
    return d, list(args.seeds), ("quick" if args.quick else "default")


def context(d, seed: int, preset: str, device: str = "cpu") -> RunContext:
    """A benchmark context: its ``shared_backbone`` is the CE classifier of (dataset, seed)."""
    seed_everything(seed)
    return RunContext(dataset=d, seed=seed, preset=preset, device=device)


def ood_names(d) -> list[str]:
    return [k for k, v in d.ood.items() if v.group in (NATURAL, NON_NATURAL)]


def evaluate_scores(s_id: np.ndarray, s_ood: dict[str, np.ndarray]) -> dict:
    """``{ood: {"fpr95", "auroc"}, "average": {...}}`` as percentages."""
    out = {o: {"fpr95": 100 * fpr_at_tpr(s_id, s), "auroc": 100 * auroc(s_id, s)} for o, s in s_ood.items()}
    out["average"] = {m: float(np.mean([out[o][m] for o in s_ood])) for m in ("fpr95", "auroc")}
    return out


def evaluate(det, d) -> dict:
    """Score ID test and the natural + non-natural OOD sets with a fitted detector."""
    return evaluate_scores(det.score(d.x_test), {o: det.score(d.ood[o].x) for o in ood_names(d)})


def mean_over_seeds(results: list[dict]) -> dict:
    """Average the ``"average"`` entries of per-seed evaluations: {"fpr95", "auroc", "fpr95_std", "auroc_std"}."""
    out = {}
    for m in ("fpr95", "auroc"):
        v = np.array([r["average"][m] for r in results])
        out[m], out[m + "_std"] = float(v.mean()), float(v.std())
    return out
