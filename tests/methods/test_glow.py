"""Reference tests for the Glow layers and model (Elflein NF baseline, images): every closed-form log-det
vs ``log|det|`` of the autograd Jacobian, inverses, squeeze vs an index-by-index reference, the logit
pre-processing, the normalisation of the whole density (Monte Carlo), bits/dim, and the detector."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from ebm_ood.plumbing.errors import NotFittedError
from ebm_ood.methods.flows import Glow, GlowConfig, NormalizingFlowDetector, flow_config
from ebm_ood.methods.flows.detector import infer_quantisation
from ebm_ood.methods.flows.glow_layers import (ActNorm, AffineCoupling, InvConv1x1, LogitPreprocess, SplitPrior,
                                               squeeze, unsqueeze)
from ebm_ood.metrics import auroc

SHAPES = [(1, 2, 2), (4, 2, 2)]


def _perturb(module, scale=0.3, seed=0):
    """Move every parameter off its (often identity) initialisation so the test is not trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def _check_layer(fn, x):
    """``fn: (1, *shape) -> (y, log_det)``: closed-form log-det vs slogdet of the autograd Jacobian."""
    y, log_det = fn(x)
    jac = torch.autograd.functional.jacobian(lambda v: fn(v.reshape(x.shape))[0].reshape(-1), x.reshape(-1))
    sign, ref = np.linalg.slogdet(jac.detach().numpy())
    assert sign != 0
    assert log_det.item() == pytest.approx(ref, abs=1e-9)
    return y


@pytest.mark.parametrize("shape", SHAPES)
def test_actnorm_log_det_inverse_and_data_init(shape):
    torch.manual_seed(0)
    layer = ActNorm(shape[0]).double()
    batch = torch.randn(16, *shape, dtype=torch.float64) * 3 + 1
    layer.train()
    y, _ = layer(batch)  # data-dependent initialisation on this batch
    flat = y.transpose(0, 1).reshape(shape[0], -1).detach().numpy()
    np.testing.assert_allclose(flat.mean(1), 0, atol=1e-9)
    np.testing.assert_allclose(flat.std(1), 1, atol=1e-5)
    _perturb(layer)
    x = torch.randn(1, *shape, dtype=torch.float64)
    y = _check_layer(layer, x)
    assert torch.allclose(layer.inverse(y), x, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("lu", [False, True])
def test_invconv_log_det_and_inverse(shape, lu):
    torch.manual_seed(1)
    layer = _perturb(InvConv1x1(shape[0], lu=lu).double())
    x = torch.randn(1, *shape, dtype=torch.float64)
    y = _check_layer(layer, x)
    assert torch.allclose(layer.inverse(y), x, atol=1e-10)
    # log|det| = H·W·log|det W| against numpy on the assembled matrix
    w = layer.matrix().detach().numpy()
    assert layer.log_abs_det_w().item() == pytest.approx(np.linalg.slogdet(w)[1], abs=1e-10)


def test_invconv_lu_reconstructs_its_matrix():
    torch.manual_seed(2)
    layer = _perturb(InvConv1x1(4, lu=True).double())
    p, lower, upper = layer.perm.numpy(), layer.lower.detach().numpy(), layer.upper.detach().numpy()
    l_ref = np.tril(lower, -1) + np.eye(4)
    u_ref = np.triu(upper, 1) + np.diag(layer.sign_s.numpy() * np.exp(layer.log_s.detach().numpy()))
    np.testing.assert_allclose(layer.matrix().detach().numpy(), p @ l_ref @ u_ref, atol=1e-12)


def test_affine_coupling_log_det_and_inverse():
    torch.manual_seed(3)
    layer = _perturb(AffineCoupling(4, hidden=8).double())
    x = torch.randn(1, 4, 2, 2, dtype=torch.float64)
    y = _check_layer(layer, x)
    assert torch.allclose(layer.inverse(y), x, atol=1e-10)
    assert torch.equal(y[:, :2], x[:, :2])  # the conditioning half passes through
    with pytest.raises(ValueError, match="channels"):
        AffineCoupling(1, hidden=8)


@pytest.mark.parametrize("learned", [True, False])
def test_split_prior_as_flow_log_det_and_density(learned):
    torch.manual_seed(4)
    prior = _perturb(SplitPrior(2, 2, learned=learned).double())
    z = torch.randn(1, 4, 2, 2, dtype=torch.float64)

    def fn(v):  # (z1, z2) -> (z1, ε): the prior written as a triangular flow
        eps, ld = prior(v[:, :2], v[:, 2:])
        return torch.cat([v[:, :2], eps], 1), ld

    out = _check_layer(fn, z)
    assert torch.allclose(prior.inverse(z[:, :2], out[:, 2:]), z[:, 2:], atol=1e-12)
    # log N(z2; μ, σ²) = log N(ε; 0, 1) + log|det| against scipy
    eps, ld = prior(z[:, :2], z[:, 2:])
    mean, log_std = prior._mean_log_std(z[:, :2])
    ref = stats.norm(mean.detach().numpy(), np.exp(log_std.detach().numpy())).logpdf(z[:, 2:].numpy()).sum()
    assert (stats.norm.logpdf(eps.detach().numpy()).sum() + ld.item()) == pytest.approx(ref, abs=1e-10)


@pytest.mark.parametrize("shape", SHAPES)
def test_squeeze_matches_index_reference_and_preserves_volume(shape):
    x = torch.randn(2, shape[0], 4, 4, dtype=torch.float64)
    y = squeeze(x).numpy()
    xn = x.numpy()
    for c in range(shape[0]):
        for a in range(2):
            for b in range(2):
                np.testing.assert_array_equal(y[:, c * 4 + a * 2 + b], xn[:, c, a::2, b::2])
    assert torch.equal(unsqueeze(squeeze(x)), x)
    x1 = torch.randn(1, *shape, dtype=torch.float64)
    _check_layer(lambda v: (squeeze(v), torch.zeros(1, dtype=torch.float64)), x1)


@pytest.mark.parametrize("shape", SHAPES)
def test_logit_preprocess_log_det_and_inverse(shape):
    pre = LogitPreprocess(-1.0, 1.0, 0.125, bound=0.9)
    assert pre.levels == 17
    x = (torch.randint(0, 17, (1, *shape)).double() / 8 - 1) + 0.1 * (torch.rand(1, *shape, dtype=torch.float64) - 0.5)
    y = _check_layer(pre, x)
    assert torch.allclose(pre.inverse(y), x, atol=1e-12)
    # the bin edges lo - δ/2 and hi + δ/2 map to logit(0.05) and logit(0.95)
    edges = torch.tensor([-1.0625, 1.0625], dtype=torch.float64).reshape(1, 1, 1, 2).expand(1, 1, 2, 2)
    np.testing.assert_allclose(pre(edges)[0][0, 0, 0].numpy(), [math.log(0.05 / 0.95), math.log(0.95 / 0.05)], atol=1e-12)


def _tiny_glow(shape=(1, 4, 4), levels=2, lu=False, learned=True, seed=0):
    torch.manual_seed(seed)
    g = Glow(shape, GlowConfig(levels=levels, steps=2, hidden=8, lu=lu, learned_prior=learned), delta=0.125).double()
    g.train()
    g(torch.randint(0, 17, (32, *shape)).double() / 8 - 1)  # ActNorm data init
    g.eval()
    return _perturb(g, scale=0.05, seed=seed)


@pytest.mark.parametrize("lu,learned", [(False, True), (True, False)])
def test_glow_whole_model_log_prob_equals_change_of_variables(lu, learned):
    g = _tiny_glow(lu=lu, learned=learned)
    x = torch.randint(0, 17, (3, 1, 4, 4)).double() / 8 - 1
    log_p = g.log_prob(x)
    for i in range(3):
        jac = torch.autograd.functional.jacobian(lambda v: g(v.reshape(1, 1, 4, 4))[0][0], x[i].reshape(-1),
                                                 vectorize=True)  # (16, 16)
        eps = g(x[i : i + 1])[0][0].detach().numpy()
        ref = stats.norm.logpdf(eps).sum() + np.linalg.slogdet(jac.detach().numpy())[1]
        assert log_p[i].item() == pytest.approx(ref, abs=1e-8)
    eps, _ = g(x)
    assert torch.allclose(g.inverse(eps), x, atol=1e-9)


def test_glow_density_integrates_to_one_monte_carlo():
    """∫ p = vol · E_{x ~ U(box)}[p(x)] over the support of a 1×2×2 Glow: the logit of ``w = 0.05 + 0.9 v``
    is finite for ``v ∈ (-1/18, 19/18)``, a box a little wider than the dequantised range ``[-17/16, 17/16]``
    (with ``v = (x̃ + 17/16)/(17/8)``)."""
    g = _tiny_glow(shape=(1, 2, 2), levels=1, seed=5)
    gen = torch.Generator().manual_seed(0)
    lo, hi = -17 / 16 - (17 / 8) / 18, 17 / 16 + (17 / 8) / 18
    x = lo + (hi - lo) * torch.rand(200_000, 1, 2, 2, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        p = torch.exp(g.log_prob(x))
    estimate = (hi - lo) ** 4 * p.mean().item()
    stderr = (hi - lo) ** 4 * p.std().item() / math.sqrt(len(p))
    assert abs(estimate - 1.0) < 4 * stderr + 1e-3, (estimate, stderr)


def test_bits_per_dim_and_sampling():
    """Bits/dim against its definition, ``-log2 P(bin) / D`` with ``P(bin) = ∫_bin p(x̃) dx̃`` integrated by
    Monte Carlo over the δ-cube around each grid point (the midpoint value differs by O(δ²) curvature)."""
    g = _tiny_glow()
    x = torch.randint(0, 17, (4, 1, 4, 4), generator=torch.Generator().manual_seed(0)).double() / 8 - 1
    m = 4000
    u = torch.rand(m * 4, 1, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        p = torch.exp(g.log_prob(x.repeat(m, 1, 1, 1), u)).view(m, 4)
    p_bin = 0.125 ** 16 * p.mean(0).numpy()  # δ^D × mean density over the bin
    ref = -np.log2(p_bin) / 16
    with torch.no_grad():
        bpd = g.bits_per_dim(x).numpy()
    # within 0.06 bits (the density's curvature inside the bin); a dropped D·log δ would be off by 3 bits,
    # nats instead of bits by a factor 1.44
    np.testing.assert_allclose(bpd, ref, atol=0.06)
    s = g.sample(5, temperature=0.7, generator=torch.Generator().manual_seed(0))
    eps, _ = g(s)
    assert torch.allclose(g.inverse(eps), s, atol=1e-9)
    with pytest.raises(ValueError, match="levels"):
        Glow((1, 4, 4), GlowConfig(levels=3))


def test_infer_quantisation_of_digits_grid():
    x = (np.arange(17, dtype=np.float32) / 8 - 1)[np.random.default_rng(0).integers(0, 17, 500)]
    assert infer_quantisation(x, -1, 1) == pytest.approx(0.125)
    assert infer_quantisation(np.random.default_rng(0).uniform(-1, 1, 10000), -1, 1) == pytest.approx(2 / 255)


def test_glow_detector_on_digits_subset():
    from ebm_ood.data import get_dataset

    d = get_dataset("digits")
    cfg = flow_config("quick", "image")
    cfg.train.steps, cfg.train.eval_every, cfg.train.progress = 12, 6, False
    cfg.glow = GlowConfig(levels=1, steps=1, hidden=8)
    det = NormalizingFlowDetector(cfg, seed=0).fit(d.x_train[:200], validation=d.x_val[:50])
    assert det.delta_ == pytest.approx(0.125) and det.levels_ == 1
    s_id, s_noise = det.score(d.x_test[:100]), det.score(d.ood["noise"].x[:100])
    assert np.isfinite(s_noise).all() and auroc(s_id, s_noise) > 0.95
    bpd = det.bits_per_dim(d.x_test[:10])
    np.testing.assert_allclose(bpd, (s_id[:10] - 64 * math.log(0.125)) / (64 * math.log(2)), rtol=1e-5)
    again = NormalizingFlowDetector(cfg, seed=0).fit(d.x_train[:200], validation=d.x_val[:50]).score(d.x_test[:100])
    np.testing.assert_array_equal(s_id, again)
    with pytest.raises(NotFittedError):
        NormalizingFlowDetector(cfg).score(d.x_test)
    with pytest.raises(ValueError, match="data_range"):
        NormalizingFlowDetector(cfg).fit(d.x_train[:50] * 3)
