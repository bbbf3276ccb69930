"""The papers' real datasets, read from files made by ``python data_scripts/prepare.py NAME``.

``get_dataset("segment", seed=0, data_root=None)`` etc. Data root: ``data_root``, else ``$EBM_OOD_DATA``,
else ``~/.cache/ebm_ood`` (``ebm_ood/data/store.py``). A dataset that is not prepared raises
:class:`DatasetNotPreparedError` with the command to run.

* Tabular (Elflein Sec. 4): ``segment`` (18 features; class *sky* held out) and ``sensorless`` (48 features;
  classes 10 and 11 held out). The held-out classes form the natural OOD set ``held-out``; the rest is split
  80/10/10, stratified, with ``split_seed`` (fixed, 0 by default, so every training seed sees the same split),
  then min-max scaled with the ID-training statistics (OOD data with the same statistics).
* Images: pixels mapped from [0, 255] to [-1, 1]; the official test split is the ID test set and
  ``val_fraction`` of the official training split (stratified, ``split_seed``) the validation set. Natural OOD
  sets are the test splits of the paired datasets (``PAIRINGS``) that are prepared; missing ones are listed
  in ``meta["missing_ood"]`` with their prepare commands and a warning (an error with ``require_all_ood``).
* Non-natural sets (Elflein App. D), built on the fly from ``seed``, as many as ID test samples:
  ``noise`` (half N(0, 1), half U(-1, 1)), ``constant`` (one U(-1, 1) value per sample), and for images
  ``oodomain``: the paper's OODomain set (KMNIST for FMNIST, SVHN for CIFAR) **without** normalisation,
  i.e. in [0, 255]; where that set is not prepared, the ID test images unnormalised
  (``meta["oodomain_source"]`` says which).
* Images also get the Experiment 5 smoothness sets ``smooth-2``, ``smooth-3``, ``smooth-4``, ``smooth-16``
  (group ``smoothness``; 1,000 images each, as in the paper; :func:`~ebm_ood.data.nonnatural.smoothness_set`).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split

from ebm_ood.data.embedded import SMOOTHNESS, minmax_fit, stratified_split
from ebm_ood.data.nonnatural import constant_set, noise_set, smoothness_set
from ebm_ood.data.dataset import NATURAL, NON_NATURAL, OODDataset, OODSet
from ebm_ood.data.store import data_root, dataset_dir, is_prepared, load_split
from ebm_ood.plumbing.errors import FormatError


class DatasetNotPreparedError(FileNotFoundError):
    """A dataset (or one of its splits) has not been prepared in the data root."""


@dataclass(frozen=True)
class Pairing:
    ood: tuple[str, ...]  # natural OOD sets: names of prepared datasets, in the paper's order
    oodomain: str | None = None  # the set used unnormalised as OODomain (Elflein App. D)


PAIRINGS = {
    # Elflein et al. 2021
    "fmnist": Pairing(("kmnist", "mnist", "notmnist"), oodomain="kmnist"),
    "cifar10": Pairing(("cifar100", "celeba", "lsun", "svhn", "textures", "tinyimagenet", "places"), oodomain="svhn"),
    # Lafon et al. 2023 (HEAT): CIFAR-100 -> CIFAR-10, TinyImageNet, LSUN, Places, Textures, SVHN
    "cifar100": Pairing(("cifar10", "tinyimagenet", "lsun", "places", "textures", "svhn"), oodomain="svhn"),
    # not in the papers; offered for teaching
    "mnist": Pairing(("fmnist", "kmnist", "notmnist")),
    "kmnist": Pairing(("mnist", "fmnist", "notmnist")),
    "svhn": Pairing(("cifar10", "cifar100", "textures")),
}
TABULAR = ("segment", "sensorless")
SMOOTH_POOLS = (2, 3, 4, 16)  # Elflein App. A.1, Figure 3
N_SMOOTH = 1000  # images per pool size (Elflein App. A.1)


def prepare_command(name: str) -> str:
    return f"python data_scripts/prepare.py {name}"


def _load(name: str, split: str, root) -> tuple[np.ndarray, np.ndarray, dict]:
    if data_root(root).exists() and not data_root(root).is_dir():
        raise DatasetNotPreparedError(f"data root {data_root(root)} is a file, not a folder; pass data_root (or set "
                                      "$EBM_OOD_DATA) to the folder given to data_scripts/prepare.py --data-root")
    if not is_prepared(name, root):
        raise DatasetNotPreparedError(
            f"dataset {name!r} is not prepared in {dataset_dir(name, root)}. Run: {prepare_command(name)} "
            "(with --data-root DIR, or $EBM_OOD_DATA set, to the same data root used here)")
    path = dataset_dir(name, root) / f"{split}.npz"
    if not path.is_file():
        raise DatasetNotPreparedError(f"{path}: split {split!r} of {name!r} is missing; "
                                      f"run: {prepare_command(name)} --force")
    x, y, meta = load_split(path)
    if x.ndim < 2 or len(x) == 0 or x.dtype.kind not in "iuf":
        raise FormatError(f"{path}: x: expected numeric samples (N, ...), got {x.dtype} of shape {x.shape}; "
                          f"run: {prepare_command(name)} --force")
    if y.shape != (len(x),) or y.dtype.kind not in "iu":
        raise FormatError(f"{path}: y: expected one integer label per sample, got {y.dtype} of shape {y.shape}; "
                          f"run: {prepare_command(name)} --force")
    return x, y, meta


def _check_labels(y: np.ndarray, k: int, name: str, split: str, root) -> None:
    """Labels must index the ``k`` classes: 0 <= y < k (a -1 would silently pick the last class)."""
    bad = (y < 0) | (y >= k)
    if bad.any():
        i = int(np.argmax(bad))
        raise FormatError(f"{dataset_dir(name, root) / (split + '.npz')}: y: label {int(y[i])} at index {i} is "
                          f"outside 0..{k - 1}; the prepared file was altered or damaged, run: "
                          f"{prepare_command(name)} --force")


def to_unit_range(x: np.ndarray) -> np.ndarray:
    """Pixels [0, 255] -> [-1, 1], float32."""
    return x.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


def load_tabular(name: str, seed: int = 0, data_root=None, split_seed: int = 0) -> OODDataset:
    x, y, meta = _load(name, "all", data_root)
    classes, held_names = meta.get("class_names"), meta.get("ood_classes")
    if not (isinstance(classes, list) and isinstance(held_names, list)
            and all(isinstance(c, str) for c in classes + held_names) and set(held_names) <= set(classes)):
        raise FormatError(f"{dataset_dir(name, data_root) / 'all.npz'}: meta: expected lists class_names and "
                          f"ood_classes (a subset of class_names); run: {prepare_command(name)} --force")
    _check_labels(y, len(classes), name, "all", data_root)
    held = [classes.index(c) for c in held_names]
    is_ood = np.isin(y, held)
    id_classes = [c for c in range(len(classes)) if c not in held]
    relabel = np.full(len(classes), -1, dtype=np.int64)
    relabel[id_classes] = np.arange(len(id_classes))
    x_tr, y_tr, x_va, y_va, x_te, y_te = stratified_split(x[~is_ood], relabel[y[~is_ood]], (0.8, 0.1, 0.1), split_seed)
    lo, rg = minmax_fit(x_tr)
    sc = lambda v: ((v - lo) / rg).astype(np.float32)  # noqa: E731
    rng = np.random.default_rng(seed + 3000)
    n, shape = len(x_te), x.shape[1:]
    ood = {
        "held-out": OODSet(sc(x[is_ood]), NATURAL),
        "noise": OODSet(noise_set(n, shape, rng), NON_NATURAL),
        "constant": OODSet(constant_set(n, shape, rng), NON_NATURAL),
    }
    return OODDataset(
        name=name, kind="tabular", x_train=sc(x_tr), y_train=y_tr, x_val=sc(x_va), y_val=y_va, x_test=sc(x_te),
        y_test=y_te, ood=ood, num_classes=len(id_classes),
        meta={"source": str(dataset_dir(name, data_root)), "id_classes": [classes[c] for c in id_classes],
              "held_out_classes": list(held_names), "split_seed": split_seed, "split": [0.8, 0.1, 0.1],
              "scaling": "min-max with ID-training statistics"},
    )


def load_image(name: str, seed: int = 0, data_root=None, split_seed: int = 0, val_fraction: float = 0.1,
               require_all_ood: bool = False) -> OODDataset:
    x_all, y_all, meta = _load(name, "train", data_root)
    x_test_raw, y_test, _ = _load(name, "test", data_root)
    if x_test_raw.shape[1:] != x_all.shape[1:]:
        raise FormatError(f"{dataset_dir(name, data_root) / 'test.npz'}: x: images of shape {x_test_raw.shape[1:]}, "
                          f"but train.npz holds {x_all.shape[1:]}; run: {prepare_command(name)} --force")
    names = meta.get("class_names") or []
    n_classes = len(names) if names else int(y_all.max()) + 1
    _check_labels(y_all, n_classes, name, "train", data_root)
    _check_labels(y_test, n_classes, name, "test", data_root)
    x_tr, x_va, y_tr, y_va = train_test_split(x_all, y_all, test_size=val_fraction, stratify=y_all,
                                              random_state=split_seed)
    shape, pairing = tuple(x_tr.shape[1:]), PAIRINGS[name]
    ood, missing, raw_tests = {}, {}, {name: x_test_raw}  # raw_tests: each test split read once
    for other in pairing.ood:
        if not is_prepared(other, data_root):
            missing[other] = prepare_command(other)
            continue
        raw_tests[other] = _checked_test(other, shape, name, data_root)
        ood[other] = OODSet(to_unit_range(raw_tests[other]), NATURAL)
    if missing:
        msg = f"{name}: OOD sets not prepared (skipped): " + "; ".join(missing.values())
        if require_all_ood:
            raise DatasetNotPreparedError(msg)
        warnings.warn(msg, stacklevel=2)
    rng = np.random.default_rng(seed + 3000)
    n = len(x_test_raw)
    ood["noise"] = OODSet(noise_set(n, shape, rng), NON_NATURAL)
    ood["constant"] = OODSet(constant_set(n, shape, rng), NON_NATURAL)
    src = pairing.oodomain if pairing.oodomain and is_prepared(pairing.oodomain, data_root) else name
    raw = raw_tests[src] if src in raw_tests else _checked_test(src, shape, name, data_root)
    ood["oodomain"] = OODSet(raw.astype(np.float32), NON_NATURAL)  # [0, 255]: deliberately not normalised
    for k in SMOOTH_POOLS:
        ood[f"smooth-{k}"] = OODSet(smoothness_set(N_SMOOTH, shape, k, rng), SMOOTHNESS)
    return OODDataset(
        name=name, kind="image", x_train=to_unit_range(x_tr), y_train=y_tr, x_val=to_unit_range(x_va), y_val=y_va,
        x_test=to_unit_range(x_test_raw), y_test=y_test, ood=ood, num_classes=n_classes,
        meta={"source": str(dataset_dir(name, data_root)), "class_names": meta.get("class_names", []),
              "pixel_range": [-1, 1], "split_seed": split_seed, "val_fraction": val_fraction,
              "missing_ood": missing, "oodomain_source": src},
    )


def _checked_test(other: str, shape: tuple, name: str, root) -> np.ndarray:
    x, _, _ = _load(other, "test", root)
    if tuple(x.shape[1:]) != shape:
        raise ValueError(f"{other}: prepared images have shape {tuple(x.shape[1:])} but {name} needs {shape}; "
                         f"run: {prepare_command(other)} --force --{'grey-size' if shape[0] == 1 else 'size'} {shape[-1]}")
    return x

