"""Reference tests for the radial flow (Elflein NF baseline, tabular): closed-form log-dets vs autograd
Jacobians, the closed-form inverse vs a scipy root finder, the change of variables vs brute force, and the
trained density's normalisation by quadrature."""
import numpy as np
import pytest
import torch
from scipy import optimize, stats

from ebm_ood.plumbing.errors import NotFittedError
from ebm_ood.methods.flows import NormalizingFlowDetector, RadialFlow, flow_config
from ebm_ood.methods.flows.radial import RadialLayer, radial_inverse, radial_parameters, radial_transform
from ebm_ood.metrics import auroc


def _random_layer(d, seed, beta_raw=None):
    torch.manual_seed(seed)
    layer = RadialLayer(d).double()
    with torch.no_grad():
        layer.x0.copy_(torch.randn(d, dtype=torch.float64))
        layer.alpha_raw.fill_(float(torch.randn(())))
        layer.beta_raw.fill_(float(torch.randn(())) if beta_raw is None else beta_raw)
    return layer


@pytest.mark.parametrize("d", [2, 5])
@pytest.mark.parametrize("beta_raw", [None, -6.0, 3.0])  # β near -α (strong contraction), and β > 0
def test_radial_log_det_matches_autograd_jacobian(d, beta_raw):
    layer = _random_layer(d, seed=d, beta_raw=beta_raw)
    x = torch.randn(6, d, dtype=torch.float64) * 1.5
    _, log_det = layer(x)
    for i in range(x.shape[0]):
        jac = torch.autograd.functional.jacobian(lambda v: layer(v[None])[0][0], x[i])  # (d, d)
        sign, ref = np.linalg.slogdet(jac.numpy())
        assert sign > 0  # orientation preserving, as β ≥ -α guarantees
        assert log_det[i].item() == pytest.approx(ref, abs=1e-10)


@pytest.mark.parametrize("d", [2, 5])
def test_radial_inverse_round_trip_and_scipy_root(d):
    layer = _random_layer(d, seed=10 + d, beta_raw=-4.0)
    x = torch.randn(8, d, dtype=torch.float64) * 2
    y, _ = layer(x)
    assert torch.allclose(layer.inverse(y), x, atol=1e-10)
    alpha_t, beta_t = layer.parameters_ab()
    assert torch.allclose(radial_inverse(y, layer.x0, alpha_t, beta_t), x, atol=1e-10)
    # independent inverse: solve ρ = r + βr/(α + r) for r with brentq, then rescale along the ray
    alpha, beta = (float(t.detach()) for t in layer.parameters_ab())
    x0 = layer.x0.detach().numpy()
    for yi, xi in zip(y.detach().numpy(), x.numpy()):
        rho = np.linalg.norm(yi - x0)
        r = optimize.brentq(lambda r: r + beta * r / (alpha + r) - rho, 0.0, rho + abs(beta) + 1.0, xtol=1e-14)
        ref = x0 + (yi - x0) * (alpha + r) / (alpha + beta + r)
        np.testing.assert_allclose(ref, xi, atol=1e-8)


def test_radial_stack_inverse_round_trip():
    torch.manual_seed(0)
    flow = RadialFlow(3, n_layers=20).double()
    x = torch.randn(50, 3, dtype=torch.float64)
    z, _ = flow(x)
    assert torch.allclose(flow.inverse(z), x, atol=1e-9)


@pytest.mark.parametrize("alpha_raw", [-1e4, -50.0, 0.0, 50.0, 1e4])
@pytest.mark.parametrize("beta_raw", [-1e4, -50.0, 0.0, 50.0, 1e4])
def test_radial_constraint_beta_ge_minus_alpha_by_construction(alpha_raw, beta_raw):
    a_raw, b_raw = torch.tensor(alpha_raw, dtype=torch.float64), torch.tensor(beta_raw, dtype=torch.float64)
    alpha, beta = radial_parameters(a_raw, b_raw)
    assert alpha.item() >= 0 and beta.item() >= -alpha.item()
    # the map stays orientation preserving: both factors of det J are >= 0 at every radius
    x0 = torch.zeros(2, dtype=torch.float64)
    x = torch.tensor([[1e-3, 0.0], [1.0, 2.0], [30.0, -40.0]], dtype=torch.float64)
    y, log_det = radial_transform(x, x0, alpha, beta)
    assert torch.isfinite(y).all() and not torch.isnan(log_det).any()
    r = x.norm(dim=1)
    h = 1.0 / (alpha + r)
    assert ((1 + beta * h) >= 0).all() and ((1 + beta * h - beta * h * h * r) >= 0).all()


def test_radial_flow_log_prob_equals_change_of_variables_brute_force():
    torch.manual_seed(3)
    flow = RadialFlow(4, n_layers=20).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    log_p = flow.log_prob(x).detach().numpy()
    for i in range(5):
        jac = torch.autograd.functional.jacobian(lambda v: flow(v[None])[0][0], x[i]).numpy()  # (4, 4)
        z = flow(x[i : i + 1])[0][0].detach().numpy()
        ref = stats.multivariate_normal(np.zeros(4), np.eye(4)).logpdf(z) + np.linalg.slogdet(jac)[1]
        assert log_p[i] == pytest.approx(ref, abs=1e-9)


def _two_moons_ish(n, seed):
    rng = np.random.default_rng(seed)
    centres = np.array([[-1.5, 0.5], [1.0, -0.5]])
    x = centres[rng.integers(0, 2, n)] + 0.35 * rng.standard_normal((n, 2))
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def trained_2d():
    x = _two_moons_ish(600, 0)
    cfg = flow_config("quick", "tabular")
    cfg.train.steps, cfg.train.progress, cfg.train.batch_size, cfg.train.lr = 120, False, 128, 1e-2
    det = NormalizingFlowDetector(cfg, seed=0).fit(x, validation=_two_moons_ish(100, 1))
    return det, x


def test_trained_radial_density_integrates_to_one(trained_2d):
    det, _ = trained_2d
    g = np.linspace(-9.0, 9.0, 241)  # step 0.075; the fitted bumps have std ≈ 0.35
    xx, yy = np.meshgrid(g, g)
    grid = np.stack([xx.ravel(), yy.ravel()], 1)
    flow = det.flow_.double()
    with torch.no_grad():
        p = torch.exp(flow.log_prob(torch.as_tensor(grid))).numpy().reshape(xx.shape)
    det.flow_.float()
    mass = np.trapezoid(np.trapezoid(p, g, axis=1), g)
    assert mass == pytest.approx(1.0, abs=2e-3)


def test_training_raises_validation_likelihood_and_scores_far_points_as_ood(trained_2d):
    det, x = trained_2d
    torch.manual_seed(0)
    untrained = RadialFlow(2, 20)
    val = _two_moons_ish(100, 1)
    with torch.no_grad():
        ll0 = untrained.log_prob(torch.as_tensor(val)).mean().item()
    assert det.val_log_likelihood_ > ll0 + 1.0
    far = np.random.default_rng(2).uniform(4, 6, size=(200, 2)).astype(np.float32)
    assert auroc(det.score(val), det.score(far)) > 0.95


def test_detector_is_reproducible_and_validates_input():
    x = _two_moons_ish(200, 5)
    cfg = flow_config("quick", "tabular")
    cfg.train.progress = False
    a = NormalizingFlowDetector(cfg, seed=1).fit(x).score(x[:20])
    b = NormalizingFlowDetector(cfg, seed=1).fit(x).score(x[:20])
    np.testing.assert_array_equal(a, b)
    with pytest.raises(NotFittedError):
        NormalizingFlowDetector(cfg).score(x)
    det = NormalizingFlowDetector(cfg, seed=1).fit(x)
    with pytest.raises(ValueError, match="x: expected samples of shape"):
        det.score(np.zeros((3, 5), np.float32))
    np.testing.assert_array_equal(det.log_prob(x[:20]), -det.score(x[:20]))
    with pytest.raises(ValueError, match="x: expected shape"):
        det.log_prob(np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match="non-finite"):
        det.log_prob(np.full((3, 2), np.nan, np.float32))
    with pytest.raises(ValueError, match="bits_per_dim"):
        det.bits_per_dim(x[:3])
    with pytest.raises(ValueError, match="preset"):
        flow_config("huge")
    with pytest.raises(ValueError, match="kind"):
        flow_config("quick", "text")
