"""Download, verify and prepare one of the papers' datasets.

    python data_scripts/prepare.py NAME [--raw-dir DIR] [--data-root DIR] [--force] [--no-download] [--size N]
    python data_scripts/prepare.py --list

Raw files are taken from ``--raw-dir`` (default ``<data root>/raw/NAME``) or downloaded there, checked
against the recorded checksums, converted, and written to ``<data root>/NAME/`` (one ``.npz`` per split
plus ``MANIFEST.json``; see ``ebm_ood/data/store.py``). The data root is ``--data-root``, else
``$EBM_OOD_DATA``, else ``~/.cache/ebm_ood``. A prepared dataset is left alone unless ``--force``.

Nothing we did not write is deleted: a dataset folder that is not empty is replaced (with ``--force``) only
when its manifest is ours and it holds nothing but the files that manifest lists; otherwise the run stops
before downloading anything. A raw folder equal to, or inside, the dataset folder is refused.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from data_scripts import cifar, idx, image_folder, svhn, uci  # noqa: E402
from data_scripts.download import ChecksumError, DownloadError, obtain  # noqa: E402
from data_scripts.validate import check_split  # noqa: E402
from ebm_ood.data.formats import FormatError  # noqa: E402
from ebm_ood.data.store import (  # noqa: E402
    check_replaceable, data_root, dataset_dir, is_prepared, read_manifest, write_dataset,
)

FAMILIES = (uci, idx, cifar, svhn, image_folder)
PREPARERS = {name: module for module in FAMILIES for name in module.FILES}


def prepare(name: str, raw_dir: str | Path | None = None, root: str | Path | None = None, force: bool = False,
            allow_download: bool = True, size: int = image_folder.DEFAULT_SIZE, log=print,
            grey_size: int | None = None) -> Path:
    """Prepare ``name`` and return its folder. Idempotent: an already prepared dataset is not rewritten
    unless ``force``; a failure at any step leaves no partial output."""
    if name not in PREPARERS:
        raise ValueError(f"dataset: unknown name {name!r}; expected one of {', '.join(sorted(PREPARERS))}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size: expected a positive number of pixels, got {size!r}")
    if grey_size is not None and (isinstance(grey_size, bool) or not isinstance(grey_size, int) or grey_size < 1):
        raise ValueError(f"grey_size: expected a positive number of pixels, got {grey_size!r}")
    _folder(data_root(root), "data root (--data-root, else $EBM_OOD_DATA)")
    _folder(dataset_dir(name, root), f"{name}: prepared dataset folder")
    if raw_dir is not None:
        _folder(Path(raw_dir).expanduser(), "raw folder (--raw-dir)")
    if is_prepared(name, root) and not force:
        log(f"{name}: already prepared in {dataset_dir(name, root)} (use --force to prepare again)")
        return dataset_dir(name, root)
    module = PREPARERS[name]
    raw = Path(raw_dir).expanduser() if raw_dir is not None else data_root(root) / "raw" / name
    _outside(raw, dataset_dir(name, root), data_root(root) / "raw" / name)
    check_replaceable(name, root)  # before any download: a folder holding files we did not write is refused
    digests = obtain(module.needed(name, raw), raw, allow_download=allow_download, log=log)
    splits = module.convert(name, raw, size=size, log=log, grey_size=grey_size)
    for split, (x, y, meta) in splits.items():
        check_split(name, split, x, y, meta)
    manifest = {"raw_sha256": digests, "raw_dir": str(raw), "prepared_by": "data_scripts/prepare.py"}
    out = write_dataset(name, splits, manifest, root)
    for split, (x, y, _) in splits.items():
        log(f"wrote {out / (split + '.npz')}: x {tuple(x.shape)} {x.dtype}, y {tuple(y.shape)}")
    return out


def _outside(raw: Path, target: Path, default: Path) -> None:
    """Refuse a raw folder that is, or lies inside, the dataset folder (symbolic links resolved): that folder
    is replaced when the dataset is written."""
    r, t = Path(os.path.realpath(raw)), Path(os.path.realpath(target))
    if r == t or t in r.parents:
        raise ValueError(f"raw folder (--raw-dir) {raw} is inside the prepared dataset folder {target}, which "
                         f"prepare.py replaces; keep raw files elsewhere, e.g. the default {default}")


def _folder(path: Path, what: str) -> None:
    """Refuse ``path`` if it, or the nearest part of it that exists, is not a folder."""
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                inside = f" (needed for {path})" if p != path else ""
                raise ValueError(f"{what}: {p} is a file, not a folder{inside}")
            return


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("name", nargs="?", help=f"one of: {', '.join(sorted(PREPARERS))}")
    p.add_argument("--raw-dir", help="folder holding (or receiving) the raw files")
    p.add_argument("--data-root", help="where prepared datasets go (default $EBM_OOD_DATA or ~/.cache/ebm_ood)")
    p.add_argument("--force", action="store_true", help="prepare again even if already prepared")
    p.add_argument("--no-download", action="store_true", help="only use files already in the raw folder")
    p.add_argument("--size", type=int, default=image_folder.DEFAULT_SIZE, help="image-folder sets: side in pixels")
    p.add_argument("--grey-size", type=int, default=None,
                   help="MNIST-family sets: resize 28x28 to this side (Lanczos), e.g. 32 as the authors' FMNIST")
    p.add_argument("--list", action="store_true", help="list the dataset names and whether each is prepared")
    args = p.parse_args(argv)
    if args.list or not args.name:
        for name in sorted(PREPARERS):
            state = "prepared" if is_prepared(name, args.data_root) else "-"
            print(f"{name:14s} {state}")
        return 0
    for flag, value in (("--size", args.size), ("--grey-size", args.grey_size)):
        if value is not None and value < 1:
            print(f"error: {flag}: expected a positive number of pixels, got {value}", file=sys.stderr)
            return 2
    try:
        prepare(args.name, args.raw_dir, args.data_root, args.force, not args.no_download, args.size,
                grey_size=args.grey_size)
    except (ValueError, DownloadError, ChecksumError, FormatError, OSError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if is_prepared(args.name, args.data_root):
        print(f"{args.name}: raw sha256 {read_manifest(args.name, args.data_root)['raw_sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
