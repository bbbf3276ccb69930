"""Elflein Eq. 1-3 against direct computations and torch.distributions."""
import math

import pytest
import torch

from ebm_ood.energy import class_log_probabilities, energy_from_logits, joint_energy, max_softmax


def test_energy_matches_direct_logsumexp():
    torch.manual_seed(0)
    f = torch.randn(7, 5, dtype=torch.float64) * 3
    direct = torch.tensor([-math.log(sum(math.exp(v) for v in row)) for row in f.tolist()], dtype=torch.float64)
    assert torch.allclose(energy_from_logits(f), direct, atol=1e-12)
    for T in (0.5, 2.0, 1000.0):
        direct_T = torch.tensor([-T * math.log(sum(math.exp(v / T) for v in row)) for row in f.tolist()], dtype=torch.float64)
        assert torch.allclose(energy_from_logits(f, T), direct_T, atol=1e-9)
    # large logits must not overflow
    assert torch.isfinite(energy_from_logits(torch.full((2, 3), 1e4))).all()
    # T → 0 tends to -max f
    assert torch.allclose(energy_from_logits(f, 1e-4), -f.amax(1), atol=1e-3)


def test_joint_energy_and_bayes_rule():
    # E(x, y) = -f(x)[y] and log p(y|x) = E(x) - E(x, y)   (Eq. 2 = Eq. 1 joint / Eq. 3 marginal)
    torch.manual_seed(1)
    f = torch.randn(6, 4, dtype=torch.float64)
    y = torch.tensor([0, 3, 1, 2, 2, 0])
    ej = joint_energy(f, y)
    assert torch.allclose(ej, -f[torch.arange(6), y])
    logp = class_log_probabilities(f)[torch.arange(6), y]
    assert torch.allclose(logp, energy_from_logits(f) - ej, atol=1e-12)


def test_class_probabilities_match_categorical():
    torch.manual_seed(2)
    f = torch.randn(5, 3, dtype=torch.float64)
    cat = torch.distributions.Categorical(logits=f)
    assert torch.allclose(class_log_probabilities(f).exp(), cat.probs, atol=1e-12)
    assert torch.allclose(max_softmax(f), cat.probs.amax(1), atol=1e-12)


def test_bad_logits():
    with pytest.raises(ValueError, match="logits"):
        energy_from_logits(torch.zeros(3))
    with pytest.raises(ValueError, match="temperature"):
        energy_from_logits(torch.zeros(2, 2), temperature=0.0)
    with pytest.raises(ValueError, match="y"):
        joint_energy(torch.zeros(2, 2), torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match="y"):
        joint_energy(torch.zeros(2, 2), [0, 1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_jem_energy_single_logit_path_is_bit_identical(dtype):
    """With one logit JEMEnergy skips logsumexp; its energies and input gradients equal the generic path's."""
    from ebm_ood.energy import JEMEnergy

    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 1)).to(dtype)
    x = (10 * torch.randn(33, 5, dtype=dtype)).requires_grad_(True)
    fast = JEMEnergy(net)(x)
    (g_fast,) = torch.autograd.grad(fast.sum(), x)
    slow = energy_from_logits(net(x))
    (g_slow,) = torch.autograd.grad(slow.sum(), x)
    assert torch.equal(fast, slow) and torch.equal(g_fast, g_slow)


def test_eq1_density_is_normalised_and_matches_scipy():
    """Elflein Eq. 1, ``p = exp(-E)/Z``: a 2-D Gaussian energy against scipy's logpdf (log Z = log 2π -
    ½ log det P), and a 1-D double well ``E = x⁴ - 2x²`` against scipy.integrate.quad."""

    import numpy as np
    from scipy import integrate, stats

    from ebm_ood.density import grid_log_normalizer, log_density

    p = np.array([[2.0, 0.6], [0.6, 1.0]])
    mu = np.array([0.3, -0.5])
    pt, mut = torch.tensor(p), torch.tensor(mu)
    energy = lambda z: 0.5 * torch.einsum("ni,ij,nj->n", z - mut, pt, z - mut)  # noqa: E731
    log_z = grid_log_normalizer(energy, [-8, -9], [8, 8], n=400)
    assert log_z == pytest.approx(math.log(2 * math.pi) - 0.5 * math.log(np.linalg.det(p)), abs=1e-6)
    x = np.random.default_rng(0).normal(size=(7, 2))
    ref = stats.multivariate_normal(mu, np.linalg.inv(p)).logpdf(x)
    np.testing.assert_allclose(log_density(energy, torch.tensor(x), log_z).numpy(), ref, atol=1e-6)
    well = lambda z: z[:, 0] ** 4 - 2 * z[:, 0] ** 2  # noqa: E731
    z_ref, _ = integrate.quad(lambda v: math.exp(-(v ** 4 - 2 * v ** 2)), -np.inf, np.inf)
    assert grid_log_normalizer(well, [-4], [4], n=4000) == pytest.approx(math.log(z_ref), abs=1e-6)
    with pytest.raises(ValueError, match="lows, highs"):
        grid_log_normalizer(well, [1], [0])
