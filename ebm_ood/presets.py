"""The three presets every method's settings come in, and the dataset kinds they are written for.

* ``quick``: seconds, for tests and tutorials in fast mode;
* ``default``: the embedded datasets on a laptop CPU (``ebm-ood benchmark``);
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


@dataclass(frozen=True)
class PerKind:
    """A preset value that differs between the dataset kinds, e.g. ``PerKind(tabular=10_000, image=20_000)``."""

    tabular: Any
    image: Any


def preset_values(table: dict, preset: str, kind: str | None = None) -> dict:
    """``table[preset]`` for ``kind``: every :class:`PerKind` replaced by its ``kind`` value, nested dicts
    (``train``, ``lrs``) and every other value copied, so the caller may change what it gets.

    ``kind=None`` is for tables without kinds (HEAT's); a :class:`PerKind` in them is an error.
    """
    check_preset(preset, kind)
    if preset not in table:
        raise KeyError(f"table: has no {preset!r} preset (it has {sorted(table)})")
    return _resolve(table[preset], kind, preset)


def preset_config(cls, table: dict, preset: str, kind: str | None = None, **nested):
    """``cls(**values)`` for the :func:`preset_values` of ``table``; a field named in ``nested`` is built
    from its dict of arguments, e.g. ``train=TrainConfig`` turns ``{"steps": 60, ...}`` into a
    ``TrainConfig``."""
    values = preset_values(table, preset, kind)
    return cls(**{k: nested[k](**v) if k in nested else v for k, v in values.items()})


def _resolve(value, kind: str | None, where: str):
    if isinstance(value, PerKind):
        if kind is None:
            raise ValueError(f"kind: the {where} preset value differs between 'tabular' and 'image', "
                             "so a kind is needed; got None")
        return _resolve(getattr(value, kind), kind, where)
    if isinstance(value, dict):
        return {k: _resolve(v, kind, f"{where}.{k}") for k, v in value.items()}
    return copy.deepcopy(value)
