"""What a dataset is: an :class:`OODDataset` holds an in-distribution train/val/test split with labels plus
a dict of OOD test sets (:class:`OODSet`), each marked *natural* (real data from another distribution) or
*non-natural* (Elflein App. D: noise, constants, unnormalised images). The loaders by name are in
:mod:`ebm_ood.data.catalog`."""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field, replace

import numpy as np

NATURAL, NON_NATURAL = "natural", "non-natural"
OOD_ORDERS = ("stored", "shuffled")


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


def ood_permutation(n: int, name: str, seed: int = 0) -> np.ndarray:
    """The order (n,) int64 in which :func:`shuffle_ood` puts an OOD set of ``n`` rows named ``name``: a
    permutation drawn from a generator seeded by ``seed`` and the CRC-32 of the name's UTF-8 bytes (a
    stable hash, the same in every process), never by the other sets."""
    return np.random.default_rng((int(seed), 4000, zlib.crc32(str(name).encode("utf-8")))).permutation(int(n))


def shuffle_ood(dataset: OODDataset, seed: int = 0) -> OODDataset:
    """A copy of ``dataset`` whose every OOD set is in a random order fixed by ``seed`` and the set's name
    (:func:`ood_permutation`: the same set gets the same order whichever other sets the dataset holds, in
    whatever order), so that the balanced protocol's "first n samples"
    (:func:`ebm_ood.metrics.balance`) is a uniform random subset: a class-sorted file (UCI Sensorless)
    or a set built half N(0, 1) then half U(-1, 1) would otherwise keep its first part only. The rows
    themselves and the ID splits are unchanged."""
    ood = {k: OODSet(v.x[ood_permutation(len(v.x), k, seed)], v.group) for k, v in dataset.ood.items()}
    return replace(dataset, ood=ood, meta={**dataset.meta, "ood_order": "shuffled", "ood_order_seed": int(seed)})
