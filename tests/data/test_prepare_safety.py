"""data_scripts/prepare.py, the prepared-data store and the downloader never delete, replace or write through
anything they did not write: a user's files in the dataset folder, raw files inside it, crafted manifests,
links and FIFOs all leave every byte as it was."""
import io
import json
import hashlib
import os
import stat
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from data_scripts import download as dl  # noqa: E402
from data_scripts.prepare import main as prepare_main, prepare  # noqa: E402
from ebm_ood.data.store import is_prepared, write_dataset  # noqa: E402
from ebm_ood.plumbing.errors import ForeignFilesError  # noqa: E402

CLASSES = ["BRICKFACE", "SKY", "FOLIAGE", "CEMENT", "WINDOW", "PATH", "GRASS"]


def quiet(_):
    pass


def segment_raw(folder: Path) -> dict:
    """The two UCI segment files (3 rows per class) in ``folder``; returns {name: bytes} to compare later."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, n in (("segmentation.data", 2), ("segmentation.test", 1)):
        rows = []
        for _ in range(n):
            for c in CLASSES:
                v = np.round(rng.uniform(0, 100, size=19), 4)
                v[2] = 9.0
                rows.append(c + "," + ",".join(f"{x:.4f}" for x in v))
        (folder / name).write_text("HEADER,LINE\n\n" + "\n".join(rows) + "\n")
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def unchanged(folder: Path, files: dict) -> bool:
    return all((folder / n).is_file() and (folder / n).read_bytes() == b for n, b in files.items())


def images(folder: Path) -> dict:
    from PIL import Image

    (folder / "banded").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(folder / "banded" / f"{i}.png")
    return {f"banded/{i}.png": (folder / "banded" / f"{i}.png").read_bytes() for i in range(3)}


@pytest.mark.parametrize("force", [False, True])
def test_raw_files_in_the_dataset_folder_are_refused_and_kept(tmp_path, force):
    files = segment_raw(tmp_path / "segment")
    with pytest.raises(ValueError, match=r"raw folder \(--raw-dir\) .*segment is inside the prepared dataset folder"):
        prepare("segment", tmp_path / "segment", tmp_path, force=force, allow_download=False, log=quiet)
    assert unchanged(tmp_path / "segment", files) and sorted(os.listdir(tmp_path)) == ["segment"]


def test_images_in_the_dataset_folder_are_refused_and_kept(tmp_path):
    files = images(tmp_path / "textures")
    assert prepare_main(["textures", "--raw-dir", str(tmp_path / "textures"), "--data-root", str(tmp_path),
                         "--size", "4"]) == 1
    assert unchanged(tmp_path / "textures", files)


@pytest.mark.parametrize("where", ["inside", "link"])
def test_a_raw_folder_inside_or_linked_into_the_dataset_folder_is_refused(tmp_path, where):
    segment_raw(tmp_path / "r")
    prepare("segment", tmp_path / "r", tmp_path, allow_download=False, log=quiet)
    if where == "inside":
        raw = tmp_path / "segment" / "raw"
    else:
        raw = tmp_path / "link"
        os.symlink(tmp_path / "segment", raw)
    files = segment_raw(raw) if where == "inside" else {}
    with pytest.raises(ValueError, match="is inside the prepared dataset folder"):
        prepare("segment", raw, tmp_path, force=True, allow_download=False, log=quiet)
    assert unchanged(raw, files) and is_prepared("segment", tmp_path)


@pytest.mark.parametrize("force", [False, True])
def test_a_users_file_in_the_dataset_folder_is_never_deleted(tmp_path, capsys, force):
    segment_raw(tmp_path / "raw")
    (tmp_path / "root" / "segment").mkdir(parents=True)
    (tmp_path / "root" / "segment" / "thesis.tex").write_text("chapter 1")
    argv = ["segment", "--raw-dir", str(tmp_path / "raw"), "--data-root", str(tmp_path / "root"), "--no-download"]
    assert prepare_main(argv + ["--force"] * force) == 1
    err = capsys.readouterr().err
    assert "holds no manifest written by data_scripts/prepare.py (thesis.tex); nothing was removed" in err
    assert os.listdir(tmp_path / "root" / "segment") == ["thesis.tex"]
    assert (tmp_path / "root" / "segment" / "thesis.tex").read_text() == "chapter 1"


def test_force_keeps_a_file_added_to_a_prepared_folder(tmp_path):
    segment_raw(tmp_path / "raw")
    out = prepare("segment", tmp_path / "raw", tmp_path / "root", allow_download=False, log=quiet)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ForeignFilesError, match=r"holds entries that prepare.py did not write: notes.txt"):
        prepare("segment", tmp_path / "raw", tmp_path / "root", force=True, allow_download=False, log=quiet)
    assert unchanged(out, dict(before, **{"notes.txt": b"mine"}))
    (out / "notes.txt").unlink()
    prepare("segment", tmp_path / "raw", tmp_path / "root", force=True, allow_download=False, log=quiet)
    assert sorted(os.listdir(tmp_path / "root")) == ["segment"]  # the old folder removed, nothing left over


@pytest.mark.parametrize("manifest, extra", [
    ({"name": "segment", "splits": ["../../victim"]}, {}),          # a path outside the folder
    ({"name": "segment", "splits": ["all"], "files": ["thesis.tex"]}, {"thesis.tex": b"t"}),  # not a name we write
    ({"name": "segment", "splits": ["/abs/victim"]}, {}),
    ({"name": "other", "splits": ["all"]}, {"all.npz": b"mine"}),   # another dataset's manifest
    ("my notes", {"all.npz": b"mine"}),                              # not JSON of ours
])
def test_a_crafted_manifest_never_makes_force_delete_anything(tmp_path, manifest, extra):
    segment_raw(tmp_path / "raw")
    (tmp_path / "victim.npz").write_bytes(b"v")
    target = tmp_path / "root" / "segment"
    target.mkdir(parents=True)
    (target / "MANIFEST.json").write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))
    for n, b in extra.items():
        (target / n).write_bytes(b)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    with pytest.raises(ForeignFilesError):
        prepare("segment", tmp_path / "raw", tmp_path / "root", force=True, allow_download=False, log=quiet)
    assert unchanged(target, before) and unchanged(tmp_path, {"victim.npz": b"v"})


def test_a_split_file_replaced_by_a_link_is_not_ours(tmp_path):
    segment_raw(tmp_path / "raw")
    out = prepare("segment", tmp_path / "raw", tmp_path / "root", allow_download=False, log=quiet)
    (tmp_path / "elsewhere.txt").write_text("keep")
    (out / "all.npz").unlink()
    os.symlink(tmp_path / "elsewhere.txt", out / "all.npz")
    with pytest.raises(ForeignFilesError, match="all.npz"):
        prepare("segment", tmp_path / "raw", tmp_path / "root", force=True, allow_download=False, log=quiet)
    assert os.path.islink(out / "all.npz") and (tmp_path / "elsewhere.txt").read_text() == "keep"


def test_a_dataset_folder_that_is_a_link_is_refused(tmp_path):
    segment_raw(tmp_path / "raw")
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "mine.txt").write_text("m")
    (tmp_path / "root").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "root" / "segment")
    with pytest.raises(ForeignFilesError, match="is a symbolic link"):
        prepare("segment", tmp_path / "raw", tmp_path / "root", allow_download=False, log=quiet)
    assert unchanged(tmp_path / "real", {"mine.txt": b"m"}) and os.path.islink(tmp_path / "root" / "segment")
    with pytest.raises(ValueError, match="is inside the prepared dataset folder"):  # the raw folder behind the link
        prepare("segment", tmp_path / "real", tmp_path / "root", allow_download=False, log=quiet)


def test_split_files_without_a_manifest_are_not_ours(tmp_path):
    segment_raw(tmp_path / "raw")
    (tmp_path / "segment").mkdir()
    (tmp_path / "segment" / "all.npz").write_bytes(b"mine")
    with pytest.raises(ForeignFilesError, match="holds no manifest"):
        prepare("segment", tmp_path / "raw", tmp_path, force=True, allow_download=False, log=quiet)
    assert (tmp_path / "segment" / "all.npz").read_bytes() == b"mine"


def test_what_is_safe_still_works(tmp_path):
    """The data root as raw folder, an empty dataset folder, a killed earlier run's leftovers, --force on our
    own folder: each prepares, and every raw file stays."""
    files = segment_raw(tmp_path)
    (tmp_path / "segment").mkdir()
    (tmp_path / ".segment.tmp-1-abcd").mkdir()
    (tmp_path / ".segment.tmp-1-abcd" / "all.npz").write_bytes(b"half")
    prepare("segment", tmp_path, tmp_path, allow_download=False, log=quiet)
    prepare("segment", tmp_path, tmp_path, force=True, allow_download=False, log=quiet)
    assert is_prepared("segment", tmp_path) and unchanged(tmp_path, files)
    assert sorted(os.listdir(tmp_path / "segment")) == ["MANIFEST.json", "all.npz"]


def test_write_dataset_checks_the_folder_and_the_split_names(tmp_path):
    x, y = np.zeros((3, 2), np.float32), np.zeros(3, np.int64)
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "keep.txt").write_text("k")
    with pytest.raises(ForeignFilesError, match="keep.txt"):
        write_dataset("toy", {"train": (x, y, {})}, {}, tmp_path)
    with pytest.raises(ValueError, match=r"splits: expected plain names"):
        write_dataset("toy2", {"../train": (x, y, {})}, {}, tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["toy"] and os.listdir(tmp_path / "toy") == ["keep.txt"]


class _Response(io.BytesIO):
    status = 200

    def __init__(self, body):
        super().__init__(body)
        self.headers = {"Content-Length": str(len(body))}


@pytest.mark.parametrize("make", ["part-link", "final-link", "final-fifo", "part-dir"])
def test_a_download_never_writes_through_or_replaces_what_is_not_a_regular_file(tmp_path, monkeypatch, make):
    body = b"payload"
    raw = dl.RawFile("f.bin", ("http://example.invalid/f.bin",), sha256=hashlib.sha256(body).hexdigest())
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: _Response(body))
    folder = tmp_path / "raw"
    folder.mkdir()
    (tmp_path / "victim.txt").write_text("v")
    path = folder / ("f.bin.part" if make.startswith("part") else "f.bin")
    if make.endswith("link"):
        os.symlink(tmp_path / "victim.txt", path) if make == "part-link" else os.symlink(tmp_path / "gone", path)
    elif make == "final-fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
    mode = os.lstat(path).st_mode
    with pytest.raises(ForeignFilesError, match=f"{path.name} is not a regular file"):
        dl.obtain((raw,), folder, log=quiet)
    assert os.lstat(path).st_mode == mode and (tmp_path / "victim.txt").read_text() == "v"
    assert not stat.S_ISREG(mode)
