"""What the HEAT experiments (Fig. 3a λ sweep, Fig. 3b β sweep, Fig. 4 low data) share: flags, the
per-seed backbone (the benchmark's shared CE classifier), evaluation as FPR95 / AUROC (%) per natural and
non-natural OOD set and on average, and mean over seeds. Detectors are fitted with the benchmark's
:func:`~ebm_ood.commands.benchmark.runner.fit_method` and scored with its
:func:`~ebm_ood.commands.benchmark.runner.evaluate_detector`."""
from __future__ import annotations

import argparse
import os

import numpy as np

from ebm_ood.commands.benchmark.registry import RunContext
from ebm_ood.commands.benchmark.runner import evaluate_detector
from ebm_ood.commands.flags import add_run_arguments, check_run_arguments, start_run
from ebm_ood.commands.experiments.common import dataset_from_args, groups_of
from ebm_ood.metrics import all_metrics


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    """``--dataset --seeds --quick --device --threads --out`` (out: results/experiments/<name>)."""
    p.add_argument("--dataset", default="digits", help="ID dataset (default: digits)")
    add_run_arguments(p, os.path.join("results", "experiments", name),
                      "tiny settings (seconds): quick presets, fewer grid points", full=False)


def settings(args):
    """``(dataset, seeds, preset, device)`` after checking the flags, before any training."""
    d = dataset_from_args(args)
    if d.kind != "image":
        raise SystemExit(f"error: --dataset {args.dataset!r} is {d.kind}; HEAT needs std-pooled conv features (an image dataset)")
    device = check_run_arguments(args)
    start_run(args)
    return d, list(args.seeds), ("quick" if args.quick else "default"), device


def context(d, seed: int, preset: str, device: str = "cpu") -> RunContext:
    """A benchmark context: its ``shared_backbone`` is the CE classifier of (dataset, seed); every
    detector seeds its own training from ``seed``."""
    return RunContext(dataset=d, seed=seed, preset=preset, device=device)


def ood_names(d) -> list[str]:
    """The natural and non-natural OOD sets of ``d`` (not the smoothness sets)."""
    return list(groups_of(d))


def summarize(metrics: dict[str, dict[str, float]]) -> dict:
    """``{ood: all_metrics}`` → ``{ood: {"fpr95", "auroc"}, "average": {...}}`` as percentages."""
    out = {o: {"fpr95": 100 * m["fpr95"], "auroc": 100 * m["auroc"]} for o, m in metrics.items()}
    out["average"] = {k: float(np.mean([out[o][k] for o in metrics])) for k in ("fpr95", "auroc")}
    return out


def evaluate_scores(s_id: np.ndarray, s_ood: dict[str, np.ndarray]) -> dict:
    """:func:`summarize` of the metrics of ID scores ``s_id`` (N,) against each OOD set's scores."""
    return summarize({o: all_metrics(s_id, s) for o, s in s_ood.items()})


def summarize_detector(det, d) -> dict:
    """Score ID test and the natural + non-natural OOD sets with a fitted detector (:func:`summarize`)."""
    return summarize(evaluate_detector(det, d, ood_names(d)))


def mean_over_seeds(results: list[dict]) -> dict:
    """Average the ``"average"`` entries of per-seed evaluations: {"fpr95", "auroc", "fpr95_std", "auroc_std"}."""
    out = {}
    for m in ("fpr95", "auroc"):
        v = np.array([r["average"][m] for r in results])
        out[m], out[m + "_std"] = float(v.mean()), float(v.std())
    return out
