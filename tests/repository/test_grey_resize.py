"""``prepare.py --grey-size 32``: MNIST-family images resized with Lanczos as the authors' FMNIST loader
(``data_shape: [32, 32, 1]``). The resize is checked against a separable Lanczos-3 written here in numpy
(Pillow rounds to uint8 between its two passes; so does the reference)."""
import gzip

import numpy as np
import pytest

from data_scripts import idx
from data_scripts.prepare import prepare
from idx_files import write_idx_set


def _lanczos_matrix(n_in, n_out, a=3):
    """Rows of weights mapping n_in samples to n_out, Pillow's convention: output pixel i is centred at
    (i + 0.5)·scale in input coordinates, the kernel is stretched by the scale when shrinking."""
    scale = n_in / n_out
    support = a * max(scale, 1.0)
    w = np.zeros((n_out, n_in))
    for i in range(n_out):
        centre = (i + 0.5) * scale
        js = np.arange(max(0, int(centre - support + 0.5)), min(n_in, int(centre + support + 0.5)))
        t = (js + 0.5 - centre) / max(scale, 1.0)
        k = np.sinc(t) * np.sinc(t / a) * (np.abs(t) < a)
        w[i, js] = k / k.sum()
    return w


@pytest.mark.parametrize("size", [32, 14, 28])
def test_resize_matches_an_independent_lanczos(size):
    x = np.random.default_rng(0).integers(0, 256, size=(3, 1, 28, 28), dtype=np.uint8)
    got = idx.resize_lanczos(x, size)
    assert got.shape == (3, 1, size, size) and got.dtype == np.uint8
    m = _lanczos_matrix(28, size)
    # Pillow's two passes: rows first, stored as uint8 (rounded, clipped), then columns
    rows = np.clip(np.round(np.einsum("njk,lk->njl", x[:, 0].astype(float), m)), 0, 255)
    want = np.clip(np.round(np.einsum("ij,njl->nil", m, rows)), 0, 255)
    assert np.abs(got[:, 0].astype(float) - want).max() <= 1  # fixed-point vs float rounding ties
    # a constant image stays constant
    flat = np.full((1, 1, 28, 28), 77, np.uint8)
    assert np.all(idx.resize_lanczos(flat, size) == 77)


def test_resize_refuses_bad_input():
    with pytest.raises(ValueError, match="grey_size"):
        idx.resize_lanczos(np.zeros((1, 1, 28, 28), np.uint8), 0)
    with pytest.raises(ValueError, match="x: expected"):
        idx.resize_lanczos(np.zeros((1, 28, 28), np.uint8), 32)


def test_prepare_with_grey_size_writes_32x32_and_default_keeps_28(tmp_path):
    """notMNIST in IDX form (no recorded checksum, so synthetic files pass) stands for the family."""
    raw = tmp_path / "raw"
    data = write_idx_set(raw, np.random.default_rng(1))
    out = prepare("notmnist", raw, tmp_path / "root32", allow_download=False, log=lambda *_: None, grey_size=32)
    x32 = np.load(out / "train.npz")["x"]
    assert x32.shape == (30, 1, 32, 32)
    np.testing.assert_array_equal(x32, idx.resize_lanczos(data["train"][0][:, None], 32))
    out28 = prepare("notmnist", raw, tmp_path / "root28", allow_download=False, log=lambda *_: None)
    np.testing.assert_array_equal(np.load(out28 / "train.npz")["x"][:, 0], data["train"][0])
    with pytest.raises(ValueError, match="grey_size"):
        prepare("notmnist", raw, tmp_path / "bad", allow_download=False, log=lambda *_: None, grey_size=-2)
