"""``ebm-ood benchmark``: every method of the chosen suites on the chosen datasets and seeds, printed as the
papers' tables (Markdown) and written to ``--out`` (``results.md``, ``results.json``, and every finished
cell as it completes in ``results.cells.jsonl``)."""
from __future__ import annotations

import argparse
import json
import os
import time

from ebm_ood import __version__
from ebm_ood.atomic import write_atomic
from ebm_ood.benchmark.methods import METHODS, methods_for
from ebm_ood.benchmark import report
from ebm_ood.benchmark.classifier_file import load_classifier
from ebm_ood.benchmark.runner import run_benchmark
from ebm_ood.tables import ELFLEIN_METRIC, METRIC_LABELS
from ebm_ood.data import dataset_names, get_dataset
from ebm_ood.data.folder import LAYOUT, is_data_folder
from ebm_ood.flags import add_run_arguments, check_run_arguments, jobs_of, log_stderr, preset_of, threads_note

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
                        "it (see ebm_ood/benchmark/classifier_file.py; default: a CE classifier trained per seed)")
    add_run_arguments(p, "results", "tiny settings for tests (< 1 minute)", seeds=3)
    p.add_argument("--jobs", type=int, default=None,
                   help="worker processes running (dataset, seed) units in parallel, each with --threads torch "
                        "threads; results are identical to --jobs 1 (default: CPU cores // --threads)")
    p.set_defaults(outputs=("results.json", "results.md"), cells="results.cells.jsonl")
    p.add_argument("--json", action="store_true", help="print the JSON instead of Markdown")
    p.add_argument("--metric", choices=tuple(METRIC_LABELS), default=ELFLEIN_METRIC,
                   help="metric of the Elflein-style table (default aupr_out_bal: the authors' protocol, sets "
                        "truncated to equal length, OOD positive; aupr_in_bal: ID positive as in the paper's text; "
                        "without _bal: the full, unbalanced sets)")


def specs_from_args(args) -> list:
    """The methods of ``--suite`` (all of them, or those named by ``--methods``); a named method outside an
    explicitly chosen suite is an error naming both flags."""
    names = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
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
    """``{name: OODDataset}``, each loaded once; an unknown or unprepared name is an error naming
    ``--dataset`` (unknown names list the valid ones)."""
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
    return loaded


def header(args, preset: str) -> dict:
    """What ``results.json`` records about its run: enough to rerun it and to know what the numbers mean
    (including the CPU kind and thread count, for which one seed reproduces them exactly)."""
    import torch

    from ebm_ood.flags import cpu_kind

    return {"command": "ebm-ood benchmark", "version": __version__, "preset": preset, "seeds": list(args.seeds),
            "threads": torch.get_num_threads(), **cpu_kind(), "metric": args.metric, "suite": args.suite,
            **({"classifier": args.classifier} if args.classifier else {})}


def run(args) -> int:
    specs = specs_from_args(args)
    if args.classifier:
        try:
            load_classifier(args.classifier)
        except (ValueError, TypeError, FileNotFoundError) as err:
            raise SystemExit(f"error: {err}")
    device = check_run_arguments(args)
    datasets = load_datasets(args.dataset or list(DEFAULT_DATASETS))
    preset = preset_of(args)
    t0 = time.perf_counter()
    results, timings = run_benchmark(list(datasets), specs, args.seeds, preset=preset, device=device,
                                     log=log_stderr, on_cell=args.cell_log, jobs=jobs_of(args), classifier=args.classifier)
    groups = {d.name: {k: v.group for k, v in d.ood.items()} for d in datasets.values()}
    md = report.render_markdown(results, timings, groups, specs, preset=preset, seeds=args.seeds, metric=args.metric,
                                total_seconds=time.perf_counter() - t0) + "\n\n" + threads_note()
    text = json.dumps({"header": header(args, preset), "results": results}, indent=2, sort_keys=True)
    json_path = write_atomic(os.path.join(args.out, "results.json"), text + "\n")
    md_path = write_atomic(os.path.join(args.out, "results.md"), md + "\n")
    print(text if args.json else md)
    log_stderr(f"wrote {json_path} and {md_path}")
    return 0
