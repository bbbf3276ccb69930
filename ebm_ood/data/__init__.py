"""Datasets: ``get_dataset(name)`` returns an :class:`OODDataset` (ID splits + OOD sets)."""
from ebm_ood.data.registry import NATURAL, NON_NATURAL, OODDataset, OODSet, dataset_names, get_dataset, register_dataset

__all__ = ["NATURAL", "NON_NATURAL", "OODDataset", "OODSet", "dataset_names", "get_dataset", "register_dataset"]
