"""Your own data as a dataset: a folder of ``.npz`` files that ``get_dataset(path)`` and
``ebm-ood benchmark --dataset PATH`` read like the built-in datasets.

Layout (every file holds plain arrays; loading uses ``allow_pickle=False``)::

    my_data/
      train.npz          x (N, D) or (N, C, H, W) floats (or uint8 pixels), y (N,) labels 0..K-1   (in-distribution)
      val.npz            optional, same keys; without it 10 % of train is held out, stratified by y
      test.npz           x (and optionally y): the in-distribution test set
      ood/NAME.npz       x: one OOD test set per file, named NAME in the tables; optional ``group``:
                         "natural" (default) or "non-natural"

Rules (each broken rule is a :class:`~ebm_ood.plumbing.errors.FormatError` naming the file and array key):

* Every file is a regular file holding an ``.npz`` of plain arrays; each array's header is checked before
  it is read (no object arrays, no header claiming more data than the file holds; ``ebm_ood/data/npz.py``).
* ``x``: (N, D) tabular or (N, C, H, W) images, N >= 1, one shape for all files. Floats are used as given
  (they must be finite and within float32's range); scale them the way the models should see them (the
  built-in datasets use [0, 1] for tabular features and [-1, 1] for pixels). ``uint8`` images are read as
  pixels 0..255 and mapped to [-1, 1] like the built-in image datasets; then every file must hold ``uint8``
  images, so that one folder never mixes scales. Other integer, boolean or string inputs are refused.
  Images whose last axis has 1 or 3 entries while axis 1 has neither look channels-last and are refused
  (transpose to (N, C, H, W) with ``x.transpose(0, 3, 1, 2)``).
* ``y``: one integer label per sample, shape (N,) (integral floats such as 2.0 are accepted). The training
  labels are exactly 0..K-1 with every class present (K >= 2); validation and test labels lie in 0..K-1.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from ebm_ood.plumbing.checks import check_array
from ebm_ood.data.dataset import NATURAL, NON_NATURAL, OODDataset, OODSet
from ebm_ood.data.npz import member_names, read_npz
from ebm_ood.data.prepared import to_unit_range
from ebm_ood.plumbing.errors import FormatError

LAYOUT = "train.npz (x, y), test.npz (x), ood/NAME.npz (x) and optionally val.npz (x, y)"
CHANNELS = (1, 3)


def is_data_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder in the layout above (something named ``train.npz`` is in it; whether
    that is a readable file is checked when the folder is loaded)."""
    return os.path.lexists(Path(path) / "train.npz")


def _read(path: Path, keys: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict:
    try:
        arrays = read_npz(path, keys + optional)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: not found; a data folder holds {LAYOUT}") from None
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise FormatError(f"{path}: expected arrays {', '.join(keys)}, missing {', '.join(missing)} "
                          f"(found: {', '.join(member_names(path)) or 'none'})")
    return arrays


def _inputs(arrays: dict, path: Path, like: np.ndarray | None) -> np.ndarray:
    """``x`` of one file as float32 (N, D) or (N, C, H, W), checked against the rules of the module
    docstring; ``like`` is the training ``x`` as stored (its dtype and shape), ``None`` for train itself."""
    x, where = arrays["x"], f"{path}: x"
    if x.dtype.kind not in "fu" or (x.dtype.kind == "u" and x.dtype != np.uint8):
        raise FormatError(f"{where}: expected floating-point values (or uint8 pixels of images), got dtype "
                          f"{x.dtype}; convert with x.astype('float32') and scale as the models should see it")
    if x.ndim not in (2, 4):
        raise FormatError(f"{where}: expected shape (N, D) for tabular data or (N, C, H, W) for images, "
                          f"got {x.shape}")
    if len(x) == 0:
        raise FormatError(f"{where}: expected at least one sample, got shape {x.shape}")
    if x.dtype == np.uint8 and x.ndim != 4:
        raise FormatError(f"{where}: uint8 is read as image pixels (N, C, H, W) only; save tabular "
                          "features as floats")
    if x.ndim == 4 and x.shape[-1] in CHANNELS and x.shape[1] not in CHANNELS:
        raise FormatError(f"{where}: shape {x.shape} looks channels-last (N, H, W, C); images are (N, C, H, W): "
                          "save x.transpose(0, 3, 1, 2)")
    if like is not None:
        if x.shape[1:] != like.shape[1:]:
            raise FormatError(f"{where}: expected shape (N, {', '.join(map(str, like.shape[1:]))}) like "
                              f"train.npz, got {x.shape}")
        if (x.dtype == np.uint8) != (like.dtype == np.uint8):
            raise FormatError(f"{where}: dtype {x.dtype}, but train.npz holds {like.dtype}; every file of a "
                              "folder holds uint8 pixels, or every file floats, never a mix of scales")
    if x.dtype == np.uint8:
        return to_unit_range(x)
    check_array(x, where, float_only=False)  # NaN and infinities: NonFiniteError naming the file
    with np.errstate(over="ignore"):
        x32 = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x32).all():
        raise FormatError(f"{where}: values up to {float(np.abs(x).max()):.3g} exceed float32's range "
                          f"({float(np.finfo(np.float32).max):.3g}), which the models compute in; rescale them")
    return x32


def _labels(arrays: dict, path: Path, n: int, k: int | None) -> np.ndarray:
    """``y`` of one file as int64 (n,): the training labels (``k`` None) must be exactly 0..K-1 with every
    class present, K >= 2; other files' labels must lie in 0..k-1."""
    y, where = arrays["y"], f"{path}: y"
    if y.shape != (n,):
        raise FormatError(f"{where}: expected one label per sample of x, shape ({n},), got {y.shape}")
    if y.dtype.kind == "f":
        bad = ~(np.isfinite(y) & (y == np.round(y)))
        if bad.any():
            i = int(np.argmax(bad))
            raise FormatError(f"{where}: expected integer class labels, got {y[i].item()!r} at index {i}")
    elif y.dtype.kind not in "iu":
        raise FormatError(f"{where}: expected integer class labels 0..K-1, got dtype {y.dtype}")
    lo, hi = y.min(), y.max()
    if lo < 0 or (k is not None and hi >= k) or hi > np.iinfo(np.int64).max:
        i = int(np.argmax(y < 0)) if lo < 0 else int(np.argmax(y))
        span = f"0..{k - 1} (the classes of train.npz)" if k is not None else "0..K-1"
        raise FormatError(f"{where}: labels must lie in {span}, got {y[i].item()!r} at index {i}")
    y = y.astype(np.int64)
    if k is None:
        present = np.unique(y)
        if len(present) < 2:
            raise FormatError(f"{where}: expected at least 2 classes, got only class {int(present[0])}")
        if len(present) != int(present[-1]) + 1:
            gap = int(np.argmax(present != np.arange(len(present))))
            hint = " (labels 1..K? subtract 1)" if present[0] == 1 else ""
            raise FormatError(f"{where}: labels must be 0..K-1 with every class present; labels go up to "
                              f"{int(present[-1])} but class {gap} has no sample{hint}")
    return y


def load_folder(path: str | os.PathLike, seed: int = 0, val_fraction: float = 0.1) -> OODDataset:
    """The :class:`OODDataset` of a data folder; ``seed`` only picks the held-out validation samples when
    there is no ``val.npz``. Every file is checked against the rules of the module docstring and a bad one
    is an error naming the file and array."""
    root = Path(path).expanduser()
    if root.exists() and not root.is_dir():
        raise FormatError(f"dataset folder {str(path)!r} is a file, not a folder; a data folder holds {LAYOUT}")
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {str(path)!r} does not exist; a data folder holds {LAYOUT}")
    train = _read(root / "train.npz", ("x", "y"))
    x_tr = _inputs(train, root / "train.npz", None)
    like = train["x"]
    y_tr = _labels(train, root / "train.npz", len(x_tr), None)
    k = int(y_tr.max()) + 1
    if os.path.lexists(root / "val.npz"):
        val = _read(root / "val.npz", ("x", "y"))
        x_va = _inputs(val, root / "val.npz", like)
        y_va = _labels(val, root / "val.npz", len(x_va), k)
    else:
        try:
            x_tr, x_va, y_tr, y_va = train_test_split(x_tr, y_tr, test_size=val_fraction, stratify=y_tr,
                                                      random_state=seed)
        except ValueError as e:  # too few samples of a class to hold some out
            raise FormatError(f"{root / 'train.npz'}: y: cannot hold out a stratified validation set ({e}); "
                              "add more samples per class, or a val.npz") from e
    test = _read(root / "test.npz", ("x",), optional=("y",))
    x_te = _inputs(test, root / "test.npz", like)
    y_te = _labels(test, root / "test.npz", len(x_te), k) if "y" in test else np.full(len(x_te), -1)
    ood = {}
    for file in sorted((root / "ood").glob("*.npz")):
        arrays = _read(file, ("x",), optional=("group",))
        group = str(arrays.get("group", NATURAL))
        if group not in (NATURAL, NON_NATURAL):
            raise FormatError(f"{file}: group: expected '{NATURAL}' or '{NON_NATURAL}', got {group!r}")
        ood[file.stem] = OODSet(_inputs(arrays, file, like), group)
    if not ood:
        raise FileNotFoundError(f"{root / 'ood'}: expected at least one OOD set ood/NAME.npz; a data folder holds {LAYOUT}")
    return OODDataset(name=root.name, kind="tabular" if x_tr.ndim == 2 else "image", x_train=x_tr, y_train=y_tr,
                      x_val=x_va, y_val=y_va, x_test=x_te, y_test=y_te, ood=ood, num_classes=k,
                      meta={"source": str(root)})
