"""The flags every command that trains shares (``ebm-ood benchmark`` and ``ebm-ood experiment NAME``):
``--seeds --quick/--full --device --threads --out --jobs``, their parsing and their checks, which run before
any training so a bad flag never costs a run; and what every result records about its run (the
thread count, the CPU kind and the flags)."""
from __future__ import annotations

import argparse
import hashlib
import math
import os
import stat
import sys
import tempfile
from typing import Callable

from ebm_ood.plumbing.threads import set_num_threads

MAX_SEED = 2 ** 63  # seeds are below it (every seed of a run must fit torch's signed 64-bit generator state)
MAX_THREADS = 1024  # --threads above it is refused (the OpenMP pool of such a count fails to allocate)


class RunFailed(SystemExit):
    """A run that stopped after it started (exit code 1); every other ``SystemExit("error: ...")`` of the
    commands is an input error found before training (exit code 2, :func:`ebm_ood.commands.cli.main`)."""


def parse_seeds(text: str) -> list[int]:
    """A count or a list: ``"3"`` → [0, 1, 2]; ``"0,5,7"`` → [0, 5, 7]; ``"7,"`` → [7] (distinct,
    non-negative, below :data:`MAX_SEED`). ``"0"`` names seed 0 (a count of zero seeds would run nothing), the same as ``"1"``."""
    try:
        if "," in text:
            seeds = [int(s) for s in text.split(",") if s.strip()]
        else:
            n = int(text)
            if n < 0:
                raise ValueError
            seeds = list(range(max(n, 1)))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds: expected a count (e.g. 3) or a comma list (e.g. 0,1,2), got {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("--seeds: expected at least one seed")
    if min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"--seeds: expected distinct non-negative seeds, got {text!r}")
    if max(seeds) >= MAX_SEED:
        raise argparse.ArgumentTypeError(f"--seeds: expected seeds below 2**63 (torch's seed range), got {max(seeds)}")
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


def check_out_outside_data(out: str, datasets) -> None:
    """``--out`` is neither one of the ``--dataset`` data folders (a path or a list of them) nor inside one:
    a run never writes among the user's data."""
    from ebm_ood.data.folder import is_data_folder

    where = os.path.realpath(out)
    for folder in [datasets] if isinstance(datasets, str) else datasets or []:
        if folder and is_data_folder(folder):
            root = os.path.realpath(folder)
            if where == root or where.startswith(root.rstrip(os.sep) + os.sep):
                raise SystemExit(f"error: --out {out!r} is {'' if where == root else 'inside '}the data folder "
                                 f"{folder!r} (--dataset): results are never written among your data; choose "
                                 "another --out")


def cpu_kind() -> dict:
    """The CPU kind the numbers were computed on: ``{"cpu": model name, "aten_cpu_capability": ...,
    "torch": version}``. The model name comes from ``/proc/cpuinfo`` (else :func:`platform.processor`, else
    the machine type); the ATen capability is the kernel set torch runs (``DEFAULT``, ``AVX2``, ``AVX512``;
    the environment variable ``ATEN_CPU_CAPABILITY`` lowers it). Float results can differ between kinds."""
    import platform

    import torch

    name = ""
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    return {"cpu": name or platform.processor() or platform.machine() or "unknown",
            "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__}


def threads_note() -> str:
    """The line every Markdown result ends with: the CPU kind and thread count the numbers were computed
    with, for which one seed reproduces them exactly."""
    import torch

    n, kind = torch.get_num_threads(), cpu_kind()
    return (f"Computed with {n} CPU thread{'s' if n != 1 else ''} (`--threads {n}`) on {kind['cpu']} (ATen CPU "
            f"capability {kind['aten_cpu_capability']}, torch {kind['torch']}); one seed reproduces these "
            "numbers exactly for this CPU kind and thread count.")


def file_sha256(path: str) -> str:
    """sha256 (hex) of the bytes of the file at ``path``, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def input_contents(args) -> dict:
    """``{path: sha256}`` of the user's files a run reads: the ``--classifier`` FILE and every file of each
    ``--dataset`` data folder (its ``*.npz`` and ``ood/*.npz``). A run header holds them, so a rerun after
    any of them changed is another run (its cells are never mixed with the old ones). Files that cannot be
    read are left out (the loaders report them)."""
    from ebm_ood.data.folder import is_data_folder

    paths = []
    classifier = getattr(args, "classifier", None)
    if classifier:
        paths.append(str(classifier).rpartition(":")[0])
    datasets = getattr(args, "dataset", None) or []
    for folder in [datasets] if isinstance(datasets, str) else datasets:
        if is_data_folder(folder):
            for sub in (folder, os.path.join(folder, "ood")):
                try:
                    names = sorted(os.listdir(sub))
                except OSError:
                    continue
                paths += [os.path.join(sub, n) for n in names if n.endswith(".npz")]
    out = {}
    for path in paths:
        try:
            if stat.S_ISREG(os.stat(path).st_mode):
                out[path] = file_sha256(path)
        except OSError:
            pass
    return out


def run_header(args) -> dict:
    """What every result header records about the run itself: the command's flags, the CPU thread count
    and the CPU kind (:func:`cpu_kind`; results are reproducible for one seed, one CPU kind and one thread
    count; see README, Reliability) and, when the run reads user files, their contents' fingerprints
    (:func:`input_contents`)."""
    import torch

    flags = {k: v for k, v in sorted(vars(args).items()) if isinstance(v, (str, int, float, bool, list, type(None)))}
    contents = input_contents(args)
    return {"threads": torch.get_num_threads(), **cpu_kind(), "flags": flags,
            **({"contents": contents} if contents else {})}


def log_stderr(msg: str) -> None:
    """Progress lines go to stderr (stdout carries the tables)."""
    print(msg, file=sys.stderr, flush=True)


def add_threads_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: the embedded datasets' tensors are small, so one thread is "
                        "fastest; raise it for real data)")


def check_threads(n: int) -> None:
    """Check ``--threads`` (and ``$EBM_OOD_THREADS``, which it overrides) without applying it."""
    if n < 1:
        raise SystemExit(f"error: --threads: expected a positive integer, got {n}")
    if n > MAX_THREADS:
        raise SystemExit(f"error: --threads: expected at most {MAX_THREADS} threads, got {n}")
    from ebm_ood.plumbing.threads import _env_threads

    try:
        _env_threads()
    except ValueError as err:
        raise SystemExit(f"error: {err} (unset it, or set a positive integer; --threads decides the CLI's count)")


def apply_threads(n: int) -> None:
    """Set torch's intra-op thread count from ``--threads`` (before any training), once checked
    (:func:`check_threads`), as an explicit choice that library calls keep
    (:func:`ebm_ood.plumbing.threads.set_num_threads`)."""
    check_threads(n)
    set_num_threads(n)


def add_run_arguments(p: argparse.ArgumentParser, out: str, quick_help: str, full: bool = True,
                      seeds: int = 1) -> None:
    """``--seeds --quick [--full] --device --threads --out``: the flags of every command that trains
    (``ebm-ood benchmark`` and ``ebm-ood experiment NAME``); check them with :func:`check_run_arguments`, apply them with :func:`start_run`."""
    p.add_argument("--seeds", type=parse_seeds, default=list(range(seeds)),
                   help=f"a count (3: seeds 0,1,2; 0 or 1: seed 0) or a comma list of seeds (5,9 or 7,) "
                        f"(default: {seeds})")
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
    """Check ``--device``, ``--out`` (and that none of ``args.outputs``, the command's result files, nor
    ``args.cells``, is a folder) and ``--threads``, before any training; each error names its flag. It only
    checks: :func:`start_run` then applies them. Returns the resolved device ("cpu", "cuda", ...)."""
    from ebm_ood.plumbing.checks import resolve_device

    try:
        device = str(resolve_device(args.device))
    except ValueError as err:
        raise SystemExit(f"error: --device: {str(err).removeprefix('device: ')}")
    cells = getattr(args, "cells", None)
    check_out_outside_data(args.out, getattr(args, "dataset", None))
    check_out_dir(args.out, tuple(getattr(args, "outputs", ())) + ((cells,) if cells else ()))
    check_threads(args.threads)
    return device


def start_run(args) -> None:
    """Apply the checked flags of a command that trains (after :func:`check_run_arguments`): set
    ``--threads``; with ``args.cells`` (a file name) set, make ``args.cell_log``, a
    :class:`~ebm_ood.commands.cell_log.CellLog` in ``--out`` that keeps every finished cell, and take its lock
    on ``--out`` (a second run into the folder is refused); the log touches no file until the command starts
    it."""
    set_num_threads(args.threads)
    cells = getattr(args, "cells", None)
    if cells:
        from ebm_ood.commands.cell_log import CellLog

        args.cell_log = CellLog(os.path.join(args.out, cells), run_header(args))
        lock_out(args.cell_log)


def lock_out(cell_log) -> None:
    """Take the ``--out`` folder lock of ``cell_log`` now (it writes nothing): a second run into the same
    folder is refused before it trains, whether or not its command keeps cells."""
    from ebm_ood.commands.cell_log import RunLockedError

    try:
        cell_log.lock()
    except RunLockedError as err:
        raise SystemExit(f"error: {err}")


def dataset_source(name: str) -> str:
    """What ``--dataset name`` loads: a path that exists wins over a built-in dataset of the same name
    (``./digits`` when the folder ``digits`` is a data folder); an existing path that is not a data folder
    but spells a built-in name is an error naming both."""
    from ebm_ood.data import dataset_names
    from ebm_ood.data.folder import LAYOUT, is_data_folder

    if name not in dataset_names() or not os.path.lexists(name):
        return name
    if is_data_folder(name):
        log_stderr(f"--dataset {name}: the data folder {os.path.join('.', name)} (not the built-in dataset {name})")
        return os.path.join(".", name)
    raise SystemExit(f"error: --dataset {name}: names both the built-in dataset and {os.path.join('.', name)!r}, "
                     f"which is not a data folder ({LAYOUT}); run from another folder to use the built-in one, "
                     "or give the path of your data folder")


def jobs_of(args) -> int:
    """``--jobs``, or by default as many workers as the CPU cores hold at ``--threads`` threads each."""
    if args.jobs is not None:
        if args.jobs < 1:
            raise SystemExit(f"error: --jobs: expected a positive integer, got {args.jobs}")
        return args.jobs
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, args.threads))


def parse_floats(text: str, flag: str, valid: Callable[[float], bool] = math.isfinite,
                 expected: str = "finite numbers") -> tuple[float, ...]:
    """A comma list of numbers for ``flag`` (e.g. ``--gammas 0.1,1``), each passing ``valid``; else an
    error naming the flag and ``expected``."""
    try:
        vals = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise SystemExit(f"error: {flag}: expected a comma list of numbers, got {text!r}") from None
    if not vals or not all(math.isfinite(v) and valid(v) for v in vals):
        raise SystemExit(f"error: {flag}: expected {expected}, got {text!r}")
    return vals
