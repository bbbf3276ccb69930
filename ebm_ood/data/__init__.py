"""Datasets: ``get_dataset(name)`` returns an :class:`OODDataset` (ID splits + OOD sets)."""
from ebm_ood.data.catalog import DATASETS, dataset_names, get_dataset
from ebm_ood.data.dataset import NATURAL, NON_NATURAL, OODDataset, OODSet

__all__ = ["DATASETS", "NATURAL", "NON_NATURAL", "OODDataset", "OODSet", "dataset_names", "get_dataset"]
