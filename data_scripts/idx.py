"""MNIST-format image sets from gzipped IDX files: ``mnist``, ``fmnist``, ``kmnist``, ``notmnist``.

Each is stored as splits ``train`` and ``test``: ``x`` (N, 1, 28, 28) uint8 in [0, 255], ``y`` (N,) int64.
``notmnist`` also accepts the original PNG-folder archive (``notMNIST_small/A .. J``, extracted), read with
Pillow; that gives a ``test`` split only, which is all its use as an OOD set needs.

``grey_size`` (``prepare.py --grey-size 32``) resizes every image with Pillow's Lanczos filter, as the authors'
loader does for FMNIST (``data_shape: [32, 32, 1]``; ``Resize(32, LANCZOS)`` + ``CenterCrop(32)``): prepare
FMNIST and its OOD sets (MNIST, KMNIST, NotMNIST) with the same value. Default: 28×28 as distributed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from data_scripts.download import RawFile
from ebm_ood.data.formats import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, FormatError, read_idx, read_image_folder

NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
         "t10k-labels-idx1-ubyte.gz")


def _files(bases: tuple[str, ...], sha256: tuple = (None,) * 4, md5: tuple = (None,) * 4) -> tuple[RawFile, ...]:
    return tuple(RawFile(n, tuple(b + n for b in bases), s, m) for n, s, m in zip(NAMES, sha256, md5))


FILES = {
    "mnist": _files(
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/",
         "http://yann.lecun.com/exdb/mnist/"),
        sha256=("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
        md5=("f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
             "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c")),
    "fmnist": _files(
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
         "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"),
        md5=("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
             "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310")),
    "kmnist": _files(
        ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        md5=("bdb82020997e1d708af4cf47b453dcf7", "e144d726b3acfaa3e44228e80efcd344",
             "5c965bf0a639b31b8f53240b1b52f4d7", "7320c461ea6c1c855c0b718fb2a4b134")),
    # An MNIST-format conversion of notMNIST; no checksum is published, so prepare.py prints the sha256.
    "notmnist": _files(("https://github.com/davidflanagan/notMNIST-to-MNIST/raw/master/",)),
}
CLASS_NAMES = {
    "mnist": [str(d) for d in range(10)],
    "fmnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot"],
    "kmnist": ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"],
    "notmnist": list("ABCDEFGHIJ"),
}


def png_root(raw_dir: Path) -> Path | None:
    """The folder holding notMNIST's letter folders ``A .. J``, if the PNG archive was extracted here."""
    for cand in (raw_dir, raw_dir / "notMNIST_small", raw_dir / "notMNIST_large"):
        if all((cand / c).is_dir() for c in CLASS_NAMES["notmnist"]):
            return cand
    return None


def needed(name: str, raw_dir: Path) -> tuple[RawFile, ...]:
    if name == "notmnist" and png_root(raw_dir) is not None:
        return ()
    return FILES[name]


def read_pair(raw_dir: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 1, 28, 28) uint8 and labels (N,) int64 from ``{prefix}-images/labels-idx?-ubyte.gz``."""
    img_name, lab_name = f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"
    x = read_idx((raw_dir / img_name).read_bytes(), img_name, IDX_IMAGES_MAGIC)
    y = read_idx((raw_dir / lab_name).read_bytes(), lab_name, IDX_LABELS_MAGIC)
    if x.shape[1:] != (28, 28):
        raise FormatError(f"{img_name}: expected 28 x 28 images, got {x.shape[1]} x {x.shape[2]}")
    if len(x) != len(y):
        raise FormatError(f"{img_name} has {len(x)} images but {lab_name} has {len(y)} labels")
    return x[:, None].astype(np.uint8), y.astype(np.int64)


def resize_lanczos(x: np.ndarray, size: int) -> np.ndarray:
    """``(N, 1, H, W)`` uint8 → ``(N, 1, size, size)`` uint8: each image resized by Pillow's
    ``Image.resize((size, size), Image.LANCZOS)`` (Lanczos-3, rounded to uint8), which is what torchvision's
    ``Resize(size, LANCZOS)`` does to a square image."""
    from PIL import Image
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"grey_size: expected a positive number of pixels, got {size!r}")
    if x.ndim != 4 or x.shape[1] != 1 or x.dtype != np.uint8:
        raise ValueError(f"x: expected (N, 1, H, W) uint8 images, got {x.dtype} of shape {x.shape}")
    out = np.empty((len(x), 1, int(size), int(size)), dtype=np.uint8)
    for i, img in enumerate(x[:, 0]):
        out[i, 0] = np.asarray(Image.fromarray(img, mode="L").resize((int(size), int(size)), Image.LANCZOS))
    return out


def convert(name: str, raw_dir: Path, log=print, grey_size: int | None = None, **_) -> dict:
    meta = {"class_names": CLASS_NAMES[name], "pixel_range": [0, 255]}
    if grey_size is not None:
        meta["resized"] = f"28x28 -> {grey_size}x{grey_size}, Lanczos (Pillow)"
    size = (lambda x: x) if grey_size is None else (lambda x: resize_lanczos(x, grey_size))  # noqa: E731
    root = png_root(raw_dir) if name == "notmnist" else None
    if root is not None:
        x, y, classes, skipped = read_image_folder(root, 28, mode="L", labelled=True, skip_unreadable=True)
        if skipped:
            log(f"WARNING: skipped {len(skipped)} unreadable image(s): {', '.join(skipped[:5])}")
        return {"test": (size(x), y, dict(meta, class_names=classes, raw_files=[str(root)], skipped=skipped))}
    (x_tr, y_tr), (x_te, y_te) = read_pair(raw_dir, "train"), read_pair(raw_dir, "t10k")
    return {"train": (size(x_tr), y_tr, dict(meta, raw_files=list(NAMES[:2]))),
            "test": (size(x_te), y_te, dict(meta, raw_files=list(NAMES[2:])))}
