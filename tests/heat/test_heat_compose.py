"""Reference tests for HEAT's composition (Eq. 7) and the composed detector."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp

from ebm_ood.detector import Detector
from ebm_ood.heat.compose import CompositionDetector, Standardizer, compose_energies

E = np.random.default_rng(0).normal(size=(50, 3)) * 3


def test_beta_limits_match_max_min_mean():
    np.testing.assert_allclose(compose_energies(E, 1e7), E.max(1), atol=1e-6)
    np.testing.assert_allclose(compose_energies(E, -1e7), E.min(1), atol=1e-6)
    np.testing.assert_array_equal(compose_energies(E, math.inf), E.max(1))
    np.testing.assert_array_equal(compose_energies(E, -math.inf), E.min(1))
    np.testing.assert_allclose(compose_energies(E, 1e-9), E.mean(1), atol=1e-7)
    np.testing.assert_allclose(compose_energies(E, 0.0), E.mean(1), rtol=1e-15)
    np.testing.assert_allclose(compose_energies(E, 0.0, reduce="sum"), E.sum(1), rtol=1e-15)


@pytest.mark.parametrize("beta", [-1.0, 2.5, -0.3, 40.0])
def test_eq7_verbatim_matches_scipy_logsumexp(beta):
    ref = logsumexp(beta * E, axis=1) / beta
    np.testing.assert_allclose(compose_energies(E, beta, reduce="sum"), ref, rtol=1e-12, atol=1e-12)
    # "mean" differs by the constant log K / β only
    np.testing.assert_allclose(compose_energies(E, beta), ref - math.log(3) / beta, rtol=1e-12, atol=1e-12)
    if beta == -1.0:   # the mixture: -logsumexp(-E)
        np.testing.assert_allclose(compose_energies(E, -1.0, reduce="sum"), -logsumexp(-E, axis=1), rtol=1e-12)


@pytest.mark.parametrize("beta", [1e-3, 1e-5, -1e-6, 1e-8])
def test_small_beta_is_accurate(beta):
    # independent stable form: 1/β · log1p(mean(expm1(β E)))
    ref = np.log1p(np.expm1(beta * E).mean(1)) / beta
    np.testing.assert_allclose(compose_energies(E, beta), ref, rtol=1e-9, atol=1e-9)


def test_huge_energies_do_not_overflow():
    e = np.array([[1e5, 1e5 + 1.0], [-1e5, 3.0]])
    np.testing.assert_allclose(compose_energies(e, 1.0, reduce="sum"), [1e5 + 1 + math.log1p(math.exp(-1)), 3.0], rtol=1e-12)
    assert np.isfinite(compose_energies(e, -50.0)).all()


energy_rows = st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=5)
betas = st.one_of(st.floats(-1e3, 1e3, allow_nan=False), st.sampled_from([math.inf, -math.inf, 0.0, 1e-12]))


@settings(max_examples=150, deadline=None)
@given(energy_rows, betas, st.sampled_from(["mean", "sum"]))
def test_finite_in_finite_out_and_mean_form_is_between_min_and_max(row, beta, reduce):
    e = np.array([row])
    if reduce == "sum" and beta != 0 and math.log(e.shape[1]) / abs(beta) > 1e300:
        return   # Eq. 7 verbatim really is ~ log K / β there: beyond float range (why "mean" is the default)
    out = compose_energies(e, beta, reduce)
    assert np.isfinite(out).all()
    if reduce == "mean":
        scale = 1e-9 * (1 + np.abs(e).max())
        assert e.min() - scale <= out[0] <= e.max() + scale


@settings(max_examples=150, deadline=None)
@given(energy_rows, betas, st.integers(0, 4), st.floats(1e-3, 1e3))
def test_monotone_in_each_energy(row, beta, k, delta):
    e = np.array([row])
    k = k % e.shape[1]
    e2 = e.copy()
    e2[0, k] += delta
    scale = 1e-9 * (1 + np.abs(e2).max())
    assert compose_energies(e2, beta)[0] >= compose_energies(e, beta)[0] - scale


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="reduce"):
        compose_energies(E, 0.0, reduce="median")
    with pytest.raises(ValueError, match="beta"):
        compose_energies(E, math.nan)
    with pytest.raises(ValueError, match="energies"):
        compose_energies(E[:, 0], 0.0)


class _Linear(Detector):
    """A fixed scorer x @ w (for the composition detector tests)."""

    def __init__(self, w):
        super().__init__("cpu")
        self.w = np.asarray(w, dtype=np.float64)

    def _fit(self, x, y):
        self.fit_calls = getattr(self, "fit_calls", 0) + 1

    def _score(self, x):
        return x @ self.w


def test_composition_detector_standardises_with_training_statistics():
    rng = np.random.default_rng(1)
    x_tr, x_te = rng.normal(size=(200, 2)) * [1, 10] + [0, 5], rng.normal(size=(30, 2))
    parts = {"a": _Linear([1.0, 0.0]), "b": _Linear([0.0, 1.0])}
    det = CompositionDetector(parts, beta=-1.0).fit(x_tr)
    mu, sd = x_tr.mean(0), x_tr.std(0)
    z = (x_te - mu) / sd
    np.testing.assert_allclose(det.part_scores(x_te), z, rtol=1e-12)
    np.testing.assert_allclose(det.score(x_te), -logsumexp(-z, axis=1) + math.log(2), rtol=1e-10)
    # parts already fitted are not refitted with refit=False
    det2 = CompositionDetector(parts, refit=False).fit(x_tr)
    assert parts["a"].fit_calls == 1 and np.allclose(det2.score(x_te), z.mean(1))


def test_standardizer_matches_numpy():
    s = Standardizer().fit(E)
    np.testing.assert_allclose(s.transform(E).mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(s.transform(E).std(0), 1, rtol=1e-12)


def test_composition_subsets_table_rows_match_direct_metrics():
    from types import SimpleNamespace

    from ebm_ood.commands.experiments.heat_beta import composition_subsets_table
    from ebm_ood.metrics import auroc, fpr_at_tpr

    rng = np.random.default_rng(2)
    x_tr, x_te = rng.normal(size=(100, 2)), rng.normal(size=(60, 2))
    ood = {"far": SimpleNamespace(x=rng.normal(size=(40, 2)) + [3, 0], group="natural"),
           "near": SimpleNamespace(x=rng.normal(size=(40, 2)) + [0, 1], group="non-natural"),
           "ignored": SimpleNamespace(x=rng.normal(size=(5, 2)), group="smoothness")}
    data = SimpleNamespace(x_test=x_te, ood=ood)
    det = CompositionDetector({"a": _Linear([1.0, 0.0]), "b": _Linear([0.0, 1.0])}).fit(x_tr)
    rows, md = composition_subsets_table(det, data)
    assert [r["parts"] for r in rows] == [["a"], ["b"], ["a", "b"]] and "ignored" not in rows[0]
    for o in ("far", "near"):   # standardising is monotone: a single part keeps its raw metrics
        assert rows[0][o]["fpr95"] == fpr_at_tpr(x_te[:, 0], ood[o].x[:, 0])
        assert rows[2][o]["auroc"] == auroc(det.score(x_te), det.score(ood[o].x))
    assert rows[2]["average"]["auroc"] == np.mean([rows[2][o]["auroc"] for o in ("far", "near")])
    assert md.count("\n|") == 2 + len(rows)
