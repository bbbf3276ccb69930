"""The checks every converted split passes before anything is written, whatever its format.

A split is ``(x, y, meta)``: ``x`` (N, ...) with N >= 1 and finite values, ``y`` (N,) integer labels that
index ``meta["class_names"]``, or all -1 for an unlabelled set (no class names). A failure is a
:class:`~ebm_ood.data.formats.FormatError` naming the dataset, the split, the raw files and the first bad row,
so that bad data stops at preparation instead of inside a benchmark.
"""
from __future__ import annotations

import numpy as np

from ebm_ood.data.formats import FormatError


def check_split(name: str, split: str, x: np.ndarray, y: np.ndarray, meta: dict) -> None:
    where = f"{name} split {split!r} (from {', '.join(map(str, meta.get('raw_files', []))) or 'the raw files'})"
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim < 2 or len(x) == 0:
        raise FormatError(f"{where}: expected at least one sample of shape (N, ...), got x of shape {x.shape}")
    if y.shape != (len(x),):
        raise FormatError(f"{where}: expected one label per sample, shape ({len(x)},); got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise FormatError(f"{where}: expected integer labels, got {y.dtype}")
    if np.issubdtype(x.dtype, np.floating):
        bad = ~np.isfinite(x.reshape(len(x), -1))
        if bad.any():
            row, col = map(int, np.argwhere(bad)[0])
            first = x.reshape(len(x), -1)[row, col]
            raise FormatError(f"{where}: {int(bad.sum())} non-finite value(s), the first {first} at sample {row}, "
                              f"feature {col}")
    elif not np.issubdtype(x.dtype, np.integer):
        raise FormatError(f"{where}: expected numeric samples, got {x.dtype}")
    classes = list(meta.get("class_names") or [])
    lo, hi = (0, len(classes) - 1) if classes else (-1, -1)
    outside = (y < lo) | (y > hi)
    if outside.any():
        row = int(np.argmax(outside))
        expected = f"0..{hi} ({len(classes)} classes)" if classes else "-1 (an unlabelled set)"
        raise FormatError(f"{where}: {int(outside.sum())} label(s) outside {expected}, the first {int(y[row])} at "
                          f"sample {row}")
