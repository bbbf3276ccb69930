"""Every dataset by name: ``get_dataset("digits", seed=0)`` looks the name up in :data:`DATASETS`.

The embedded datasets (:mod:`ebm_ood.data.embedded`: ``digits``, ``tabular``) work offline; the papers'
real datasets (:mod:`ebm_ood.data.prepared`) load once ``python data_scripts/prepare.py NAME`` has made
their files.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

from ebm_ood.data import embedded, prepared
from ebm_ood.data.dataset import OODDataset

# name -> loader(seed=0, **kwargs) -> OODDataset
DATASETS: dict[str, Callable[..., OODDataset]] = {
    "digits": embedded.load_digits_dataset,
    "tabular": embedded.load_tabular_dataset,
    **{name: partial(prepared.load_tabular, name) for name in prepared.TABULAR},
    **{name: partial(prepared.load_image, name) for name in prepared.PAIRINGS},
}


def dataset_names() -> list[str]:
    return sorted(DATASETS)


def get_dataset(name: str, seed: int = 0, **kwargs) -> OODDataset:
    """Load a dataset of :data:`DATASETS`; unknown names list the valid ones."""
    if name not in DATASETS:
        raise ValueError(f"dataset: unknown name {name!r}; valid names: {', '.join(dataset_names())}")
    return DATASETS[name](seed=seed, **kwargs)
