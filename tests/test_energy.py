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
