"""HEAT against the paper and the authors' code: the feature-space invariants of the hybrid (the residual
sees what the prior sees; SGLD starts live in the features' domain; degenerate covariances), the
authors'-code switches, and reference tests of App. A.1 (Eq. 8–11) and Algorithm 1 as a whole."""
import math
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy import integrate

from ebm_ood.class_gaussian import DegenerateCovarianceWarning, fit_class_gaussian
from ebm_ood.posthoc.mahalanobis import Mahalanobis
from ebm_ood.posthoc.ssd import SSDPlus
from ebm_ood.heat.build import CODE_SETTINGS
from ebm_ood.heat.hybrid import (HEATDetector, HybridEnergy, ResidualMLP, control_loss, heat_config, mle_loss,
                                 sample_negatives, train_hybrid)
from ebm_ood.heat.priors import ELPrior, GMMPrior, NoPrior
from ebm_ood.sampling import ops, philox
from ebm_ood.training import TrainConfig


def _features(n=400, d=8, c=3, seed=0, scale=3.0, leaky=False):
    """Class-clustered post-ReLU (or post-LeakyReLU(0.2)) features with norm ~ ``scale · 3``."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    y[:c] = np.arange(c)
    pre = rng.normal(size=(c, d))[y] * 1.5 + rng.normal(size=(n, d))
    z = np.where(pre > 0, pre, 0.2 * pre) if leaky else np.maximum(pre, 0)
    return (z * scale).astype(np.float32), y


def _cfg(steps=30, **kw):
    return replace(heat_config("quick", **kw),
                   train=TrainConfig(steps=steps, batch_size=64, lr=2e-3, eval_every=steps, progress=False))


# ------------------------------------------------------------------ issue: code-form hybrid and the norm
def test_code_form_hybrid_is_invariant_to_rescaling_its_features():
    """The authors' code L2-normalises z before the prior, the loss and the scorer, so HEAT-GMM (code form)
    gives the same score to z and 3z. A residual fed raw features would learn the norm instead."""
    z, y = _features(seed=1)
    det = HEATDetector(GMMPrior(form="code"), _cfg(sampler="code", step_size=1e-2, step_end=1e-3), seed=0).fit(z, y)
    zq = z[:50]
    e_theta = det.hybrid_.residual_energy(torch.as_tensor(zq)).detach().numpy()
    assert np.abs(e_theta).max() > 1e-3                      # the residual is not trivially zero
    np.testing.assert_allclose(det.score(3 * zq), det.score(zq), rtol=1e-5, atol=1e-5)


def test_residual_input_statistics_are_those_of_what_it_sees():
    z, y = _features(seed=2)
    prior = GMMPrior(form="code").fit(z, y)
    hybrid, _ = train_hybrid(prior, z, _cfg(steps=1, sampler="code"), seed=0)
    zn = z / np.linalg.norm(z, axis=1, keepdims=True)
    np.testing.assert_allclose(hybrid.residual.shift.numpy(), zn.mean(0), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ issue: the feature domain of SGLD starts
def test_el_starts_live_in_the_features_domain():
    """LeakyReLU features have negative coordinates; the EL prior's SGLD starts must too (the papers'
    post-ReLU features: none)."""
    w, b = np.random.default_rng(0).normal(size=(3, 8)), np.zeros(3)
    for leaky in (True, False):
        z, y = _features(seed=3, leaky=leaky)
        for init in ("gaussian", "normal"):
            el = ELPrior(w, b, init=init).fit(z, y)
            s = el.sample(4000, torch.Generator().manual_seed(0)).numpy()
            if leaky:
                assert el.domain_ == "real" and (s < 0).mean() > 0.5 * (z < 0).mean() > 0
            else:
                assert el.domain_ == "nonneg" and (s >= 0).all()


def test_code_sampler_projection_follows_the_domain():
    z, y = _features(seed=4, leaky=True)
    prior = GMMPrior(form="code").fit(z, y)
    neg = sample_negatives(HybridEnergy(prior, ResidualMLP(8)), 200, _cfg(sampler="code"), torch.Generator().manual_seed(0))
    assert (neg < 0).float().mean() > 0.05                          # no ReLU on features of both signs ...
    np.testing.assert_allclose(neg.norm(dim=1).numpy(), 1.0, rtol=1e-5)   # ... the code form's L2 still
    with pytest.raises(ValueError, match="domain"):
        GMMPrior(domain="positive")


# ------------------------------------------------------------------ issue: degenerate covariances
def test_dead_channel_does_not_crash_heat_gmm_at_any_scale():
    """One dead channel (zero variance): the ridge is relative to the data's scale, and raised (with a
    warning naming the degenerate covariance) when SGLD's step would overshoot it."""
    for scale in (0.1, 3.0):
        z, y = _features(seed=5, scale=scale)
        z[:, 2] = 0.0
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            det = HEATDetector(GMMPrior(), _cfg(steps=3), seed=0).fit(z, y)
        assert np.isfinite(det.score(z[:20])).all()
        msgs = [str(w.message) for w in caught if issubclass(w.category, DegenerateCovarianceWarning)]
        assert msgs and "degenerate" in msgs[0] and "[2]" in msgs[0] and "reg=" in msgs[0]


def test_zero_ridge_on_a_dead_channel_names_the_degenerate_covariance():
    z, y = _features(seed=6)
    z[:, 5] = 0.0
    with pytest.raises(ValueError, match=r"degenerate.*channels \[5\]"):
        GMMPrior(reg=0.0).fit(z, y)


def test_ridge_is_relative_to_the_data_scale():
    z, y = _features(seed=7)
    z[:, 0] = 0.0
    cov0 = sum(np.cov(z[y == c].T, bias=True) * (y == c).sum() for c in range(3)) / len(z)
    for k in (1e-3, 1.0, 1e3):
        g = fit_class_gaussian(z * k, y, reg=1e-6, relative=True)
        ref = cov0 * k**2 + 1e-6 * np.trace(cov0 * k**2) / 8 * np.eye(8)
        np.testing.assert_allclose(g.cov.numpy(), ref, rtol=1e-5, atol=1e-9 * k**2)
    e = [GMMPrior().fit(z * k, y)(torch.as_tensor(z[:5] * k, dtype=torch.float64)).numpy() for k in (1e-3, 1e3)]
    np.testing.assert_allclose(e[0], e[1], rtol=1e-6)        # the prior's energies are scale-free


def test_zero_within_class_scatter_gives_scale_free_scores_and_one_warning():
    """Every class's samples identical: Mahalanobis / SSD+ scores stay O(distance² / scale), not 1e307."""
    y = np.repeat(np.arange(3), 10)
    centres = np.random.default_rng(8).normal(size=(3, 6)) * 5
    z = centres[y]
    for det in (Mahalanobis(), SSDPlus()):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            det.fit(z, y)
        assert any(issubclass(w.category, DegenerateCovarianceWarning) for w in caught)
        s_in = det.score(z)
        assert np.abs(s_in).max() < 1e-3                    # the training points themselves: distance 0
        s_out = det.score(z + 1.0)
        assert np.isfinite(s_out).all() and s_out.max() < 1e12 and s_out.min() > s_in.max()
    with pytest.raises(ValueError, match="zero"):
        Mahalanobis().fit(np.zeros((6, 3)), np.array([0, 0, 0, 1, 1, 1]))


def test_gmm_prior_with_fewer_samples_than_dimensions_has_finite_temperature():
    """N <= D: every training point has the same Mahalanobis distance, so the energy's std is 0 and
    "auto" T is undefined: T = 1 with a warning instead of a 1e-12 floor (energies ~1e18)."""
    rng = np.random.default_rng(9)
    z = rng.normal(size=(5, 20))
    with pytest.warns(DegenerateCovarianceWarning, match="temperature"):
        prior = GMMPrior(temperature="auto").fit(z)
    assert prior.t_.item() == 1.0
    e = prior(torch.as_tensor(rng.normal(size=(10, 20)))).numpy()
    assert np.isfinite(e).all() and e.max() < 1e9


# ------------------------------------------------------------------ authors'-code switches
def test_control_loss_forms():
    e_pos, e_neg = torch.tensor([1.0, -2.0]), torch.tensor([3.0, 0.0, 1.0, 2.0])
    assert math.isclose(float(control_loss(e_pos, e_neg)), (1 + 4 + 9 + 0 + 1 + 4) / 6, rel_tol=1e-6)
    assert math.isclose(float(control_loss(e_pos, e_neg, "code")), (1 + 4) / 2 + (9 + 0 + 1 + 4) / 4, rel_tol=1e-6)
    with pytest.raises(ValueError, match="control"):
        control_loss(e_pos, e_neg, "l1")


def test_plain_and_skip_mlps():
    torch.manual_seed(0)
    plain, skip = ResidualMLP(4, width=6, depth=4), ResidualMLP(4, width=6, depth=4, skip=True)
    skip.load_state_dict(plain.state_dict())
    for m in (plain, skip):
        torch.nn.init.normal_(m.out.weight)
    skip.out.weight.data.copy_(plain.out.weight.data)
    x = torch.randn(5, 4)
    act = lambda t: torch.nn.functional.leaky_relu(t, 0.2)
    h = act(plain.inp(x))
    hp, hs = h, h
    for layer in plain.hidden:
        hp, hs = act(layer(hp)), hs + act(layer(hs))
    torch.testing.assert_close(plain(x), plain.out(hp).squeeze(-1))
    torch.testing.assert_close(skip(x), plain.out(hs).squeeze(-1))


def test_code_settings_are_the_authors_per_prior_values():
    assert CODE_SETTINGS["EL"]["sgld_steps"] == 50 and CODE_SETTINGS["EL"]["lam"] == 0.1
    assert CODE_SETTINGS["EL"]["step_size"] == CODE_SETTINGS["EL"]["noise_std"] == 0.1
    assert CODE_SETTINGS["GMM"]["sgld_steps"] == 40 and CODE_SETTINGS["GMM-std"]["sgld_steps"] == 1
    for s in CODE_SETTINGS.values():
        assert s["sampler"] == "code" and s["control"] == "code" and s["mlp"] == "plain"
        assert math.isclose(s["step_end"], 0.1 * s["step_size"]) and math.isclose(s["noise_end"], 0.1 * s["noise_std"])


# ------------------------------------------------------------------ App. A.1: Eq. 8–11
class _Quartic(torch.nn.Module):
    """E(z) = a z⁴ - b z², 1-D, two modes."""

    def __init__(self, a=0.25, b=1.0):
        super().__init__()
        self.a, self.b = torch.nn.Parameter(torch.tensor(a)), torch.nn.Parameter(torch.tensor(b))

    def forward(self, z):
        return (self.a * z[:, 0] ** 4 - self.b * z[:, 0] ** 2)


def test_eq8_langevin_on_a_plain_ebm_reaches_the_boltzmann_density():
    """Eq. 8: with no prior (E_q = 0), the hybrid's chains sample p ∝ exp(-E_θ); E[z²] and P(z > 1) vs
    quadrature of the Boltzmann density."""
    prior = NoPrior().fit(np.random.default_rng(0).normal(size=(500, 1)))
    hybrid = HybridEnergy(prior, _Quartic().double(), input_noise=0.0).eval()
    z0 = torch.as_tensor(np.random.default_rng(1).normal(size=(4000, 1)))
    from ebm_ood.sampling import sgld
    zt = sgld(hybrid, z0, n_steps=400, step_size=1e-2, form="langevin", generator=torch.Generator().manual_seed(0))
    dens = lambda x: math.exp(-(0.25 * x**4 - x**2))
    norm = integrate.quad(dens, -8, 8)[0]
    m2 = integrate.quad(lambda x: x * x * dens(x), -8, 8)[0] / norm
    tail = integrate.quad(dens, 1, 8)[0] / norm
    zs = zt.numpy()[:, 0]
    assert abs((zs**2).mean() - m2) < 0.05 * m2 and abs((zs > 1).mean() - tail) < 0.03


def test_eq9_to_11_mle_loss_gradient_is_the_negative_log_likelihood_gradient():
    """Eq. 9–11: for E_θ(z) = θ z²/2 (so Z = sqrt(2π/θ), closed form), ∇_θ of L_MLE (Eq. 11) with exact
    model samples equals ∇_θ of the mean negative log-likelihood (Eq. 9), the SGD direction of Eq. 10."""
    theta = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    rng = np.random.default_rng(0)
    z = torch.as_tensor(rng.normal(0.3, 1.4, 200_000))
    z_model = torch.as_tensor(rng.normal(0.0, 1 / math.sqrt(0.7), 200_000))
    energy = lambda x: theta * x**2 / 2
    (g_mle,) = torch.autograd.grad(mle_loss(energy(z), energy(z_model)), theta)
    nll = (energy(z) + 0.5 * torch.log(2 * math.pi / theta)).mean()   # -log p_θ(z) = E_θ(z) + log Z_θ
    (g_nll,) = torch.autograd.grad(nll, theta)
    assert abs(float(g_mle) - float(g_nll)) < 0.01 * abs(float(g_nll))
    # the plain EBM (E_q = 0) of Eq. 11 is the hybrid with NoPrior: E_h ≡ E_θ
    hybrid = HybridEnergy(NoPrior().fit(rng.normal(size=(50, 1))), _Quartic().double(), input_noise=0.0).eval()
    zq = torch.as_tensor(rng.normal(size=(7, 1)))
    torch.testing.assert_close(hybrid(zq), hybrid.residual(zq))


# ------------------------------------------------------------------ Eq. 4 (paper sampler) and Algorithm 1
def _langevin(energy, z0, seed, steps, eta0, eta1):
    """Eq. 4 by hand: z ← z - η_t/2 ∇E(z) + sqrt(η_t) w_t, η linear from eta0 to eta1, the op's noise."""
    z = z0.clone()
    for t in range(steps):
        eta = eta0 + (eta1 - eta0) * t / (steps - 1)
        zg = z.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(energy(zg).sum(), zg)
        w = philox.normal(z.numel(), seed, t).view(z.shape).to(z.dtype)
        z = z - eta / 2 * g + math.sqrt(eta) * w
    return z.detach()


def test_paper_sampler_is_langevin_from_prior_samples():
    """HEAT Eq. 4 / 12 in Alg. 1 with the default ("paper") sampler: z'_0 ~ q, T Langevin steps on E_h,
    negatives = chain ends."""
    z, y = _features(seed=10, d=2)
    prior = GMMPrior().fit(z, y)
    torch.manual_seed(0)
    res = ResidualMLP(2, width=8)
    torch.nn.init.normal_(res.out.weight, std=0.5)
    res.set_input_stats(z)
    hybrid = HybridEnergy(prior, res, input_noise=0.0).double().eval()
    cfg = _cfg(sgld_steps=6, step_size=1e-2, step_end=1e-3)
    neg = sample_negatives(hybrid, 32, cfg, torch.Generator().manual_seed(3))
    gen = torch.Generator().manual_seed(3)
    z0 = prior.sample(32, gen).double()
    ref = _langevin(hybrid, z0, ops.draw_seed(gen), 6, 1e-2, 1e-3)
    np.testing.assert_allclose(neg.numpy(), ref.numpy(), rtol=0, atol=1e-5)


def test_algorithm1_matches_a_transparent_reimplementation():
    """Alg. 1 on a 2-D GMM prior, 4 iterations: batch z ~ D_z, z'_0 ~ q, Eq. 4 chain, L_Tot (Eq. 6) =
    mean E_θ(z) - mean E_θ(z') + λ mean(E_θ²) pooled, Adam step on θ — by hand vs ``train_hybrid``."""
    z, y = _features(n=300, d=2, seed=11)
    prior = GMMPrior(normalize=False, temperature="auto").fit(z, y)
    steps, bs, lam, seed = 4, 32, 10.0, 5
    cfg = replace(_cfg(sgld_steps=5, step_size=1e-2, step_end=1e-3, input_noise=0.0, width=8),
                  train=TrainConfig(steps=steps, batch_size=bs, lr=1e-2, eval_every=steps, progress=False))
    hybrid, _ = train_hybrid(prior, z, cfg, seed=seed)

    torch.manual_seed(seed)
    res = ResidualMLP(2, width=8)
    res.set_input_stats(z)
    energy_h = lambda a: prior(a) + res(a)
    opt = torch.optim.Adam(res.parameters(), lr=1e-2)
    batches, gen = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)
    zt = torch.as_tensor(z)
    for _ in range(steps):
        zb = zt[torch.randint(0, len(z), (bs,), generator=batches)]
        z0 = prior.sample(bs, gen)
        for p in res.parameters():
            p.requires_grad_(False)
        z_neg = _langevin(energy_h, z0, ops.draw_seed(gen), 5, 1e-2, 1e-3)
        for p in res.parameters():
            p.requires_grad_(True)
        e_pos, e_neg = res(zb), res(z_neg)
        loss = e_pos.mean() - e_neg.mean() + lam * torch.cat([e_pos, e_neg]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    for (name, a), b in zip(hybrid.residual.named_parameters(), res.parameters()):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-4, atol=1e-6, err_msg=name)
    assert float(res.out.weight.detach().abs().sum()) > 0
