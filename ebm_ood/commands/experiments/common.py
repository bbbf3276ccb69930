"""What every Elflein experiment (§4.2–4.3, App. A, Experiments 2–6) shares.

* the EBM methods by table name (CD, SSM, VERA) and their configs: the benchmark's preset
  (``cd_config(preset, kind)`` …) with experiment overrides such as ``gamma`` or ``bottleneck``;
* the seeds loop: the benchmark runner's (:func:`~ebm_ood.commands.benchmark.runner.run_benchmark`): one
  :class:`RunContext` per seed, so the CE classifier of the ``-E`` methods is trained once per
  (dataset, seed); the dataset is loaded once per process (:func:`load_dataset`);
* the flags of every Elflein experiment (``--dataset --methods --steps --metric`` and those of
  :func:`ebm_ood.commands.flags.add_run_arguments`).

The "% improvement" arithmetic is in :mod:`ebm_ood.commands.experiments.improvement`, writing results in
:mod:`ebm_ood.commands.experiments.output`.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from typing import Callable

from ebm_ood.commands.benchmark.registry import GENERATIVE, MethodSpec, RunContext
from ebm_ood.commands.cell_log import RunLockedError
from ebm_ood.commands.benchmark.runner import run_benchmark
from ebm_ood.tables import METRIC_LABELS
from ebm_ood.commands.experiments.improvement import METRIC, improvement_by_group
from ebm_ood.commands.flags import add_run_arguments, check_run_arguments, start_run, dataset_source, log_stderr, preset_of
from ebm_ood.data import NATURAL, NON_NATURAL, OODDataset, get_dataset
from ebm_ood.presets import WARMUP_SHARE

EBM_METHODS = ("CD", "SSM", "VERA")  # the benchmark's generative methods whose configs have a ``gamma`` field
QUICK_STEPS = 30  # --quick: the methods' "quick" preset, at most this many training steps
# --quick also shrinks what the methods' quick presets leave at full size (fields a method lacks are skipped)
QUICK_OVERRIDES = {"CD": {"conditional_sgld_steps": 5}, "SSM": {"val_projections": 1}, "VERA": {"n_importance": 5}}


@dataclass
class Settings:
    """What every experiment is run on and with."""

    dataset: str = "digits"  # registered dataset name (``ebm-ood datasets``)
    methods: tuple[str, ...] = ("CD", "SSM", "VERA")  # EBM methods (of EBM_METHODS)
    seeds: tuple[int, ...] = (0,)  # one model per seed; tables average over seeds
    preset: str = "default"  # the methods' preset: "quick" | "default" | "full"
    steps: int | None = None  # override every EBM's training steps (None: the preset's)
    device: str = "cpu"
    metric: str = METRIC  # the tables' metric (a key of ebm_ood.tables.METRIC_LABELS)
    cell_log: Callable | None = field(default=None, repr=False, compare=False)  # gets every finished cell (CellLog)

    def header(self, experiment: str) -> dict:
        """The fields every experiment's JSON starts with: which experiment, on what, with which budget
        and which metric."""
        return {"experiment": experiment, "dataset": self.dataset, "preset": self.preset, "steps": self.steps,
                "seeds": list(self.seeds), "metric": self.metric}


@lru_cache(maxsize=1)
def load_dataset(name: str) -> OODDataset:
    """``get_dataset(name)``, loaded once per process for the experiments (flag checks, training and
    tables all read the same object; nothing here modifies it)."""
    return get_dataset(name)


# ------------------------------------------------------------------------------------------- flags
def add_common_arguments(p: argparse.ArgumentParser, name: str, methods: tuple[str, ...] = ("CD", "SSM", "VERA"),
                         dataset: str = "digits", gamma: bool = False) -> None:
    """``--dataset --methods --steps`` and the flags of every training command (``--seeds --quick/--full
    --device --threads --out``, out: results/experiments/<name>), and ``--gamma`` with ``gamma=True``."""
    p.add_argument("--dataset", default=dataset, help=f"dataset name or the path of your own data folder "
                   f"(default: {dataset})")
    p.add_argument("--methods", default=",".join(methods), help=f"comma-separated EBM methods of {', '.join(EBM_METHODS)} "
                   f"(default: {','.join(methods)})")
    p.add_argument("--steps", type=int, default=None, help="override every EBM's training steps")
    p.add_argument("--metric", choices=tuple(METRIC_LABELS), default=METRIC,
                   help=f"the tables' metric (default {METRIC}: the authors' protocol, balanced sets, OOD positive; "
                        "aupr_in_bal: ID positive as in the paper's text; no _bal: the full, unbalanced sets)")
    add_run_arguments(p, os.path.join("results", "experiments", name),
                      f"tiny settings (seconds): quick presets, <= {QUICK_STEPS} steps")
    if gamma:  # experiments that compare an unsupervised EBM with its supervised (-S) version
        p.add_argument("--gamma", type=float, default=1.0, help="weight γ of the CE term of the supervised "
                       "models (default 1, Elflein App. A)")


def dataset_from_args(args, image_only: bool = False) -> OODDataset:
    """The ``--dataset`` (loaded once, :func:`load_dataset`); unknown, unprepared or (``image_only``)
    tabular datasets are errors naming the flag. The name goes through the benchmark's
    :func:`~ebm_ood.commands.flags.dataset_source` first (an existing data folder wins over a built-in name; ``args.dataset``
    becomes the source loaded)."""
    args.dataset = dataset_source(args.dataset)
    try:
        d = load_dataset(args.dataset)
    except (ValueError, FileNotFoundError) as err:  # unknown name (lists the valid ones) or not prepared
        raise SystemExit(f"error: --dataset: {err}")
    if image_only and d.kind != "image":
        raise SystemExit(f"error: --dataset {args.dataset!r} is {d.kind}; this experiment needs an image dataset")
    return d


def settings_from_args(args, image_only: bool = False) -> Settings:
    """Validate the common flags (before any training) and return :class:`Settings`."""
    methods = tuple(m.strip().upper() for m in args.methods.split(",") if m.strip())
    unknown = [m for m in methods if m not in EBM_METHODS]
    if unknown or not methods:
        raise SystemExit(f"error: --methods: unknown {', '.join(unknown) or '(none)'}; valid: {', '.join(EBM_METHODS)}")
    if args.steps is not None and args.steps < 1:
        raise SystemExit(f"error: --steps: expected a positive integer, got {args.steps}")
    dataset_from_args(args, image_only)
    device = check_run_arguments(args)
    start_run(args)
    steps = args.steps if args.steps is not None else (QUICK_STEPS if args.quick else None)
    return Settings(args.dataset, tuple(dict.fromkeys(methods)), tuple(args.seeds), preset_of(args), steps, device,
                    getattr(args, "metric", METRIC), cell_log=getattr(args, "cell_log", None))


# ------------------------------------------------------------------------------------------- methods
def _method(name: str):
    """``(detector class, config preset function)`` of the EBM ``name`` — the benchmark's."""
    if name not in EBM_METHODS:
        raise ValueError(f"method: unknown {name!r}; valid: {', '.join(EBM_METHODS)}")
    return GENERATIVE[name]


def supports(method: str, option: str) -> bool:
    """Whether ``method``'s config has the field ``option`` (e.g. ``"gamma"``, ``"bottleneck"``)."""
    _, make = _method(method)
    return option in {f.name for f in fields(make("quick", "image"))}


def method_config(method: str, settings: Settings, kind: str, **overrides):
    """``method``'s config for ``settings.preset`` and ``kind`` ("image" | "tabular") — the benchmark's —
    with a progress bar (on stderr) unless the preset is quick, ``settings.steps`` applied (in place of the
    preset's epochs too), :data:`QUICK_OVERRIDES` for the quick preset,
    and ``overrides`` (config fields) set."""
    _, make = _method(method)
    cfg = make(settings.preset, kind)
    known = {f.name for f in fields(cfg)}
    missing = [k for k in overrides if k not in known]
    if missing:
        raise ValueError(f"{method}: its config has no field {', '.join(missing)} (needed by this experiment)")
    train = replace(cfg.train, progress=settings.preset != "quick")
    if settings.preset == "quick":
        overrides = {**{k: v for k, v in QUICK_OVERRIDES.get(method, {}).items() if k in known}, **overrides}
    if settings.steps is not None:
        train = replace(train, steps=settings.steps, epochs=None, eval_every=min(train.eval_every, settings.steps),
                        warmup_share=WARMUP_SHARE)  # the trainer caps the warm-up (training.effective_warmup)
    return replace(cfg, train=train, **overrides)


def build_ebm(method: str, settings: Settings, ctx: RunContext, kind: str | None = None, **overrides):
    """An unfitted ``method`` detector with :func:`method_config` for ``kind`` (default: the dataset's)."""
    cls, _ = _method(method)
    return cls(method_config(method, settings, kind or ctx.dataset.kind, **overrides), device=ctx.device, seed=ctx.seed)


def ebm_spec(label: str, method: str, settings: Settings, **overrides) -> MethodSpec:
    """A :class:`MethodSpec` named ``label`` that builds ``method`` with config ``overrides`` for the
    dataset's kind; labels are passed to ``fit`` iff ``gamma > 0``."""
    _method(method)  # an unknown name fails here, not in every cell
    return MethodSpec(label, lambda ctx: build_ebm(method, settings, ctx, **overrides),
                      uses_labels=overrides.get("gamma", 0) > 0, description=f"{method} {overrides}")


def run_cells(settings: Settings, specs: list[MethodSpec], log=None) -> dict:
    """Every spec on every seed (the benchmark runner's :func:`~ebm_ood.commands.benchmark.runner.run_benchmark`),
    aggregated over seeds: ``{label: {ood_set: {metric: mean, metric_std: std}}}`` or ``{label: {"error":
    reason}}``. Every finished cell also goes to ``settings.cell_log`` (when set) as it completes; the
cells an interrupted identical run left there are kept and not run again."""
    d = load_dataset(settings.dataset)
    done = {}
    if settings.cell_log is not None and hasattr(settings.cell_log, "start"):
        try:
            done = settings.cell_log.start()  # resumes an interrupted identical run (CellLog)
        except RunLockedError as err:
            raise SystemExit(f"error: {err}")
    results, _ = run_benchmark([d], specs, list(settings.seeds), settings.preset, settings.device, log or log_stderr,
                               settings.cell_log, done=done)
    return results[d.name]


def run_variants(settings: Settings, variant: Callable[[str], MethodSpec], base: Callable[[str], MethodSpec] | None = None,
                 log=None) -> tuple[dict, dict, dict]:
    """For each method ``m`` of ``settings``: train ``base(m)`` (default: the plain EBM ``m``) and
    ``variant(m)`` (its -S / -E / bottleneck form). Returns ``(results, groups, improvement)`` with
    ``improvement[m] = {"natural": %, "non-natural": %}`` of the variant over the base (Elflein Tables 2–4)."""
    base = base or (lambda m: ebm_spec(m, m, settings))
    pairs = {m: (base(m), variant(m)) for m in settings.methods}
    results = run_cells(settings, [spec for pair in pairs.values() for spec in pair], log)
    groups = groups_of(load_dataset(settings.dataset))
    improvement = {m: improvement_by_group(results[v.name], results[b.name], groups, settings.metric)
                   for m, (b, v) in pairs.items()}
    return results, groups, improvement


def groups_of(d: OODDataset) -> dict[str, str]:
    """``{ood_set: group}`` for the natural and non-natural sets only (the smoothness sets are Exp. 5's)."""
    return {k: v.group for k, v in d.ood.items() if v.group in (NATURAL, NON_NATURAL)}


