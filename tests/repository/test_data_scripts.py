"""data_scripts/ and ebm_ood/data/formats.py: every parser on tiny files written here in the original format,
checked value by value; each failure mode gives its own clear error; preparing is atomic and idempotent."""
import gzip
import hashlib
import io
import os
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from data_scripts import download as dl  # noqa: E402
from data_scripts.prepare import main as prepare_main, prepare  # noqa: E402
from ebm_ood.data import formats  # noqa: E402
from ebm_ood.data.store import load_split, read_manifest  # noqa: E402
from idx_files import idx_bytes, write_idx_set  # noqa: E402

SEG_COLUMNS = ["REGION-CENTROID-COL", "REGION-CENTROID-ROW", "REGION-PIXEL-COUNT", "SHORT-LINE-DENSITY-5",
               "SHORT-LINE-DENSITY-2", "VEDGE-MEAN", "VEDGE-SD", "HEDGE-MEAN", "HEDGE-SD", "INTENSITY-MEAN",
               "RAWRED-MEAN", "RAWBLUE-MEAN", "RAWGREEN-MEAN", "EXRED-MEAN", "EXBLUE-MEAN", "EXGREEN-MEAN",
               "VALUE-MEAN", "SATURATION-MEAN", "HUE-MEAN"]
CLASSES = ["BRICKFACE", "SKY", "FOLIAGE", "CEMENT", "WINDOW", "PATH", "GRASS"]


# ---------------------------------------------------------------- writers of the original formats
def segment_rows(n_per_class, rng):
    """Rows (name, 19 values rounded to 6 decimals) with column 3 (pixel count) fixed at 9."""
    rows = []
    for k in range(n_per_class):
        for c in CLASSES:
            v = np.round(rng.uniform(-50, 250, size=19), 6)
            v[2] = 9.0
            rows.append((c, v))
    return rows


def write_uci_csv(path, rows):
    header = "\n" + ",".join(SEG_COLUMNS) + "\n\n"
    body = "".join(c + "," + ",".join(f"{x:.6f}" for x in v) + "\n" for c, v in rows)
    path.write_text(header + body)


def write_statlog(path, rows):
    path.write_text("".join(" ".join(f"{x:.6f}" for x in v) + f" {CLASSES.index(c) + 1}\n" for c, v in rows))


def cifar_bytes(labels, pixels):
    """labels (N, L) uint8, pixels (N, 3072) uint8 -> records label bytes then pixel bytes."""
    return b"".join(bytes(lab.tolist()) + pix.tobytes() for lab, pix in zip(labels, pixels))


def add_member(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


# ---------------------------------------------------------------- parsers
def test_uci_csv_with_header_parses_value_by_value(tmp_path):
    rows = segment_rows(2, np.random.default_rng(0))
    p = tmp_path / "segmentation.data"
    write_uci_csv(p, rows)
    x, names = formats.parse_uci_segmentation(p.read_text(), p.name)
    assert x.shape == (14, 19)
    assert names == [c.lower() for c, _ in rows]
    for i, (_, v) in enumerate(rows):
        assert np.array_equal(x[i], v)


def test_uci_csv_bad_row_names_file_and_line(tmp_path):
    rows = segment_rows(1, np.random.default_rng(1))
    p = tmp_path / "segmentation.test"
    write_uci_csv(p, rows)
    p.write_text(p.read_text() + "GRASS,1.0,2.0\n")
    with pytest.raises(formats.FormatError, match=r"segmentation.test, line 11: expected 'CLASS,'"):
        formats.parse_uci_segmentation(p.read_text(), p.name)


def test_statlog_space_separated_codes(tmp_path):
    rows = segment_rows(2, np.random.default_rng(2))
    p = tmp_path / "segment.dat"
    write_statlog(p, rows)
    x, codes = formats.parse_statlog_segment(p.read_text(), p.name)
    assert codes.tolist() == [CLASSES.index(c) + 1 for c, _ in rows]
    assert formats.SEGMENT_CLASSES[codes[1] - 1] == "sky" and codes[1] == 2
    assert all(np.array_equal(x[i], v) for i, (_, v) in enumerate(rows))


def test_sensorless_parses_scientific_notation(tmp_path):
    rng = np.random.default_rng(3)
    vals = rng.normal(size=(11, 48)) * 1e-5
    text = "".join(" ".join(f"{v:.6e}" for v in row) + f" {k + 1}\n" for k, row in enumerate(vals))
    x, cls = formats.parse_sensorless(text, "s.txt")
    assert cls.tolist() == list(range(1, 12))
    assert np.array_equal(x, np.array([[float(f"{v:.6e}") for v in row] for row in vals]))
    with pytest.raises(formats.FormatError, match=r"s.txt, line 1: expected 49"):
        formats.parse_sensorless("1 2 3\n", "s.txt")


def test_idx_roundtrip_and_magic_numbers():
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    raw = idx_bytes(x, 2051)
    assert raw[:4] == b"\x00\x00\x08\x03"  # 2051: unsigned bytes, 3 dimensions
    got = formats.read_idx(gzip.compress(raw), "imgs.gz", expect_magic=2051)
    assert got.shape == (5, 28, 28)
    assert all(got[n, i, j] == raw[16 + n * 784 + i * 28 + j] for n in range(5) for i in (0, 13, 27) for j in (0, 5, 27))
    y = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    assert formats.read_idx(idx_bytes(y, 2049), "labels", expect_magic=2049).tolist() == [3, 1, 4, 1, 5]


def test_idx_wrong_magic_truncated_gzip_and_short_data_are_distinct_errors():
    x = np.zeros((2, 28, 28), dtype=np.uint8)
    with pytest.raises(formats.FormatError, match="wrong IDX magic number: expected 2049, got 2051"):
        formats.read_idx(gzip.compress(idx_bytes(x, 2051)), "labels.gz", expect_magic=2049)
    gz = gzip.compress(idx_bytes(x, 2051))
    with pytest.raises(formats.FormatError, match="imgs.gz: truncated gzip archive"):
        formats.read_idx(gz[: len(gz) // 2], "imgs.gz")
    with pytest.raises(formats.FormatError, match=r"header says shape \(2, 28, 28\)"):
        formats.read_idx(idx_bytes(x, 2051)[:-7], "imgs")


def test_cifar_records_layout_and_truncation():
    rng = np.random.default_rng(5)
    pix = rng.integers(0, 256, size=(3, 3072), dtype=np.uint8)
    labels = np.array([[2, 17], [0, 99], [19, 5]], dtype=np.uint8)
    data = cifar_bytes(labels, pix)
    x, lab = formats.parse_cifar_records(data, "train.bin", label_bytes=2)
    assert lab.tolist() == labels.tolist()
    for n, c, h, w in [(0, 0, 0, 0), (1, 1, 5, 7), (2, 2, 31, 31), (2, 0, 31, 0)]:
        assert x[n, c, h, w] == data[n * 3074 + 2 + c * 1024 + h * 32 + w]
    with pytest.raises(formats.FormatError, match="train.bin: expected a whole number of 3074-byte records"):
        formats.parse_cifar_records(data[:-1], "train.bin", label_bytes=2)


def test_svhn_mat_transposed_and_ten_means_zero(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(6)
    X = rng.integers(0, 256, size=(32, 32, 3, 4), dtype=np.uint8)
    y = np.array([[10], [1], [9], [10]], dtype=np.uint8)
    savemat(tmp_path / "test_32x32.mat", {"X": X, "y": y})
    x, d = formats.read_svhn_mat(tmp_path / "test_32x32.mat")
    assert d.tolist() == [0, 1, 9, 0]
    assert x.shape == (4, 3, 32, 32)
    assert all(x[n, c, h, w] == X[h, w, c, n] for n in range(4) for c in range(3) for h in (0, 9) for w in (0, 31))
    savemat(tmp_path / "bad.mat", {"X": X[:, :, :, :2], "y": y})
    with pytest.raises(formats.FormatError, match=r"expected X of shape \(32, 32, 3, N\)"):
        formats.read_svhn_mat(tmp_path / "bad.mat")


def test_image_folder_crops_resizes_and_labels(tmp_path):
    from PIL import Image

    colours = {"A": (255, 0, 0), "B": (0, 0, 255)}
    for cls, col in colours.items():
        (tmp_path / cls).mkdir()
        Image.new("RGB", (40, 20), col).save(tmp_path / cls / "one.png")
        Image.new("RGB", (17, 33), col).save(tmp_path / cls / "two.jpg", quality=100)
    (tmp_path / "B" / "broken.png").write_bytes(b"not a png")
    x, y, classes, skipped = formats.read_image_folder(tmp_path, 8, labelled=True, skip_unreadable=True)
    assert classes == ["A", "B"] and skipped == [os.path.join("B", "broken.png")]
    assert x.shape == (4, 3, 8, 8) and x.dtype == np.uint8
    assert y.tolist() == [0, 0, 1, 1]
    assert np.abs(x[0].astype(int) - np.array(colours["A"])[:, None, None]).max() == 0  # png: exact
    assert np.abs(x[3].astype(int) - np.array(colours["B"])[:, None, None]).max() <= 3  # jpeg: near
    with pytest.raises(formats.FormatError, match="broken.png: unreadable image"):
        formats.read_image_folder(tmp_path, 8)


# ---------------------------------------------------------------- download and verification
def test_verify_sha256_md5_and_unknown(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"hello ebm")
    sha, md5 = hashlib.sha256(b"hello ebm").hexdigest(), hashlib.md5(b"hello ebm").hexdigest()
    assert dl.verify(p, dl.RawFile("f.bin", (), sha256=sha)) == sha
    assert dl.verify(p, dl.RawFile("f.bin", (), md5=md5)) == sha
    with pytest.raises(dl.ChecksumError, match=f"sha256 mismatch: expected {'0' * 64}, got {sha}"):
        dl.verify(p, dl.RawFile("f.bin", ("http://x/f.bin",), sha256="0" * 64))
    logs = []
    assert dl.verify(p, dl.RawFile("f.bin", ("http://x/f.bin",)), log=logs.append) == sha
    assert "no checksum recorded" in logs[0] and sha in logs[0]


class FakeResponse(io.BytesIO):
    def __init__(self, data, status, length, start=None):
        super().__init__(data)
        self.status = status
        self.headers = {"Content-Length": str(length)}
        if start is not None:
            self.headers["Content-Range"] = f"bytes {start}-{start + length - 1}/*"


def test_download_resumes_from_part_and_renames_after_verify(tmp_path, monkeypatch):
    payload = bytes(range(256)) * 40
    seen = []

    def fake_urlopen(req, timeout):
        rng = req.get_header("Range")
        seen.append(rng)
        start = int(rng.split("=")[1].rstrip("-")) if rng else 0
        return FakeResponse(payload[start:], 206 if rng else 200, len(payload) - start, start if rng else None)

    monkeypatch.setattr(dl.urllib.request, "urlopen", fake_urlopen)
    (tmp_path / "d.bin.part").write_bytes(payload[:1000])  # an interrupted earlier download
    raw = dl.RawFile("d.bin", ("http://example.invalid/d.bin",), sha256=hashlib.sha256(payload).hexdigest())
    out = dl.download(raw, tmp_path, log=lambda m: None)
    assert seen == ["bytes=1000-"]
    assert out.read_bytes() == payload and not (tmp_path / "d.bin.part").exists()


def test_obtain_hashes_a_download_once_and_warns_once(tmp_path, monkeypatch):
    payload = b"unverified payload" * 50
    monkeypatch.setattr(dl.urllib.request, "urlopen", lambda req, timeout: FakeResponse(payload, 200, len(payload)))
    hashed = []
    digest = dl.file_digest
    monkeypatch.setattr(dl, "file_digest", lambda path, algorithm="sha256": hashed.append(algorithm) or digest(path, algorithm))
    logs = []
    got = dl.obtain((dl.RawFile("u.bin", ("http://example.invalid/u.bin",)),), tmp_path, log=logs.append)
    assert got == {"u.bin": hashlib.sha256(payload).hexdigest()} and hashed == ["sha256"]
    assert sum("no checksum recorded" in m for m in logs) == 1
    hashed.clear()
    assert dl.obtain((dl.RawFile("u.bin", ()),), tmp_path, allow_download=False, log=logs.append) == got
    assert hashed == ["sha256"]  # a file already there: verified, not downloaded


def test_download_checksum_mismatch_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(dl.urllib.request, "urlopen", lambda req, timeout: FakeResponse(b"evil", 200, 4))
    raw = dl.RawFile("d.bin", ("http://example.invalid/d.bin",), sha256="1" * 64)
    with pytest.raises(dl.ChecksumError):
        dl.download(raw, tmp_path, log=lambda m: None)
    assert list(tmp_path.iterdir()) == []


def test_no_network_names_files_and_folder(tmp_path):
    files = (dl.RawFile("a.gz", ("http://127.0.0.1:9/a.gz",)), dl.RawFile("b.gz", ("http://127.0.0.1:9/b.gz",)))
    with pytest.raises(dl.MissingRawFilesError) as e:
        dl.obtain(files, tmp_path / "raw", timeout=2, log=lambda m: None)
    msg = str(e.value)
    assert "a.gz  from http://127.0.0.1:9/a.gz" in msg and "b.gz" in msg and str(tmp_path / "raw") in msg
    assert not any((tmp_path / "raw").glob("*.gz"))


# ---------------------------------------------------------------- prepare.py end to end
def test_prepare_segment_from_uci_files_is_idempotent(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    rng = np.random.default_rng(7)
    rows_a, rows_b = segment_rows(3, rng), segment_rows(2, rng)
    write_uci_csv(raw / "segmentation.data", rows_a)
    write_uci_csv(raw / "segmentation.test", rows_b)
    logs = []
    out = prepare("segment", raw, tmp_path / "root", allow_download=False, log=logs.append)
    x, y, meta = load_split(out / "all.npz")
    expected = np.array([np.delete(v, 2) for _, v in rows_a + rows_b])
    assert x.shape == (35, 18) and np.array_equal(x, expected)
    assert [meta["class_names"][k] for k in y] == [c.lower() for c, _ in rows_a + rows_b]
    assert meta["ood_classes"] == ["sky"]
    sha = hashlib.sha256((raw / "segmentation.data").read_bytes()).hexdigest()
    assert read_manifest("segment", tmp_path / "root")["raw_sha256"]["segmentation.data"] == sha
    assert any("no checksum recorded" in m for m in logs)
    mtime = (out / "all.npz").stat().st_mtime_ns
    logs.clear()
    assert prepare("segment", raw, tmp_path / "root", allow_download=False, log=logs.append) == out
    assert "already prepared" in logs[0] and (out / "all.npz").stat().st_mtime_ns == mtime
    prepare("segment", raw, tmp_path / "root", force=True, allow_download=False, log=lambda m: None)
    x2, y2, meta2 = load_split(out / "all.npz")
    assert np.array_equal(x, x2) and np.array_equal(y, y2) and meta == meta2
    assert sorted(p.name for p in (tmp_path / "root").iterdir()) == ["segment"]  # no temporary leftovers


def test_prepare_segment_from_statlog_matches_uci(tmp_path):
    rows = segment_rows(2, np.random.default_rng(8))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_statlog(tmp_path / "a" / "segment.dat", rows)
    write_uci_csv(tmp_path / "b" / "segmentation.data", rows[:7])
    write_uci_csv(tmp_path / "b" / "segmentation.test", rows[7:])
    quiet = lambda m: None  # noqa: E731
    xa, ya, _ = load_split(prepare("segment", tmp_path / "a", tmp_path / "ra", allow_download=False, log=quiet) / "all.npz")
    xb, yb, _ = load_split(prepare("segment", tmp_path / "b", tmp_path / "rb", allow_download=False, log=quiet) / "all.npz")
    assert np.array_equal(xa, xb) and np.array_equal(ya, yb)


def test_prepare_notmnist_idx_and_missing_file(tmp_path):
    data = write_idx_set(tmp_path / "raw", np.random.default_rng(9))
    out = prepare("notmnist", tmp_path / "raw", tmp_path / "root", allow_download=False, log=lambda m: None)
    x, y, _ = load_split(out / "train.npz")
    assert x.shape == (30, 1, 28, 28) and np.array_equal(x[:, 0], data["train"][0])
    assert np.array_equal(y, data["train"][1])
    xt, _, _ = load_split(out / "test.npz")
    assert np.array_equal(xt[:, 0], data["t10k"][0])
    (tmp_path / "raw" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(dl.MissingRawFilesError, match="t10k-labels-idx1-ubyte.gz"):
        prepare("notmnist", tmp_path / "raw", tmp_path / "root2", allow_download=False, log=lambda m: None)
    assert not (tmp_path / "root2" / "notmnist").exists()


def test_prepare_wrong_checksum_and_corrupt_file_write_nothing(tmp_path):
    write_idx_set(tmp_path / "raw", np.random.default_rng(10))  # not the real KMNIST: md5 differs
    with pytest.raises(dl.ChecksumError, match="train-images-idx3-ubyte.gz: md5 mismatch"):
        prepare("kmnist", tmp_path / "raw", tmp_path / "root", allow_download=False, log=lambda m: None)
    gz = tmp_path / "raw" / "train-images-idx3-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:100])  # notMNIST has no recorded checksum: the parser must catch it
    with pytest.raises(formats.FormatError, match="truncated gzip"):
        prepare("notmnist", tmp_path / "raw", tmp_path / "root", allow_download=False, log=lambda m: None)
    assert not (tmp_path / "root").exists() or list((tmp_path / "root").iterdir()) == []


def test_prepare_cifar100_from_binary_tarball(tmp_path, monkeypatch):
    rng = np.random.default_rng(11)
    pix = {s: rng.integers(0, 256, size=(n, 3072), dtype=np.uint8) for s, n in (("train", 4), ("test", 3))}
    lab = {s: rng.integers(0, 100, size=(len(p), 2), dtype=np.uint8) for s, p in pix.items()}
    (tmp_path / "raw").mkdir()
    with tarfile.open(tmp_path / "raw" / "cifar-100-binary.tar.gz", "w:gz") as tar:
        for s in pix:
            add_member(tar, f"cifar-100-binary/{s}.bin", cifar_bytes(lab[s], pix[s]))
        add_member(tar, "cifar-100-binary/fine_label_names.txt", b"\n".join(b"c%d" % i for i in range(100)))
    from data_scripts import cifar

    # the tarball is ours, not the real one: record its digest to exercise the verified path
    sha = hashlib.sha256((tmp_path / "raw" / "cifar-100-binary.tar.gz").read_bytes()).hexdigest()
    monkeypatch.setitem(cifar.FILES, "cifar100", (dl.RawFile("cifar-100-binary.tar.gz", (), sha256=sha),))
    out = prepare("cifar100", tmp_path / "raw", tmp_path / "root", allow_download=False, log=lambda m: None)
    x, y, meta = load_split(out / "train.npz")
    assert y.tolist() == lab["train"][:, 1].tolist()  # the fine label
    assert np.array_equal(x.reshape(4, 3072), pix["train"])
    assert meta["class_names"][:2] == ["c0", "c1"]


def test_cli_reports_missing_files_and_lists(tmp_path, capsys):
    rc = prepare_main(["sensorless", "--raw-dir", str(tmp_path / "none"), "--data-root", str(tmp_path),
                       "--no-download"])
    err = capsys.readouterr().err
    assert rc == 1 and "Sensorless_drive_diagnosis.txt" in err and str(tmp_path / "none") in err
    r = subprocess.run([sys.executable, str(ROOT / "data_scripts" / "prepare.py"), "--list", "--data-root",
                        str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "segment" in r.stdout and "cifar10" in r.stdout


def test_prepare_image_folder_and_notmnist_png_folders(tmp_path):
    from PIL import Image

    from data_scripts.image_folder import RawFolderMissing

    with pytest.raises(RawFolderMissing, match="textures: expected a folder of images.*robots.ox.ac.uk"):
        prepare("textures", tmp_path / "nothing", tmp_path / "root", log=lambda m: None)
    with pytest.raises(ValueError, match="size: expected a positive number of pixels, got 0"):
        prepare("textures", tmp_path / "nothing", tmp_path / "root", size=0, log=lambda m: None)
    (tmp_path / "dtd" / "banded").mkdir(parents=True)
    for k in range(3):
        Image.new("RGB", (64, 48), (10 * k, 20, 30)).save(tmp_path / "dtd" / "banded" / f"{k}.png")
    out = prepare("textures", tmp_path / "dtd", tmp_path / "root", size=16, log=lambda m: None)
    x, y, meta = load_split(out / "test.npz")
    assert x.shape == (3, 3, 16, 16) and y.tolist() == [-1, -1, -1] and meta["size"] == 16
    assert x[2, 0].min() == x[2, 0].max() == 20 and x[2, 2].max() == 30
    letters = tmp_path / "notMNIST_small"
    for i, letter in enumerate("ABCDEFGHIJ"):
        (letters / letter).mkdir(parents=True)
        Image.new("L", (28, 28), 25 * i).save(letters / letter / "x.png")
    (letters / "A" / "corrupt.png").write_bytes(b"\x89PNG broken")
    out = prepare("notmnist", tmp_path, tmp_path / "root", allow_download=False, log=lambda m: None)
    x, y, meta = load_split(out / "test.npz")
    assert x.shape == (10, 1, 28, 28) and y.tolist() == list(range(10))
    assert [int(x[i].max()) for i in range(10)] == [25 * i for i in range(10)]
    assert meta["skipped"] == [os.path.join("A", "corrupt.png")]


def test_download_restarts_when_server_ignores_range(tmp_path, monkeypatch):
    payload = b"abcdefghij" * 100
    monkeypatch.setattr(dl.urllib.request, "urlopen", lambda req, timeout: FakeResponse(payload, 200, len(payload)))
    (tmp_path / "d.bin.part").write_bytes(b"stale bytes from another file")
    raw = dl.RawFile("d.bin", ("http://example.invalid/d.bin",), md5=hashlib.md5(payload).hexdigest())
    assert dl.download(raw, tmp_path, log=lambda m: None).read_bytes() == payload


# ---------------------------------------------------------------- bad data stops at preparation
def _segment_pair(raw, rng, first_row=None, extra_row=None):
    raw.mkdir(parents=True, exist_ok=True)
    rows = segment_rows(2, rng)
    write_uci_csv(raw / "segmentation.data", rows)
    write_uci_csv(raw / "segmentation.test", rows[:3])
    text = (raw / "segmentation.data").read_text()
    if first_row is not None:  # replaces the first data row (line 4: after "", the column names, "")
        lines = text.split("\n")
        lines[3] = first_row
        text = "\n".join(lines)
    if extra_row is not None:
        text += extra_row + "\n"
    (raw / "segmentation.data").write_text(text)


GOOD = ",".join(["1.5"] * 19)
BAD_FIRST_ROWS = {
    "too few values": "BRICKFACE," + ",".join(["1.5"] * 18),
    "too many values": "BRICKFACE," + GOOD + ",2.0",
    "a word among the values": "BRICKFACE," + ",".join(["1.5"] * 18) + ",abc",
    "unknown class": "TREE," + GOOD,
    "no class": GOOD + ",1.5",
    "class only": "SKY",
    "nan": "SKY," + ",".join(["nan"] + ["1.5"] * 18),
    "inf": "SKY," + ",".join(["1.5"] * 18 + ["inf"]),
    "-Infinity": "SKY," + ",".join(["1.5"] * 9 + ["-Infinity"] + ["1.5"] * 9),
}


@pytest.mark.parametrize("case", sorted(BAD_FIRST_ROWS))
def test_malformed_first_data_row_is_an_error_not_header(tmp_path, case):
    _segment_pair(tmp_path / "raw", np.random.default_rng(20), first_row=BAD_FIRST_ROWS[case])
    with pytest.raises(formats.FormatError, match=r"segmentation.data, line 4: (expected|unknown class)"):
        prepare("segment", tmp_path / "raw", tmp_path / "root", allow_download=False, log=lambda m: None)
    assert not (tmp_path / "root" / "segment").exists()


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "1e999", "-1E400", "Infinity"])
def test_non_finite_values_are_refused_in_every_text_format(tmp_path, value):
    _segment_pair(tmp_path / "raw", np.random.default_rng(21), extra_row="CEMENT," + ",".join(["2"] * 18 + [value]))
    with pytest.raises(formats.FormatError, match=r"segmentation.data, line \d+: expected finite numbers"):
        prepare("segment", tmp_path / "raw", tmp_path / "root", allow_download=False, log=lambda m: None)
    statlog = " ".join(["1.0"] * 7 + [value] + ["1.0"] * 11) + " 3\n"
    with pytest.raises(formats.FormatError, match=r"segment.dat, line 1: expected finite numbers"):
        formats.parse_statlog_segment(statlog, "segment.dat")
    sensorless = "".join(" ".join(["0.5"] * 48) + f" {k}\n" for k in range(1, 4)) + " ".join([value] * 48) + " 2\n"
    with pytest.raises(formats.FormatError, match=r"s.txt, line 4: expected finite numbers"):
        formats.parse_sensorless(sensorless, "s.txt")


@pytest.mark.parametrize("label", [10, 200, 255])
@pytest.mark.parametrize("prefix", ["train", "t10k"])
def test_idx_labels_outside_the_classes_are_refused(tmp_path, label, prefix):
    write_idx_set(tmp_path / "raw", np.random.default_rng(22))
    lab = tmp_path / "raw" / f"{prefix}-labels-idx1-ubyte.gz"
    y = formats.read_idx(lab.read_bytes(), lab.name)
    y[5] = label
    lab.write_bytes(gzip.compress(idx_bytes(y, 2049)))
    with pytest.raises(formats.FormatError, match=rf"labels-idx1-ubyte.gz.*outside 0..9 \(10 classes\), the first "
                                                  rf"{label} at sample 5"):
        prepare("notmnist", tmp_path / "raw", tmp_path / "root", allow_download=False, log=lambda m: None)
    assert not (tmp_path / "root" / "notmnist").exists()


@pytest.mark.parametrize("label", [10, 200])
def test_cifar_labels_outside_the_classes_are_refused(tmp_path, label):
    folder = tmp_path / "raw" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    pix = np.zeros((2, 3072), dtype=np.uint8)
    for f in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        (folder / f).write_bytes(cifar_bytes(np.array([[1], [label if f == "data_batch_3.bin" else 2]]), pix))
    with pytest.raises(formats.FormatError, match=rf"data_batch_3.bin.*outside 0..9.*the first {label} at sample 5"):
        prepare("cifar10", tmp_path / "raw", tmp_path / "root", allow_download=False, log=lambda m: None)


def test_split_checks_cover_every_family():
    from data_scripts.validate import check_split

    ok = {"class_names": ["a", "b"], "raw_files": ["f.bin"]}
    check_split("d", "train", np.zeros((3, 2)), np.array([0, 1, 1]), ok)
    check_split("d", "test", np.zeros((2, 3, 4, 4), np.uint8), np.array([-1, -1]), {"raw_files": ["dir"]})
    bad = [
        (np.array([[0.0, np.nan]]), np.array([0]), ok, r"f.bin\): 1 non-finite value\(s\), the first nan at sample 0"),
        (np.array([[np.inf], [0.0]]), np.array([0, 1]), ok, "non-finite"),
        (np.zeros((2, 2)), np.array([0, 2]), ok, r"outside 0..1 \(2 classes\), the first 2 at sample 1"),
        (np.zeros((2, 2)), np.array([-1, 0]), ok, "the first -1 at sample 0"),
        (np.zeros((2, 2)), np.array([0, -1]), {"raw_files": []}, r"outside -1 \(an unlabelled set\)"),
        (np.zeros((0, 2)), np.zeros(0, np.int64), ok, "at least one sample"),
        (np.zeros((2, 2)), np.array([0]), ok, "one label per sample"),
        (np.zeros((2, 2)), np.array([0.0, 1.0]), ok, "integer labels"),
        (np.array([["a"], ["b"]]), np.array([0, 1]), ok, "numeric samples"),
    ]
    for x, y, meta, match in bad:
        with pytest.raises(formats.FormatError, match=match):
            check_split("d", "train", x, y, meta)


# ---------------------------------------------------------------- downloads never splice what cannot be checked
def _server(payload, log, honour_range=True, shift=0):
    """A fake HTTP server for ``payload``: answers Range requests with 206 (the range shifted by ``shift``
    bytes when asked to misbehave) or 416 past the end."""
    def urlopen(req, timeout):
        rng = req.get_header("Range")
        log.append(rng)
        if rng and honour_range:
            start = int(rng.split("=")[1].rstrip("-"))
            if start >= len(payload):
                raise dl.urllib.error.HTTPError(req.full_url, 416, "Range Not Satisfiable", {}, None)
            start = max(start - shift, 0)
            return FakeResponse(payload[start:], 206, len(payload) - start, start)
        return FakeResponse(payload, 200, len(payload))
    return urlopen


PAYLOAD = bytes(range(256)) * 20


@pytest.mark.parametrize("stale", [b"other file", PAYLOAD[:100], PAYLOAD + b"trailing", b"x" * (len(PAYLOAD) + 1)])
def test_a_part_without_recorded_digest_is_never_resumed(tmp_path, monkeypatch, stale):
    asked = []
    monkeypatch.setattr(dl.urllib.request, "urlopen", _server(PAYLOAD, asked))
    (tmp_path / "d.bin.part").write_bytes(stale)
    logs = []
    out = dl.download(dl.RawFile("d.bin", ("http://example.invalid/d.bin",)), tmp_path, log=logs.append)
    assert out.read_bytes() == PAYLOAD and asked == [None]
    assert any("no checksum recorded" in m for m in logs)


@pytest.mark.parametrize("stale,ranges", [
    (PAYLOAD + b"extra", ["bytes=5125-", None]),      # longer than the file: 416, fails verification, restart
    (b"Z" * len(PAYLOAD), ["bytes=5120-", None]),       # as long as the file but wrong: 416, restart
    (PAYLOAD, ["bytes=5120-"]),                          # complete already: 416, verified, kept
    (b"Z" * 100, ["bytes=100-"]),                        # wrong prefix: resumed, then refused by the checksum
])
def test_a_resumed_download_is_verified_and_a_416_is_never_taken_on_trust(tmp_path, monkeypatch, stale, ranges):
    asked = []
    monkeypatch.setattr(dl.urllib.request, "urlopen", _server(PAYLOAD, asked))
    (tmp_path / "d.bin.part").write_bytes(stale)
    raw = dl.RawFile("d.bin", ("http://example.invalid/d.bin",), md5=hashlib.md5(PAYLOAD).hexdigest())
    if stale[:100] == b"Z" * 100 and len(stale) == 100:
        with pytest.raises(dl.ChecksumError):
            dl.download(raw, tmp_path, log=lambda m: None)
        assert not (tmp_path / "d.bin").exists() and not (tmp_path / "d.bin.part").exists()
    else:
        assert dl.download(raw, tmp_path, log=lambda m: None).read_bytes() == PAYLOAD
    assert asked == ranges


def test_a_wrong_content_range_or_a_part_longer_than_the_recorded_size_restarts(tmp_path, monkeypatch):
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    asked = []
    monkeypatch.setattr(dl.urllib.request, "urlopen", _server(PAYLOAD, asked, shift=7))
    (tmp_path / "d.bin.part").write_bytes(PAYLOAD[:1000])
    raw = dl.RawFile("d.bin", ("http://example.invalid/d.bin",), sha256=sha)
    assert dl.download(raw, tmp_path, log=lambda m: None).read_bytes() == PAYLOAD
    assert asked == ["bytes=1000-", None]  # the 206 started at byte 993: not spliced
    asked.clear()
    (tmp_path / "d.bin").unlink()
    (tmp_path / "d.bin.part").write_bytes(PAYLOAD + b"more")
    raw = dl.RawFile("d.bin", ("http://example.invalid/d.bin",), sha256=sha, size=len(PAYLOAD))
    assert dl.download(raw, tmp_path, log=lambda m: None).read_bytes() == PAYLOAD and asked == [None]


# ---------------------------------------------------------------- no raw tracebacks
def test_decompression_bombs_and_undecodable_images_are_named(tmp_path, monkeypatch):
    from PIL import Image

    (tmp_path / "imgs" / "A").mkdir(parents=True)
    Image.new("L", (16, 16), 3).save(tmp_path / "imgs" / "A" / "fine.png")
    Image.new("L", (64, 64), 0).save(tmp_path / "imgs" / "A" / "bomb.png")      # > 2x the limit: an error in Pillow
    Image.new("L", (20, 20), 0).save(tmp_path / "imgs" / "A" / "large.png")     # between 1x and 2x: a warning
    (tmp_path / "imgs" / "A" / "trunc.png").write_bytes((tmp_path / "imgs" / "A" / "fine.png").read_bytes()[:40])
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)
    with pytest.raises(formats.FormatError, match=r"bomb.png: refused as a decompression bomb"):
        formats.read_image_folder(tmp_path / "imgs", 8)
    for name, why in (("large.png", "decompression bomb"), ("trunc.png", "unreadable image")):
        with pytest.raises(formats.FormatError, match=f"{name}: .*{why}"):
            formats.read_image_file(tmp_path / "imgs" / "A" / name, 8)
    x, _, _, skipped = formats.read_image_folder(tmp_path / "imgs", 8, labelled=True, skip_unreadable=True)
    assert len(x) == 1 and sorted(skipped) == [os.path.join("A", n) for n in ("bomb.png", "large.png", "trunc.png")]
    rc = prepare_main(["textures", "--raw-dir", str(tmp_path / "imgs"), "--data-root", str(tmp_path / "root")])
    assert rc == 1 and not (tmp_path / "root" / "textures").exists()


@pytest.mark.parametrize("where", ["data-root", "data-root-parent", "raw-dir", "env"])
def test_data_root_or_raw_dir_that_is_a_file_is_named(tmp_path, capsys, monkeypatch, where):
    f = tmp_path / "a-file"
    f.write_text("not a folder")
    _segment_pair(tmp_path / "raw", np.random.default_rng(23))
    args = ["segment", "--raw-dir", str(tmp_path / "raw"), "--data-root", str(tmp_path / "root"), "--no-download"]
    if where == "data-root":
        args[4] = str(f)
    elif where == "data-root-parent":
        args[4] = str(f / "below")
    elif where == "raw-dir":
        args[2] = str(f)
    else:
        args = args[:3] + args[5:]
        monkeypatch.setenv("EBM_OOD_DATA", str(f))
    assert prepare_main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and f"{f} is a file, not a folder" in err
    assert ("--raw-dir" if where == "raw-dir" else "data root") in err


def test_loading_from_a_data_root_that_is_a_file_says_so(tmp_path):
    from ebm_ood.data import get_dataset
    from ebm_ood.data.prepared import DatasetNotPreparedError

    f = tmp_path / "a-file"
    f.write_text("")
    with pytest.raises(DatasetNotPreparedError, match=f"data root {f} is a file, not a folder"):
        get_dataset("segment", data_root=f)


@pytest.mark.parametrize("dims", [(2**31, 2**31, 4), (2**32 - 1, 2**32 - 1, 2**32 - 1), (2**16, 2**16, 2**16, 2**16)])
def test_idx_dimensions_whose_product_overflows_are_a_format_error(dims):
    head = struct.pack(">I", 0x0800 + len(dims)) + b"".join(struct.pack(">I", d) for d in dims)
    for data in (head, head + b"\0" * 64):
        with pytest.raises(formats.FormatError, match=r"IDX header says shape"):
            formats.read_idx(data, "imgs")


def test_idx_header_cut_inside_its_dimensions_is_a_format_error():
    with pytest.raises(formats.FormatError, match=r"declares 200 dimensions \(804 bytes\), file has 12 bytes"):
        formats.read_idx(struct.pack(">I", 0x0800 + 200) + b"\0" * 8, "imgs")
    img = np.zeros((2, 5, 5), np.uint8)
    with pytest.raises(formats.FormatError, match="expected 28 x 28 images, got 5 x 5"):
        _read_small_pair(img)


def _read_small_pair(img):
    import tempfile

    from data_scripts import idx as idx_mod

    with tempfile.TemporaryDirectory() as d:
        Path(d, "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(img, 2051)))
        Path(d, "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(2, np.uint8), 2049)))
        idx_mod.read_pair(Path(d), "train")


def test_svhn_pixels_outside_uint8_are_refused(tmp_path):
    from scipy.io import savemat

    y = np.array([[1], [2]], dtype=np.uint8)
    X = np.full((32, 32, 3, 2), 7.0)
    savemat(tmp_path / "ok.mat", {"X": X, "y": y})
    assert formats.read_svhn_mat(tmp_path / "ok.mat")[0].max() == 7
    for bad in (300.0, -1.0, 2.5, np.nan, np.inf):
        X[3, 4, 1, 1] = bad
        savemat(tmp_path / "bad.mat", {"X": X, "y": y})
        with pytest.raises(formats.FormatError, match=r"bad.mat: expected X to hold pixel values 0..255"):
            formats.read_svhn_mat(tmp_path / "bad.mat")


def test_a_file_where_the_prepared_folder_goes_is_named_and_kept(tmp_path, capsys):
    _segment_pair(tmp_path / "raw", np.random.default_rng(24))
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "segment").write_text("mine")
    rc = prepare_main(["segment", "--raw-dir", str(tmp_path / "raw"), "--data-root", str(tmp_path / "root")])
    assert rc == 1 and f"{tmp_path / 'root' / 'segment'} is a file, not a folder" in capsys.readouterr().err
    assert (tmp_path / "root" / "segment").read_text() == "mine"
