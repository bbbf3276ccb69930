"""SVHN (cropped digits) from the official ``.mat`` files, read with scipy (MATLAB v5, no pickling).

Stored as splits ``train`` and ``test``: ``x`` (N, 3, 32, 32) uint8, ``y`` (N,) int64 digits 0..9
(the files label digit 0 as 10).
"""
from __future__ import annotations

from pathlib import Path

from data_scripts.download import RawFile
from ebm_ood.data.formats import read_svhn_mat

BASE = "http://ufldl.stanford.edu/housenumbers/"
FILES = {
    "svhn": (RawFile("train_32x32.mat", (BASE + "train_32x32.mat",), md5="e26dedcc434d2e4c54c9b2d4a06d8373"),
             RawFile("test_32x32.mat", (BASE + "test_32x32.mat",), md5="eb5a983be6a315427106f1b164d9cef3")),
}


def needed(name: str, raw_dir: Path):
    return FILES[name]


def convert(name: str, raw_dir: Path, **_) -> dict:
    out = {}
    for split in ("train", "test"):
        x, y = read_svhn_mat(raw_dir / f"{split}_32x32.mat")
        out[split] = (x, y, {"class_names": [str(d) for d in range(10)], "pixel_range": [0, 255],
                             "raw_files": [f"{split}_32x32.mat"]})
    return out
