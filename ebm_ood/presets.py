"""The three presets every method's settings come in, and the dataset kinds they are written for.

* ``quick``: seconds, for tests and tutorials in fast mode;
* ``default``: the embedded datasets on a laptop CPU (``ebm-ood benchmark``); for the generative methods
  (CD, SSM, VERA, NF) ``full`` with every training length scaled by :data:`DEFAULT_FACTOR`
  (:func:`derived_default`);
* ``full``: the papers' hyperparameters (hours on a CPU).

Each method keeps one table of the three next to its config (``CE_PRESETS``, ``CD_PRESETS``,
``SSM_PRESETS``, ``VERA_PRESETS``, ``FLOW_PRESETS``, ``HEAT_PRESETS``): ``{preset: {field: value}}``,
where ``train`` holds the :class:`~ebm_ood.training.TrainConfig` arguments, a field left out keeps the
config's default, and a value that differs between the kinds is a :class:`PerKind`. Every ``full`` value
carries a comment naming its source (the paper's appendix, or the authors' code where the paper is
silent). The methods' ``*_config(preset, kind)`` read their table with :func:`preset_config`.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

PRESETS = ("quick", "default", "full")
KINDS = ("tabular", "image")


def check_preset(preset: str, kind: str | None = None) -> None:
    """The methods' ``*_config(preset, kind)`` arguments: ``preset`` in :data:`PRESETS`, ``kind`` in :data:`KINDS`."""
    if preset not in PRESETS:
        raise ValueError(f"preset: expected 'quick', 'default' or 'full', got {preset!r}")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind: expected 'tabular' or 'image', got {kind!r}")


# The authors' batch sizes (``selflein/EBM-OOD-Detection``, ``configs/dataset/*.yaml``: ``batch_size``); the
# paper states none. ``full`` trains images for the paper's 50 epochs at these sizes.
AUTHORS_BATCH_SIZES = {"cifar10": 32, "fmnist": 64, "segment": 512, "sensorless": 512}


@dataclass(frozen=True)
class PerDataset:
    """A preset value that the authors set per dataset: ``values[dataset]`` for a dataset named there,
    else ``other`` (itself possibly a :class:`PerKind`), e.g. ``PerDataset(AUTHORS_BATCH_SIZES,
    PerKind(tabular=512, image=32))``."""

    values: dict
    other: Any


@dataclass(frozen=True)
class PerKind:
    """A preset value that differs between the dataset kinds, e.g. ``PerKind(tabular=10_000, image=20_000)``."""

    tabular: Any
    image: Any


def preset_values(table: dict, preset: str, kind: str | None = None, dataset: str | None = None) -> dict:
    """``table[preset]`` for ``kind``: every :class:`PerKind` replaced by its ``kind`` value, nested dicts
    (``train``, ``lrs``) and every other value copied, so the caller may change what it gets.

    ``kind=None`` is for tables without kinds (HEAT's); a :class:`PerKind` in them is an error. ``dataset``
    (a dataset name, e.g. ``"cifar10"``) picks a :class:`PerDataset` value; ``None`` or a name it does not
    list takes its ``other``.
    """
    check_preset(preset, kind)
    if preset not in table:
        raise KeyError(f"table: has no {preset!r} preset (it has {sorted(table)})")
    return _resolve(table[preset], kind, preset, dataset)


def preset_config(cls, table: dict, preset: str, kind: str | None = None, dataset: str | None = None, **nested):
    """``cls(**values)`` for the :func:`preset_values` of ``table``; a field named in ``nested`` is built
    from its dict of arguments, e.g. ``train=TrainConfig`` turns ``{"steps": 60, ...}`` into a
    ``TrainConfig``."""
    values = preset_values(table, preset, kind, dataset)
    return cls(**{k: nested[k](**v) if k in nested else v for k, v in values.items()})


def _resolve(value, kind: str | None, where: str, dataset: str | None = None):
    if isinstance(value, PerDataset):
        return _resolve(value.values[dataset] if dataset in value.values else value.other, kind, where, dataset)
    if isinstance(value, PerKind):
        if kind is None:
            raise ValueError(f"kind: the {where} preset value differs between 'tabular' and 'image', "
                             "so a kind is needed; got None")
        return _resolve(getattr(value, kind), kind, where, dataset)
    if isinstance(value, dict):
        return {k: _resolve(v, kind, f"{where}.{k}", dataset) for k, v in value.items()}
    return copy.deepcopy(value)


# ``full``'s schedule (Elflein App. B: "tabular datasets for 10,000 steps and the image datasets for 50
# epochs"), at the authors' batch sizes; images count epochs over the training set
# (:func:`~ebm_ood.training.steps_for_epochs`), a dataset the authors did not use takes 512 (tabular) / 32
# (images).
FULL_STEPS = 10_000  # tabular
FULL_EPOCHS = PerKind(tabular=None, image=50)
FULL_BATCH_SIZE = PerDataset(AUTHORS_BATCH_SIZES, PerKind(tabular=512, image=32))


# ``default`` is ``full`` made shorter by one stated factor (:func:`derived_default`): every training length
# of ``full`` (``steps``, ``epochs``, ``warmup``, ``eval_every``) times ``DEFAULT_FACTOR`` of the dataset kind,
# at ``full``'s batch sizes, learning rates, optimizer betas and model settings, except the settings a method's
# table names as its cost reductions (each commented with its reason). Each factor is the shortest run whose
# ID-only diagnostics show the models trained, on the embedded datasets (seed 0; ``docs/paper_vs_code.md``,
# *Training budget*). Tabular data: 1/4 of App. B's 10,000 steps (2,500 steps of 512); at 1/10 (1,000 steps)
# the radial flow's NLL on ID validation data was still falling at the last validation (-6.4 nats, against
# -9.6 after 4,000 steps of 64). Images: all 50 epochs (factor 1): an epoch of a small image set is few steps
# (the embedded digits: 1,010 images, ~29 steps of 32), and at 25 epochs SSM's objective on ID validation
# data had reached 62 % of its 50-epoch value, still rising by ~50 per 125 steps. On a large image set the
# cost reductions of the methods' tables are what make ``default`` cheaper than ``full``.
DEFAULT_FACTOR = PerKind(tabular=1 / 4, image=1)
SCHEDULE_FIELDS = ("steps", "epochs", "warmup", "eval_every")

# The warm-up rule of every derived ``default``: the learning-rate warm-up lasts at most this share of the
# run's steps (``TrainConfig.warmup_share``, applied by the trainer once epochs are counted as steps,
# :func:`~ebm_ood.training.effective_warmup`). 1/4 is the share App. B's schedule gives it on tabular data
# (2,500 of 10,000 steps), the largest share the paper's own budgets give it; App. B's 2,500 steps are
# written for CIFAR-10's 50 epochs (~78,000 steps), and a small image set's epochs are far fewer steps.
WARMUP_SHARE = 1 / 4


def scale_length(value, factor):
    """A training length ``value`` times ``factor``, rounded to the nearest integer and at least 1 (0 stays
    0, ``None`` stays ``None``). A :class:`PerKind` ``factor`` scales each kind's value by its own factor
    (giving a :class:`PerKind`); a :class:`PerKind` / :class:`PerDataset` ``value`` is scaled value by value."""
    if isinstance(factor, PerKind):
        pick = lambda kind: getattr(value, kind) if isinstance(value, PerKind) else value  # noqa: E731
        return PerKind(scale_length(pick("tabular"), factor.tabular), scale_length(pick("image"), factor.image))
    if value is None:
        return None
    if isinstance(value, PerKind):
        return PerKind(scale_length(value.tabular, factor), scale_length(value.image, factor))
    if isinstance(value, PerDataset):
        return PerDataset({k: scale_length(v, factor) for k, v in value.values.items()},
                          scale_length(value.other, factor))
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"value: expected a non-negative integer training length, got {value!r}")
    if not 0 < factor <= 1:
        raise ValueError(f"factor: expected a number in (0, 1], got {factor!r}")
    return max(1, round(value * factor)) if value else 0


def derived_default(full: dict, factor=DEFAULT_FACTOR, **reductions) -> dict:
    """The ``default`` row of a method's table from its ``full`` row: ``full["train"]``'s
    :data:`SCHEDULE_FIELDS` scaled by ``factor`` (:func:`scale_length`; default :data:`DEFAULT_FACTOR`),
    the warm-up capped at :data:`WARMUP_SHARE` of the run (``warmup_share``), every other value of ``full``
    kept, then the fields in ``reductions`` (the method's stated cost reductions) set, e.g.
    ``derived_default(CD_FULL, sgld_steps=PerKind(tabular=20, image=15))``."""
    if "train" in reductions:
        raise ValueError("reductions: the training schedule is full's scaled by factor; 'train' cannot be set")
    row = copy.deepcopy(full)
    row["train"] = {k: scale_length(v, factor) if k in SCHEDULE_FIELDS else copy.deepcopy(v)
                    for k, v in full.get("train", {}).items()}
    row["train"]["warmup_share"] = WARMUP_SHARE
    row.update(copy.deepcopy(reductions))
    return row
