"""Reference tests for HEAT's hybrid EBM (Eq. 2, 3, 5, 6; Alg. 1) and its detector."""
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from ebm_ood.heat.hybrid import (HEATDetector, HybridEnergy, ResidualMLP, control_loss, heat_config, heat_loss,
                                 mle_loss, sample_negatives)
from ebm_ood.heat.priors import GMMPrior
from ebm_ood.training import TrainConfig


def _gauss_prior(seed=0, n=200, d=3):
    z = np.random.default_rng(seed).normal(size=(n, d)) + 2.0
    return GMMPrior(normalize=False, temperature="auto").fit(z), z


def _random_residual(d, seed=0):
    torch.manual_seed(seed)
    r = ResidualMLP(d, width=16)
    torch.nn.init.normal_(r.out.weight, std=0.5)   # non-zero output for the tests
    return r


def test_losses_match_their_equations():
    e_pos, e_neg = torch.tensor([0.5, -1.0, 2.0]), torch.tensor([3.0, 0.25])
    assert math.isclose(float(mle_loss(e_pos, e_neg)), (0.5 - 1 + 2) / 3 - (3 + 0.25) / 2, rel_tol=1e-6)
    ref_c = (0.25 + 1 + 4 + 9 + 0.0625) / 5
    assert math.isclose(float(control_loss(e_pos, e_neg)), ref_c, rel_tol=1e-6)
    loss, logs = heat_loss(e_pos, e_neg, lam=10.0)
    assert math.isclose(float(loss), float(mle_loss(e_pos, e_neg)) + 10 * ref_c, rel_tol=1e-6)
    assert math.isclose(logs["l_c"], ref_c, rel_tol=1e-6)


def test_control_loss_equals_eq5_on_a_hybrid_model():
    prior, z = _gauss_prior()
    hybrid = HybridEnergy(prior, _random_residual(3), input_noise=0.0).eval()
    z_pos = torch.as_tensor(z[:32], dtype=torch.float64)
    z_neg = prior.sample(16, torch.Generator().manual_seed(0)).double()
    hybrid.double()
    both = torch.cat([z_pos, z_neg])
    eq5 = ((hybrid(both) - prior(both)) ** 2).mean()       # mean (E_h - E_q)² over real and sampled z
    ours = control_loss(hybrid.residual_energy(z_pos), hybrid.residual_energy(z_neg))
    assert float(ours.detach()) > 1e-3
    np.testing.assert_allclose(float(ours.detach()), float(eq5.detach()), rtol=1e-10)


def test_hybrid_gradient_is_sum_of_gradients_and_matches_finite_differences():
    prior, z = _gauss_prior(seed=1)
    residual = _random_residual(3, seed=1).double()
    hybrid = HybridEnergy(prior, residual, input_noise=0.0).eval()
    zq = torch.tensor(z[:5] + 0.5, dtype=torch.float64, requires_grad=True)
    (g_h,) = torch.autograd.grad(hybrid(zq).sum(), zq)
    (g_q,) = torch.autograd.grad(prior(zq).sum(), zq)
    (g_t,) = torch.autograd.grad(residual(zq).sum(), zq)
    np.testing.assert_allclose(g_h.numpy(), (g_q + g_t).numpy(), rtol=1e-12, atol=1e-12)
    h, num = 1e-6, np.zeros((5, 3))
    with torch.no_grad():
        for j in range(3):
            dz = torch.zeros_like(zq)
            dz[:, j] = h
            num[:, j] = ((hybrid(zq + dz) - hybrid(zq - dz)) / (2 * h)).numpy()
    np.testing.assert_allclose(g_h.numpy(), num, rtol=1e-5, atol=1e-6)


def test_residual_mlp_has_distinct_layers_and_starts_at_zero():
    r = ResidualMLP(8, depth=6)
    linears = [m for m in r.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 6 and len({id(m.weight) for m in linears}) == 6
    assert r.inp.out_features == 16                       # width 2·D
    n_params = sum(p.numel() for p in r.parameters())
    assert n_params == (8 * 16 + 16) + 4 * (16 * 16 + 16) + (16 + 1)
    assert torch.equal(r(torch.randn(4, 8)), torch.zeros(4))
    with pytest.raises(ValueError, match="depth"):
        ResidualMLP(8, depth=1)


def test_input_noise_only_in_training():
    prior, z = _gauss_prior(seed=2)
    hybrid = HybridEnergy(prior, _random_residual(3, seed=2), input_noise=0.5)
    zq = torch.as_tensor(z[:4], dtype=torch.float32)
    hybrid.eval()
    assert torch.equal(hybrid.residual_energy(zq), hybrid.residual_energy(zq))
    hybrid.train()
    assert not torch.equal(hybrid.residual_energy(zq), hybrid.residual_energy(zq))


def test_code_sampler_returns_ends_and_projected_starts():
    """The authors' sampler projects the prior's starts before the chain and returns them projected."""
    _, z = _gauss_prior(seed=3)
    prior = GMMPrior(form="code", domain="nonneg").fit(z)   # post-ReLU features (the authors' ResNets)
    hybrid = HybridEnergy(prior, ResidualMLP(3))
    cfg = heat_config("quick", sampler="code")
    neg = sample_negatives(hybrid, 10, cfg, torch.Generator().manual_seed(0))
    start = prior.sample(10, torch.Generator().manual_seed(0))
    relu_l2 = torch.relu(start) / torch.relu(start).norm(dim=1, keepdim=True)
    assert neg.shape == (20, 3) and (neg >= 0).all()       # ends and starts are ReLU-projected ...
    np.testing.assert_allclose(neg.norm(dim=1).numpy(), 1.0, rtol=1e-6)   # ... and L2-normalised
    np.testing.assert_allclose(neg[10:].numpy(), relu_l2.numpy(), rtol=1e-6)   # the starts, projected


def _banana(n, rng):
    theta = rng.uniform(0.15 * np.pi, 0.85 * np.pi, n)
    r = 2.0 + 0.08 * rng.normal(size=n)
    return np.stack([r * np.cos(theta), r * np.sin(theta)], 1).astype(np.float32)


def test_heat_corrects_a_misspecified_gaussian_on_a_banana():
    """One Gaussian fitted on an arc puts its mode in the empty hollow of the arc. HEAT-GMM must raise
    the energy there (prior over-estimates) and lower it on the arc (where the data is)."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    z = _banana(2000, rng)
    cfg = heat_config("quick", lam=1.0, width=64, step_size=1e-3, step_end=1e-4,
                      train=TrainConfig(steps=120, batch_size=128, lr=2e-3, eval_every=120, progress=False))
    det = HEATDetector(GMMPrior(normalize=False, temperature="auto"), cfg, device="cpu", seed=0).fit(z)
    mode = z.mean(0)                                       # the Gaussian's mode, inside the arc
    hollow = (mode + np.array([[0.0, 0.0], [0.25, -0.1], [-0.25, -0.1]])).astype(np.float32)
    arc = _banana(300, np.random.default_rng(1))
    e_theta = lambda a: det.hybrid_.residual(torch.as_tensor(a)).detach().numpy()
    e_q = lambda a: det.prior_(torch.as_tensor(a)).detach().numpy()
    assert e_q(hollow).mean() < e_q(arc).mean()           # the prior prefers the hollow: misspecified
    assert e_theta(hollow).min() > 0 > e_theta(arc).mean()  # raised in the hollow, lowered on the data
    # ... enough to put the hybrid's hollow above the data
    assert np.median(det.score(hollow)) > np.median(det.score(arc))


def test_detector_prior_only_scores_equal_the_prior_and_errors():
    prior, z = _gauss_prior(seed=4)
    det = HEATDetector(GMMPrior(normalize=False, temperature="auto"), residual=False).fit(z)
    np.testing.assert_allclose(det.score(z[:7]), prior(torch.as_tensor(z[:7], dtype=torch.float32)).numpy(), rtol=1e-6)
    assert det.name == "GMM" and HEATDetector(GMMPrior()).name == "HEAT-GMM"
    with pytest.raises(ValueError, match="x"):
        HEATDetector(GMMPrior(), residual=False).fit(np.zeros((4, 1, 2, 2), np.float32))
    with pytest.raises(ValueError, match="preset"):
        heat_config("huge")


def test_training_is_reproducible_with_one_seed():
    _, z = _gauss_prior(seed=5)
    cfg = replace(heat_config("quick"), train=TrainConfig(steps=5, batch_size=32, lr=1e-3, eval_every=5, progress=False))
    a = HEATDetector(GMMPrior(), cfg, seed=3).fit(z).score(z[:10])
    b = HEATDetector(GMMPrior(), cfg, seed=3).fit(z).score(z[:10])
    np.testing.assert_array_equal(a, b)
