"""Embedded datasets: deterministic, correctly split and scaled, OOD sets built as specified."""
import numpy as np
import pytest
from sklearn.datasets import load_digits

from ebm_ood.data import NATURAL, NON_NATURAL, get_dataset
from ebm_ood.data.nonnatural import constant_set, noise_set, smoothness_set


def test_digits_split_and_scaling_match_sklearn():
    d = get_dataset("digits", ood_order="stored")  # oodomain row i is ID test image i as built
    raw = load_digits()
    n_id = int((raw.target <= 7).sum())
    assert len(d.x_train) + len(d.x_val) + len(d.x_test) == n_id
    assert d.input_shape == (1, 8, 8) and d.num_classes == 8
    assert d.x_train.min() >= -1 and d.x_train.max() <= 1
    # every ID image is a scaled sklearn image: x = raw/8 - 1 (multiset of rows equal)
    ours = np.concatenate([d.x_train, d.x_val, d.x_test]).reshape(n_id, 64)
    ref = raw.images[raw.target <= 7].reshape(n_id, 64) / 8.0 - 1.0
    assert np.allclose(np.sort(ours, axis=0), np.sort(ref, axis=0))
    # stratified: class proportions in each split within one sample of the whole
    whole = np.bincount(raw.target[raw.target <= 7]) / n_id
    for y in (d.y_train, d.y_val, d.y_test):
        assert np.all(np.abs(np.bincount(y, minlength=8) - whole * len(y)) <= 1.0 + 1e-9)
    # near-OOD = classes 8-9, oodomain = unnormalised ID test images
    assert len(d.ood["digits-89"].x) == int((raw.target >= 8).sum())
    assert np.allclose(d.ood["oodomain"].x, (d.x_test + 1.0) * 8.0)
    assert d.ood["digits-89"].group == NATURAL and d.ood["oodomain"].group == NON_NATURAL


def test_datasets_are_deterministic():
    a, b = get_dataset("digits", seed=3), get_dataset("digits", seed=3)
    for k in a.ood:
        assert np.array_equal(a.ood[k].x, b.ood[k].x)
    assert np.array_equal(a.x_train, b.x_train)
    c = get_dataset("digits", seed=4)
    assert not np.array_equal(a.x_train, c.x_train)


def test_tabular_minmax_uses_id_training_statistics():
    d = get_dataset("tabular")
    assert d.input_shape == (18,)
    assert np.allclose(d.x_train.min(0), 0.0, atol=1e-6) and np.allclose(d.x_train.max(0), 1.0, atol=1e-6)
    assert set(np.unique(d.y_train)) == set(range(6))
    assert d.ood["held-out"].group == NATURAL
    assert {k for k, v in d.ood.items() if v.group == NON_NATURAL} == {"noise", "constant"}


def test_nonnatural_sets_by_construction():
    rng = np.random.default_rng(0)
    x = noise_set(2000, (4,), rng)
    gauss, unif = x[:1000], x[1000:]
    assert abs(gauss.std() - 1.0) < 0.05 and np.abs(unif).max() <= 1.0 and abs(unif.var() - 1 / 3) < 0.02
    c = constant_set(50, (1, 8, 8), rng, -1, 1)
    assert np.all(np.ptp(c.reshape(50, -1), axis=1) == 0) and np.abs(c).max() <= 1
    s = smoothness_set(3, (1, 8, 8), 4, rng)
    # nearest-upsampled 4x4 blocks are constant and equal the mean of the uniform noise block
    assert np.all(s[:, :, :4, :4] == s[:, :, :1, :1])
    rng1, rng2 = np.random.default_rng(9), np.random.default_rng(9)
    u = rng2.uniform(-1, 1, size=(3, 1, 8, 8))
    assert np.allclose(smoothness_set(3, (1, 8, 8), 2, rng1)[:, :, 0, 0], u[:, :, :2, :2].mean(axis=(2, 3)))
    with pytest.raises(ValueError, match="pool"):
        smoothness_set(1, (1, 8, 8), 9, rng)


@pytest.mark.parametrize("shape,pool", [((1, 28, 28), 3), ((1, 28, 28), 16), ((3, 32, 32), 3), ((3, 32, 32), 16),
                                        ((1, 28, 28), 2), ((3, 32, 32), 4)])
def test_smoothness_sets_match_torch_pool_and_nearest_upsampling(shape, pool):
    """The paper's recipe with torch's ops as the reference: avg_pool2d(pool, stride pool) of the same
    uniform draws, then F.interpolate(size=(H, W), mode="nearest")."""
    import torch
    from torch.nn import functional as F

    u = np.random.default_rng(5).uniform(-1, 1, size=(4, *shape))
    ref = F.interpolate(F.avg_pool2d(torch.from_numpy(u), pool), size=shape[1:], mode="nearest").numpy()
    got = smoothness_set(4, shape, pool, np.random.default_rng(5))
    assert got.shape == (4, *shape) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, atol=1e-6)


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError, match="digits"):
        get_dataset("nope")


@pytest.mark.parametrize("name", ["digits", "tabular"])
def test_every_array_has_its_documented_dtype(name):
    d = get_dataset(name)
    for x in (d.x_train, d.x_val, d.x_test, *(v.x for v in d.ood.values())):
        assert x.dtype == np.float32 and x.shape[1:] == d.input_shape
    for y in (d.y_train, d.y_val, d.y_test):
        assert y.dtype == np.int64 and y.min() >= 0 and y.max() < d.num_classes
