"""Every dataset by name: ``get_dataset("digits", seed=0)`` looks the name up in :data:`DATASETS`.

The embedded datasets (:mod:`ebm_ood.data.embedded`: ``digits``, ``tabular``) work offline; the papers'
real datasets (:mod:`ebm_ood.data.prepared`) load once ``python data_scripts/prepare.py NAME`` has made
their files; a path to a folder of your own ``.npz`` files (:mod:`ebm_ood.data.folder`) loads that.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

from ebm_ood.data import embedded, folder, prepared
from ebm_ood.data.dataset import OOD_ORDERS, OODDataset, shuffle_ood

# name -> loader(seed=0, **kwargs) -> OODDataset
DATASETS: dict[str, Callable[..., OODDataset]] = {
    "digits": embedded.load_digits_dataset,
    "tabular": embedded.load_tabular_dataset,
    **{name: partial(prepared.load_tabular, name) for name in prepared.TABULAR},
    **{name: partial(prepared.load_image, name) for name in prepared.PAIRINGS},
}


def dataset_names() -> list[str]:
    return sorted(DATASETS)


def get_dataset(name: str, seed: int = 0, ood_order: str = "shuffled", **kwargs) -> OODDataset:
    """Load a dataset of :data:`DATASETS`, or the data folder at path ``name``
    (:func:`~ebm_ood.data.folder.load_folder`); unknown names list the valid ones. ``ood_order``:
    ``"shuffled"`` (default) puts each OOD set in a random order fixed by ``seed``
    (:func:`~ebm_ood.data.dataset.shuffle_ood`), so that the balanced protocol's "first n samples" is a random
    sample; ``"stored"`` keeps the order it was built or stored in (the authors' loaders: the file's order,
    e.g. UCI Sensorless sorted by class, and their noise sets built one kind after the other)."""
    if ood_order not in OOD_ORDERS:
        raise ValueError(f"ood_order: expected one of {', '.join(OOD_ORDERS)}, got {ood_order!r}")
    if name not in DATASETS and folder.is_data_folder(name):
        d = folder.load_folder(name, seed=seed, **kwargs)
    elif name not in DATASETS:
        raise ValueError(f"dataset: unknown name {name!r}; valid names: {', '.join(dataset_names())}, or the path "
                         f"of a data folder holding {folder.LAYOUT}")
    else:
        d = DATASETS[name](seed=seed, **kwargs)
    return shuffle_ood(d, seed) if ood_order == "shuffled" else d
