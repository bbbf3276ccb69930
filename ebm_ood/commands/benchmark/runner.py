"""Run methods × datasets × seeds and aggregate the metrics.

For every (dataset, seed, method): ``build(ctx)`` (the detector gets the seed), ``fit`` on ID training data (with
ID validation data for model selection — never OOD data), ``score`` the ID test set and every OOD set,
and compute all metrics of :mod:`ebm_ood.metrics`. A method that fails (e.g. diverges) becomes a failed
cell with its reason; the run goes on with the other methods. Each finished cell can be handed to
``on_cell`` at once (:class:`CellLog` appends it to a file), so a failure late in a run loses no result,
and a rerun skips the cells it already holds (``done``).
"""
from __future__ import annotations

import os
import time

import numpy as np

from ebm_ood.commands.cell_log import CellLog, CellResult  # noqa: F401  (CellLog: the on_cell that keeps cells)
from ebm_ood.commands.benchmark.registry import MethodSpec, RunContext, methods_for
from ebm_ood.data import OODDataset, get_dataset
from ebm_ood.evaluation import evaluate
from ebm_ood.metrics import METRICS
from ebm_ood.plumbing.threads import set_num_threads


def evaluate_detector(detector, dataset: OODDataset, ood_names: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Score the ID test set and every OOD set (or only ``ood_names``) with
    :func:`ebm_ood.evaluation.evaluate`: ``{ood_set: all_metrics}``."""
    names = dataset.ood_names() if ood_names is None else ood_names
    return evaluate({"_": detector}, dataset.x_test, {n: dataset.ood[n].x for n in names}).metrics["_"]


def fit_method(spec: MethodSpec, ctx: RunContext):
    """Build and fit one method on ``ctx.dataset``'s training split (labels only when the method uses
    them); returns the fitted detector. The benchmark and every experiment fit through here; the detector
    seeds its own training from ``ctx.seed`` (the builds pass it on), so nothing is seeded here. A build
    that returns a detector already fitted in this context (the seed's shared CE classifier) is kept."""
    d = ctx.dataset
    labels = spec.uses_labels
    det = spec.build(ctx)
    if getattr(det, "fitted_", False):
        return det
    return det.fit(d.x_train, d.y_train if labels else None, validation=(d.x_val, d.y_val if labels else None))


def run_cell(spec: MethodSpec, ctx: RunContext) -> CellResult:
    """Fit and evaluate one (method, dataset, seed) cell; an exception becomes a failed cell."""
    t0 = time.perf_counter()
    try:
        det = fit_method(spec, ctx)
        metrics = evaluate_detector(det, ctx.dataset)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as err:  # recorded as a failed cell; the run goes on
        first_line = str(err).splitlines()[0] if str(err) else ""
        return CellResult(seconds=time.perf_counter() - t0, error=f"{type(err).__name__}: {first_line}")
    return CellResult(metrics=metrics, seconds=time.perf_counter() - t0)


def aggregate(cells: list[CellResult]) -> dict:
    """Mean and (population) std over seeds: ``{ood_set: {metric: mean, metric_std: std, "seeds": n}}``,
    or ``{"error": reason}`` when any seed failed."""
    errors = [c.error for c in cells if c.error]
    if errors:
        return {"error": errors[0]}
    out = {}
    for ood in cells[0].metrics:
        row = {}
        for m in (k for k in METRICS if k in cells[0].metrics[ood]):
            vals = np.array([c.metrics[ood][m] for c in cells], dtype=np.float64)
            row[m] = float(vals.mean())
            row[f"{m}_std"] = float(vals.std())
        out[ood] = {**row, "seeds": len(cells)}
    return out


def _report(dataset: str, seed: int, spec_name: str, cell: CellResult, log, on_cell) -> None:
    log(f"[{dataset} seed={seed}] {spec_name}: {cell.seconds:.1f} s ({cell.error or 'ok'})")
    if on_cell is not None:
        on_cell(dataset, seed, spec_name, cell)


def _summarise(cells: dict[str, list[CellResult]]) -> tuple[dict, dict]:
    """``{method: [cell per seed]}`` → ``({method: aggregate}, {method: seconds summed over seeds})``."""
    return ({m: aggregate(c) for m, c in cells.items()},
            {m: float(sum(x.seconds for x in c)) for m, c in cells.items()})


# ------------------------------------------------------------------------------- parallel units
def _worker_init(threads: int) -> None:
    """A worker's setup: its torch thread count, and tqdm's lock as a plain thread lock (a worker may be
    killed, and a process-shared lock would then leak a semaphore that Python warns about at exit)."""
    import threading

    from tqdm import tqdm

    set_num_threads(threads)
    tqdm.set_lock(threading.RLock())


def _run_unit(dataset: str | OODDataset, spec_names: list[str], seed: int, preset: str, device: str,
              classifier: str | None):
    """In a worker process: the specs of one unit on one (dataset, seed), sharing one :class:`RunContext`
    exactly as the serial loop of :func:`run_benchmark` does, so each cell equals the serial run's."""
    d = get_dataset(dataset) if isinstance(dataset, str) else dataset
    ctx = RunContext(dataset=d, seed=seed, preset=preset, device=device, classifier=classifier)
    return [run_cell(spec, ctx) for spec in methods_for("all", spec_names)]


def _check_registered(specs: list[MethodSpec]) -> None:
    registered = methods_for("all")
    foreign = [s.name for s in specs if not any(s is r for r in registered)]
    if foreign:
        raise ValueError(f"jobs: worker processes rebuild methods from the METHODS table by name, and "
                         f"{', '.join(foreign)} is not in METHODS; use jobs=1")


def _units(named, specs: list[MethodSpec], seeds, done: dict | None = None) -> list[tuple]:
    """``(source, dataset, seed, spec names)`` work units: per (dataset, seed), the methods sharing the
    seed's pieces (CE classifier, backbone, hybrids) in one unit and every standalone method in its own;
    image datasets first, so the longest units start first. Cells in ``done`` are left out."""
    done = done or {}
    units = []
    for source, d in sorted(named, key=lambda sd: sd[1].kind != "image"):
        applicable = [s for s in specs if d.kind in s.kinds]
        groups = [[s.name for s in applicable if not s.standalone]] + [[s.name] for s in applicable if s.standalone]
        for seed in seeds:
            for g in groups:
                g = [n for n in g if (d.name, seed, n) not in done] if done else g
                if g:
                    units.append((source, d, seed, g))
    return units


EXECUTORS = ("local", "dask")


def _run_parallel(named: list[tuple[str | OODDataset, OODDataset]], specs: list[MethodSpec], seeds, preset: str,
                  device: str, log, on_cell, jobs: int, classifier: str | None, cells: dict, done: dict,
                  executor: str = "local", scheduler: str | None = None) -> None:
    """Fill ``cells[dataset][method][seed]`` with the cells not in ``done``, computed in worker processes
    (:func:`~ebm_ood.commands.benchmark.workers.run_in_workers`) or on a Dask cluster
    (:func:`~ebm_ood.commands.benchmark.dask_executor.run_on_dask`); a worker that dies fails its unit's cells."""
    import torch

    units = _units(named, specs, seeds, done)
    if executor == "dask":  # a data folder by its absolute path: a worker's working folder may differ
        from ebm_ood.data.folder import is_data_folder

        units = [(os.path.abspath(src) if isinstance(src, str) and is_data_folder(src) else src, *rest)
                 for src, *rest in units]
    tasks = [(source, names, seed, preset, device, classifier) for source, _, seed, names in units]
    name_of = {id(task): d.name for task, (_, d, _, _) in zip(tasks, units)}

    def on_result(task, unit, error):
        _, names, seed = task[:3]
        if unit is None:
            unit = [CellResult(error=error)] * len(names)
        for spec_name, cell in zip(names, unit):
            cells[name_of[id(task)]][spec_name][seed] = cell
            _report(name_of[id(task)], seed, spec_name, cell, log, on_cell)

    if not tasks:
        return
    if executor == "dask":
        from ebm_ood.commands.benchmark.dask_executor import run_on_dask

        run_on_dask(tasks, _worker_init, (torch.get_num_threads(),), _run_unit, on_result, scheduler=scheduler,
                    workers=jobs, log=log)
    else:
        from ebm_ood.commands.benchmark.workers import run_in_workers

        run_in_workers(tasks, jobs, _worker_init, (torch.get_num_threads(),), _run_unit, on_result)


def run_benchmark(datasets: list[str | OODDataset], specs: list[MethodSpec], seeds: list[int], preset: str = "default",
                  device: str = "cpu", log=print, on_cell=None, jobs: int = 1,
                  classifier: str | None = None, done: dict | None = None, executor: str = "local",
                  scheduler: str | None = None) -> tuple[dict, dict]:
    """``datasets``: registered names or loaded datasets (every name is loaded before any training).
    Returns ``(results, timings)``: results ``{dataset: {method: {ood_set: {metric: mean, metric_std:
    std}}}}`` and timings ``{dataset: {method: seconds summed over seeds}}``; each dataset runs only the
    specs whose ``kinds`` include its kind. One :class:`RunContext` per (dataset, seed), so shared pieces
    such as the CE classifier are trained once per seed; ``on_cell(dataset, seed, method, cell)`` (e.g. a
    :class:`CellLog`) gets every cell as soon as it is done. ``done``: ``{(dataset, seed, method):
    CellResult}`` of cells already finished (:meth:`CellLog.start` of an interrupted identical run): they
    are taken as they are, not run again and not passed to ``on_cell``; every method seeds its own
    training from the seed, so the results equal an uninterrupted run's.

    ``jobs > 1`` runs work units in that many worker processes (each with this process's torch thread
    count; :mod:`~ebm_ood.commands.benchmark.workers`): per (dataset, seed) one unit for the methods that share the
    seed's CE classifier and one per standalone method (:func:`_units`); every cell is computed exactly as
    in the serial run, so the results are identical, and ``on_cell`` sees the cells in the order they
    finish. ``classifier`` (``"FILE.py:FUNCTION"``, :mod:`~ebm_ood.commands.benchmark.classifier_file`) replaces
    the CE classifier that the post-hoc detectors and HEAT build on.

    ``executor="dask"`` runs the same units on a Dask distributed cluster instead
    (:mod:`~ebm_ood.commands.benchmark.dask_executor`, extra ``dist``): the running scheduler at ``scheduler``
    (an address such as ``tcp://host:8786``), or without one a local cluster of ``jobs`` worker processes;
    the results are identical to ``jobs=1`` and ``on_cell`` is called in this process as units finish."""
    if int(jobs) != jobs or jobs < 1:
        raise ValueError(f"jobs: expected a positive integer, got {jobs!r}")
    if executor not in EXECUTORS:
        raise ValueError(f"executor: expected one of {', '.join(EXECUTORS)}, got {executor!r}")
    if scheduler is not None and executor != "dask":
        raise ValueError(f"scheduler: a scheduler address needs executor='dask', got executor={executor!r}")
    if executor == "dask":
        from ebm_ood.commands.benchmark.dask_executor import require_dask

        require_dask()
    done = dict(done or {})
    loaded = [(d, get_dataset(d) if isinstance(d, str) else d) for d in datasets]
    cells = {d.name: {s.name: {} for s in specs if d.kind in s.kinds} for _, d in loaded}
    for (name, seed, method), cell in done.items():
        if method in cells.get(name, {}) and seed in seeds:
            cells[name][method][seed] = cell
            log(f"[{name} seed={seed}] {method}: kept from an earlier run ({cell.error or 'ok'})")
    if executor == "dask" or (jobs > 1 and len(_units(loaded, specs, seeds)) > 1):
        _check_registered(specs)
        _run_parallel(loaded, specs, seeds, preset, device, log, on_cell, int(jobs), classifier, cells, done,
                      executor, scheduler)
    else:
        for _, d in loaded:
            for seed in seeds:
                ctx = RunContext(d, seed, preset, device, classifier)  # shared by the seed's methods
                for spec in (s for s in specs if s.name in cells[d.name]):
                    if seed in cells[d.name][spec.name]:
                        continue
                    cell = cells[d.name][spec.name][seed] = run_cell(spec, ctx)
                    _report(d.name, seed, spec.name, cell, log, on_cell)
    return _results(cells, seeds)


def _results(cells: dict, seeds) -> tuple[dict, dict]:
    """``cells[dataset][method][seed]`` → ``(results, timings)`` over the ``seeds`` present (a method without
    any is left out)."""
    results, timings = {}, {}
    for name, by_spec in cells.items():
        present = {m: [by_seed[s] for s in seeds if s in by_seed] for m, by_seed in by_spec.items()}
        results[name], timings[name] = _summarise({m: c for m, c in present.items() if c})
    return results, timings


def kept_results(datasets: list[str], specs: list[MethodSpec], seeds, kept: dict) -> tuple[dict, dict]:
    """``(results, timings)`` as :func:`run_benchmark` gives them, from the cells ``kept`` alone
    (``{(dataset, seed, method): CellResult}``, e.g. :attr:`CellLog.kept` of a run stopped early): each
    row averages the seeds it has (its ``"seeds"`` says how many)."""
    cells = {name: {s.name: {} for s in specs} for name in datasets}
    for (name, seed, method), cell in kept.items():
        if name in cells and method in cells[name]:
            cells[name][method][seed] = cell
    return _results(cells, seeds)
