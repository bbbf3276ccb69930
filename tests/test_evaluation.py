"""ebm_ood.evaluation.evaluate: metrics against scikit-learn on the same scores, the Markdown against the
benchmark's own table functions and report, and every bad input named."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from ebm_ood.commands.benchmark.registry import MethodSpec
from ebm_ood.commands.benchmark.report import render_markdown
from ebm_ood.tables import elflein_table, heat_table
from ebm_ood.plumbing.errors import NotFittedError
from ebm_ood.evaluation import Evaluation, evaluate
from ebm_ood.metrics import METRICS
from ebm_ood.posthoc import KNN, Mahalanobis


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    x = (rng.normal(size=(300, 8)) + 3.0 * y[:, None]).astype(np.float32)
    x_id = (rng.normal(size=(150, 8)) + 3.0 * rng.integers(0, 2, 150)[:, None]).astype(np.float32)
    ood = {"near": (rng.normal(size=(90, 8)) + 1.5).astype(np.float32),
           "far": (rng.normal(size=(120, 8)) * 3.0 - 4.0).astype(np.float32),
           "noise": rng.uniform(-8, 8, size=(60, 8)).astype(np.float32)}
    return x, y, x_id, ood


@pytest.fixture(scope="module")
def fitted():
    x, y, x_id, ood = _data()
    dets = {"knn": KNN(k=5).fit(x), "maha": Mahalanobis().fit(x, y)}
    return dets, x_id, ood


def _sklearn_metrics(s_id: np.ndarray, s_ood: np.ndarray) -> dict:
    """Every key of all_metrics, computed with scikit-learn / numpy directly (OOD label 1)."""
    def pair(a, b):
        label = np.r_[np.zeros(len(a)), np.ones(len(b))]
        s = np.r_[a, b]
        return {"auroc": roc_auc_score(label, s), "aupr_out": average_precision_score(label, s),
                "aupr_in": average_precision_score(1 - label, -s)}
    full = pair(s_id, s_ood)
    n = min(len(s_id), len(s_ood))                       # the balanced protocol on sets below 10,112
    bal = pair(s_id[:n], s_ood[:n])
    t = np.sort(s_id)[int(np.floor(0.95 * (len(s_id) - 1)))]
    t = t + (0.95 * (len(s_id) - 1) % 1) * (np.sort(s_id)[int(np.ceil(0.95 * (len(s_id) - 1)))] - t)
    return {**full, "fpr95": float(np.sum(s_ood <= t)) / len(s_ood), "aupr_out_bal": bal["aupr_out"],
            "aupr_in_bal": bal["aupr_in"], "auroc_bal": bal["auroc"], "n_id": len(s_id), "n_ood": len(s_ood)}


def test_metrics_equal_sklearn_on_the_same_scores(fitted):
    dets, x_id, ood = fitted
    ev = evaluate(dets, x_id, ood)
    assert list(ev.metrics) == ["knn", "maha"]
    for name, det in dets.items():
        s_id = det.score(x_id)
        assert list(ev.metrics[name]) == list(ood)
        np.testing.assert_array_equal(ev.scores[name]["id"], s_id)
        for set_name, x_ood in ood.items():
            got, want = ev.metrics[name][set_name], _sklearn_metrics(s_id, det.score(x_ood))
            assert set(got) == set(METRICS)
            for key in METRICS:
                assert got[key] == pytest.approx(want[key], abs=1e-12), (name, set_name, key)


def test_single_detector_row_is_its_name_and_tensors_equal_numpy(fitted):
    dets, x_id, ood = fitted
    ev_np = evaluate(dets["knn"], x_id, ood)
    ev_t = evaluate(dets["knn"], torch.from_numpy(x_id), {k: torch.from_numpy(v) for k, v in ood.items()})
    assert list(ev_np.metrics) == ["KNN"]
    assert ev_t.metrics == ev_np.metrics


def test_one_shot_batch_iterables_serve_every_row(fitted):
    dets, x_id, ood = fitted
    batches = lambda a: (torch.from_numpy(a[i:i + 40]) for i in range(0, len(a), 40))  # noqa: E731
    ev = evaluate(dets, batches(x_id), {k: batches(v) for k, v in ood.items()})
    assert ev.metrics == evaluate(dets, x_id, ood).metrics


def test_names_select_and_order_the_sets(fitted):
    dets, x_id, ood = fitted
    ev = evaluate(dets["knn"], x_id, ood, names=["noise", "near"])
    assert list(ev.metrics["KNN"]) == ["noise", "near"]
    assert list(ev.groups) == ["noise", "near"]


def _with_std(metrics: dict) -> dict:
    """The CLI's aggregated rows of a single seed."""
    return {m: {s: {**row, **{f"{k}_std": 0.0 for k in row}, "seeds": 1} for s, row in per.items()}
            for m, per in metrics.items()}


def test_markdown_is_the_benchmark_tables_for_the_same_numbers(fitted):
    dets, x_id, ood = fitted
    groups = {"near": "natural", "far": "natural", "noise": "non-natural"}
    ev = evaluate(dets, x_id, ood, groups=groups)
    results = _with_std(ev.metrics)
    md = ev.markdown()
    assert elflein_table(results, groups) in md
    assert heat_table(results, groups) in md
    assert ev.markdown("auroc").count(elflein_table(results, groups, "auroc")) == 1
    assert "counted as natural" not in md and "±" not in md          # one evaluation: values alone
    cell = f"{100 * ev.metrics['maha']['noise']['fpr95']:.1f} / {100 * ev.metrics['maha']['noise']['auroc']:.1f}"
    assert cell in md.split("HEAT Table 1 style")[1]
    # the CLI's report renders the very same table blocks for these results
    specs = [MethodSpec(name, build=lambda ctx: None, suites=("elflein", "heat")) for name in dets]
    cli = render_markdown({"mine": results}, {"mine": {n: 0.0 for n in dets}}, {"mine": groups}, specs,
                          preset="default", seeds=[0], metric="aupr_out_bal", total_seconds=0.0)
    for block in (elflein_table(results, groups), heat_table(results, groups)):
        assert block in cli and block in md


def test_default_groups_are_natural_and_said_so(fitted):
    dets, x_id, ood = fitted
    ev = evaluate(dets["maha"], x_id, ood)
    assert ev.groups == {"near": "natural", "far": "natural", "noise": "natural"} and not ev.groups_given
    md = ev.markdown()
    assert "No groups given: every OOD set is counted as natural" in md
    assert "(non-nat.)" not in md.split("\n")[2]
    assert "noise (nat.)" in md


def test_other_tags_stay_in_metrics_but_leave_the_tables(fitted):
    dets, x_id, ood = fitted
    ev = evaluate(dets["knn"], x_id, ood, groups={"near": "natural", "far": "non-natural", "noise": "smoothness"})
    assert "noise" in ev.metrics["KNN"]
    md = ev.markdown()
    assert "noise FPR95" not in md and "noise (nat.)" not in md
    assert "Not in the tables (neither natural nor non-natural): noise (smoothness)." in md


def test_json_round_trip(fitted):
    dets, x_id, ood = fitted
    ev = evaluate(dets, x_id, ood, groups={"near": "natural", "far": "non-natural", "noise": "non-natural"})
    d = json.loads(ev.to_json())
    assert d == ev.to_dict()
    assert d["metrics"]["maha"]["far"]["auroc"] == ev.metrics["maha"]["far"]["auroc"]
    back = Evaluation.from_dict(d)
    assert back.metrics == ev.metrics and back.markdown() == ev.markdown()
    with pytest.raises(ValueError, match=r"d: expected the keys 'metrics' and 'groups'.*missing \['groups'\]"):
        Evaluation.from_dict({"metrics": {}})


def test_bad_inputs_name_the_argument(fitted):
    dets, x_id, ood = fitted
    with pytest.raises(NotFittedError, match=r"detector: KNN is not fitted yet"):
        evaluate(KNN(), x_id, ood)
    with pytest.raises(NotFittedError, match=r"detector\['fresh'\]: Mahalanobis is not fitted yet"):
        evaluate({"ok": dets["knn"], "fresh": Mahalanobis()}, x_id, ood)
    with pytest.raises(ValueError, match=r"detector: expected .* non-empty dict .* got an empty dict"):
        evaluate({}, x_id, ood)
    with pytest.raises(TypeError, match=r"detector: expected a fitted detector \(with fit/score\), got str"):
        evaluate("knn", x_id, ood)
    with pytest.raises(ValueError, match=r"ood_data: expected a dict .* at least one OOD set, got an empty dict"):
        evaluate(dets, x_id, {})
    with pytest.raises(TypeError, match=r"ood_data: expected a dict \{name: OOD data\}, got ndarray"):
        evaluate(dets, x_id, ood["near"])
    with pytest.raises(ValueError, match=r"ood_data\['bad'\]: x: expected samples of shape \(8,\) \(as in fit\), "
                                         r"got \(5,\)"):
        evaluate(dets, x_id, {**ood, "bad": np.zeros((4, 5), np.float32)})
    with pytest.raises(ValueError, match=r"id_data: x: expected samples of shape \(8,\) \(as in fit\), got \(3,\)"):
        evaluate(dets, x_id[:, :3], ood)
    with pytest.raises(ValueError, match=r"id_data: expected at least one sample to score, got scores of shape \(0,\)"):
        evaluate(dets, x_id[:0], ood)
    with pytest.raises(ValueError, match=r"groups: no group for the OOD set\(s\) far, noise"):
        evaluate(dets, x_id, ood, groups={"near": "natural"})
    with pytest.raises(ValueError, match=r"groups: expected 'natural', 'non-natural' or another non-empty tag"):
        evaluate(dets, x_id, ood, groups={"near": "natural", "far": "", "noise": "natural"})
    with pytest.raises(ValueError, match=r"names: expected a non-empty list of keys of ood_data .* unknown: svhn"):
        evaluate(dets, x_id, ood, names=["near", "svhn"])
    with pytest.raises(ValueError, match=r"tables: expected a non-empty subset"):
        evaluate(dets, x_id, ood).markdown(tables=("elflein", "table9"))
