"""The prepared-data store: where prepared datasets live and how one split is saved and loaded.

Layout under the data root (``$EBM_OOD_DATA``, default ``~/.cache/ebm_ood``)::

    <root>/<name>/<split>.npz      one file per split (``all``, ``train``, ``test``)
    <root>/<name>/MANIFEST.json    written last: the splits and the sha256 of every raw input

A split file holds plain arrays only (``x``, ``y``) plus ``meta``: a 0-d unicode array with a JSON string.
Nothing is pickled, and loading uses ``allow_pickle=False``.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import zipfile
from pathlib import Path

import numpy as np

ENV_VAR = "EBM_OOD_DATA"
MANIFEST = "MANIFEST.json"


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
    """A dataset counts as prepared once its manifest exists (the manifest is written last)."""
    return (dataset_dir(name, root) / MANIFEST).is_file()


def read_manifest(name: str, root: str | os.PathLike | None = None) -> dict:
    return json.loads((dataset_dir(name, root) / MANIFEST).read_text())


def save_split(path: Path, x: np.ndarray, y: np.ndarray, meta: dict) -> None:
    """Write one split: ``x`` (N, ...) and ``y`` (N,) int64, ``meta`` a JSON-serialisable dict."""
    if len(x) != len(y):
        raise ValueError(f"{path}: x has {len(x)} rows but y has {len(y)}")
    np.savez(path, x=np.ascontiguousarray(x), y=np.asarray(y, dtype=np.int64), meta=np.array(json.dumps(meta)))


def load_split(path: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """Read one split written by :func:`save_split`; returns ``(x, y, meta)``."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: prepared split not found")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:  # not a zip, truncated, or holding pickled objects
        raise ValueError(f"{path}: not a readable prepared split ({e}); prepare the dataset again with --force") from e
    missing = {"x", "y", "meta"} - set(arrays)
    if missing:
        raise ValueError(f"{path}: expected arrays x, y, meta; missing {sorted(missing)}")
    return arrays["x"], arrays["y"], json.loads(str(arrays["meta"]))


def write_dataset(name: str, splits: dict[str, tuple[np.ndarray, np.ndarray, dict]], manifest: dict,
                  root: str | os.PathLike | None = None) -> Path:
    """Write all splits of ``name`` atomically: into a temporary folder next to the target, then renamed.

    An existing prepared folder is replaced only after the new one is complete, so a failure leaves the
    old data (or nothing) and never a half-written dataset.
    """
    target = dataset_dir(name, root)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    tmp.mkdir()  # the umask's permissions, like every other folder (tempfile.mkdtemp would make it 0700)
    try:
        for split, (x, y, meta) in splits.items():
            save_split(tmp / f"{split}.npz", x, y, meta)
        full = dict(manifest, name=name, splits=sorted(splits))
        (tmp / MANIFEST).write_text(json.dumps(full, indent=2, sort_keys=True))
        if target.exists():
            old = target.with_name(f".{name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
