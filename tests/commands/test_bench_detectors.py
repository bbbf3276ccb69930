"""``ebm-ood bench detectors``: the timing harness and its report on a tiny configuration."""
import argparse
import importlib.util
import json

import numpy as np

from ebm_ood.commands.speed import detectors as bench

DETECTORS = ["MSP", "MaxLogit", "ODIN (head only)", "Mahalanobis", "SSD+", "KNN", "ViM", "DICE", "ReAct",
             "KNN peer: sklearn brute"] + (["KNN peer: faiss IndexFlatIP"] if importlib.util.find_spec("faiss") else [])
HEAT_PARTS = ["HEAT: EL prior E_q", "HEAT: GMM prior E_q (L2-normalised features)", "HEAT: GMM prior E_q (raw features)",
              "HEAT: residual MLP E_θ forward", "HEAT: hybrid E_q + E_θ (GMM)",
              "HEAT: composition Eq. 7 of 3 standardised energies", "HEAT: full score (3 hybrids + composition)"]


def test_synthetic_features_are_reproducible_and_shaped():
    cfg = bench.BenchConfig(n_train=50, n_test=20, dim=8, classes=3)
    a, b = bench.synthetic_features(cfg), bench.synthetic_features(cfg)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    z_train, y_train, z_test, w, bias = a
    assert z_train.shape == (50, 8) and z_test.shape == (20, 8) and w.shape == (3, 8) and bias.shape == (3,)
    assert z_train.dtype == np.float32 and z_train.min() >= 0 and set(np.unique(y_train)) <= {0, 1, 2}


def test_run_bench_reports_every_detector_with_ratios():
    cfg = bench.BenchConfig(n_train=120, n_test=50, dim=16, classes=3, repeats=3)
    result = bench.run_bench(cfg)
    names = [r["name"] for r in result["rows"]]
    assert names[: len(DETECTORS)] == DETECTORS
    msp = result["rows"][0]
    assert msp["ratio_to_msp"] == 1.0                  # MSP / MSP in every round
    for r in result["rows"]:
        assert np.isclose(r["ms_per_10k"], r["seconds"] * 1e7 / cfg.n_test)
        assert 0 < r["ratio_q1"] <= r["ratio_to_msp"] <= r["ratio_q3"]
    assert names[len(DETECTORS):] == HEAT_PARTS
    md = bench.render_markdown(result)
    assert all(f"| {n} |" in md for n in names)


def test_cli_entry_point_json_and_bad_arguments(capsys):
    p = argparse.ArgumentParser()
    bench.add_arguments(p)
    assert bench.run(p.parse_args("--n-train 60 --n-test 20 --dim 8 --classes 3 --repeats 1 --json".split())) == 0
    out = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in out["rows"]} >= set(DETECTORS)
    assert bench.run(p.parse_args(["--repeats", "0"])) == 2
    assert "--repeats" in capsys.readouterr().err


def test_knn_peers_compute_our_knn_score():
    cfg = bench.BenchConfig(n_train=200, n_test=40, dim=12, classes=3)
    z_train, _, z_test, _, _ = bench.synthetic_features(cfg)
    ours = bench.KNN(k=7).fit(z_train).score(z_test)
    for name, peer in bench.knn_peer_timers(z_train, z_test, k=7).items():
        np.testing.assert_allclose(peer(), ours, rtol=1e-5, atol=1e-6, err_msg=name)


def test_gaussian_fit_peer_computes_our_fit():
    cfg = bench.BenchConfig(n_train=300, n_test=10, dim=12, classes=3)
    z_train, y_train, _, _, _ = bench.synthetic_features(cfg)
    ours, peer = bench.gaussian_fit_timers(z_train, y_train, batch_size=64).values()
    fitted, (means, cov) = ours(), peer()
    np.testing.assert_allclose(fitted.means.numpy(), means, rtol=1e-10)
    np.testing.assert_allclose(fitted.cov.numpy(), cov, rtol=1e-8, atol=1e-10)


def test_fit_memory_row_reports_time_and_memory():
    cfg = bench.BenchConfig(n_train=400, n_test=10, dim=16, classes=3)
    row = bench._fit_in_fresh_process(cfg, "fit peer: np.cov", threads=1)
    assert row["name"] == "fit peer: np.cov" and row["seconds"] > 0
    assert row["peak_mb"] >= row["added_mb"] >= 0 and np.isclose(row["features_mb"], 400 * 16 * 4 / 2**20)
