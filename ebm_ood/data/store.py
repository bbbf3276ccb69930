"""The prepared-data store: where prepared datasets live and how one split is saved and loaded.

Layout under the data root (``$EBM_OOD_DATA``, default ``~/.cache/ebm_ood``)::

    <root>/<name>/<split>.npz      one file per split (``all``, ``train``, ``test``)
    <root>/<name>/MANIFEST.json    written last: the splits and the sha256 of every raw input

A split file holds plain arrays only (``x``, ``y``) plus ``meta``: a 0-d unicode array with a JSON string.
Nothing is pickled; loading checks every array's header first (``ebm_ood/data/npz.py``).

Only what we wrote is ever removed. A dataset folder counts as ours when its ``MANIFEST.json`` is a JSON
object naming the dataset and its splits, each split a plain name (letters, digits, ``_``, ``-``); the
files we wrote are then exactly ``MANIFEST.json`` and ``<split>.npz`` for each split, as regular files
(not links). :func:`write_dataset` replaces an existing folder only when it is empty or holds nothing
else; otherwise it raises :class:`~ebm_ood.plumbing.errors.ForeignFilesError` naming the entries and touches nothing.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import stat
import warnings
from pathlib import Path

import numpy as np

from ebm_ood.data.npz import read_npz
from ebm_ood.plumbing.errors import ForeignFilesError, FormatError

ENV_VAR = "EBM_OOD_DATA"
MANIFEST = "MANIFEST.json"
SPLIT_NAME = re.compile(r"[A-Za-z0-9_-]+")


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root`` if given, else ``$EBM_OOD_DATA``, else ``~/.cache/ebm_ood``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "ebm_ood"


def dataset_dir(name: str, root: str | os.PathLike | None = None) -> Path:
    return data_root(root) / name


def is_prepared(name: str, root: str | os.PathLike | None = None) -> bool:
    """A dataset counts as prepared once its manifest exists and is ours (the manifest is written last)."""
    return owned_files(dataset_dir(name, root), name) is not None


def read_manifest(name: str, root: str | os.PathLike | None = None) -> dict:
    return json.loads((dataset_dir(name, root) / MANIFEST).read_text())


def owned_files(folder: Path, name: str) -> set[str] | None:
    """The names of the files we wrote into ``folder`` for dataset ``name``, read from its manifest
    (``MANIFEST.json`` and ``<split>.npz`` per split); ``None`` when there is no manifest of ours: none, not
    a regular file, not JSON, another dataset's, or naming a split that is not a plain name."""
    path = Path(folder) / MANIFEST
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("name") != name:
        return None
    splits = manifest.get("splits")
    if not isinstance(splits, list) or not all(isinstance(s, str) and SPLIT_NAME.fullmatch(s) for s in splits):
        return None
    return {MANIFEST, *(f"{s}.npz" for s in splits)}


def check_replaceable(name: str, root: str | os.PathLike | None = None) -> None:
    """Raise :class:`ForeignFilesError` unless the folder of ``name`` is absent, empty, or holds only files
    that its manifest says we wrote (regular files, not links). Nothing is changed."""
    target = dataset_dir(name, root)
    if target.is_symlink():
        raise ForeignFilesError(f"{target} is a symbolic link; it is replaced when the dataset is written, so "
                                "pass --data-root (or $EBM_OOD_DATA) to the folder it points to instead")
    if not target.exists():
        return
    if not target.is_dir():
        raise ForeignFilesError(f"{target} is a file, not a folder; move it away or choose another data root")
    entries = sorted(os.listdir(target))
    if not entries:
        return
    ours = owned_files(target, name)
    if ours is None:
        raise ForeignFilesError(
            f"{target} is not empty and holds no manifest written by data_scripts/prepare.py "
            f"({', '.join(entries[:5])}{', ...' if len(entries) > 5 else ''}); nothing was removed. Move these "
            "files elsewhere, or choose another --data-root")
    foreign = [e for e in entries if e not in ours or not stat.S_ISREG(os.lstat(target / e).st_mode)]
    if foreign:
        raise ForeignFilesError(
            f"{target} holds entries that prepare.py did not write: {', '.join(foreign[:5])}"
            f"{', ...' if len(foreign) > 5 else ''}; nothing was removed. Move them out of the folder first")


def save_split(path: Path, x: np.ndarray, y: np.ndarray, meta: dict) -> None:
    """Write one split: ``x`` (N, ...) and ``y`` (N,) int64, ``meta`` a JSON-serialisable dict."""
    if len(x) != len(y):
        raise ValueError(f"{path}: x has {len(x)} rows but y has {len(y)}")
    np.savez(path, x=np.ascontiguousarray(x), y=np.asarray(y, dtype=np.int64), meta=np.array(json.dumps(meta)))


def load_split(path: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """Read one split written by :func:`save_split`; returns ``(x, y, meta)``. A damaged or altered file is a
    :class:`FormatError` naming it."""
    try:
        arrays = read_npz(path, ("x", "y", "meta"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: prepared split not found") from None
    except FormatError as e:
        raise FormatError(f"{path}: not a readable prepared split ({e}); prepare the dataset again with --force") from e
    missing = {"x", "y", "meta"} - set(arrays)
    if missing:
        raise FormatError(f"{path}: expected arrays x, y, meta; missing {sorted(missing)}")
    try:
        meta = json.loads(str(arrays["meta"]))
    except ValueError as e:
        raise FormatError(f"{path}: meta: not a JSON string ({e}); prepare the dataset again with --force") from e
    if not isinstance(meta, dict):
        raise FormatError(f"{path}: meta: expected a JSON object, got {type(meta).__name__}")
    return arrays["x"], arrays["y"], meta


def write_dataset(name: str, splits: dict[str, tuple[np.ndarray, np.ndarray, dict]], manifest: dict,
                  root: str | os.PathLike | None = None) -> Path:
    """Write all splits of ``name`` atomically: into a temporary folder next to the target, then renamed.

    The target must pass :func:`check_replaceable` (absent, empty, or only our files). An existing folder
    is replaced only after the new one is complete, so a failure leaves the old data (or nothing) and never
    a half-written dataset; afterwards only the files its manifest lists are deleted from the old folder.
    """
    bad = [s for s in splits if not (isinstance(s, str) and SPLIT_NAME.fullmatch(s))]
    if bad:
        raise ValueError(f"splits: expected plain names (letters, digits, _ or -), got {bad}")
    check_replaceable(name, root)
    target = dataset_dir(name, root)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    tmp.mkdir()  # the umask's permissions, like every other folder (tempfile.mkdtemp would make it 0700)
    written = {MANIFEST, *(f"{s}.npz" for s in splits)}
    try:
        for split, (x, y, meta) in splits.items():
            save_split(tmp / f"{split}.npz", x, y, meta)
        full = dict(manifest, name=name, splits=sorted(splits))
        (tmp / MANIFEST).write_text(json.dumps(full, indent=2, sort_keys=True))
        if target.exists():
            old = target.with_name(f".{name}.old-{os.getpid()}-{secrets.token_hex(4)}")
            ours = owned_files(target, name) or set()
            os.replace(target, old)
            os.replace(tmp, target)
            _remove_ours(old, ours)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            _remove_ours(tmp, written)
    return target


def _remove_ours(folder: Path, names: set[str]) -> None:
    """Delete the regular files ``names`` from ``folder``, then the folder if that left it empty; anything
    else in it is kept (with a warning)."""
    for n in names:
        p = folder / n
        try:
            if stat.S_ISREG(os.lstat(p).st_mode):
                p.unlink()
        except FileNotFoundError:
            pass
    try:
        folder.rmdir()
    except OSError:
        warnings.warn(f"{folder}: kept, it holds files that were not written here: {sorted(os.listdir(folder))[:5]}",
                      stacklevel=3)
