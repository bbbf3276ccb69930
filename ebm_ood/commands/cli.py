"""Command line: ``ebm-ood benchmark | bench NAME | experiment NAME | datasets``.

* ``ebm-ood benchmark`` — train every method on the embedded datasets and print the papers' tables.
* ``ebm-ood bench sampler|detectors|threads`` — speed benchmarks, ours against the peers, with ratios.
* ``ebm-ood experiment NAME`` — the papers' ablations and figures.

Each command is a module with ``add_arguments(parser)`` and ``run(args) -> int``; the tables below name them.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading

from ebm_ood.commands.benchmark import command as benchmark
from ebm_ood.commands.cell_log import CellLogError
from ebm_ood.data import dataset_names, get_dataset
from ebm_ood.commands.flags import RunFailed
from ebm_ood.commands.experiments import (bottleneck, density_vs_norm, embeddings, gamma_sweep, heat_beta, heat_diagnose,
                                          heat_lambda, heat_lowdata, samples, smoothness, supervision)
from ebm_ood.commands.speed import detectors as speed_detectors
from ebm_ood.commands.speed import sampler as speed_sampler
from ebm_ood.commands.speed import thread_scaling as speed_threads
from ebm_ood.commands.speed import units as speed_units

BENCHES = {"sampler": speed_sampler, "detectors": speed_detectors, "threads": speed_threads, "units": speed_units}
EXPERIMENTS = {
    # Elflein et al. 2021, §4.2–4.3 and App. A
    "supervision": supervision, "gamma-sweep": gamma_sweep, "density-vs-norm": density_vs_norm,
    "embeddings": embeddings, "bottleneck": bottleneck, "smoothness": smoothness, "samples": samples,
    # Lafon et al. 2023 (HEAT), Fig. 3 and Fig. 4
    "heat-lambda": heat_lambda, "heat-beta": heat_beta, "heat-lowdata": heat_lowdata,
    # HEAT: what the residual learns (no figure of the paper)
    "heat-diagnose": heat_diagnose,
}


def run_command(run, args) -> int:
    """``run(args)``, stopped cleanly by Ctrl-C or SIGTERM: one line saying where the finished cells are
    kept, exit code 130 (Ctrl-C) or 143 (SIGTERM), no traceback; exit code 1 when a cell of the run's
    cells log failed; the cells log is released at the end either way."""
    received = []

    def on_sigterm(signum, frame):
        received.append(signum)
        raise KeyboardInterrupt

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, on_sigterm) if main_thread else None
    try:
        code = int(run(args) or 0)
        log = getattr(args, "cell_log", None)
        failed = sorted({m for (_, _, m), c in (log.kept or {}).items() if c.error}) if log is not None else []
        if code == 0 and failed:  # e.g. an experiment's diverged model: its table says why
            print(f"{len(failed)} method{'s' * (len(failed) != 1)} failed: {', '.join(failed)} (reasons in "
                  f"{log.path})", file=sys.stderr, flush=True)
            return 1
        return code
    except KeyboardInterrupt:
        log = getattr(args, "cell_log", None)
        kept = (f"; every finished cell is kept in {log.path}: rerun the same command to resume"
                if log is not None and log.started else "")
        print(f"ebm-ood: stopped by {'SIGTERM' if received else 'Ctrl-C'}{kept}", file=sys.stderr, flush=True)
        return 143 if received else 130
    except CellLogError as err:  # a full disk or a read-only file mid-run (the log ends with a whole line)
        print(f"error: {err}; rerun the same command to resume from the cells kept", file=sys.stderr, flush=True)
        return 1
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
        if getattr(args, "cell_log", None) is not None:
            args.cell_log.close()


def list_datasets() -> int:
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


def main(argv: list[str] | None = None) -> int:
    """The ``ebm-ood`` command. Called with ``argv`` (in-process), an error raises ``SystemExit(message)``;
    called as the process (``argv`` None), its message goes to stderr and the exit code is 2 for a bad flag,
    path or file named on the command line, 1 for a run that failed after it started (:class:`RunFailed`)."""
    if argv is not None:
        return _main(list(argv))
    try:
        return _main(sys.argv[1:])
    except SystemExit as err:
        if not isinstance(err.code, str):
            raise
        print(err.code, file=sys.stderr, flush=True)
        return 1 if isinstance(err, RunFailed) else 2


def _listing(kind: str, table: dict) -> str:
    """The NAMEs of ``ebm-ood bench`` or ``ebm-ood experiment``, one line each with its summary."""
    width = max(map(len, table))
    return "\n".join([f"{kind.upper()} NAME:"] + [f"  {name:<{width}}  {mod.SUMMARY}" for name, mod in table.items()]
                     + ["", f"`ebm-ood {kind} NAME --help` lists the options of one."])


def build_parser() -> argparse.ArgumentParser:
    """The one parser of ``ebm-ood``: a subcommand per command, and under ``bench`` and ``experiment`` one per
    entry of :data:`BENCHES` and :data:`EXPERIMENTS`. A parsed command carries the function that runs it
    (``_run``); ``bench`` or ``experiment`` without a NAME carries its own parser (``_group``) to print."""
    parser = argparse.ArgumentParser(prog="ebm-ood", description="OOD detection with energy-based models: the papers' tables, experiments and speed benchmarks.")
    sub = parser.add_subparsers(metavar="COMMAND")
    p = sub.add_parser("benchmark", help=benchmark.SUMMARY, description=benchmark.SUMMARY)
    benchmark.add_arguments(p)
    p.set_defaults(command="benchmark", _run=benchmark.run)
    for kind, table, what in (("bench", BENCHES, "speed benchmarks"), ("experiment", EXPERIMENTS, "the papers' experiments")):
        group = sub.add_parser(kind, help=f"{what}: {', '.join(table)}", usage=f"ebm-ood {kind} NAME [options]",
                               description=_listing(kind, table),
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        group.set_defaults(_group=group)
        names = group.add_subparsers(metavar="NAME", help=argparse.SUPPRESS)
        for name, mod in table.items():
            p = names.add_parser(name, prog=f"ebm-ood {kind} {name}", description=mod.SUMMARY)
            mod.add_arguments(p)
            p.set_defaults(_run=mod.run)
            if kind == "experiment":  # its result files, checked before training; its cells, kept as they finish
                p.set_defaults(outputs=tuple(f"{mod.NAME}.{ext}" for ext in ("json", "md", "png")), cells=f"{mod.NAME}.cells.jsonl")
    sub.add_parser("datasets", help="list datasets and their OOD sets").set_defaults(_run=lambda args: list_datasets())
    return parser


def _main(argv: list[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help: printed, a success
        if stop.code == 0:
            return 0
        raise
    run = getattr(args, "_run", None)
    if run is None:  # `ebm-ood`, `ebm-ood bench` or `ebm-ood experiment` without a name
        group = getattr(args, "_group", None)
        group.print_help(sys.stderr) if group is not None else parser.print_help()
        return 2
    return run_command(run, args)


if __name__ == "__main__":
    raise SystemExit(main())
