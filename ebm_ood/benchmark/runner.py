"""Run methods × datasets × seeds and aggregate the metrics.

For every (dataset, seed, method): seed everything, ``build(ctx)``, ``fit`` on ID training data (with
ID validation data for model selection — never OOD data), ``score`` the ID test set and every OOD set,
and compute all metrics of :mod:`ebm_ood.metrics`. A method that fails (e.g. diverges) becomes a failed
cell with its reason; the run goes on with the other methods.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ebm_ood.benchmark.registry import MethodSpec, RunContext
from ebm_ood.data.registry import OODDataset, get_dataset
from ebm_ood.metrics import all_metrics
from ebm_ood.training import seed_everything

METRICS = ("auroc", "aupr_in", "aupr_out", "fpr95")


@dataclass
class CellResult:
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # ood_set -> metric -> value
    seconds: float = 0.0
    error: str | None = None


def evaluate_detector(detector, dataset: OODDataset) -> dict[str, dict[str, float]]:
    """Score the ID test set and every OOD set; all metrics per OOD set."""
    s_id = detector.score(dataset.x_test)
    return {name: all_metrics(s_id, detector.score(ood.x)) for name, ood in dataset.ood.items()}


def fit_spec(spec: MethodSpec, ctx: RunContext):
    """Seed, build and fit one method on ``ctx.dataset``'s training split (labels only when the method
    uses them); returns the fitted detector. The benchmark and every experiment fit through here."""
    seed_everything(ctx.seed)
    d = ctx.dataset
    labels = spec.uses_labels
    det = spec.build(ctx)
    return det.fit(d.x_train, d.y_train if labels else None, validation=(d.x_val, d.y_val if labels else None))


def run_one(spec: MethodSpec, ctx: RunContext) -> CellResult:
    """Fit and evaluate one (method, dataset, seed) cell; an exception becomes a failed cell."""
    t0 = time.perf_counter()
    try:
        det = fit_spec(spec, ctx)
        metrics = evaluate_detector(det, ctx.dataset)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as err:  # recorded as a failed cell; the run goes on
        first_line = str(err).splitlines()[0] if str(err) else ""
        return CellResult(seconds=time.perf_counter() - t0, error=f"{type(err).__name__}: {first_line}")
    return CellResult(metrics=metrics, seconds=time.perf_counter() - t0)


def aggregate(cells: list[CellResult]) -> dict:
    """Mean and (population) std over seeds: ``{ood_set: {metric: mean, metric_std: std}}``, or
    ``{"error": reason}`` when any seed failed."""
    errors = [c.error for c in cells if c.error]
    if errors:
        return {"error": errors[0]}
    out = {}
    for ood in cells[0].metrics:
        row = {}
        for m in METRICS:
            vals = np.array([c.metrics[ood][m] for c in cells], dtype=np.float64)
            row[m] = float(vals.mean())
            row[f"{m}_std"] = float(vals.std())
        out[ood] = row
    return out


def run_benchmark(datasets: list[str], specs: list[MethodSpec], seeds: list[int], preset: str = "default",
                  device: str = "cpu", log=print) -> tuple[dict, dict]:
    """Returns ``(results, timings)``: results ``{dataset: {method: {ood_set: {metric: mean, metric_std:
    std}}}}`` and timings ``{dataset: {method: seconds summed over seeds}}``."""
    results, timings, loaded = {}, {}, {}
    for name in datasets:
        loaded[name] = get_dataset(name)
    for name in datasets:
        d = loaded[name]
        applicable = [s for s in specs if d.kind in s.kinds]
        cells: dict[str, list[CellResult]] = {s.name: [] for s in applicable}
        for seed in seeds:
            ctx = RunContext(dataset=d, seed=seed, preset=preset, device=device)
            for spec in applicable:
                cell = run_one(spec, ctx)
                cells[spec.name].append(cell)
                status = cell.error or "ok"
                log(f"[{name} seed={seed}] {spec.name}: {cell.seconds:.1f} s ({status})")
        results[name] = {m: aggregate(c) for m, c in cells.items()}
        timings[name] = {m: float(sum(x.seconds for x in c)) for m, c in cells.items()}
    return results, timings

