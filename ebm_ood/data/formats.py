"""Parsers for the original file formats of the papers' datasets (one place, used by ``data_scripts/``).

Every parser takes the raw bytes or text of one file plus ``source`` (the file name, used in errors) and
returns plain numpy arrays; a malformed file raises :class:`FormatError` naming the file, what was
expected and what was found. Nothing here unpickles anything.

* UCI Image Segmentation CSV (``segmentation.data``/``.test``): a comment header, then rows
  ``CLASSNAME,f1,...,f19``.  Statlog ``segment.dat``: ``f1 ... f19 code`` with codes 1..7.
* Sensorless Drive Diagnosis: rows of 48 features and a class 1..11, space-separated.
* IDX (MNIST family), optionally gzipped: magic ``0x00 0x00 dtype ndim``, big-endian dims, then data.
* CIFAR binary records: ``label_bytes`` label bytes then 3072 pixel bytes (1024 R, 1024 G, 1024 B).
* SVHN ``.mat`` (MATLAB v5, read by scipy): ``X`` (32, 32, 3, N), ``y`` (N, 1) with 10 meaning digit 0.
* Folders of images (Pillow): centre-cropped to a square, resized, as uint8 (N, C, size, size).
"""
from __future__ import annotations

import gzip
import math
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np

from ebm_ood.plumbing.errors import FormatError  # noqa: F401  (raised here; importable from this module too)


# Statlog class codes 1..7 in this order; the UCI CSV spells the same names in upper case.
SEGMENT_CLASSES = ("brickface", "sky", "foliage", "cement", "window", "path", "grass")
SEGMENT_N_RAW_FEATURES = 19
SEGMENT_CONSTANT_COLUMN = 2  # REGION-PIXEL-COUNT, 9 for every region: dropped, 18 features remain
SENSORLESS_N_FEATURES = 48


def _floats(fields: list[str], source: str, lineno: int) -> list[float]:
    """The fields of one row as finite floats; a non-number, NaN or infinity is a :class:`FormatError`."""
    try:
        values = [float(v) for v in fields]
    except ValueError as e:
        raise FormatError(f"{source}, line {lineno}: expected numbers, got {','.join(fields)[:80]!r} ({e})") from e
    bad = [f for f, v in zip(fields, values) if not math.isfinite(v)]
    if bad:
        raise FormatError(f"{source}, line {lineno}: expected finite numbers, got {', '.join(bad[:3])}")
    return values


def parse_uci_segmentation(text: str, source: str) -> tuple[np.ndarray, list[str]]:
    """UCI CSV ``segmentation.data``/``segmentation.test``: returns ``x`` (N, 19) float64 and the lower-case
    class names (N,). The header (the column names) comes before the first data row: a header line holds
    no number and no class name, so a malformed data row is an error, never mistaken for header; every
    non-blank line after the header must be a data row."""
    rows, names, started = [], [], False
    for lineno, line in enumerate(text.splitlines(), start=1):
        fields = [f.strip() for f in line.strip().split(",")]
        is_row = (len(fields) == SEGMENT_N_RAW_FEATURES + 1 and fields[0].isalpha()
                  and all(_is_number(v) for v in fields[1:]))
        if not line.strip():
            continue
        is_header = not any(_is_number(v) or v.lower() in SEGMENT_CLASSES for v in fields)
        if not started and not is_row and is_header:
            continue
        if not is_row:
            raise FormatError(
                f"{source}, line {lineno}: expected 'CLASS,' followed by {SEGMENT_N_RAW_FEATURES} numbers, "
                f"got {line.strip()[:80]!r}")
        started = True
        name = fields[0].lower()
        if name not in SEGMENT_CLASSES:
            raise FormatError(f"{source}, line {lineno}: unknown class {fields[0]!r}; expected one of "
                              f"{', '.join(c.upper() for c in SEGMENT_CLASSES)}")
        names.append(name)
        rows.append(_floats(fields[1:], source, lineno))
    if not rows:
        raise FormatError(f"{source}: no data rows found (expected lines 'CLASS,' + {SEGMENT_N_RAW_FEATURES} numbers)")
    return np.asarray(rows, dtype=np.float64), names


def _is_number(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def _whitespace_table(text: str, source: str, n_cols: int) -> np.ndarray:
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != n_cols:
            raise FormatError(f"{source}, line {lineno}: expected {n_cols} space-separated values, got {len(fields)}")
        rows.append(_floats(fields, source, lineno))
    if not rows:
        raise FormatError(f"{source}: no data rows found")
    return np.asarray(rows, dtype=np.float64)


def parse_statlog_segment(text: str, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Statlog ``segment.dat``: returns ``x`` (N, 19) float64 and class codes (N,) int64 in 1..7 (2 = sky)."""
    table = _whitespace_table(text, source, SEGMENT_N_RAW_FEATURES + 1)
    codes = table[:, -1]
    if not np.all((codes == np.round(codes)) & (codes >= 1) & (codes <= len(SEGMENT_CLASSES))):
        raise FormatError(f"{source}: expected class codes 1..{len(SEGMENT_CLASSES)} in the last column, "
                          f"got values {np.unique(codes)[:10].tolist()}")
    return table[:, :-1], codes.astype(np.int64)


def parse_sensorless(text: str, source: str) -> tuple[np.ndarray, np.ndarray]:
    """``Sensorless_drive_diagnosis.txt``: returns ``x`` (N, 48) float64 and classes (N,) int64 in 1..11."""
    table = _whitespace_table(text, source, SENSORLESS_N_FEATURES + 1)
    cls = table[:, -1]
    if not np.all((cls == np.round(cls)) & (cls >= 1) & (cls <= 11)):
        raise FormatError(f"{source}: expected classes 1..11 in the last column, got {np.unique(cls)[:10].tolist()}")
    return table[:, :-1], cls.astype(np.int64)


_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC = 2051, 2049  # ubyte with 3 dims (N, H, W); ubyte with 1 dim (N,)


def gunzip(data: bytes, source: str) -> bytes:
    """Decompress gzip bytes; a truncated or corrupt archive is a :class:`FormatError`."""
    try:
        return gzip.decompress(data)
    except EOFError as e:
        raise FormatError(f"{source}: truncated gzip archive ({e}); delete it and download it again") from e
    except (OSError, zlib.error) as e:
        raise FormatError(f"{source}: corrupt gzip archive ({e}); delete it and download it again") from e


def read_idx(data: bytes, source: str, expect_magic: int | None = None) -> np.ndarray:
    """An IDX array from the file's bytes (gunzipped first when they start with the gzip signature)."""
    if data[:2] == b"\x1f\x8b":
        data = gunzip(data, source)
    if len(data) < 4:
        raise FormatError(f"{source}: expected an IDX header of at least 4 bytes, got {len(data)} bytes")
    magic = int.from_bytes(data[:4], "big")
    if expect_magic is not None and magic != expect_magic:
        raise FormatError(f"{source}: wrong IDX magic number: expected {expect_magic}, got {magic}")
    zero, code, ndim = int.from_bytes(data[:2], "big"), data[2], data[3]
    if zero != 0 or code not in _IDX_DTYPES:
        raise FormatError(f"{source}: not an IDX file (magic number {magic})")
    head = 4 + 4 * ndim
    if len(data) < head:
        raise FormatError(f"{source}: IDX header declares {ndim} dimensions ({head} bytes), file has {len(data)} bytes")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = head + math.prod(shape) * dtype.itemsize  # Python ints: no overflow however large the dims
    if len(data) != expected:
        raise FormatError(f"{source}: IDX header says shape {shape} ({expected} bytes), file has {len(data)} bytes")
    return np.frombuffer(data, dtype=dtype, offset=head).reshape(shape).astype(dtype.newbyteorder("="))


CIFAR_PIXELS = 3 * 32 * 32


def parse_cifar_records(data: bytes, source: str, label_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR binary batch: returns images (N, 3, 32, 32) uint8 and labels (N, label_bytes) uint8
    (CIFAR-10: one label; CIFAR-100: coarse then fine)."""
    record = label_bytes + CIFAR_PIXELS
    if len(data) == 0 or len(data) % record:
        raise FormatError(f"{source}: expected a whole number of {record}-byte records, got {len(data)} bytes")
    raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, record)
    return raw[:, label_bytes:].reshape(-1, 3, 32, 32).copy(), raw[:, :label_bytes].copy()


def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """SVHN cropped-digits ``.mat``: returns images (N, 3, 32, 32) uint8 and digits (N,) int64 in 0..9."""
    try:
        from scipy.io import loadmat
    except ImportError as e:  # scipy is an optional dependency
        raise ImportError("reading SVHN .mat files needs scipy: pip install scipy") from e
    try:
        mat = loadmat(str(path))
    except Exception as e:  # scipy raises several types for corrupt files
        raise FormatError(f"{path}: not a readable MATLAB .mat file ({e})") from e
    if "X" not in mat or "y" not in mat:
        raise FormatError(f"{path}: expected variables X and y, got {sorted(k for k in mat if not k.startswith('__'))}")
    x, y = mat["X"], np.asarray(mat["y"]).reshape(-1)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y):
        raise FormatError(f"{path}: expected X of shape (32, 32, 3, N) with N = len(y) = {len(y)}, got {x.shape}")
    if not np.all((y >= 1) & (y <= 10)):
        raise FormatError(f"{path}: expected labels 1..10 (10 = digit 0), got {np.unique(y)[:12].tolist()}")
    pixels = x.dtype == np.uint8 or (x.dtype.kind in "iuf" and np.all((x >= 0) & (x <= 255) & (x == np.round(x))))
    if not pixels:
        raise FormatError(f"{path}: expected X to hold pixel values 0..255 (uint8), got dtype {x.dtype} holding "
                          "other values")
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)).astype(np.uint8), (y % 10).astype(np.int64)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def list_images(folder: Path) -> list[Path]:
    """All image files under ``folder`` (recursive), sorted for a deterministic order."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_image_file(path: Path, size: int, mode: str = "RGB") -> np.ndarray:
    """One image centre-cropped to a square, resized to ``size`` (bilinear): (C, size, size) uint8.

    A file Pillow cannot decode (corrupt, truncated, or a decompression bomb: more pixels than Pillow's
    ``Image.MAX_IMAGE_PIXELS``) raises :class:`FormatError` naming it."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return _decode(path, size, mode)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise FormatError(f"{path}: refused as a decompression bomb ({e})") from e
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as e:
        raise FormatError(f"{path}: unreadable image ({e})") from e


def _decode(path: Path, size: int, mode: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert(mode)
        w, h = im.size
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        im = im.crop((left, top, left + s, top + s)).resize((size, size), Image.BILINEAR)
        arr = np.asarray(im, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def read_image_folder(folder: Path, size: int, mode: str = "RGB", labelled: bool = False,
                      skip_unreadable: bool = False) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Every image under ``folder`` as (N, C, size, size) uint8.

    ``labelled``: the label of an image is the index of its top-level sub-folder in sorted order
    (e.g. notMNIST's ``A/ .. J/``); otherwise labels are -1. Returns ``(x, y, class_names, skipped)``;
    unreadable files raise :class:`FormatError` unless ``skip_unreadable`` (then they are listed in
    ``skipped``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: expected a folder of images, found none")
    files = list_images(folder)
    if not files:
        raise FormatError(f"{folder}: expected image files ({', '.join(IMAGE_SUFFIXES)}), found none")
    classes = sorted({p.relative_to(folder).parts[0] for p in files if len(p.relative_to(folder).parts) > 1})
    if labelled and not classes:
        raise FormatError(f"{folder}: expected one sub-folder per class, found images only at the top level")
    xs, ys, skipped = [], [], []
    for p in files:
        try:
            xs.append(read_image_file(p, size, mode))
        except FormatError:
            if not skip_unreadable:
                raise
            skipped.append(str(p.relative_to(folder)))
            continue
        parts = p.relative_to(folder).parts
        ys.append(classes.index(parts[0]) if labelled and len(parts) > 1 else -1)
    if not xs:
        raise FormatError(f"{folder}: no readable images")
    return np.stack(xs), np.asarray(ys, dtype=np.int64), classes if labelled else [], skipped


def read_text_member(data: bytes) -> str:
    """Bytes of a text file (UTF-8, tolerating Latin-1 leftovers) as str."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")
