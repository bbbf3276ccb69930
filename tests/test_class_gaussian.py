"""Reference tests for the class-conditional Gaussian (HEAT GMM prior; Mahalanobis / SSD+)."""
import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from ebm_ood.class_gaussian import ClassGaussian, ClassGaussianStats, fit_class_gaussian


def _data(n=300, d=5, c=3, seed=0, offset=0.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    y[:c] = np.arange(c)
    mu = rng.normal(size=(c, d)) * 3
    a = rng.normal(size=(d, d))
    z = mu[y] + rng.normal(size=(n, d)) @ a.T + offset
    return z, y


def _reference_fit(z, y, c):
    means = np.stack([z[y == k].mean(0) for k in range(c)])
    centred = z - means[y]
    return means, np.cov(centred.T, bias=True), np.bincount(y, minlength=c) / len(y)


def test_fit_matches_numpy_cov_on_class_centred_data():
    z, y = _data()
    g = fit_class_gaussian(z, y, reg=0.0)
    means, cov, pi = _reference_fit(z, y, 3)
    np.testing.assert_allclose(g.means.numpy(), means, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g.cov.numpy(), cov, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g.log_weights.exp().numpy(), pi, rtol=1e-12)
    np.testing.assert_allclose(g.precision.numpy(), np.linalg.inv(cov), rtol=1e-8, atol=1e-10)


def test_relative_ridge_is_reg_times_mean_within_class_variance():
    z, y = _data(seed=6)
    _, cov, _ = _reference_fit(z, y, 3)
    g = fit_class_gaussian(z, y, reg=0.1, relative=True, batch_size=50)
    np.testing.assert_allclose(g.cov.numpy(), cov + 0.1 * np.trace(cov) / 5 * np.eye(5), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_streamed_fit_equals_in_memory_fit(batch_size):
    # a large common offset makes naive Σ zzᵀ - N μμᵀ lose digits; Chan's update must not
    z, y = _data(n=257, offset=1e4, seed=1)
    full = fit_class_gaussian(z, y)
    streamed = fit_class_gaussian(z, y, batch_size=batch_size)
    np.testing.assert_allclose(streamed.means.numpy(), full.means.numpy(), rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(streamed.cov.numpy(), full.cov.numpy(), rtol=1e-10, atol=1e-10)
    _, cov, _ = _reference_fit(z, y, 3)
    np.testing.assert_allclose(streamed.cov.numpy() - 1e-12 * np.eye(5), cov, rtol=1e-9, atol=1e-9)


def test_stats_accept_torch_and_empty_batches_and_classes_missing_from_a_batch():
    z, y = _data(n=60, seed=2)
    stats = ClassGaussianStats(3, 5)
    stats.update(torch.as_tensor(z[:10]), torch.as_tensor(y[:10]))
    stats.update(z[:0], y[:0])
    only0 = y[10:] == 0
    stats.update(z[10:][only0], y[10:][only0]).update(z[10:][~only0], y[10:][~only0])
    ref = fit_class_gaussian(z, y)
    np.testing.assert_allclose(stats.finalize().cov.numpy(), ref.cov.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(stats.counts.numpy(), np.bincount(y, minlength=3))


def test_log_joint_and_mahalanobis_match_scipy():
    z, y = _data(seed=3)
    g = fit_class_gaussian(z, y, reg=1e-6)
    zq = np.random.default_rng(4).normal(size=(20, 5)) * 4
    ref = np.stack([np.log(g.log_weights.exp()[k].item())
                    + multivariate_normal(g.means[k].numpy(), g.cov.numpy()).logpdf(zq) for k in range(3)], 1)
    np.testing.assert_allclose(g.log_joint(zq), ref, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(g.log_density(zq), logsumexp(ref, axis=1), rtol=1e-9, atol=1e-9)
    prec = np.linalg.inv(g.cov.numpy())
    d = zq[:, None, :] - g.means.numpy()[None]
    np.testing.assert_allclose(g.mahalanobis(zq), np.einsum("ncd,de,nce->nc", d, prec, d), rtol=1e-9, atol=1e-9)


def test_torch_input_keeps_dtype_and_is_differentiable():
    z, y = _data(seed=5)
    g = fit_class_gaussian(z, y, reg=1e-6)
    zq = torch.randn(4, 5, dtype=torch.float32, requires_grad=True)
    out = g.log_density(zq)
    assert out.dtype == torch.float32 and isinstance(out, torch.Tensor)
    (grad,) = torch.autograd.grad(out.sum(), zq)
    # closed form: ∇ log q = Σ_c r_c Σ⁻¹ (μ_c - z), r = posterior responsibilities
    zd = zq.detach().double()
    r = torch.softmax(g.log_joint(zd), 1)
    ref = (r[:, :, None] * (g.means[None] - zd[:, None])).sum(1) @ g.precision
    np.testing.assert_allclose(grad.numpy(), ref.numpy(), rtol=1e-4, atol=1e-5)


def test_sample_has_the_fitted_moments():
    means = torch.tensor([[0.0, 0.0], [10.0, -5.0]], dtype=torch.float64)
    cov = torch.tensor([[2.0, 0.8], [0.8, 1.0]], dtype=torch.float64)
    g = ClassGaussian.from_parameters(means, cov, counts=torch.tensor([1.0, 3.0]))
    z, c = g.sample(40000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert abs(c.double().mean().item() - 0.75) < 0.01
    for k in range(2):
        zk = z[c == k].numpy()
        np.testing.assert_allclose(zk.mean(0), means[k].numpy(), atol=0.05)
        np.testing.assert_allclose(np.cov(zk.T), cov.numpy(), atol=0.06)
    z2, c2 = g.sample(5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    z3, c3 = g.sample(5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(z2, z3) and torch.equal(c2, c3)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="classes \\[2\\]"):
        fit_class_gaussian(np.zeros((4, 2)) + np.arange(4)[:, None], np.array([0, 1, 0, 1]), num_classes=3)
    with pytest.raises(ValueError, match="z"):
        ClassGaussianStats(2, 3).update(np.zeros((4, 2)), np.zeros(4, int))
    with pytest.raises(ValueError, match="y"):
        ClassGaussianStats(2, 3).update(np.zeros((4, 3)), np.array([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="cov"):
        ClassGaussian.from_parameters(np.zeros((1, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="counts"):
        ClassGaussian.from_parameters(np.zeros((2, 2)), np.eye(2), counts=[3.0, 0.0])
    with pytest.raises(ValueError, match="counts"):
        ClassGaussian.from_parameters(np.zeros((2, 2)), np.eye(2), counts=[1.0, 1.0, 1.0])
