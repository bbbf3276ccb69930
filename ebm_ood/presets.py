"""The three presets every method's settings come in, and the dataset kinds they are written for.

* ``quick``: seconds, for tests and tutorials in fast mode;
* ``default``: the embedded datasets on a laptop CPU (``ebm-ood benchmark``);
* ``full``: the papers' hyperparameters (hours on a CPU).

Each method keeps its own table of the three (its ``*_config(preset, kind)``); this module only names
them and checks the arguments.
"""
from __future__ import annotations

PRESETS = ("quick", "default", "full")
KINDS = ("tabular", "image")


def check_preset(preset: str, kind: str | None = None) -> None:
    """The methods' ``*_config(preset, kind)`` arguments: ``preset`` in :data:`PRESETS`, ``kind`` in :data:`KINDS`."""
    if preset not in PRESETS:
        raise ValueError(f"preset: expected 'quick', 'default' or 'full', got {preset!r}")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind: expected 'tabular' or 'image', got {kind!r}")
