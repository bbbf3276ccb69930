"""``get_dataset(..., ood_order="shuffled")``, the default: every OOD set in a random order fixed by the seed,
so the balanced protocol's first n samples are a random subset; ``ood_order="stored"`` keeps the order the
set was built or stored in (the authors' loaders)."""
import numpy as np
import pytest

from ebm_ood.data import get_dataset
from ebm_ood.data.dataset import NATURAL, OODDataset, OODSet, shuffle_ood
from ebm_ood.data.nonnatural import noise_set
from ebm_ood.metrics import balance


def _rows(a):
    return sorted(map(bytes, np.ascontiguousarray(a.reshape(len(a), -1))))


def test_shuffled_sets_are_permutations_fixed_by_the_seed():
    stored = get_dataset("tabular", seed=0, ood_order="stored")
    a, b = get_dataset("tabular", seed=0, ood_order="shuffled"), get_dataset("tabular", seed=0, ood_order="shuffled")
    assert list(a.ood) == list(stored.ood)
    for k in stored.ood:
        assert a.ood[k].group == stored.ood[k].group
        assert _rows(a.ood[k].x) == _rows(stored.ood[k].x)  # same rows
        assert np.array_equal(a.ood[k].x, b.ood[k].x)  # same order for the same seed
    assert not np.array_equal(a.ood["noise"].x, stored.ood["noise"].x)
    np.testing.assert_array_equal(a.x_test, stored.x_test)
    assert a.meta["ood_order"] == "shuffled" and "ood_order" not in stored.meta


def test_first_n_of_a_half_and_half_noise_set_holds_both_halves():
    """``noise_set`` is N(0, 1) then U(-1, 1): its stored first quarter is all Gaussian (some |x| > 1 in
    every row of 20 features), the shuffled first quarter mixes in uniform rows (all |x| <= 1)."""
    x = noise_set(400, (20,), np.random.default_rng(0))
    d = OODDataset("toy", "tabular", x, np.zeros(400, np.int64), x, np.zeros(400, np.int64), x[:100],
                   np.zeros(100, np.int64), ood={"noise": OODSet(x, "non-natural")})
    uniform = lambda a: np.all(np.abs(a) <= 1, axis=1)  # noqa: E731
    kept = balance(np.zeros(100), np.arange(400.0))[1].astype(int)  # the protocol keeps the first 100
    assert not uniform(x[kept]).any()
    shuffled = shuffle_ood(d, seed=0).ood["noise"].x[kept]
    assert 25 < uniform(shuffled).sum() < 75


def test_a_class_sorted_set_keeps_every_class_in_its_first_rows():
    x = np.repeat(np.arange(4, dtype=np.float32), 50)[:, None]  # sorted by "class" 0..3
    d = OODDataset("toy", "tabular", x, np.zeros(200, np.int64), x, x[:, 0].astype(np.int64), x,
                   x[:, 0].astype(np.int64), ood={"held-out": OODSet(x, NATURAL)})
    first = shuffle_ood(d, seed=3).ood["held-out"].x[:40, 0]
    assert set(np.unique(x[:40, 0])) == {0.0} and set(np.unique(first)) == {0.0, 1.0, 2.0, 3.0}
    assert not np.array_equal(shuffle_ood(d, seed=3).ood["held-out"].x, shuffle_ood(d, seed=4).ood["held-out"].x)


def test_bad_order_is_refused():
    with pytest.raises(ValueError, match="ood_order"):
        get_dataset("tabular", ood_order="random")


@pytest.mark.parametrize("name", ["tabular", "digits"])
def test_the_default_order_is_shuffled_by_the_seed(name):
    """A loaded set's first n rows are a random sample by default: the digits noise set (N(0, 1) rows, then
    U(-1, 1) rows) truncated to the ID test size keeps both kinds."""
    default, shuffled = get_dataset(name, seed=0), get_dataset(name, seed=0, ood_order="shuffled")
    stored = get_dataset(name, seed=0, ood_order="stored")
    assert default.meta["ood_order"] == "shuffled"
    for k in default.ood:
        np.testing.assert_array_equal(default.ood[k].x, shuffled.ood[k].x)
    assert not np.array_equal(default.ood["noise"].x, stored.ood["noise"].x)
    if name == "digits":
        n = len(default.x_test)
        in_range = lambda a: np.all((a >= -1) & (a <= 1), axis=(1, 2, 3))  # noqa: E731
        assert 0 < in_range(stored.ood["noise"].x[:n]).mean() < 0.2 < in_range(default.ood["noise"].x[:n]).mean()


def test_a_sets_order_depends_on_the_seed_and_its_name_only():
    """The permutation of one set is the same whichever other sets come before it, and in any dict order."""
    rng = np.random.default_rng(1)
    a, b, c = (rng.normal(size=(n, 3)).astype("float32") for n in (50, 40, 30))
    ids = rng.normal(size=(10, 3)).astype("float32"), np.zeros(10, np.int64)

    def data(sets):
        return OODDataset("toy", "tabular", *ids, *ids, *ids, ood={k: OODSet(x, NATURAL) for k, x in sets})

    alone = shuffle_ood(data([("b", b)]), seed=3).ood["b"].x
    for sets in ([("a", a), ("b", b), ("c", c)], [("c", c), ("b", b)], [("a", a), ("b", b)]):
        np.testing.assert_array_equal(shuffle_ood(data(sets), seed=3).ood["b"].x, alone)
    assert not np.array_equal(shuffle_ood(data([("b", b)]), seed=4).ood["b"].x, alone)       # the seed
    assert not np.array_equal(shuffle_ood(data([("b2", b)]), seed=3).ood["b2"].x, alone)     # the name
