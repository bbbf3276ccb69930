"""Reference tests for sliced score matching (Elflein §3; Song et al. 2019): closed forms, autograd
Hessians, Monte-Carlo agreement with the exact objective, and the Gaussian-precision fixed point."""
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from ebm_ood.plumbing.errors import NotFittedError
from ebm_ood.nn import SmallWRN
from ebm_ood.methods.score_matching import (
    SSMDetector, SmoothLeakyReLU, exact_score_matching_loss, model_score, random_projections,
    score_matching_network, sliced_score_matching_loss, ssm_config,
)


def smooth_energy(seed=0, d=3):
    """A small smooth non-quadratic energy with O(1) curvature, in float64: (N, d) -> (N,)."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(d, 16), SmoothLeakyReLU(0.2), nn.Linear(16, 4)).double()
    return net, (lambda x: -3.0 * torch.logsumexp(net(x), dim=1))


def reference_terms(energy, x):
    """Per-sample (s, ∇ₓs) from torch.autograd.functional on one sample at a time (independent path)."""
    scores, jacs = [], []
    for xi in x:
        f = lambda z: energy(z.unsqueeze(0)).squeeze(0)
        scores.append(-torch.autograd.functional.jacobian(f, xi))
        jacs.append(-torch.autograd.functional.hessian(f, xi))
    return torch.stack(scores), torch.stack(jacs)  # (N, d), (N, d, d)


def test_exact_score_matching_matches_closed_form_quadratic():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 4))
    p, mu = a @ a.T + np.eye(4), rng.standard_normal(4)
    x = rng.standard_normal((7, 4))
    pt, mut = torch.tensor(p), torch.tensor(mu)
    energy = lambda z: 0.5 * torch.einsum("ni,ij,nj->n", z - mut, pt, z - mut)  # ½(x-μ)ᵀP(x-μ)
    got = exact_score_matching_loss(energy, torch.tensor(x), reduce=False).detach().numpy()
    # s = -P(x-μ), ∇ₓs = -P: objective = -tr P + ½‖P(x-μ)‖²
    want = -np.trace(p) + 0.5 * (((x - mu) @ p) ** 2).sum(1)
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_exact_score_matching_matches_autograd_hessian():
    _, energy = smooth_energy(1)
    x = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    s, js = reference_terms(energy, x)
    want = torch.diagonal(js, dim1=1, dim2=2).sum(1) + 0.5 * s.pow(2).sum(1)
    got = exact_score_matching_loss(energy, x, reduce=False)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(model_score(energy, x.clone().requires_grad_(True)), s, rtol=1e-9, atol=1e-10)
    assert want.abs().max() > 0.1  # the energy is far from flat: the check is not vacuous


@pytest.mark.parametrize("vr", [True, False])
def test_single_projection_equals_hessian_quadratic_form(vr):
    """For one fixed v: vᵀ∇ₓs v + ½‖s‖² (VR) or + ½(vᵀs)² (SSM), with ∇ₓs from the autograd Hessian."""
    _, energy = smooth_energy(3)
    x = torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    got = sliced_score_matching_loss(energy, x, 1, "gaussian", vr, torch.Generator().manual_seed(5), reduce=False)
    v = random_projections((6, 3), "gaussian", torch.Generator().manual_seed(5), dtype=torch.float64)
    s, js = reference_terms(energy, x)
    quad = torch.einsum("ni,nij,nj->n", v, js, v)
    want = quad + (0.5 * s.pow(2).sum(1) if vr else 0.5 * (v * s).sum(1).pow(2))
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("projection", ["rademacher", "gaussian"])
@pytest.mark.parametrize("vr", [True, False])
def test_sliced_objectives_average_to_exact_objective(projection, vr):
    """E_v of SSM / SSM-VR equals tr ∇ₓs + ½‖s‖²: values and parameter gradients, K = 20,000 projections."""
    net, energy = smooth_energy(6)
    x = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    exact = exact_score_matching_loss(energy, x)
    g_exact = torch.autograd.grad(exact, list(net.parameters()))
    mc = sliced_score_matching_loss(energy, x, 20000, projection, vr, torch.Generator().manual_seed(8))
    g_mc = torch.autograd.grad(mc, list(net.parameters()))
    scale = exact.abs().item() + 1.0
    assert abs(mc.item() - exact.item()) < 0.03 * scale, (mc.item(), exact.item())
    flat = lambda gs: torch.cat([g.reshape(-1) for g in gs])
    err = (flat(g_mc) - flat(g_exact)).norm() / flat(g_exact).norm()
    assert err < 0.05, float(err)


def test_projection_moments():
    """E[v vᵀ] = I for both kinds; Rademacher entries are exactly ±1."""
    for kind in ("rademacher", "gaussian"):
        v = random_projections((200000, 3), kind, torch.Generator().manual_seed(0)).double()
        np.testing.assert_allclose((v.T @ v / len(v)).numpy(), np.eye(3), atol=0.01)
    r = random_projections((1000, 5), "rademacher", torch.Generator().manual_seed(1))
    assert set(r.unique().tolist()) == {-1.0, 1.0}


def test_ssm_vr_recovers_gaussian_precision():
    """Minimising SSM-VR for E = ½(x-μ)ᵀP(x-μ), P = LLᵀ, on Gaussian data gives μ = sample mean and
    P = inverse (divide-by-N) sample covariance, the closed-form minimiser of the exact objective."""
    rng = np.random.default_rng(0)
    c = np.array([[1.0, 0.6, 0.2], [0.6, 2.0, -0.5], [0.2, -0.5, 0.5]])
    x = rng.multivariate_normal([1.0, -1.0, 0.5], c, size=1000)
    want_p = np.linalg.inv(np.cov(x.T, bias=True))
    torch.manual_seed(0)
    raw = nn.Parameter(torch.eye(3, dtype=torch.float64))
    mu = nn.Parameter(torch.zeros(3, dtype=torch.float64))
    prec = lambda: torch.tril(raw) @ torch.tril(raw).T
    energy = lambda z: 0.5 * torch.einsum("ni,ij,nj->n", z - mu, prec(), z - mu)
    xt = torch.tensor(x)
    opt = torch.optim.Adam([raw, mu], lr=0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 if s < 200 else 0.05)
    for _ in range(300):
        opt.zero_grad()
        sliced_score_matching_loss(energy, xt, 1, "rademacher", True).backward()
        opt.step()
        sched.step()
    np.testing.assert_allclose(prec().detach().numpy(), want_p, atol=0.03 * np.abs(want_p).max())
    np.testing.assert_allclose(mu.detach().numpy(), x.mean(0), atol=0.02)


def quick(steps=None, **kw):
    cfg = ssm_config("quick", "tabular")
    train = replace(cfg.train, progress=False, **({"steps": steps} if steps else {}))
    return replace(cfg, train=train, **kw)


def test_ssm_learns_modes_of_2d_mixture(mixture_2d):
    x, _, modes = mixture_2d()
    det = SSMDetector(quick(steps=150)).fit(x)
    far = np.array([[6.0, 6.0], [-6.0, 5.0], [0.0, -6.0], [7.0, -7.0]], np.float32)
    assert det.score(modes).max() < det.score(far).min()


def test_gamma_zero_is_unsupervised_and_gamma_uses_labels(mixture_2d):
    x, y, _ = mixture_2d(400, seed=1)
    a = SSMDetector(quick(num_outputs=3), seed=2).fit(x).score(x[:50])
    b = SSMDetector(quick(num_outputs=3, gamma=0.0), seed=2).fit(x, y).score(x[:50])
    np.testing.assert_array_equal(a, b)
    c = SSMDetector(quick(num_outputs=3, gamma=1.0), seed=2).fit(x, y).score(x[:50])
    assert not np.allclose(a, c)
    with pytest.raises(ValueError, match="y"):
        SSMDetector(quick(gamma=1.0)).fit(x)


def test_errors():
    with pytest.raises(NotFittedError):
        SSMDetector(quick()).score(np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="projection"):
        SSMDetector(quick(projection="uniform"))
    with pytest.raises(ValueError, match="n_projections"):
        sliced_score_matching_loss(lambda z: z.sum(1), torch.zeros(2, 2), n_projections=0)
    with pytest.raises(ValueError, match="energy_fn"):
        model_score(lambda z: z, torch.zeros(2, 2, requires_grad=True))
    with pytest.raises(ValueError, match="preset"):
        ssm_config("huge")
    with pytest.raises(ValueError, match="kind"):
        ssm_config("quick", "text")
    with pytest.raises(ValueError, match="input_shape"):
        score_matching_network((2, 3), 1)


@pytest.mark.parametrize("network", ["wrn", "mlp"])
def test_image_network_and_score_is_energy(network):
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (64, 1, 8, 8)).astype(np.float32)
    det = SSMDetector(quick(steps=5), image_network=network).fit(x)
    assert isinstance(det.net_, SmallWRN) == (network == "wrn")
    with torch.no_grad():
        want = -torch.logsumexp(det.net_(torch.tensor(x)), dim=1).double().numpy()
    np.testing.assert_allclose(det.score(x), want, rtol=1e-6)


@pytest.mark.parametrize("preset", ["quick", "default", "full"])
def test_the_papers_wrn_is_the_image_network_of_every_preset(preset):
    """Elflein App. C: WideResNet-10-2 for every image model, SSM's included; the MLP on flattened pixels
    is the option ``image_network="mlp"``."""
    assert ssm_config(preset, "image").image_network == "wrn"
    x = np.random.default_rng(0).uniform(-1, 1, (64, 1, 8, 8)).astype(np.float32)
    assert isinstance(SSMDetector(quick(steps=2)).fit(x).net_, SmallWRN)
    assert isinstance(score_matching_network((1, 8, 8), 1), SmallWRN)
    with pytest.raises(ValueError, match="image_network"):
        score_matching_network((1, 8, 8), 1, image_network="cnn")


def test_the_wrn_takes_the_smooth_activation_so_its_curvature_is_seen():
    """With LeakyReLU the energy is piecewise linear in x and autograd's Hessian-vector product is 0; the
    smooth activation (SSM's default) gives the WRN's energy curvature, ``activation="leaky_relu"`` the code's."""
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    curv = {}
    for act in ("smooth_leaky_relu", "leaky_relu"):
        torch.manual_seed(0)
        net = score_matching_network((1, 8, 8), 1, activation=act).double()
        assert net.activation == act
        xr = x.clone().requires_grad_(True)
        g = torch.autograd.grad(net(xr).sum(), xr, create_graph=True)[0]
        curv[act] = torch.autograd.grad((g * torch.ones_like(g)).sum(), xr)[0].abs().max().item()
    assert curv["smooth_leaky_relu"] > 1e-6 and curv["leaky_relu"] == 0.0
    assert SSMDetector(quick(steps=2)).fit(x.float().numpy()).net_.activation == "smooth_leaky_relu"
    with pytest.raises(ValueError, match="activation"):
        SmallWRN(1, 1, activation="relu")


def test_input_noise_switch_perturbs_training_batches_by_its_std(monkeypatch):
    """``data_noise_std`` (the authors' image config: 0.1) adds N(0, std²) to every training batch; 0 leaves
    the batches as drawn from the data."""
    from ebm_ood.methods import score_matching as sm

    seen = []
    real = sm.sliced_score_matching_loss

    def spy(energy, x, *args, **kw):
        if x.requires_grad is False and kw.get("create_graph", True):
            seen.append(x.detach().clone())
        return real(energy, x, *args, **kw)

    monkeypatch.setattr(sm, "sliced_score_matching_loss", spy)
    x = np.random.default_rng(0).uniform(-1, 1, (400, 6)).astype(np.float32)
    for std in (0.0, 0.1):
        seen.clear()
        cfg = ssm_config("quick", "tabular")
        SSMDetector(replace(cfg, data_noise_std=std, train=replace(cfg.train, steps=10, progress=False))).fit(x)
        batch = torch.cat(seen).numpy()
        dist = np.abs(batch[:, None, :] - x[None]).sum(-1).min(1)  # L1 distance to the nearest data row
        if std == 0:
            assert dist.max() < 1e-6
        else:
            resid = batch - x[np.abs(batch[:, None, :] - x[None]).sum(-1).argmin(1)]
            assert abs(resid.std() - 0.1) < 0.01
    with pytest.raises(ValueError, match="data_noise_std"):
        SSMDetector(replace(cfg, data_noise_std=-1.0))
