"""SSM-S weighting: ``ssm_reduction="last_axis"`` reproduces the authors' ``SSM.training_step`` loss
(``torch.sum(·, dim=-1)``, then the mean of the rest, plus ``clf_weight · CE``), written out here
independently; the default keeps the per-sample objective."""
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from ebm_ood.methods.score_matching import (
    SSMConfig, SSMDetector, random_projections, ssm_reduction_divisor, supervised_ssm_loss,
)


def _authors_loss(net, x, y, v, clf_weight):
    """Their training_step with n_particles=1: logp = logsumexp f(x); the SSM-VR terms summed over the
    last axis only, then averaged over everything else."""
    x = x.clone().requires_grad_(True)
    logp = net(x).logsumexp(1).sum()
    grad1 = torch.autograd.grad(logp, x, create_graph=True)[0]
    loss1 = torch.sum(grad1 * grad1, dim=-1) / 2.0
    gradv = torch.sum(grad1 * v)
    grad2 = torch.autograd.grad(gradv, x, create_graph=True)[0]
    loss2 = torch.sum(v * grad2, dim=-1)
    ssm = (loss1.view(1, -1).mean(dim=0) + loss2.view(1, -1).mean(dim=0)).mean()
    return ssm + clf_weight * F.cross_entropy(net(x), y)


def _net(shape, k):
    torch.manual_seed(0)
    d = int(torch.tensor(shape).prod())
    return nn.Sequential(nn.Flatten(), nn.Linear(d, 7), nn.Softplus(), nn.Linear(7, k)).double()


@pytest.mark.parametrize("shape", [(3, 4, 5), (1, 6, 6), (5,)])
@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.5])
def test_last_axis_reduction_equals_the_authors_loss(shape, gamma):
    net = _net(shape, 3)
    x = torch.randn(4, *shape, dtype=torch.float64)
    y = torch.tensor([0, 2, 1, 2])
    gen = torch.Generator().manual_seed(5)
    ours, logs = supervised_ssm_loss(net, x, y, gamma, "last_axis", generator=gen)
    v = random_projections((4, *shape), "rademacher", torch.Generator().manual_seed(5), dtype=torch.float64)
    want = _authors_loss(net, x, y, v, gamma)
    torch.testing.assert_close(ours, want, rtol=1e-12, atol=1e-12)
    # the default keeps the per-sample SSM: the two differ exactly by the C·H factor on the SSM term
    per_sample, _ = supervised_ssm_loss(net, x, y, gamma, "per_sample", generator=torch.Generator().manual_seed(5))
    d = shape[0] * shape[1] if len(shape) == 3 else 1
    assert ssm_reduction_divisor(shape, "last_axis") == d
    ce = F.cross_entropy(net(x), y).item() if gamma > 0 else 0.0
    assert logs["ssm"] == pytest.approx((per_sample.item() - gamma * ce), rel=1e-12, abs=1e-12)
    assert ours.item() == pytest.approx(logs["ssm"] / d + gamma * ce, rel=1e-12)


def test_divisor_values_and_bad_name():
    assert ssm_reduction_divisor((3, 32, 32), "last_axis") == 96
    assert ssm_reduction_divisor((1, 32, 32), "last_axis") == 32
    assert ssm_reduction_divisor((3, 32, 32)) == 1
    with pytest.raises(ValueError, match="ssm_reduction"):
        SSMDetector(SSMConfig(), ssm_reduction="sum")


def test_detector_trains_differently_with_the_authors_weighting():
    from ebm_ood.methods.score_matching import ssm_config
    rng = torch.Generator().manual_seed(0)
    x = torch.randn(120, 1, 4, 4, generator=rng).numpy()
    y = (x.reshape(120, -1).mean(1) > 0).astype("int64")
    cfg = ssm_config("quick", kind="image")
    a = SSMDetector(cfg, gamma=1.0, seed=0).fit(x, y).score(x[:5])
    b = SSMDetector(cfg, gamma=1.0, seed=0, ssm_reduction="last_axis").fit(x, y).score(x[:5])
    assert not torch.allclose(torch.as_tensor(a), torch.as_tensor(b))
