"""The rules of a data folder (``ebm_ood/data/folder.py``) and of prepared splits: every bad file is a
FormatError (a ValueError, which the CLI reports) naming the file and the array, before any memory is
allocated for a lying header; uint8 images are read as pixels; labels must be the classes 0..K-1."""
import io
import json
import os
import zipfile

import numpy as np
import pytest

from ebm_ood.data import get_dataset
from ebm_ood.data.folder import is_data_folder, load_folder
from ebm_ood.data.npz import read_npz
from ebm_ood.data.store import load_split, write_dataset
from ebm_ood.plumbing.errors import FormatError, NonFiniteError


def _folder(root, x=None, y=None, test=None, ood=None):
    """A valid tabular folder (40 samples, 5 features, classes 0..3) with the given arrays swapped in."""
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(40, 5)).astype(np.float32) if x is None else x
    y = np.arange(len(x)) % 4 if y is None else y
    (root / "ood").mkdir(parents=True)
    np.savez(root / "train.npz", x=x, y=y)
    np.savez(root / "test.npz", **(test if test is not None else {"x": x[:8], "y": y[:8]}))
    np.savez(root / "ood" / "far.npz", x=x[:8] + 3 if ood is None else ood)
    return root


def _npy(a):
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _lying_header(path, shape, key="x", others=None):
    """An .npz whose ``key`` header claims ``shape`` of float64 but holds 64 bytes."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{key}.npy", buf.getvalue() + b"\0" * 64)
        for k, v in (others or {}).items():
            z.writestr(f"{k}.npy", _npy(v))


@pytest.mark.parametrize("shape", [(2 ** 40,), (2 ** 20, 2 ** 20), (9, 5)])
def test_a_header_claiming_more_than_the_file_holds_is_refused_before_allocating(tmp_path, shape):
    root = _folder(tmp_path / "mine")
    _lying_header(root / "train.npz", shape, others={"y": np.arange(40) % 4})
    with pytest.raises(FormatError, match=rf"train.npz: x: the header claims shape \({shape[0]},.*but the archive "
                                          "member holds 64 bytes"):
        load_folder(root)


@pytest.mark.parametrize("write, message", [
    (lambda p: p.write_bytes(os.urandom(256)), "not a readable .npz file: not a zip archive"),
    (lambda p: p.write_bytes(b"\x80\x04" + os.urandom(256)), "not a readable .npz file: not a zip archive"),
    (lambda p: p.write_bytes(_npy(np.zeros((3, 5), np.float32))), "not a readable .npz file: not a zip archive"),
    (lambda p: np.savez(p, x=np.array([[1.0, None]], dtype=object)), "x: dtype object holds Python objects"),
    (lambda p: (p.unlink(), os.mkfifo(p)), r"is not a regular file \(a FIFO\)"),
    (lambda p: (p.unlink(), p.mkdir()), r"is not a regular file \(a folder\)"),
])
def test_files_that_are_not_plain_npz_archives_are_named(tmp_path, write, message):
    root = _folder(tmp_path / "mine")
    write(root / "test.npz")
    with pytest.raises(FormatError, match=f"test.npz: {message}") as info:
        get_dataset(str(root))
    assert "unsafely" not in str(info.value) and "allow_pickle" not in str(info.value)


def test_a_folder_named_like_an_ood_file_or_train_is_named(tmp_path):
    root = _folder(tmp_path / "mine")
    (root / "ood" / "x.npz").mkdir()
    with pytest.raises(FormatError, match=r"ood/x.npz: is not a regular file"):
        get_dataset(str(root))
    (root / "ood" / "x.npz").rmdir()
    (root / "train.npz").unlink()
    (root / "train.npz").mkdir()
    assert is_data_folder(root)
    with pytest.raises(FormatError, match=r"train.npz: is not a regular file"):
        get_dataset(str(root))


@pytest.mark.parametrize("kw, message", [
    ({"y": np.array([0, 1, 0.5, 1] * 10)}, r"y: expected integer class labels, got 0.5 at index 2"),
    ({"y": np.array(list("abcd") * 10)}, r"y: expected integer class labels 0..K-1, got dtype <U1"),
    ({"y": np.array([True, False] * 20)}, r"y: expected integer class labels 0..K-1, got dtype bool"),
    ({"y": np.arange(40) % 4 + 1}, r"y: labels must be 0..K-1 with every class present; labels go up to 4 but "
                                   r"class 0 has no sample \(labels 1..K\? subtract 1\)"),
    ({"y": np.array([0, 1, 3] * 13 + [0])}, r"y: labels must be 0..K-1 .*class 2 has no sample"),
    ({"y": np.array([-1, 0, 1, 2] * 10)}, r"y: labels must lie in 0..K-1, got -1 at index 0"),
    ({"y": np.array([0, 1, 2 ** 63 + 1, 2] * 10, np.uint64)}, r"y: labels must lie in 0..K-1, got 9223372036854775809"),
    ({"y": (np.arange(40) % 4)[:, None]}, r"y: expected one label per sample of x, shape \(40,\), got \(40, 1\)"),
    ({"y": np.zeros(40, np.int64)}, r"y: expected at least 2 classes"),
])
def test_training_labels_must_be_the_classes_0_to_k_minus_1(tmp_path, kw, message):
    root = _folder(tmp_path / "mine", **kw)
    with pytest.raises(FormatError, match=f"train.npz: {message}"):
        get_dataset(str(root))


def test_integral_float_labels_are_accepted_and_test_labels_must_be_known_classes(tmp_path):
    x = np.random.default_rng(0).uniform(size=(40, 5)).astype(np.float32)
    ds = load_folder(_folder(tmp_path / "a", x=x, y=(np.arange(40) % 4).astype(np.float64)))
    assert ds.num_classes == 4 and ds.y_train.dtype == np.int64
    root = _folder(tmp_path / "b", x=x, test={"x": x[:3], "y": np.array([0, 1, 4])})
    with pytest.raises(FormatError, match=r"test.npz: y: labels must lie in 0..3 \(the classes of train.npz\), got 4"):
        load_folder(root)


@pytest.mark.parametrize("kw, message", [
    ({"ood": np.zeros((4, 5), np.uint8)}, r"ood/far.npz: x: uint8 is read as image pixels \(N, C, H, W\) only"),
    ({"ood": np.zeros((4, 5), np.int64)}, r"ood/far.npz: x: expected floating-point values .*got dtype int64"),
    ({"ood": np.full((4, 5), 1e300)}, r"ood/far.npz: x: values up to 1e\+300 exceed float32's range"),
    ({"ood": np.zeros((4, 5, 2), np.float32)}, r"ood/far.npz: x: expected shape \(N, D\) .* or \(N, C, H, W\)"),
    ({"ood": np.zeros((0, 5), np.float32)}, r"ood/far.npz: x: expected at least one sample"),
    ({"ood": np.zeros((4, 6), np.float32)}, r"ood/far.npz: x: expected shape \(N, 5\) like train.npz"),
    ({"ood": np.array([["a"] * 5])}, r"ood/far.npz: x: expected floating-point values .*got dtype <U1"),
])
def test_bad_inputs_are_named_with_file_and_key(tmp_path, kw, message):
    with pytest.raises(FormatError, match=message):
        load_folder(_folder(tmp_path / "mine", **kw))


def test_non_finite_inputs_name_the_file(tmp_path):
    with pytest.raises(NonFiniteError, match=r"ood/far.npz: x: expected finite values"):
        load_folder(_folder(tmp_path / "mine", ood=np.full((4, 5), np.inf)))


def test_uint8_images_are_pixels_mapped_to_minus_one_one_and_never_mixed_with_floats(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, size=(40, 1, 6, 6), dtype=np.uint8)
    ds = load_folder(_folder(tmp_path / "a", x=x, test={"x": x[:8]}, ood=255 - x[:8]))
    assert ds.kind == "image" and ds.x_test.dtype == np.float32
    np.testing.assert_allclose(ds.x_test, x[:8] / 127.5 - 1, atol=1e-6)
    np.testing.assert_allclose(ds.ood["far"].x, (255 - x[:8]) / 127.5 - 1, atol=1e-6)
    with pytest.raises(FormatError, match=r"far.npz: x: dtype float32, but train.npz holds uint8; .*never a mix"):
        load_folder(_folder(tmp_path / "b", x=x, test={"x": x[:8]}, ood=np.zeros((3, 1, 6, 6), np.float32)))


@pytest.mark.parametrize("shape", [(40, 6, 6, 3), (40, 6, 6, 1)])
def test_channels_last_images_are_refused_with_the_transpose(tmp_path, shape):
    with pytest.raises(FormatError, match=r"train.npz: x: shape .* looks channels-last .*x.transpose\(0, 3, 1, 2\)"):
        load_folder(_folder(tmp_path / "mine", x=np.zeros(shape, np.float32)))
    x = np.random.default_rng(0).uniform(size=(40, 3, 6, 3)).astype(np.float32)  # (N, C, H, W) with W = 3: kept
    assert load_folder(_folder(tmp_path / "ok", x=x)).input_shape == (3, 6, 3)


def test_too_few_samples_to_hold_out_validation_names_train(tmp_path):
    x = np.zeros((8, 5), np.float32)
    with pytest.raises(FormatError, match=r"train.npz: y: cannot hold out a stratified validation set"):
        load_folder(_folder(tmp_path / "mine", x=x, y=np.arange(8) % 4))


def _prepared_segment(root, y):
    x = np.random.default_rng(0).uniform(size=(len(y), 18))
    meta = {"class_names": ["brickface", "sky", "foliage", "cement", "window", "path", "grass"],
            "ood_classes": ["sky"]}
    write_dataset("segment", {"all": (x, y, meta)}, {}, root)


@pytest.mark.parametrize("bad", [-1, 7, 99])
def test_a_tampered_prepared_label_is_an_error_not_a_relabelling(tmp_path, bad):
    y = np.arange(70) % 7
    _prepared_segment(tmp_path, y)
    assert get_dataset("segment", data_root=tmp_path).num_classes == 6
    y[5] = bad
    _prepared_segment(tmp_path, y)  # write_dataset replaces its own folder
    with pytest.raises(FormatError, match=rf"segment/all.npz: y: label {bad} at index 5 is outside 0..6"):
        get_dataset("segment", data_root=tmp_path)


def test_tampered_image_labels_and_meta_are_errors(tmp_path):
    x = np.zeros((20, 1, 28, 28), np.uint8)
    y = np.arange(20) % 10
    y[3] = -1
    write_dataset("mnist", {"train": (x, y, {"class_names": list("abcdefghij")}), "test": (x, np.arange(20) % 10, {})},
                  {}, tmp_path)
    with pytest.raises(FormatError, match=r"mnist/train.npz: y: label -1 at index 3"):
        get_dataset("mnist", data_root=tmp_path)
    _prepared_segment(tmp_path / "b", np.arange(14) % 7)
    p = tmp_path / "b" / "segment" / "all.npz"
    with np.load(p) as f:
        arrays = {k: f[k] for k in f.files}
    np.savez(p, **dict(arrays, meta=np.array(json.dumps({"class_names": ["a"], "ood_classes": ["sky"]}))))
    with pytest.raises(FormatError, match=r"all.npz: meta: expected lists class_names and ood_classes"):
        get_dataset("segment", data_root=tmp_path / "b")


def test_a_prepared_split_with_a_lying_header_is_refused(tmp_path):
    _lying_header(tmp_path / "all.npz", (2 ** 40,), others={"y": np.zeros(2, np.int64), "meta": np.array("{}")})
    with pytest.raises(FormatError, match=r"all.npz: not a readable prepared split .*claims shape \(1099511627776,\)"):
        load_split(tmp_path / "all.npz")
    assert read_npz(tmp_path / "all.npz", ("y",))["y"].tolist() == [0, 0]


def test_a_member_claiming_more_bytes_than_it_stores_is_refused_before_reading(tmp_path):
    """A stored member whose zip entry and .npy header agree on 1 GiB but which holds 64 bytes."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": (2 ** 27,)})
    header = buf.getvalue()
    path = tmp_path / "big.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", header + b"\0" * 64)
    data = bytearray(path.read_bytes())
    claim = (len(header) + 8 * 2 ** 27).to_bytes(4, "little")
    local, central = data.index(b"PK\x03\x04"), data.index(b"PK\x01\x02")
    data[local + 22:local + 26] = claim  # uncompressed size in the local header
    data[central + 24:central + 28] = claim  # and in the central directory
    path.write_bytes(bytes(data))
    with pytest.raises(FormatError, match=r"big.npz: x: the archive member claims \d+ bytes, more than its \d+ stored"):
        read_npz(path, ("x",))


def test_a_prepared_test_split_of_another_image_shape_and_a_file_as_folder_are_named(tmp_path):
    x = np.zeros((20, 1, 28, 28), np.uint8)
    write_dataset("mnist", {"train": (x, np.arange(20) % 10, {"class_names": list("abcdefghij")}),
                            "test": (np.zeros((5, 1, 14, 14), np.uint8), np.arange(5), {})}, {}, tmp_path)
    with pytest.raises(FormatError, match=r"mnist/test.npz: x: images of shape \(1, 14, 14\), but train.npz holds"):
        get_dataset("mnist", data_root=tmp_path)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(FormatError, match=r"afile' is a file, not a folder"):
        load_folder(tmp_path / "afile")
