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


def evaluate_detector(detector, dataset: OODDataset, ood_names: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Score the ID test set and every OOD set (or only ``ood_names``): ``{ood_set: all_metrics}``."""
    s_id = detector.score(dataset.x_test)
    names = dataset.ood_names() if ood_names is None else ood_names
    return {name: all_metrics(s_id, detector.score(dataset.ood[name].x)) for name in names}


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


def run_specs(dataset: OODDataset, specs: list[MethodSpec], seeds, preset: str = "default", device: str = "cpu",
              log=print) -> tuple[dict, dict]:
    """Every spec on every seed of one dataset (one :class:`RunContext` per seed, so shared pieces such as
    the CE classifier are trained once per seed). Returns ``(results, timings)``: ``{method: aggregate}``
    and ``{method: seconds summed over seeds}``. The benchmark and the experiments run through here."""
    cells: dict[str, list[CellResult]] = {s.name: [] for s in specs}
    for seed in seeds:
        ctx = RunContext(dataset=dataset, seed=seed, preset=preset, device=device)
        for spec in specs:
            cell = run_one(spec, ctx)
            cells[spec.name].append(cell)
            log(f"[{dataset.name} seed={seed}] {spec.name}: {cell.seconds:.1f} s ({cell.error or 'ok'})")
    return ({m: aggregate(c) for m, c in cells.items()},
            {m: float(sum(x.seconds for x in c)) for m, c in cells.items()})


def run_benchmark(datasets: list[str | OODDataset], specs: list[MethodSpec], seeds: list[int], preset: str = "default",
                  device: str = "cpu", log=print) -> tuple[dict, dict]:
    """``datasets``: registered names or loaded datasets (every name is loaded before any training).
    Returns ``(results, timings)``: results ``{dataset: {method: {ood_set: {metric: mean, metric_std:
    std}}}}`` and timings ``{dataset: {method: seconds summed over seeds}}``; each dataset runs only the
    specs whose ``kinds`` include its kind."""
    loaded = [get_dataset(d) if isinstance(d, str) else d for d in datasets]
    results, timings = {}, {}
    for d in loaded:
        applicable = [s for s in specs if d.kind in s.kinds]
        results[d.name], timings[d.name] = run_specs(d, applicable, seeds, preset, device, log)
    return results, timings
