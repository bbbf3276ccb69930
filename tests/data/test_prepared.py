"""ebm_ood/data/prepared.py: real datasets served by name from prepared files."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from data_scripts.prepare import prepare  # noqa: E402
from ebm_ood.data import NATURAL, NON_NATURAL, get_dataset  # noqa: E402
from ebm_ood.data.prepared import DatasetNotPreparedError  # noqa: E402
from ebm_ood.data.store import load_split, write_dataset  # noqa: E402

CLASSES = ["BRICKFACE", "SKY", "FOLIAGE", "CEMENT", "WINDOW", "PATH", "GRASS"]


def write_segment_raw(folder: Path, n_per_class: int, rng) -> list:
    """A Statlog ``segment.dat``; feature 0 holds a unique row id so rows can be matched after scaling."""
    folder.mkdir(parents=True)
    rows, k = [], 0
    for _ in range(n_per_class):
        for code in range(1, 8):
            v = np.round(rng.uniform(-20, 300, size=19), 4)
            v[0], v[2] = 1000 + 7 * k, 9.0
            k += 1
            rows.append((code, v))
    (folder / "segment.dat").write_text("".join(" ".join(f"{x:.4f}" for x in v) + f" {c}\n" for c, v in rows))
    return rows


@pytest.fixture(scope="module")
def segment_root(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("seg")
    rows = write_segment_raw(tmp / "raw", 10, np.random.default_rng(0))
    prepare("segment", tmp / "raw", tmp / "root", allow_download=False, log=lambda m: None)
    return tmp / "root", rows


def _match_rows(f0: np.ndarray, ids: list[int]) -> np.ndarray:
    """The raw row id of every scaled row: scaled feature 0 is (id - a) / (b - a) for the smallest and
    largest training ids a < b, unknown here, so try every pair and keep the one mapping onto ``ids``."""
    for a in ids:
        for b in ids:
            if b > a:
                cand = a + f0.astype(np.float64) * (b - a)
                got = np.round(cand).astype(int)
                if sorted(got.tolist()) == ids and np.allclose(cand, got, atol=1e-2):
                    return got
    raise AssertionError("scaled rows do not map back onto the raw rows")


def test_segment_splits_scaling_and_held_out_sky(segment_root):
    root, rows = segment_root
    ds = get_dataset("segment", ood_order="stored", data_root=root)
    assert ds.kind == "tabular" and ds.input_shape == (18,) and ds.num_classes == 6
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (48, 6, 6)  # 60 ID rows, 80/10/10
    assert ds.meta["id_classes"] == ["brickface", "foliage", "cement", "window", "path", "grass"]
    raw = {int(v[0]): (code, np.delete(v, 2)) for code, v in rows}  # the constant column 3 dropped
    x_all = np.concatenate([ds.x_train, ds.x_val, ds.x_test])
    y_all = np.concatenate([ds.y_train, ds.y_val, ds.y_test])
    matched = _match_rows(x_all[:, 0], sorted(k for k, (code, _) in raw.items() if code != 2))
    all_raw = np.array([raw[i][1] for i in matched])
    train_raw = all_raw[: len(ds.x_train)]
    lo, rng = train_raw.min(0), train_raw.max(0) - train_raw.min(0)  # ID-training statistics
    np.testing.assert_allclose(x_all, (all_raw - lo) / rng, rtol=1e-5, atol=1e-5)
    sky = np.array([np.delete(v, 2) for code, v in rows if code == 2])
    np.testing.assert_allclose(ds.ood["held-out"].x, (sky - lo) / rng, rtol=1e-5, atol=1e-5)
    # each label is its row's class, relabelled without sky
    assert all(ds.meta["id_classes"][y] == CLASSES[raw[i][0] - 1].lower() for y, i in zip(y_all, matched))
    # stratified: every ID class appears once in validation and once in test
    assert sorted(ds.y_val.tolist()) == sorted(ds.y_test.tolist()) == list(range(6))


def test_segment_non_natural_sets_follow_app_d(segment_root):
    ds = get_dataset("segment", seed=3, ood_order="stored", data_root=segment_root[0])  # built order: N, then U
    assert ds.ood["held-out"].group == NATURAL
    noise, const = ds.ood["noise"], ds.ood["constant"]
    assert noise.group == NON_NATURAL and const.group == NON_NATURAL
    assert noise.x.shape == const.x.shape == (6, 18)
    assert np.all(const.x == const.x[:, :1]) and np.all(np.abs(const.x) <= 1)
    assert np.all(np.abs(noise.x[3:]) <= 1)  # the second half is U(-1, 1)
    again = get_dataset("segment", seed=3, ood_order="stored", data_root=segment_root[0])
    assert np.array_equal(again.ood["noise"].x, noise.x)
    shuffled = get_dataset("segment", seed=3, data_root=segment_root[0]).ood["noise"].x  # the default order
    assert sorted(map(bytes, shuffled)) == sorted(map(bytes, noise.x))
    other = get_dataset("segment", seed=4, ood_order="stored", data_root=segment_root[0])
    assert np.array_equal(other.x_train, ds.x_train)  # the split is fixed (split_seed), not the training seed
    assert not np.array_equal(other.ood["noise"].x, noise.x)


def test_env_var_data_root_and_missing_dataset(segment_root, monkeypatch, tmp_path):
    monkeypatch.setenv("EBM_OOD_DATA", str(segment_root[0]))
    assert get_dataset("segment").x_train.shape == (48, 18)
    with pytest.raises(DatasetNotPreparedError, match="python data_scripts/prepare.py sensorless"):
        get_dataset("sensorless")
    with pytest.raises(DatasetNotPreparedError, match="python data_scripts/prepare.py fmnist"):
        get_dataset("fmnist", data_root=tmp_path)


def test_sensorless_holds_out_classes_10_and_11(tmp_path):
    rng = np.random.default_rng(1)
    vals = rng.normal(size=(11 * 10, 48))
    cls = np.tile(np.arange(1, 12), 10)
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "Sensorless_drive_diagnosis.txt").write_text(
        "".join(" ".join(f"{v:.8e}" for v in row) + f" {c}\n" for row, c in zip(vals, cls)))
    prepare("sensorless", tmp_path / "raw", tmp_path / "root", allow_download=False, log=lambda m: None)
    ds = get_dataset("sensorless", data_root=tmp_path / "root")
    assert ds.num_classes == 9 and ds.input_shape == (48,)
    assert len(ds.ood["held-out"].x) == 20 and len(ds.x_train) + len(ds.x_val) + len(ds.x_test) == 90
    assert ds.meta["held_out_classes"] == ["10", "11"]


def _images(rng, n, shape):
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8), np.arange(n, dtype=np.int64) % 10


def _write_image_set(root, name, rng, shape=(1, 28, 28), n_train=100, n_test=10):
    xtr, ytr = _images(rng, n_train, shape)
    xte, yte = _images(rng, n_test, shape)
    write_dataset(name, {"train": (xtr, ytr, {"class_names": list("abcdefghij")}), "test": (xte, yte, {})},
                  {"raw_sha256": {}}, root)
    return xtr, xte


def test_fmnist_pairings_scaling_and_oodomain(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    _, fm_test = _write_image_set(tmp_path, "fmnist", rng)
    _, mn_test = _write_image_set(tmp_path, "mnist", rng)
    with pytest.warns(UserWarning, match="python data_scripts/prepare.py kmnist"):
        ds = get_dataset("fmnist", ood_order="stored", data_root=tmp_path)
    assert ds.kind == "image" and ds.input_shape == (1, 28, 28) and ds.num_classes == 10
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (90, 10, 10)
    np.testing.assert_allclose(ds.x_test, fm_test / 127.5 - 1.0, atol=1e-6)
    assert ds.x_train.min() >= -1 and ds.x_train.max() <= 1
    np.testing.assert_allclose(ds.ood["mnist"].x, mn_test / 127.5 - 1.0, atol=1e-6)
    assert set(ds.meta["missing_ood"]) == {"kmnist", "notmnist"}
    assert ds.ood_names(NATURAL) == ["mnist"]
    assert ds.ood_names(NON_NATURAL) == ["noise", "constant", "oodomain"]
    assert ds.meta["oodomain_source"] == "fmnist" and np.array_equal(ds.ood["oodomain"].x, fm_test)
    _, km_test = _write_image_set(tmp_path, "kmnist", rng)  # the paper's OODomain for FMNIST: KMNIST in [0, 255]
    from ebm_ood.data import prepared

    reads = []
    monkeypatch.setattr(prepared, "load_split", lambda path: reads.append(path.parent.name + "/" + path.name)
                        or load_split(path))
    with pytest.warns(UserWarning, match="notmnist"):
        ds = get_dataset("fmnist", ood_order="stored", data_root=tmp_path)
    assert ds.meta["oodomain_source"] == "kmnist" and np.array_equal(ds.ood["oodomain"].x, km_test)
    np.testing.assert_allclose(ds.ood["kmnist"].x, km_test / 127.5 - 1.0, atol=1e-6)
    assert sorted(reads) == ["fmnist/test.npz", "fmnist/train.npz", "kmnist/test.npz", "mnist/test.npz"]  # each once
    with pytest.raises(DatasetNotPreparedError, match="prepare.py notmnist"):
        get_dataset("fmnist", data_root=tmp_path, require_all_ood=True)


@pytest.mark.parametrize("name,shape", [("fmnist", (1, 28, 28)), ("cifar10", (3, 32, 32))])
def test_prepared_images_get_the_smoothness_sets_of_experiment_5(tmp_path, name, shape):
    from ebm_ood.data.embedded import SMOOTHNESS

    _write_image_set(tmp_path, name, np.random.default_rng(4), shape=shape)
    with pytest.warns(UserWarning, match="not prepared"):
        ds = get_dataset(name, seed=1, data_root=tmp_path)
    assert ds.ood_names(SMOOTHNESS) == ["smooth-2", "smooth-3", "smooth-4", "smooth-16"]
    h = shape[1]
    for k in (2, 3, 4, 16):
        x = ds.ood[f"smooth-{k}"].x
        assert x.shape == (1000, *shape) and np.abs(x).max() <= 1
        # constant on every k×k block of the pooled area; h // k distinct values per row and column
        assert np.all(x[:, :, :k, :k] == x[:, :, :1, :1])
        assert len(np.unique(x[0, 0, 0])) == h // k
        # average pooling keeps the mean and shrinks the variance of U(-1, 1) by k²: Var = 1 / (3 k²)
        assert abs(x[:, :, ::k, ::k][:, :, : h // k, : h // k].var() - 1 / (3 * k * k)) < 0.1 / (3 * k * k) + 2e-3
    assert NATURAL not in {ds.ood[f"smooth-{k}"].group for k in (2, 3, 4, 16)}


def test_ood_set_of_wrong_size_says_how_to_fix(tmp_path):
    rng = np.random.default_rng(3)
    _write_image_set(tmp_path, "cifar10", rng, shape=(3, 32, 32))
    x = rng.integers(0, 256, size=(5, 3, 28, 28), dtype=np.uint8)
    write_dataset("textures", {"test": (x, -np.ones(5, dtype=np.int64), {})}, {}, tmp_path)
    with pytest.raises(ValueError, match=r"textures: prepared images have shape \(3, 28, 28\).*--size 32"):
        get_dataset("cifar10", data_root=tmp_path)


def test_store_refuses_pickled_and_broken_files(tmp_path):
    from ebm_ood.data.store import load_split

    p = tmp_path / "obj.npz"
    np.savez(p, x=np.array([{"evil": 1}], dtype=object), y=np.zeros(1, dtype=np.int64), meta=np.array("{}"))
    with pytest.raises(ValueError, match="obj.npz: not a readable prepared split"):
        load_split(p)
    (tmp_path / "cut.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="cut.npz: not a readable prepared split"):
        load_split(tmp_path / "cut.npz")
    np.savez(tmp_path / "nometa.npz", x=np.zeros(2), y=np.zeros(2))
    with pytest.raises(ValueError, match=r"missing \['meta'\]"):
        load_split(tmp_path / "nometa.npz")
