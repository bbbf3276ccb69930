"""``ebm-ood experiment heat-diagnose``: its measurements against independent numpy / scipy computations."""
import json

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree
from scipy.special import logsumexp

from ebm_ood.commands.cli import main
from ebm_ood.commands.experiments.heat_diagnose import diagnose_hybrid, nn_distance
from ebm_ood.heat.hybrid import HybridEnergy, ResidualMLP, heat_config, negative_chains
from ebm_ood.heat.priors import GMMPrior


def _l2(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def _gmm_energy(f_fit, y, f, t=1e3):
    """-logsumexp_c(-½ d²_c) / T on L2-normalised features, the class-Gaussian fitted on ``f_fit``."""
    means = np.stack([f_fit[y == k].mean(0) for k in np.unique(y)])
    cov = np.cov((f_fit - means[y]).T, bias=True)
    cov = cov + 1e-6 * np.trace(cov) / len(cov) * np.eye(len(cov))
    diff = f[:, None, :] - means[None]
    d2 = np.einsum("ncd,de,nce->nc", diff, np.linalg.inv(cov), diff)
    return -logsumexp(-0.5 * d2, axis=1) / t


def test_nn_distance_matches_a_kd_tree():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 6)), rng.normal(size=(2000, 6))
    np.testing.assert_allclose(nn_distance(a, b, chunk=77), cKDTree(b).query(a)[0], rtol=1e-10)


def test_diagnose_hybrid_matches_numpy():
    rng = np.random.default_rng(1)
    y = np.arange(400) % 2
    z = (rng.normal(size=(2, 5)) * 3 + 6)[y] + rng.normal(size=(400, 5))
    z_train, z_test, y_train = z[:300], z[300:], y[:300]
    ood = {"far": rng.normal(size=(50, 5)) * 4, "near": z_test[:40] + rng.normal(size=(40, 5))}
    prior = GMMPrior().fit(z_train, y_train)
    torch.manual_seed(0)
    res = ResidualMLP(5, width=16)
    torch.nn.init.normal_(res.out.weight, std=0.5)
    res.set_input_stats(_l2(z_train).astype(np.float32))
    hybrid = HybridEnergy(prior, res, input_noise=0.0).eval()
    cfg = heat_config("quick", step_size=1e-3, step_end=1e-4)
    got = diagnose_hybrid(hybrid, cfg, z_train, z_test, ood, n_negatives=200, seed=5)

    f_train, f_test = _l2(z_train), _l2(z_test)
    e_theta = lambda a: res(torch.as_tensor(_l2(a), dtype=torch.float32)).detach().double().numpy()
    assert got["id_nn"] == pytest.approx(np.median(cKDTree(f_train).query(f_test)[0]), rel=1e-6)
    assert got["feature_spread"] == pytest.approx(np.sqrt(np.trace(np.cov(f_train.T, bias=True))), rel=1e-5)
    assert got["prior_id_std"] == pytest.approx(_gmm_energy(f_train, y_train, f_train).std(), rel=1e-4)
    assert got["residual_id_std"] == pytest.approx(e_theta(z_train).std(), rel=1e-5)
    assert got["spread_ratio"] == pytest.approx(got["residual_id_std"] / got["prior_id_std"], rel=1e-12)
    for name, a in (("id_test", z_test), *ood.items()):
        assert got["residual_mean"][name] == pytest.approx(e_theta(a).mean(), rel=1e-5, abs=1e-7)
        assert got["residual_negative_fraction"][name] == pytest.approx((e_theta(a) < 0).mean())
        want_q = _gmm_energy(f_train, y_train, _l2(a)).mean()
        assert got["prior_mean"][name] == pytest.approx(want_q, rel=1e-4)
    z0, zt = (c.numpy().astype(np.float64) for c in negative_chains(hybrid, 200, cfg, torch.Generator().manual_seed(5)))
    assert got["move"] == pytest.approx(np.median(np.linalg.norm(_l2(zt) - _l2(z0), axis=1)), rel=1e-5)
    assert got["move"] > 0
    assert got["neg_end_nn"] == pytest.approx(np.median(cKDTree(f_train).query(_l2(zt))[0]), rel=1e-5)
    assert got["neg_start_nn"] == pytest.approx(np.median(cKDTree(f_train).query(_l2(z0))[0]), rel=1e-5)
    assert got["residual_mean"]["negatives"] == pytest.approx(e_theta(zt).mean(), rel=1e-5, abs=1e-7)


def _fpr95(s_id, s_ood):
    """FPR at 95 % TPR (ID positive, higher score = OOD): OOD scores at or below the ID 95th percentile."""
    return 100 * np.mean(s_ood <= np.quantile(s_id, 0.95))


def test_cli_quick_run_reports_the_detectors_fpr95_and_writes_its_tables(tmp_path):
    """The JSON's per-seed FPR95 equal a numpy FPR95 of the same detectors fitted again (same seed)."""
    from ebm_ood.commands.benchmark.registry import RunContext, heat_part
    from ebm_ood.data import get_dataset

    out = tmp_path / "hd"
    assert main(["experiment", "heat-diagnose", "--quick", "--priors", "GMM", "--negatives", "64",
                 "--out", str(out)]) == 0
    data = json.loads((out / "heat-diagnose.json").read_text())
    row = data["priors"]["GMM"][0]
    d = get_dataset("digits")
    ctx = RunContext(dataset=d, seed=0, preset="quick")
    names = list(row["per_set"])
    for key, residual in (("prior", False), ("hybrid", True)):
        det = heat_part(ctx, "GMM", residual).fit(d.x_train, d.y_train)
        s_id = det.score(d.x_test)
        fprs = [_fpr95(s_id, det.score(d.ood[o].x)) for o in names]
        for o, f in zip(names, fprs):
            assert row["per_set"][o][key] == pytest.approx(f, abs=1e-9)
        assert row[f"fpr95_{key}"] == pytest.approx(np.mean(fprs), abs=1e-9)
    md = (out / "heat-diagnose.md").read_text()
    assert f"{row['fpr95_prior']:.2f} → {row['fpr95_hybrid']:.2f}" in md
    with pytest.raises(SystemExit, match=r"--priors: GMM-std not among .*EL, GMM, GMM \(raw\)"):
        main(["experiment", "heat-diagnose", "--dataset", "tabular", "--priors", "GMM-std", "--out", str(tmp_path / "x")])
