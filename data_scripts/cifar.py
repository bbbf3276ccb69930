"""CIFAR-10 and CIFAR-100 from the *binary* distributions (never the pickled "python version").

The batch files are read straight out of the ``.tar.gz`` (only regular members whose base name we expect;
nothing is extracted to disk), or from an already extracted ``cifar-10-batches-bin/`` or
``cifar-100-binary/`` folder in the raw folder. Stored as splits ``train`` and ``test``:
``x`` (N, 3, 32, 32) uint8, ``y`` (N,) int64 (CIFAR-100: the fine label, 0..99).
"""
from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np

from data_scripts.download import RawFile
from ebm_ood.data.formats import FormatError, parse_cifar_records, read_text_member

BASE = "https://www.cs.toronto.edu/~kriz/"
FILES = {
    "cifar10": (RawFile("cifar-10-binary.tar.gz", (BASE + "cifar-10-binary.tar.gz",),
                        sha256="c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
                        md5="c32a1d4ab5d03f1284b67883e8d87530", size=170052171),),
    "cifar100": (RawFile("cifar-100-binary.tar.gz", (BASE + "cifar-100-binary.tar.gz",),
                         md5="03b5dce01913d631647c71ecec9e9cb8"),),
}
FOLDER = {"cifar10": "cifar-10-batches-bin", "cifar100": "cifar-100-binary"}
SPLIT_FILES = {
    "cifar10": {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]},
    "cifar100": {"train": ["train.bin"], "test": ["test.bin"]},
}
LABEL_BYTES = {"cifar10": 1, "cifar100": 2}  # CIFAR-100 records: coarse label, fine label
NAMES_FILE = {"cifar10": "batches.meta.txt", "cifar100": "fine_label_names.txt"}
N_CLASSES = {"cifar10": 10, "cifar100": 100}


def needed(name: str, raw_dir: Path) -> tuple[RawFile, ...]:
    return () if (raw_dir / FOLDER[name]).is_dir() else FILES[name]


def _members(name: str, raw_dir: Path) -> dict[str, bytes]:
    """The bytes of every batch file and the class-names file, keyed by base name."""
    wanted = {f for files in SPLIT_FILES[name].values() for f in files} | {NAMES_FILE[name]}
    folder = raw_dir / FOLDER[name]
    if folder.is_dir():
        return {f: (folder / f).read_bytes() for f in wanted if (folder / f).is_file()}
    archive = raw_dir / FILES[name][0].name
    out = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                base = member.name.rsplit("/", 1)[-1]
                if member.isreg() and base in wanted:
                    out[base] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError) as e:
        raise FormatError(f"{archive}: truncated or corrupt tar.gz archive ({e}); delete it and download it again") from e
    return out


def convert(name: str, raw_dir: Path, **_) -> dict:
    members = _members(name, raw_dir)
    missing = [f for files in SPLIT_FILES[name].values() for f in files if f not in members]
    if missing:
        raise FormatError(f"{raw_dir}: expected CIFAR batch files {', '.join(missing)} "
                          f"(in {FILES[name][0].name} or {FOLDER[name]}/), not found")
    classes = [c for c in read_text_member(members.get(NAMES_FILE[name], b"")).split() if c]
    if not classes:  # names file absent: number the classes (labels are still checked against the count)
        classes = [str(c) for c in range(N_CLASSES[name])]
    if len(classes) != N_CLASSES[name]:
        raise FormatError(f"{NAMES_FILE[name]}: expected {N_CLASSES[name]} class names, got {len(classes)}")
    out = {}
    for split, files in SPLIT_FILES[name].items():
        parts = [parse_cifar_records(members[f], f, LABEL_BYTES[name]) for f in files]
        x = np.concatenate([p[0] for p in parts])
        y = np.concatenate([p[1][:, -1] for p in parts]).astype(np.int64)  # CIFAR-100: the fine label
        out[split] = (x, y, {"class_names": classes, "pixel_range": [0, 255], "raw_files": files})
    return out
