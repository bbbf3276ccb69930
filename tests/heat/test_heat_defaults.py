"""HEAT's paper-form defaults (App. B): T_G = 1e3 for the GMM priors on L2-normalised features (the GMM
HEAT corrects is SSD+'s), T = 1 for EL; "auto" and raw features stay switches. Reference energies are
computed here with numpy / scipy from the same data."""
import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from ebm_ood.backbone import Backbone
from ebm_ood.heat.build import CODE_SETTINGS, make_heat_detector, make_prior
from ebm_ood.heat.priors import ELPrior, GMMPrior
from ebm_ood.nn import build_network


def _features(n=300, d=5, c=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    y[:c] = np.arange(c)
    z = rng.normal(0, 3, (c, d))[y] + rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + 4.0
    return z, y


def _half_d2_reference(z_fit, y, zq, c=3):
    """-½ d²_c (N, C) of the class-Gaussian with tied ML covariance (+ the library's relative ridge 1e-6)."""
    means = np.stack([z_fit[y == k].mean(0) for k in range(c)])
    cov = np.cov((z_fit - means[y]).T, bias=True)
    cov = cov + 1e-6 * np.trace(cov) / len(cov) * np.eye(len(cov))
    diff = zq[:, None, :] - means[None]                                     # (N, C, D)
    return -0.5 * np.einsum("ncd,de,nce->nc", diff, np.linalg.inv(cov), diff)


def _l2(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def test_default_gmm_prior_is_the_paper_energy_on_l2_normalised_features_over_tg():
    """E(z) = -logsumexp_c(-½ (ẑ - μ_c)ᵀ Σ⁻¹ (ẑ - μ_c)) / 1e3, ẑ = z/‖z‖, μ_c and Σ fitted on ẑ."""
    z, y = _features()
    zq = z[:25] * 2.5 + np.random.default_rng(1).normal(size=(25, 5))   # any scale: the prior normalises
    prior = GMMPrior().fit(z, y)
    assert prior.form == "paper" and prior.normalize and float(prior.t_) == 1e3
    want = -logsumexp(_half_d2_reference(_l2(z), y, _l2(zq)), axis=1) / 1e3
    got = prior(torch.as_tensor(zq, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_raw_and_auto_switches_give_the_previous_forms():
    z, y = _features(seed=2)
    zq = z[:10] + 0.5
    raw = GMMPrior(normalize=False, temperature=1.0).fit(z, y)
    np.testing.assert_allclose(raw(torch.as_tensor(zq, dtype=torch.float64)).numpy(),
                               -logsumexp(_half_d2_reference(z, y, zq), axis=1), rtol=1e-9, atol=1e-9)
    auto = GMMPrior(normalize=False, temperature="auto").fit(z, y)
    e_train = -logsumexp(_half_d2_reference(z, y, z), axis=1)
    np.testing.assert_allclose(float(auto.t_), e_train.std(), rtol=1e-6)
    with pytest.raises(TypeError, match="normalize"):
        GMMPrior(normalize="yes")


def test_el_prior_default_temperature_is_one():
    z, y = _features(seed=3)
    w, b = np.random.default_rng(4).normal(size=(3, 5)), np.zeros(3)
    prior = ELPrior(w, b).fit(z, y)
    assert float(prior.t_) == 1.0
    want = -logsumexp(z[:8] @ w.T + b, axis=1)
    np.testing.assert_allclose(prior(torch.as_tensor(z[:8], dtype=torch.float64)).numpy(), want, rtol=1e-6)


def _backbone():
    torch.manual_seed(0)
    return Backbone(build_network((1, 8, 8), 3, widen=1))


@pytest.mark.parametrize("form", ["paper", "code"])
def test_built_priors_carry_the_papers_temperatures_and_normalisation(form):
    bb = _backbone()
    for name in ("GMM", "GMM-std"):
        p = make_prior(bb, name, form)
        assert p.normalize and p.temperature == 1e3
        assert not make_prior(bb, name, form, normalize=False).normalize
        assert make_prior(bb, name, form, temperature="auto").temperature == "auto"
    el = make_prior(bb, "EL", form)
    assert el.temperature == 1.0 and el.init == ("gaussian" if form == "paper" else "normal")


def test_code_settings_are_heatoods_per_prior_values():
    """heatood, config/ebm/heat_{el,gmm,gmm_std}_c10.yaml and scripts/cifar10.sh: EL λ (l2_coef) 0.1,
    50 steps of 0.1 → 0.01 (noise alike); GMM 40 steps, GMM-std 1 step, both λ 10, step 1e-4, noise 5e-3."""
    assert {k: CODE_SETTINGS["EL"][k] for k in ("lam", "sgld_steps", "step_size", "step_end", "noise_std", "noise_end")} \
        == {"lam": 0.1, "sgld_steps": 50, "step_size": 0.1, "step_end": 0.01, "noise_std": 0.1, "noise_end": 0.01}
    for name, steps in (("GMM", 40), ("GMM-std", 1)):
        s = CODE_SETTINGS[name]
        assert (s["lam"], s["sgld_steps"], s["step_size"], s["noise_std"]) == (10.0, steps, 1e-4, 5e-3)


def test_detector_name_override_and_raw_rows_differ():
    bb = _backbone()
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(60, 1, 8, 8)).astype(np.float32)
    y = np.arange(60) % 3
    norm = make_heat_detector(bb, "GMM", residual=False).fit(x, y)
    raw = make_heat_detector(bb, "GMM", residual=False, normalize=False, name="GMM (raw)").fit(x, y)
    assert raw.name == "GMM (raw)" and norm.name == "GMM"
    f = bb.extract(x).z
    ref = GMMPrior(reg=norm.inner.prior_.reg).fit(_l2(f.astype(np.float64)) * 7.0, y)   # scale-free: fit on 7·ẑ
    np.testing.assert_allclose(norm.score(x[:10]), ref(torch.as_tensor(f[:10], dtype=torch.float64)).numpy(),
                               rtol=1e-4, atol=1e-9)
    assert not np.allclose(raw.score(x), norm.score(x))


def test_benchmark_has_raw_and_normalised_gmm_rows_on_both_kinds():
    from ebm_ood.commands.benchmark.registry import METHODS, RunContext, methods_for
    from ebm_ood.data import get_dataset

    names = [m.name for m in methods_for("heat")]
    assert names.index("GMM") < names.index("GMM (raw)") and "HEAT-GMM (raw)" in names
    for n in ("GMM (raw)", "HEAT-GMM (raw)"):
        assert set(METHODS[n].kinds) == {"tabular", "image"} and METHODS[n].uses_labels
    ctx = RunContext(dataset=get_dataset("tabular"), seed=0, preset="quick", classifier=None)
    ctx.cache["backbone"] = _backbone()      # no training: the rows only need a backbone to be built
    raw, norm = METHODS["HEAT-GMM (raw)"].build(ctx), METHODS["HEAT-GMM"].build(ctx)
    assert raw.name == "HEAT-GMM (raw)" and not raw.inner.prior.normalize and raw.inner.residual
    assert norm.inner.prior.normalize and METHODS["GMM (raw)"].build(ctx).inner.residual is False
