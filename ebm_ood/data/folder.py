"""Your own data as a dataset: a folder of ``.npz`` files that ``get_dataset(path)`` and
``ebm-ood benchmark --dataset PATH`` read like the built-in datasets.

Layout (every file holds plain arrays; loading uses ``allow_pickle=False``)::

    my_data/
      train.npz          x (N, D) or (N, C, H, W) floats, y (N,) integer labels 0..K-1   (in-distribution)
      val.npz            optional, same keys; without it 10 % of train is held out, stratified by y
      test.npz           x (and optionally y): the in-distribution test set
      ood/NAME.npz       x: one OOD test set per file, named NAME in the tables; optional ``group``:
                         "natural" (default) or "non-natural"

Inputs are used as given: scale them the way the models should see them (the built-in datasets use
[0, 1] for tabular features and [-1, 1] for pixels). The kind is read from the shape: (N, D) is tabular,
(N, C, H, W) an image dataset.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from ebm_ood.checks import check_array, check_labels
from ebm_ood.data.dataset import NATURAL, NON_NATURAL, OODDataset, OODSet

LAYOUT = "train.npz (x, y), test.npz (x), ood/NAME.npz (x) and optionally val.npz (x, y)"


def is_data_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder in the layout above (it has ``train.npz``)."""
    return (Path(path) / "train.npz").is_file()


def _read(path: Path, keys: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; a data folder holds {LAYOUT}")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in keys if k not in f.files]
            if missing:
                raise ValueError(f"{path}: expected arrays {', '.join(keys)}, missing {', '.join(missing)} "
                                 f"(found: {', '.join(f.files) or 'none'})")
            return {k: f[k] for k in keys + optional if k in f.files}
    except (OSError, EOFError, ValueError) as err:
        if isinstance(err, ValueError) and str(err).startswith(str(path)):
            raise
        raise ValueError(f"{path}: not a readable .npz file of plain arrays ({err})") from err


def _inputs(arrays: dict, path: Path, shape: tuple | None) -> np.ndarray:
    x = check_array(arrays["x"], f"{path}: x", ndim=(2, 4), shape=shape)
    return np.ascontiguousarray(x, dtype=np.float32)


def load_folder(path: str | os.PathLike, seed: int = 0, val_fraction: float = 0.1) -> OODDataset:
    """The :class:`OODDataset` of a data folder; ``seed`` only picks the held-out validation samples when
    there is no ``val.npz``. Every file is checked (numbers, finite, one input shape, labels 0..K-1)
    and a bad one is an error naming the file."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {str(path)!r} does not exist; a data folder holds {LAYOUT}")
    train = _read(root / "train.npz", ("x", "y"))
    x_tr = _inputs(train, root / "train.npz", None)
    shape = x_tr.shape[1:]
    y_tr = check_labels(train["y"], f"{root / 'train.npz'}: y", len(x_tr))
    k = int(y_tr.max()) + 1
    if len(np.unique(y_tr)) < 2:
        raise ValueError(f"{root / 'train.npz'}: y: expected at least 2 classes, got only class {int(y_tr[0])}")
    if (root / "val.npz").is_file():
        val = _read(root / "val.npz", ("x", "y"))
        x_va = _inputs(val, root / "val.npz", shape)
        y_va = check_labels(val["y"], f"{root / 'val.npz'}: y", len(x_va), k)
    else:
        x_tr, x_va, y_tr, y_va = train_test_split(x_tr, y_tr, test_size=val_fraction, stratify=y_tr, random_state=seed)
    test = _read(root / "test.npz", ("x",), optional=("y",))
    x_te = _inputs(test, root / "test.npz", shape)
    y_te = check_labels(test["y"], f"{root / 'test.npz'}: y", len(x_te), k) if "y" in test else np.full(len(x_te), -1)
    ood = {}
    for file in sorted((root / "ood").glob("*.npz")):
        arrays = _read(file, ("x",), optional=("group",))
        group = str(arrays.get("group", NATURAL))
        if group not in (NATURAL, NON_NATURAL):
            raise ValueError(f"{file}: group: expected '{NATURAL}' or '{NON_NATURAL}', got {group!r}")
        ood[file.stem] = OODSet(_inputs(arrays, file, shape), group)
    if not ood:
        raise FileNotFoundError(f"{root / 'ood'}: expected at least one OOD set ood/NAME.npz; a data folder holds {LAYOUT}")
    return OODDataset(name=root.name, kind="tabular" if len(shape) == 1 else "image", x_train=x_tr, y_train=y_tr,
                      x_val=x_va, y_val=y_va, x_test=x_te, y_test=y_te, ood=ood, num_classes=k,
                      meta={"source": str(root)})
