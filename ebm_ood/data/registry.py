"""A small registry of datasets by name: ``get_dataset("digits", seed=0)``.

Every dataset is an :class:`OODDataset`: an in-distribution train/val/test split with labels plus a dict
of OOD test sets, each marked *natural* (real data from another distribution) or *non-natural*
(Elflein App. D: noise, constants, unnormalised images). Later modules register more names with
:func:`register_dataset`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

NATURAL, NON_NATURAL = "natural", "non-natural"


@dataclass
class OODSet:
    x: np.ndarray  # (M, *input_shape) float32
    group: str  # NATURAL, NON_NATURAL, or another tag (e.g. the embedded digits' "smoothness" sets)


@dataclass
class OODDataset:
    name: str
    kind: str  # "tabular" or "image"
    x_train: np.ndarray  # (N, *input_shape) float32
    y_train: np.ndarray  # (N,) int64 in [0, num_classes)
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    ood: dict[str, OODSet] = field(default_factory=dict)
    num_classes: int = 0
    meta: dict = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def ood_names(self, group: str | None = None) -> list[str]:
        return [k for k, v in self.ood.items() if group is None or v.group == group]


_REGISTRY: dict[str, Callable[..., OODDataset]] = {}


def register_dataset(name: str, loader: Callable[..., OODDataset]) -> None:
    """Register ``loader(seed=0, **kwargs) -> OODDataset`` under ``name``."""
    _REGISTRY[name] = loader


def dataset_names() -> list[str]:
    _ensure_builtin()
    return sorted(_REGISTRY)


def get_dataset(name: str, seed: int = 0, **kwargs) -> OODDataset:
    """Load a registered dataset; unknown names list the valid ones."""
    _ensure_builtin()
    if name not in _REGISTRY:
        raise ValueError(f"dataset: unknown name {name!r}; valid names: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](seed=seed, **kwargs)


def _ensure_builtin() -> None:
    # Importing registers the embedded datasets (and the prepared real ones) on first use.
    import ebm_ood.data.embedded  # noqa: F401
    import ebm_ood.data.prepared  # noqa: F401
