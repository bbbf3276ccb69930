"""SGLD (ebm_ood/sampling/sgld.py): exact chains against a numpy re-implementation, stationary laws on
Gaussian energies against closed forms, and the side conditions (clamp, projection, module state)."""
import math

import numpy as np
import pytest
import scipy.linalg as sla
import torch
from torch import nn

from ebm_ood.sampling import ops, philox
from ebm_ood.sampling.sgld import class_conditional_energy, schedule_value, sgld


@pytest.fixture(params=["extension", "twin"])
def backend(request, monkeypatch):
    if request.param == "extension" and ops.backend() != "extension":
        pytest.skip("fused op not built")
    monkeypatch.setitem(ops._STATE, "backend", request.param)
    return request.param


def test_schedules_match_closed_forms():
    T = 20
    for t in range(T):
        assert schedule_value(1e-4, 1e-5, t, T, "constant") == 1e-4
        assert math.isclose(schedule_value(1e-4, 1e-5, t, T, "linear"), np.linspace(1e-4, 1e-5, T)[t], rel_tol=1e-12)
        assert math.isclose(schedule_value(5e-3, 5e-4, t, T, "poly"), 4.5e-3 * (1 - t / T) ** 2 + 5e-4, rel_tol=1e-12)
    with pytest.raises(ValueError, match="schedule"):
        schedule_value(1.0, 0.1, 0, 3, "cosine")


@pytest.mark.parametrize("form,schedule", [("decoupled", "constant"), ("decoupled", "poly"),
                                           ("langevin", "linear"), ("langevin", "constant")])
def test_chain_matches_numpy_reimplementation(form, schedule, backend):
    """Every step reproduced in float64 numpy: gradient of E(x) = ½ Σ w x², the form's step and noise
    (HEAT Eq. 4: η/2 and sqrt(η); Elflein code: α and σ), and the op's Philox noise at offset t."""
    w = np.linspace(0.5, 2.0, 6)
    x0 = torch.randn(5, 6, dtype=torch.float64)
    T, kw = 7, dict(step_size=0.2, noise_std=0.05, step_end=0.02, noise_end=0.01)
    gen = torch.Generator().manual_seed(11)
    seed = ops.draw_seed(torch.Generator().manual_seed(11))
    out = sgld(lambda x: 0.5 * (x**2 * torch.as_tensor(w)).sum(1), x0, n_steps=T, form=form, schedule=schedule,
               generator=gen, **kw)
    x = x0.numpy().copy()
    for t in range(T):
        if schedule == "constant":
            eta, sig = 0.2, 0.05
        elif schedule == "linear":
            eta, sig = 0.2 + (0.02 - 0.2) * t / (T - 1), 0.05 + (0.01 - 0.05) * t / (T - 1)
        else:
            eta, sig = (0.2 - 0.02) * (1 - t / T) ** 2 + 0.02, (0.05 - 0.01) * (1 - t / T) ** 2 + 0.01
        a, s = (eta / 2, math.sqrt(eta)) if form == "langevin" else (eta, sig)
        n = philox.normal(x.size, seed, t).double().numpy().reshape(x.shape)
        x = x - a * (w * x) + s * n
    np.testing.assert_allclose(out.numpy(), x, rtol=0, atol=1e-12)


def _gaussian(dim, seed):
    rng = np.random.default_rng(seed)
    if dim == 2:
        cov = np.array([[1.0, 0.8], [0.8, 1.0]])
    else:
        q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
        cov = q @ np.diag(np.linspace(0.3, 2.0, dim)) @ q.T
    return rng.normal(size=dim), cov


@pytest.mark.parametrize("dim", [2, 10])
def test_langevin_reaches_gaussian_target(dim, backend):
    """HEAT Eq. 4 on E(x) = ½ (x-μ)ᵀ Σ⁻¹ (x-μ): after burn-in the chains are N(μ, S), S the exact stationary
    covariance of the discretised chain (discrete Lyapunov equation, S -> Σ as η -> 0)."""
    if backend == "twin" and dim == 10:
        pytest.skip("the twin is checked on 2-D; it is bit-identical to the op (test_sgld_op.py)")
    mu, cov = _gaussian(dim, seed=dim)
    prec = np.linalg.inv(cov)
    eta, n_chains, T = 0.1, 2000, 300
    mu_t, prec_t = torch.tensor(mu, dtype=torch.float32), torch.tensor(prec, dtype=torch.float32)

    def energy(x):
        d = x - mu_t
        return 0.5 * ((d @ prec_t) * d).sum(1)

    torch.manual_seed(dim)
    x = sgld(energy, torch.zeros(n_chains, dim), n_steps=T, step_size=eta, form="langevin").double().numpy()
    B = np.eye(dim) - eta / 2 * prec
    S = sla.solve_discrete_lyapunov(B, eta * np.eye(dim))          # S = B S Bᵀ + η I
    assert np.abs(S - cov).max() < 0.05 * np.abs(cov).max()         # discretisation bias is small
    se_mean = np.sqrt(np.diag(S) / n_chains)
    assert np.all(np.abs(x.mean(0) - mu) < 4.5 * se_mean)
    emp = np.cov(x, rowvar=False)
    se_cov = np.sqrt((np.outer(np.diag(S), np.diag(S)) + S**2) / n_chains)
    assert np.all(np.abs(emp - S) < 5 * se_cov)
    assert np.all(np.abs(emp - cov) < 5 * se_cov + np.abs(S - cov))


def test_decoupled_form_samples_at_temperature():
    """x <- x - α∇E + σw samples exp(-E/T) with T = σ²/(2α) (here 0.25): covariance ≈ T Σ."""
    mu, cov = _gaussian(2, seed=0)
    prec = np.linalg.inv(cov)
    alpha, sigma, n_chains = 0.05, math.sqrt(0.025), 2000
    mu_t, prec_t = torch.tensor(mu, dtype=torch.float32), torch.tensor(prec, dtype=torch.float32)
    torch.manual_seed(1)
    x = sgld(lambda x: 0.5 * (((x - mu_t) @ prec_t) * (x - mu_t)).sum(1), torch.zeros(n_chains, 2), n_steps=300,
             step_size=alpha, noise_std=sigma).double().numpy()
    S = sla.solve_discrete_lyapunov(np.eye(2) - alpha * prec, sigma**2 * np.eye(2))
    assert np.abs(S - 0.25 * cov).max() < 0.02
    se_cov = np.sqrt((np.outer(np.diag(S), np.diag(S)) + S**2) / n_chains)
    assert np.all(np.abs(np.cov(x, rowvar=False) - S) < 5 * se_cov)


def test_same_seed_same_samples_and_chain():
    energy = lambda x: (x**2).sum(1)  # noqa: E731
    torch.manual_seed(3)
    a, chain = sgld(energy, torch.ones(4, 3), n_steps=5, return_chain=True)
    torch.manual_seed(3)
    b = sgld(energy, torch.ones(4, 3), n_steps=5)
    c = sgld(energy, torch.ones(4, 3), n_steps=5)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len(chain) == 6 and torch.equal(chain[0], torch.ones(4, 3)) and torch.equal(chain[-1], a)


def _relu_l2_numpy(z):
    z = np.maximum(z, 0)
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)


def test_clamp_and_projection(backend):
    """Clamp after each update and projection after each step, against numpy chains with the op's noise."""
    seed = ops.draw_seed(torch.Generator().manual_seed(4))
    x = sgld(lambda x: x.sum(1), torch.zeros(50, 4), n_steps=3, step_size=0.5, noise_std=2.0, clamp=(-1.0, 1.0),
             generator=torch.Generator().manual_seed(4))
    assert x.min() >= -1.0 and x.max() <= 1.0 and (x.abs() == 1.0).any()
    ref = np.zeros((50, 4))
    for t in range(3):                                  # ∇ Σ x = 1
        ref = np.clip(ref - 0.5 + 2.0 * philox.normal(200, seed, t).double().numpy().reshape(50, 4), -1.0, 1.0)
    np.testing.assert_allclose(x.numpy(), ref, rtol=0, atol=1e-5)
    project_relu_l2 = lambda z: torch.nn.functional.normalize(torch.relu(z), dim=-1)
    x0 = torch.rand(8, 5) + 0.5
    out = sgld(lambda x: (x**2).sum(1), x0, n_steps=2, step_size=0.01, project=project_relu_l2,
               generator=torch.Generator().manual_seed(4))
    assert (out >= 0).all()
    np.testing.assert_allclose(out.norm(dim=1).numpy(), 1.0, atol=1e-5)
    ref = x0.double().numpy()
    for t in range(2):                                  # ∇ Σ x² = 2x
        ref = _relu_l2_numpy(ref - 0.01 * 2 * ref + 0.01 * philox.normal(40, seed, t).double().numpy().reshape(8, 5))
    np.testing.assert_allclose(out.numpy(), ref, rtol=0, atol=1e-5)


def test_class_conditional_energy_is_minus_selected_logit():
    net = nn.Linear(4, 3)
    x, y = torch.randn(6, 4), torch.tensor([0, 2, 1, 1, 0, 2])
    logits = x.numpy() @ net.weight.detach().numpy().T + net.bias.detach().numpy()
    e = class_conditional_energy(net, y)(x)
    np.testing.assert_allclose(e.detach().numpy(), -logits[np.arange(6), y.numpy()], atol=1e-6)
    # noise-free SGLD on E(x, y) ascends f(x)[y] (Elflein supervised CD)
    out = sgld(class_conditional_energy(net, y), x, n_steps=3, step_size=0.1, noise_std=0.0, module=net)
    assert (class_conditional_energy(net, y)(out) < e).all()


class _Recorder(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin1, self.drop, self.lin2 = nn.Linear(3, 8), nn.Dropout(0.5), nn.Linear(8, 1)
        self.modes = []

    def forward(self, x):
        self.modes.append(self.training)
        return self.lin2(self.drop(torch.tanh(self.lin1(x)))).squeeze(1)


def test_module_gets_no_grads_and_state_is_restored():
    net = _Recorder().train()
    net.lin2.eval()                               # a child in another mode must stay so
    net.lin1.bias.requires_grad_(False)           # a frozen parameter must stay frozen
    sgld(net, torch.randn(5, 3), n_steps=4, module=net)
    assert net.modes == [False] * 4               # eval mode while sampling (Elflein code)
    assert all(p.grad is None for p in net.parameters())
    assert net.training and net.lin1.training and not net.lin2.training
    assert net.lin1.weight.requires_grad and not net.lin1.bias.requires_grad
    net.modes.clear()
    sgld(net, torch.randn(5, 3), n_steps=1, module=net, eval_mode=False)
    assert net.modes == [True]

    def bad(x):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        sgld(bad, torch.randn(5, 3), n_steps=2, module=net)
    assert net.training and net.lin1.weight.requires_grad and not net.lin1.bias.requires_grad


def test_bad_arguments():
    e = lambda x: (x**2).sum(1)  # noqa: E731
    with pytest.raises(ValueError, match="form"):
        sgld(e, torch.zeros(2, 2), n_steps=1, form="mala")
    with pytest.raises(ValueError, match="step_end"):
        sgld(e, torch.zeros(2, 2), n_steps=1, schedule="linear")
    with pytest.raises(ValueError, match="energy"):
        sgld(lambda x: x**2, torch.zeros(2, 2), n_steps=1)
    with pytest.raises(TypeError, match="x0"):
        sgld(e, np.zeros((2, 2)), n_steps=1)
    with pytest.raises(TypeError, match="x0"):
        sgld(e, torch.zeros(2, 2, dtype=torch.float16), n_steps=1)
    with pytest.raises(ValueError, match="step_end"):
        sgld(e, torch.zeros(2, 2), n_steps=3, form="langevin", schedule="linear", step_end=-0.1)
    with pytest.raises(ValueError, match="noise_std"):
        sgld(e, torch.zeros(2, 2), n_steps=1, noise_std=-1.0)
    with pytest.raises(ValueError, match="clamp"):
        sgld(e, torch.zeros(2, 2), n_steps=1, clamp=(1.0, -1.0))
