"""Reference tests for HEAT's prior energies (EL, GMM paper/code forms, GMM-std) and their samplers."""
import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from ebm_ood.heat.priors import ELPrior, GMMPrior, NoPrior


def _features(n=240, d=4, c=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    y[:c] = np.arange(c)
    z = np.abs(rng.normal(size=(c, d)) * 2)[y] + rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) * 0.3 + 1.0
    return z, y


def _scipy_components(z_fit, y, zq, c=3):
    means = np.stack([z_fit[y == k].mean(0) for k in range(c)])
    cov = np.cov((z_fit - means[y]).T, bias=True)
    cov = cov + 1e-6 * np.trace(cov) / len(cov) * np.eye(len(cov))   # ridge relative to the mean variance
    logpdf = np.stack([multivariate_normal(means[k], cov).logpdf(zq) for k in range(c)], 1)   # (N, C)
    return logpdf, np.log(np.bincount(y, minlength=c) / len(y)), cov


def test_gmm_paper_energy_matches_scipy():
    z, y = _features()
    zq = z[:20] + np.random.default_rng(1).normal(size=(20, 4))
    logpdf, _, cov = _scipy_components(z, y, zq)
    # -½ d² = logpdf + ½ log det(2π Σ)
    half_d2 = logpdf + 0.5 * np.linalg.slogdet(2 * np.pi * cov)[1]
    prior = GMMPrior(temperature=1.0, normalize=False).fit(z, y)
    e = prior(torch.as_tensor(zq, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(e, -logsumexp(half_d2, axis=1), rtol=1e-9, atol=1e-9)


def test_gmm_code_energy_is_full_negative_log_density_over_tg():
    z, y = _features(seed=2)
    zn = z / np.linalg.norm(z, axis=1, keepdims=True)
    zq = z[:15] * 1.7 + 0.1   # unnormalised queries: the prior normalises them itself
    zqn = zq / np.linalg.norm(zq, axis=1, keepdims=True)
    logpdf, logpi, _ = _scipy_components(zn, y, zqn)
    prior = GMMPrior(form="code").fit(z, y)
    assert prior.temperature == 1e3
    e = prior(torch.as_tensor(zq, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(e, -logsumexp(logpdf + logpi, axis=1) / 1e3, rtol=1e-9, atol=1e-12)


def test_auto_temperature_gives_unit_std_on_training_features():
    z, y = _features(seed=3)
    for prior in (GMMPrior(temperature="auto").fit(z, y), ELPrior(np.ones((3, 4)), np.zeros(3), temperature="auto").fit(z, y)):
        e = prior(torch.as_tensor(z, dtype=torch.float32)).double().numpy()
        assert abs(e.std() - 1.0) < 1e-5
        raw = prior.raw_energy(torch.as_tensor(z, dtype=torch.float64)).numpy()
        np.testing.assert_allclose(prior.t_.item(), raw.std(), rtol=1e-5)


def test_el_energy_matches_numpy_logsumexp():
    rng = np.random.default_rng(4)
    w, b = rng.normal(size=(5, 4)), rng.normal(size=5)
    z = rng.normal(size=(30, 4))
    prior = ELPrior(w, b, logit_temperature=2.0, temperature=1.0).fit(np.abs(z))
    e = prior(torch.as_tensor(z, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(e, -2.0 * logsumexp((z @ w.T + b) / 2.0, axis=1), rtol=1e-5, atol=1e-5)


def test_gmm_energy_gradient_matches_finite_differences():
    z, y = _features(seed=5)
    prior = GMMPrior().fit(z, y)
    zq = torch.tensor(z[:6] + 0.3, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(prior(zq).sum(), zq)
    h, num = 1e-6, np.zeros((6, 4))
    for j in range(4):
        dz = torch.zeros_like(zq)
        dz[:, j] = h
        num[:, j] = ((prior(zq.detach() + dz) - prior(zq.detach() - dz)) / (2 * h)).numpy()
    np.testing.assert_allclose(g.numpy(), num, rtol=1e-5, atol=1e-7)


def test_streamed_prior_equals_in_memory_prior():
    z, y = _features(n=301, seed=6)
    a, b = GMMPrior().fit(z, y), GMMPrior().fit(z, y, batch_size=13)
    zq = torch.as_tensor(z[:40], dtype=torch.float64)
    np.testing.assert_allclose(a(zq).numpy(), b(zq).numpy(), rtol=1e-10)


def test_samplers_draw_from_the_fitted_gaussians():
    z, y = _features(n=2000, seed=7)
    prior = GMMPrior(normalize=False).fit(z, y)
    s = prior.sample(20000, torch.Generator().manual_seed(0)).double().numpy()
    np.testing.assert_allclose(s.mean(0), z.mean(0), atol=0.05)   # mixture mean = weighted class means
    assert torch.equal(prior.sample(7, torch.Generator().manual_seed(3)), prior.sample(7, torch.Generator().manual_seed(3)))
    el = ELPrior(np.ones((2, 4)), np.zeros(2), init="normal").fit(np.abs(z))   # non-negative features: ReLU(N(0, I))
    r = el.sample(50000, torch.Generator().manual_seed(1)).numpy()
    assert (r >= 0).all() and abs((r == 0).mean() - 0.5) < 0.01 and abs(r.mean() - 1 / np.sqrt(2 * np.pi)) < 0.01
    el = ELPrior(np.ones((2, 4)), np.zeros(2), init="normal").fit(z - 5.0)     # features of both signs: N(0, I)
    r = el.sample(50000, torch.Generator().manual_seed(1)).numpy()
    assert abs((r < 0).mean() - 0.5) < 0.01 and abs(r.mean()) < 0.01 and abs(r.std() - 1) < 0.01
    none = NoPrior().fit(z, y)
    assert float(none(torch.as_tensor(z[:3], dtype=torch.float32)).abs().sum()) == 0.0
    np.testing.assert_allclose(none.sample(20000, torch.Generator().manual_seed(2)).double().numpy().std(0), z.std(0), rtol=0.05)


def test_prior_arguments_are_checked():
    with pytest.raises(ValueError, match="form"):
        GMMPrior(form="mixture")
    with pytest.raises(ValueError, match="temperature"):
        GMMPrior(temperature=0.0)
    with pytest.raises(ValueError, match="weight, bias"):
        ELPrior(np.ones((2, 3)), np.ones(3))
    with pytest.raises(ValueError, match="z"):
        ELPrior(np.ones((2, 3)), np.ones(2)).fit(np.ones((5, 4)))
    with pytest.raises(RuntimeError, match="fit"):
        GMMPrior()(torch.zeros(2, 3))


# ------------------------------------------------------------------ properties on random finite inputs
_finite = st.floats(-50, 50, allow_nan=False, allow_infinity=False, width=32)


@settings(max_examples=int(os.environ.get("EBM_OOD_HYPOTHESIS_EXAMPLES", 25)), deadline=None)
@given(seed=st.integers(0, 2**16), form=st.sampled_from(["paper", "code"]), scale=st.floats(1e-3, 1e3))
def test_gmm_energy_is_finite_and_grows_along_a_ray_away_from_the_data(seed, form, scale):
    """Any fitted GMM prior gives finite energies on finite inputs, even far away and at any feature
    scale; along a ray from the data's mean the paper form's energy (the smallest of C convex quadratics
    in the distance travelled, all with the same leading coefficient) increases once past their vertices."""
    z, y = _features(n=90, seed=seed % 1000)
    z = z * scale
    prior = GMMPrior(form=form).fit(z, y)
    rng = np.random.default_rng(seed)
    zq = torch.as_tensor(rng.normal(size=(16, 4)) * scale * 10, dtype=torch.float32)
    assert torch.isfinite(prior(zq)).all()
    if form == "paper":
        direction = torch.as_tensor(rng.normal(size=4), dtype=torch.float32)
        ts = torch.tensor([100.0, 200.0, 400.0, 800.0]) * float(np.abs(z).max())   # beyond every vertex
        ray = torch.as_tensor(z.mean(0), dtype=torch.float32) + ts[:, None] * direction / direction.norm()
        e = prior(ray)
        assert torch.isfinite(e).all() and (e[1:] > e[:-1]).all()


@settings(max_examples=int(os.environ.get("EBM_OOD_HYPOTHESIS_EXAMPLES", 25)), deadline=None)
@given(w=arrays(np.float32, (3, 4), elements=_finite), b=arrays(np.float32, (3,), elements=_finite),
       zq=arrays(np.float32, (8, 4), elements=_finite), k=st.integers(0, 2), delta=st.floats(0.1, 10))
def test_el_energy_is_finite_and_falls_when_a_logit_rises(w, b, zq, k, delta):
    """EL = -T·logsumexp(fc(z)/T) is finite for finite inputs and decreasing in every logit: raising class
    k's bias never raises an energy, and lowers it by exactly logsumexp(l') - logsumexp(l) (float64 scipy)."""
    z, y = _features(n=60)
    prior = ELPrior(w, b).fit(z, y)
    b2 = b.copy()
    b2[k] += delta
    raised = ELPrior(w, b2, temperature=float(prior.t_)).fit(z, y)
    e, e2 = prior(torch.as_tensor(zq)), raised(torch.as_tensor(zq))
    assert torch.isfinite(e).all() and torch.isfinite(e2).all()
    assert (e2 <= e + 1e-6 * e.abs()).all()
    logits = zq.astype(np.float64) @ w.T.astype(np.float64)
    exact = logsumexp(logits + b2.astype(np.float64), axis=1) - logsumexp(logits + b.astype(np.float64), axis=1)
    raw = e.double().numpy() * float(prior.t_)
    drop = (e - e2).double().numpy() * float(prior.t_)
    np.testing.assert_allclose(drop, exact, rtol=1e-3, atol=1e-5 * np.abs(raw).max() + 1e-5)   # float32 E


def test_projection_onto_the_feature_domain_against_numpy():
    """``project``: ReLU on non-negative (post-ReLU) features, then a normalising GMM prior's L2 map."""
    rng = np.random.default_rng(7)
    y = np.repeat(np.arange(3), 20)
    z_nonneg = np.abs(rng.normal(size=(60, 5))).astype(np.float32)
    z_real = rng.normal(size=(60, 5)).astype(np.float32)
    q = torch.as_tensor(rng.normal(size=(9, 5)), dtype=torch.float32)
    q[:, 0] = q[:, 0].abs() + 0.1                   # every row keeps a positive coordinate through the ReLU
    relu = np.maximum(q.numpy(), 0)
    l2 = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)
    cases = [(GMMPrior(form="code").fit(z_nonneg, y), l2(relu)), (GMMPrior(form="paper").fit(z_nonneg, y), l2(relu)),
             (GMMPrior(form="paper", normalize=False).fit(z_nonneg, y), relu),
             (GMMPrior(form="code").fit(z_real, y), l2(q.numpy())), (GMMPrior(form="paper").fit(z_real, y), l2(q.numpy())),
             (GMMPrior(form="code", normalize=False).fit(z_real, y), q.numpy())]
    for prior, want in cases:
        np.testing.assert_allclose(prior.project(q).numpy(), want, rtol=1e-6, atol=1e-7)
