"""Command line: ``ebm-ood benchmark | bench NAME | experiment NAME | datasets``.

* ``ebm-ood benchmark`` — train every registered method on the embedded datasets and print the
  paper-style tables (``--help`` for flags).
* ``ebm-ood bench sampler|detectors`` — speed benchmarks, ours vs the plain-PyTorch way, with ratios.
* ``ebm-ood experiment NAME`` — the papers' ablations and figures.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import stat
import sys
import tempfile
import time

from ebm_ood.atomic import write_atomic

# name -> module exposing add_arguments(parser) and run(args) -> int
BENCHES = {
    "sampler": "ebm_ood.speed.sampler",
    "detectors": "ebm_ood.speed.detectors",
}
EXPERIMENTS: dict[str, str] = {
    # Elflein et al. 2021, §4.2–4.3 and App. A
    "supervision": "ebm_ood.experiments.supervision",
    "gamma-sweep": "ebm_ood.experiments.gamma_sweep",
    "density-vs-norm": "ebm_ood.experiments.density_vs_norm",
    "embeddings": "ebm_ood.experiments.embeddings",
    "bottleneck": "ebm_ood.experiments.bottleneck",
    "smoothness": "ebm_ood.experiments.smoothness",
    "samples": "ebm_ood.experiments.samples",
    # Lafon et al. 2023 (HEAT), Fig. 3 and Table 4
    "heat-lambda": "ebm_ood.experiments.heat_lambda",
    "heat-beta": "ebm_ood.experiments.heat_beta",
    "heat-lowdata": "ebm_ood.experiments.heat_lowdata",
}

DEFAULT_DATASETS = ("tabular", "digits")


def parse_seeds(text: str) -> list[int]:
    """``"3"`` → [0, 1, 2]; ``"0,5,7"`` → [0, 5, 7] (distinct, non-negative)."""
    try:
        if "," in text:
            seeds = [int(s) for s in text.split(",") if s.strip()]
        else:
            n = int(text)
            if n < 1:
                raise ValueError
            seeds = list(range(n))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds: expected a count (e.g. 3) or a comma list (e.g. 0,1,2), got {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("--seeds: expected at least one seed")
    if min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"--seeds: expected distinct non-negative seeds, got {text!r}")
    return seeds


def check_out_dir(path: str, outputs: tuple[str, ...] = ()) -> str:
    """Create ``path``, prove it is writable (with a probe file of a fresh name, so concurrent runs do not
    collide) and that none of the ``outputs`` (file names in it) is a folder, before any training starts."""
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=path)
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        raise SystemExit(f"error: --out {path!r} is not a writable folder ({err.strerror or err})")
    for name in outputs:
        target = os.path.join(path, name)
        if os.path.lexists(target) and stat.S_ISDIR(os.lstat(target).st_mode):
            raise SystemExit(f"error: --out {path!r}: the output {target!r} is a folder; the results could not be "
                             "written there after training: move it away or choose another --out")
    return path


def threads_note() -> str:
    """The line every Markdown result ends with: the CPU thread count the numbers were computed with."""
    import torch

    n = torch.get_num_threads()
    return (f"Computed with {n} CPU thread{'s' if n != 1 else ''} (`--threads {n}`); one seed reproduces these "
            "numbers exactly for this thread count.")


def run_header(args) -> dict:
    """What every result header records about the run itself: the command's flags and the CPU thread
    count (results are reproducible for one seed and one thread count; see README, Reliability)."""
    import torch

    flags = {k: v for k, v in sorted(vars(args).items()) if isinstance(v, (str, int, float, bool, list, type(None)))}
    return {"threads": torch.get_num_threads(), "flags": flags}


def log_stderr(msg: str) -> None:
    """Progress lines go to stderr (stdout carries the tables)."""
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ flags shared by benchmark and experiments
def add_threads_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: the embedded datasets' tensors are small, so one thread is "
                        "fastest; raise it for real data)")


def apply_threads(n: int) -> None:
    """Set torch's intra-op thread count from ``--threads`` (before any training)."""
    import torch

    if n < 1:
        raise SystemExit(f"error: --threads: expected a positive integer, got {n}")
    torch.set_num_threads(n)


def add_run_arguments(p: argparse.ArgumentParser, out: str, quick_help: str, full: bool = True,
                      seeds: int = 1) -> None:
    """``--seeds --quick [--full] --device --threads --out``: the flags of every command that trains
    (``ebm-ood benchmark`` and ``ebm-ood experiment NAME``); check them with :func:`check_run_arguments`."""
    p.add_argument("--seeds", type=parse_seeds, default=list(range(seeds)),
                   help=f"number of seeds or a comma list (default: {seeds})")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help=quick_help)
    if full:
        size.add_argument("--full", action="store_true", help="the papers' hyperparameters (hours on a CPU)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, or auto")
    add_threads_argument(p)
    p.add_argument("--out", default=out, help=f"output folder (default: {out})")


def preset_of(args) -> str:
    """The methods' preset named by ``--quick`` / ``--full``: "quick", "full" or "default"."""
    return "quick" if args.quick else "full" if getattr(args, "full", False) else "default"


def check_run_arguments(args) -> str:
    """Check ``--device``, ``--out`` (and that none of ``args.outputs``, the command's result files, is a
    folder) and ``--threads`` (before any training; each error names its flag) and apply ``--threads``.
    With ``args.cells`` (a file name) set, start ``args.cell_log``: a :class:`~ebm_ood.benchmark.runner.CellLog`
    in ``--out`` that keeps every finished cell. Returns the resolved device ("cpu", "cuda", ...)."""
    from ebm_ood.checks import resolve_device

    try:
        device = str(resolve_device(args.device))
    except ValueError as err:
        raise SystemExit(f"error: --device: {str(err).removeprefix('device: ')}")
    cells = getattr(args, "cells", None)
    check_out_dir(args.out, tuple(getattr(args, "outputs", ())) + ((cells,) if cells else ()))
    apply_threads(args.threads)
    if cells:
        from ebm_ood.benchmark.runner import CellLog

        args.cell_log = CellLog(os.path.join(args.out, cells), run_header(args))
    return device


def add_benchmark_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", choices=("elflein", "heat", "all"), default="all", help="which paper's methods (default: all)")
    p.add_argument("--dataset", action="append", help=f"dataset name, repeatable (default: {', '.join(DEFAULT_DATASETS)})")
    p.add_argument("--methods", help="comma-separated method names (default: every method of the suite)")
    add_run_arguments(p, "results", "tiny settings for tests (< 1 minute)", seeds=3)
    p.add_argument("--jobs", type=int, default=None,
                   help="worker processes running (dataset, seed) units in parallel, each with --threads torch "
                        "threads; results are identical to --jobs 1 (default: CPU cores // --threads)")
    p.set_defaults(outputs=("results.json", "results.md"), cells="results.cells.jsonl")
    p.add_argument("--json", action="store_true", help="print the JSON instead of Markdown")
    p.add_argument("--metric", choices=("aupr_out_bal", "aupr_in_bal", "auroc_bal", "aupr_in", "aupr_out", "auroc",
                                        "fpr95"), default="aupr_out_bal",
                   help="metric of the Elflein-style table (default aupr_out_bal: the authors' protocol, sets "
                        "truncated to equal length, OOD positive; aupr_in_bal: ID positive as in the paper's text; "
                        "without _bal: the full, unbalanced sets)")


def jobs_of(args) -> int:
    """``--jobs``, or by default as many workers as the CPU cores hold at ``--threads`` threads each."""
    if args.jobs is not None:
        if args.jobs < 1:
            raise SystemExit(f"error: --jobs: expected a positive integer, got {args.jobs}")
        return args.jobs
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, args.threads))


def load_datasets(names: list[str]) -> dict:
    """``{name: OODDataset}``, each loaded once; an unknown or unprepared name is an error naming
    ``--dataset`` (unknown names list the valid ones)."""
    from ebm_ood.data import dataset_names, get_dataset

    valid = dataset_names()
    unknown = [d for d in names if d not in valid]
    if unknown:
        raise SystemExit(f"error: unknown dataset {', '.join(unknown)}; valid names: {', '.join(valid)}")
    loaded = {}
    for name in dict.fromkeys(names):
        try:
            loaded[name] = get_dataset(name)
        except (ValueError, FileNotFoundError) as err:  # e.g. DatasetNotPreparedError: says what to run
            raise SystemExit(f"error: --dataset {name}: {err}")
    return loaded


def run_benchmark_command(args) -> int:
    from ebm_ood.benchmark.methods import methods_for
    from ebm_ood.benchmark.report import render_markdown
    from ebm_ood.benchmark.runner import run_benchmark

    try:
        specs = methods_for(args.suite, [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None)
    except ValueError as err:
        raise SystemExit(f"error: {err}")
    device = check_run_arguments(args)
    datasets = load_datasets(args.dataset or list(DEFAULT_DATASETS))
    preset = preset_of(args)
    t0 = time.perf_counter()
    results, timings = run_benchmark(list(datasets), specs, args.seeds, preset=preset, device=device,
                                     log=log_stderr, on_cell=args.cell_log, jobs=jobs_of(args))
    groups = {name: {k: v.group for k, v in d.ood.items()} for name, d in datasets.items()}
    md = render_markdown(results, timings, groups, specs, preset=preset, seeds=args.seeds, metric=args.metric,
                         total_seconds=time.perf_counter() - t0) + "\n\n" + threads_note()
    text = json.dumps(results, indent=2, sort_keys=True)
    json_path = write_atomic(os.path.join(args.out, "results.json"), text + "\n")
    md_path = write_atomic(os.path.join(args.out, "results.md"), md + "\n")
    print(text if args.json else md)
    log_stderr(f"wrote {json_path} and {md_path}")
    return 0


def _dispatch(table: dict[str, str], kind: str, argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: ebm-ood {kind} {{{','.join(table)}}} [options]")
        return 0 if argv else 2
    name = argv[0]
    if name not in table:
        print(f"error: unknown {kind} {name!r}; valid: {', '.join(table)}", file=sys.stderr)
        return 2
    mod = importlib.import_module(table[name])
    p = argparse.ArgumentParser(prog=f"ebm-ood {kind} {name}", description=(mod.__doc__ or "").strip().splitlines()[0])
    mod.add_arguments(p)
    if kind == "experiment":  # its result files, checked before training; its cells, kept as they finish
        stem = getattr(mod, "NAME", name)
        p.set_defaults(outputs=tuple(f"{stem}.{ext}" for ext in ("json", "md", "png")), cells=f"{stem}.cells.jsonl")
    return int(mod.run(p.parse_args(argv[1:])) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="ebm-ood", description=__doc__.strip().splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    bp = sub.add_parser("benchmark", help="train and evaluate every method; print paper-style tables")
    add_benchmark_arguments(bp)
    sub.add_parser("bench", help=f"speed benchmarks: {', '.join(BENCHES)}", add_help=False)
    sub.add_parser("experiment", help=f"the papers' experiments: {', '.join(EXPERIMENTS) or 'none'}", add_help=False)
    sub.add_parser("datasets", help="list datasets and their OOD sets")
    if argv and argv[0] in ("bench", "experiment"):
        return _dispatch(BENCHES if argv[0] == "bench" else EXPERIMENTS, argv[0], argv[1:])
    args = parser.parse_args(argv)
    if args.command == "benchmark":
        return run_benchmark_command(args)
    if args.command == "datasets":
        from ebm_ood.data import dataset_names, get_dataset

        for name in dataset_names():
            try:
                d = get_dataset(name)
            except Exception as err:  # a real dataset not prepared yet
                print(f"{name}: not available ({err})")
                continue
            sets = ", ".join(f"{k} ({v.group})" for k, v in d.ood.items())
            print(f"{name}: {d.kind} {d.input_shape}, {d.num_classes} ID classes, train/val/test "
                  f"{len(d.x_train)}/{len(d.x_val)}/{len(d.x_test)}; OOD: {sets}")
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
