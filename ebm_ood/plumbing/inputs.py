"""Data as every public entry point takes it: an array (numpy, torch tensor, nested list) or an iterable of
batches (a ``torch.utils.data.DataLoader``, a generator, ``iter(list_of_batches)``). A torch ``Dataset``
of samples is read through ``DataLoader(dataset, batch_size=DATASET_BATCH)``.

A batch is ``x`` (B, ...) or a pair ``(x, y)`` / ``[x, y]`` (what a DataLoader over a labelled dataset
yields); ``(x,)`` is ``x``. Lists and tuples are never read as batches: as in numpy they are array-likes,
so ``fit([[0.1, 0.2], [0.3, 0.4]])`` is one (2, 2) array; wrap a list of batches in ``iter(...)``.

:func:`iter_batches` streams the batches as numpy arrays (an array is one batch); :func:`collect` stacks
them into one array. Anything else in an iterable is a ``TypeError`` naming the argument, the batch and
what it held.
"""
from __future__ import annotations

import warnings
from typing import Iterator

import numpy as np
import torch

from ebm_ood.plumbing.checks import to_numpy

_ARRAYS = (np.ndarray, torch.Tensor)
DATASET_BATCH = 256


def is_batch_iterable(data) -> bool:
    """True for an iterable of batches (iterable, and not an array, tensor, list, tuple, string or mapping)
    and for a torch ``Dataset``."""
    if isinstance(data, torch.utils.data.Dataset):
        return True
    if data is None or isinstance(data, (*_ARRAYS, list, tuple, str, bytes, dict, set, np.generic)):
        return False
    return hasattr(data, "__iter__")


def _describe(obj) -> str:
    if isinstance(obj, (list, tuple)):
        inner = ", ".join(type(o).__name__ for o in obj[:3]) + (", ..." if len(obj) > 3 else "")
        return f"a {type(obj).__name__} of {len(obj)} items ({inner})"
    return f"a {type(obj).__name__}"


def split_batch(batch, name: str, index: int) -> tuple[np.ndarray, np.ndarray | None]:
    """One batch as ``(x (B, ...), y (B,) or None)`` numpy arrays (torch tensors moved to CPU)."""
    if isinstance(batch, _ARRAYS):
        return to_numpy(batch, f"batch {index} of {name}"), None
    if isinstance(batch, (list, tuple)) and len(batch) in (1, 2) and isinstance(batch[0], _ARRAYS):
        x = to_numpy(batch[0], f"batch {index} of {name}")
        if len(batch) == 1:
            return x, None
        if not isinstance(batch[1], _ARRAYS):
            raise TypeError(f"{name}: batch {index} is (x, y) with y of type {type(batch[1]).__name__}; "
                            "expected y as a tensor or array of class labels")
        return x, to_numpy(batch[1], f"labels in batch {index} of {name}")
    raise TypeError(f"{name}: expected an iterable of batches x or (x, y) of tensors/arrays (e.g. a torch "
                    f"DataLoader); batch {index} is {_describe(batch)}")


def iter_batches(data, name: str) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Yield ``(x, y or None)`` batches: an array-like is one batch (as given); an iterable yields its own,
    as numpy arrays.
    Either every batch carries labels or none does."""
    if not is_batch_iterable(data):
        yield data, None
        return
    if isinstance(data, torch.utils.data.Dataset):
        data = torch.utils.data.DataLoader(data, batch_size=DATASET_BATCH)
    labelled = None
    count = 0
    for i, batch in enumerate(data):
        x, y = split_batch(batch, name, i)
        if labelled is None:
            labelled = y is not None
        elif labelled != (y is not None):
            raise TypeError(f"{name}: batch {i} {'has no' if labelled else 'has'} labels, unlike batch 0; "
                            "yield either x or (x, y) in every batch")
        if y is not None and len(y) != len(x):
            raise ValueError(f"{name}: batch {i} has {len(x)} samples but {len(y)} labels")
        count += 1
        yield x, y
    if count == 0:
        raise ValueError(f"{name}: the iterable {type(data).__name__} yielded no batches")


def _order_problem(data) -> str | None:
    """Why a DataLoader's batches may not follow its dataset's order (None when they do): a sampler or batch
    sampler other than the sequential ones (``shuffle=True``, ``SubsetRandomSampler``, a weighted or custom
    sampler), an ``IterableDataset`` read by several workers, or ``drop_last`` dropping samples."""
    data_mod = torch.utils.data
    if not isinstance(data, data_mod.DataLoader):
        return None
    if isinstance(data.dataset, data_mod.IterableDataset):
        if data.num_workers > 1:
            return f"a DataLoader of an IterableDataset read by {data.num_workers} workers (their batches interleave)"
        return None
    if data.num_workers > 0 and not getattr(data, "in_order", True):
        return f"a DataLoader with in_order=False and {data.num_workers} workers (batches come as they are ready)"
    sampler, batches = data.sampler, data.batch_sampler
    if type(sampler) is not data_mod.SequentialSampler:
        what = "shuffle=True" if isinstance(sampler, data_mod.RandomSampler) else f"a {type(sampler).__name__}"
        return f"a DataLoader with {what}"
    if batches is not None:
        if type(batches) is not data_mod.BatchSampler or type(batches.sampler) is not data_mod.SequentialSampler:
            inner = type(getattr(batches, "sampler", None)).__name__
            return f"a DataLoader with batch_sampler={type(batches).__name__} (of {inner})"
        if batches.drop_last and len(batches.sampler) % batches.batch_size:
            return "a DataLoader with drop_last=True (it drops the last samples)"
    return None


def warn_order(data, name: str) -> None:
    """Warn when the scores of ``data`` (an iterable of batches) cannot follow its dataset's order
    (:func:`_order_problem`: a shuffling or subsampling DataLoader, ``drop_last``, ...)."""
    problem = _order_problem(data)
    if problem:
        warnings.warn(f"{name}: is {problem}, so its scores do not follow the dataset's order (nor cover every "
                      "sample once); use a DataLoader with shuffle=False and without drop_last to line scores up "
                      "with samples (evaluate() needs no order)", UnorderedScoresWarning, stacklevel=3)


class UnorderedScoresWarning(UserWarning):
    """Scores of a DataLoader whose batches do not follow its dataset's order (:func:`warn_order`)."""


def check_separate_labels(data, name: str, y, y_name: str = "y") -> None:
    """Labels ``y`` given beside an iterable of batches must follow its order: a DataLoader must read its
    dataset in order (a sequential sampler, every sample once; :func:`_order_problem`)."""
    problem = _order_problem(data) if y is not None else None
    if problem:
        raise ValueError(f"{y_name}: {name} is {problem}, so labels given separately cannot follow its order; "
                         "let its batches carry them as (x, y)")


def labels_given_once(batch_labels, y, name: str, y_name: str = "y"):
    """The labels of an iterable's ``(x, y)`` batches or the separately given ``y`` (not both)."""
    if batch_labels is not None and y is not None:
        raise ValueError(f"{y_name}: given twice, as an argument and in the (x, y) batches of {name}; pass one")
    return batch_labels if batch_labels is not None else y


def collect(data, name: str, y=None, y_name: str = "y") -> tuple[object, object]:
    """``(x, y)``: an array-like comes back unchanged with the given ``y`` (both checked later by
    :mod:`ebm_ood.plumbing.checks`); an iterable of batches is concatenated along the batch axis, with the labels
    its batches carry or the given ``y`` (not both; nor ``y`` with a shuffling DataLoader, whose order
    changes at every pass)."""
    if not is_batch_iterable(data):
        return data, y
    check_separate_labels(data, name, y, y_name)
    xs, ys = [], []
    for i, (x, yb) in enumerate(iter_batches(data, name)):
        if x.ndim < 1:
            raise ValueError(f"{name}: batch {i} is a scalar; expected a batch (B, ...)")
        if xs and x.shape[1:] != xs[0].shape[1:]:
            raise ValueError(f"{name}: batch {i} has samples of shape {x.shape[1:]}, batch 0 has {xs[0].shape[1:]}")
        xs.append(x)
        if yb is not None:
            ys.append(yb)
    return np.concatenate(xs), labels_given_once(np.concatenate(ys) if ys else None, y, name, y_name)
