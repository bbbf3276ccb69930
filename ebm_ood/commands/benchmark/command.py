"""``ebm-ood benchmark``: every method of the chosen suites on the chosen datasets and seeds, printed as the
papers' tables (Markdown) and written to ``--out`` (``results.md``, ``results.json``, and every finished
cell as it completes in ``results.cells.jsonl``)."""
from __future__ import annotations

import argparse
import json
import os
import time

from ebm_ood import __version__
from ebm_ood.plumbing.atomic import write_atomic
from ebm_ood.commands.benchmark.registry import METHODS, methods_for
from ebm_ood.commands.benchmark import report
from ebm_ood.commands.benchmark.classifier_file import load_classifier
from ebm_ood.commands.cell_log import CellLogError, RunLockedError
from ebm_ood.commands.benchmark.dask_executor import SchedulerUnreachable
from ebm_ood.commands.benchmark.runner import kept_results, run_benchmark
from ebm_ood.tables import ELFLEIN_METRIC, METRIC_LABELS
from ebm_ood.data import dataset_names, get_dataset
from ebm_ood.data.folder import LAYOUT, is_data_folder
from ebm_ood.commands.flags import (RunFailed, add_run_arguments, check_run_arguments, start_run, dataset_source, jobs_of, log_stderr, preset_of,
                                    threads_note)

SUMMARY = "train and evaluate every method; print the papers' tables"
DEFAULT_DATASETS = ("tabular", "digits")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", choices=("elflein", "heat", "all"), default="all", help="which paper's methods (default: all)")
    p.add_argument("--dataset", action="append", help=f"dataset name or the path of your own data folder "
                   f"({LAYOUT}; see ebm_ood/data/folder.py), repeatable (default: {', '.join(DEFAULT_DATASETS)})")
    p.add_argument("--methods", help="comma-separated method names of the suite (default: every method of the suite); "
                                     f"all: {', '.join(METHODS)}")
    p.add_argument("--classifier", metavar="FILE.py:FUNCTION",
                   help="your trained classifier for the post-hoc detectors and HEAT: FUNCTION() in FILE.py returns "
                        "it (see ebm_ood/commands/benchmark/classifier_file.py; default: a CE classifier trained per seed)")
    add_run_arguments(p, "results", "tiny settings for tests (< 1 minute)", seeds=3)
    p.add_argument("--jobs", type=int, default=None,
                   help="worker processes running (dataset, seed) units in parallel, each with --threads torch "
                        "threads; results are identical to --jobs 1 (default: CPU cores // --threads)")
    p.add_argument("--executor", choices=("local", "dask"), default="local",
                   help="who runs the units: local worker processes (default), or a Dask distributed cluster "
                        "(extra: pip install -e \".[dist]\"): the one at --scheduler, else a local one of --jobs "
                        "worker processes; results are identical to --jobs 1")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="with --executor dask: a running Dask scheduler (e.g. tcp://host:8786) whose workers run "
                        "the units, each with ebm_ood and the datasets installed (dask worker ADDRESS --nthreads 1)")
    p.set_defaults(outputs=("results.json", "results.md"), cells="results.cells.jsonl")
    p.add_argument("--json", action="store_true", help="print the JSON instead of Markdown")
    p.add_argument("--metric", choices=tuple(METRIC_LABELS), default=ELFLEIN_METRIC,
                   help="metric of the Elflein-style table (default aupr_out_bal: the authors' protocol, sets "
                        "truncated to equal length, OOD positive; aupr_in_bal: ID positive as in the paper's text; "
                        "without _bal: the full, unbalanced sets)")


def specs_from_args(args) -> list:
    """The methods of ``--suite`` (all of them, or those named by ``--methods``); a named method outside an
    explicitly chosen suite is an error naming both flags."""
    names = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods is not None else None
    if names == []:
        raise SystemExit(f"error: --methods: expected comma-separated method names, got {args.methods!r}; "
                         "leave the flag out to run every method of the suite")
    try:
        specs = methods_for("all" if names else args.suite, names)
    except ValueError as err:
        raise SystemExit(f"error: --{str(err).split(':')[0]}:{str(err).split(':', 1)[1]}")
    if names and args.suite != "all":
        outside = [s.name for s in specs if args.suite not in s.suites]
        if outside:
            raise SystemExit(f"error: --methods {', '.join(outside)}: not in --suite {args.suite} "
                             f"(its methods: {', '.join(s.name for s in methods_for(args.suite))}); "
                             "drop --suite to run methods of both papers")
    return specs


def load_datasets(names: list[str]) -> dict:
    """``{source: OODDataset}``, each loaded once; an unknown or unprepared name is an error naming
    ``--dataset`` (unknown names list the valid ones), and so are two sources whose datasets have the same
    name (the results are keyed by it). ``run`` passes the ``--dataset`` names through
    :func:`~ebm_ood.commands.flags.dataset_source` first (an existing path wins over a built-in name)."""
    valid = dataset_names()
    unknown = [d for d in names if d not in valid and not is_data_folder(d)]
    if unknown:
        raise SystemExit(f"error: --dataset: unknown {', '.join(unknown)}; valid names: {', '.join(valid)}, or the "
                         f"path of a data folder holding {LAYOUT}")
    loaded = {}
    for name in dict.fromkeys(names):
        try:
            loaded[name] = get_dataset(name)
        except (ValueError, FileNotFoundError) as err:  # e.g. DatasetNotPreparedError: says what to run
            raise SystemExit(f"error: --dataset {name}: {err}")
    by_name: dict[str, list[str]] = {}
    for source, d in loaded.items():
        by_name.setdefault(d.name, []).append(source)
    clashes = [f"{' and '.join(s)} (both {n!r})" for n, s in by_name.items() if len(s) > 1]
    if clashes:
        raise SystemExit(f"error: --dataset: {'; '.join(clashes)}: the results name each dataset by its folder's "
                         "name, so these would overwrite each other; rename or copy one folder")
    return loaded


def header(args, preset: str) -> dict:
    """What ``results.json`` records about its run: enough to rerun it and to know what the numbers mean
    (including the CPU kind and thread count, for which one seed reproduces them exactly)."""
    import torch

    from ebm_ood.commands.flags import cpu_kind

    return {"command": "ebm-ood benchmark", "version": __version__, "preset": preset, "seeds": list(args.seeds),
            "threads": torch.get_num_threads(), **cpu_kind(), "metric": args.metric, "suite": args.suite,
            **({"classifier": args.classifier} if args.classifier else {})}


def check_classifier(args, specs) -> None:
    """``--classifier``: loaded once here (its problems are errors naming the flag, before training), and
    refused when no chosen method uses it (only the HEAT suite's methods build on a classifier)."""
    if args.classifier is None:
        return
    users = [s.name for s in specs if "heat" in s.suites]
    if not users:
        raise SystemExit(f"error: --classifier: none of the chosen methods ({', '.join(s.name for s in specs)}) uses "
                         "a classifier; the post-hoc detectors and HEAT do (--suite heat or all, or --methods MSP,...)")
    try:
        load_classifier(args.classifier)
    except (ValueError, TypeError, FileNotFoundError) as err:
        raise SystemExit(f"error: {err}")


def check_executor(args) -> None:
    """``--executor`` / ``--scheduler`` / ``--jobs``: a scheduler only with the dask executor and without
    ``--jobs`` (its workers run the units), and the dask executor only with Dask distributed installed."""
    if args.scheduler is not None and args.executor != "dask":
        raise SystemExit("error: --scheduler: needs --executor dask (the local executor runs --jobs worker processes)")
    if args.scheduler is not None and args.jobs is not None:
        raise SystemExit("error: --jobs: the workers of --scheduler run the units; leave --jobs out (start as many "
                         "dask workers as you want units at once)")
    if args.scheduler is not None and not args.scheduler.strip():
        raise SystemExit("error: --scheduler: expected an address such as tcp://host:8786, got an empty string")
    if args.executor == "dask":
        from ebm_ood.commands.benchmark.dask_executor import require_dask

        try:
            require_dask()
        except ImportError as err:
            raise SystemExit(f"error: --executor dask: {err}")


def _write(path: str, text: str) -> str | None:
    """``write_atomic(path, text)``; on an OS error (read-only folder, full disk) None and a line naming the path."""
    try:
        return write_atomic(path, text)
    except OSError as err:
        log_stderr(f"error: could not write {path}: {err.strerror or err}")
        return None


def run(args) -> int:
    """Check every flag, start the cells log (resuming an interrupted identical run), run, write and print
    the tables. Exit code 1 when a cell failed or a result file could not be written (the tables are still
    printed, from every cell kept)."""
    specs = specs_from_args(args)
    check_classifier(args, specs)
    check_executor(args)
    device = check_run_arguments(args)
    start_run(args)
    datasets = load_datasets([dataset_source(n) for n in args.dataset] if args.dataset else list(DEFAULT_DATASETS))
    preset, jobs = preset_of(args), jobs_of(args)
    cell_log = args.cell_log
    try:
        done = cell_log.start()
    except RunLockedError as err:
        raise SystemExit(f"error: {err}")
    t0 = time.perf_counter()
    stopped = None
    try:
        results, timings = run_benchmark(list(datasets), specs, args.seeds, preset=preset, device=device,
                                         log=log_stderr, on_cell=cell_log, jobs=jobs, classifier=args.classifier,
                                         done=done, executor=args.executor, scheduler=args.scheduler)
    except SchedulerUnreachable as err:  # nothing ran
        raise RunFailed(f"error: --scheduler: {err}")
    except CellLogError as err:  # e.g. a full disk: the tables of the cells kept, then the error
        stopped = err
        results, timings = kept_results([d.name for d in datasets.values()], specs, args.seeds, cell_log.kept)
    groups = {d.name: {k: v.group for k, v in d.ood.items()} for d in datasets.values()}
    md = report.render_markdown(results, timings, groups, specs, preset=preset, seeds=args.seeds, metric=args.metric,
                                total_seconds=time.perf_counter() - t0) + "\n\n" + threads_note()
    text = json.dumps({"header": header(args, preset), "results": results}, indent=2, sort_keys=True)
    if stopped is not None:
        print(text if args.json else md)
        raise RunFailed(f"error: {stopped}; stopped: the tables above hold the {len(cell_log.kept)} cells kept "
                         "there; free space (or make it writable) and rerun the same command to resume")
    json_path = _write(os.path.join(args.out, "results.json"), text + "\n")
    md_path = _write(os.path.join(args.out, "results.md"), md + "\n")
    print(text if args.json else md)
    failed = sorted({f"{d}/{m}" for d, per in results.items() for m, r in per.items() if "error" in r})
    if json_path and md_path:
        log_stderr(f"wrote {json_path} and {md_path}")
    else:
        log_stderr(f"the tables are printed above; every finished cell is kept in {cell_log.path}")
    if failed:
        log_stderr(f"{len(failed)} method{'s' * (len(failed) != 1)} failed: {', '.join(failed)} (reasons in the tables)")
    return 1 if failed or not (json_path and md_path) else 0
