"""UCI tabular sets: Image Segmentation (``segment``) and Sensorless Drive Diagnosis (``sensorless``).

Both are stored whole as one split ``all`` (raw feature values, float64, and a class index); holding out
the OOD classes, the 80/10/10 split and min-max scaling happen when the dataset is loaded
(``ebm_ood/data/prepared.py``), so the stored file is the published data, nothing more.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from data_scripts.download import RawFile
from ebm_ood.data.formats import (
    SEGMENT_CLASSES, SEGMENT_CONSTANT_COLUMN, FormatError, parse_sensorless, parse_statlog_segment,
    parse_uci_segmentation, read_text_member,
)

UCI = "https://archive.ics.uci.edu/ml/machine-learning-databases"
SEGMENT_UCI = (
    RawFile("segmentation.data", (f"{UCI}/image/segmentation.data",)),
    RawFile("segmentation.test", (f"{UCI}/image/segmentation.test",)),
)
SEGMENT_STATLOG = (RawFile("segment.dat", (f"{UCI}/statlog/segment/segment.dat",)),)
FILES = {
    "segment": SEGMENT_UCI,
    "sensorless": (RawFile("Sensorless_drive_diagnosis.txt", (f"{UCI}/00325/Sensorless_drive_diagnosis.txt",)),),
}
SENSORLESS_OOD = (10, 11)


def needed(name: str, raw_dir: Path) -> tuple[RawFile, ...]:
    """Segment accepts either the UCI pair or the Statlog file; the UCI pair is what we download."""
    if name == "segment" and (raw_dir / "segment.dat").is_file() and not (raw_dir / "segmentation.data").is_file():
        return SEGMENT_STATLOG
    return FILES[name]


def _text(path: Path) -> str:
    return read_text_member(path.read_bytes())


def convert_segment(raw_dir: Path) -> dict:
    """(N, 18) features (the constant REGION-PIXEL-COUNT column dropped), class index into SEGMENT_CLASSES."""
    if needed("segment", raw_dir) is SEGMENT_STATLOG:
        x, codes = parse_statlog_segment(_text(raw_dir / "segment.dat"), "segment.dat")
        y, files = codes - 1, ["segment.dat"]
    else:
        parts = [parse_uci_segmentation(_text(raw_dir / f.name), f.name) for f in SEGMENT_UCI]
        x = np.concatenate([p[0] for p in parts])
        y = np.asarray([SEGMENT_CLASSES.index(n) for p in parts for n in p[1]], dtype=np.int64)
        files = [f.name for f in SEGMENT_UCI]
    col = x[:, SEGMENT_CONSTANT_COLUMN]
    if not np.all(col == col[0]):
        raise FormatError(f"{', '.join(files)}: expected column {SEGMENT_CONSTANT_COLUMN + 1} (REGION-PIXEL-COUNT) "
                          f"to be constant, got values {np.unique(col)[:5].tolist()}")
    x = np.delete(x, SEGMENT_CONSTANT_COLUMN, axis=1)
    meta = {"class_names": list(SEGMENT_CLASSES), "ood_classes": ["sky"], "raw_files": files,
            "dropped_column": "REGION-PIXEL-COUNT (constant)"}
    return {"all": (x, y, meta)}


def convert_sensorless(raw_dir: Path) -> dict:
    """(N, 48) features, class index 0..10 (= published class 1..11)."""
    x, cls = parse_sensorless(_text(raw_dir / "Sensorless_drive_diagnosis.txt"), "Sensorless_drive_diagnosis.txt")
    meta = {"class_names": [str(c) for c in range(1, 12)], "ood_classes": [str(c) for c in SENSORLESS_OOD],
            "raw_files": ["Sensorless_drive_diagnosis.txt"]}
    return {"all": (x, cls - 1, meta)}


def convert(name: str, raw_dir: Path, **_) -> dict:
    return convert_segment(raw_dir) if name == "segment" else convert_sensorless(raw_dir)
