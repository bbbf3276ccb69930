"""The benchmark runner: aggregation arithmetic, failed cells, determinism, tables."""
import json

import numpy as np
import pytest

from ebm_ood.commands.benchmark.registry import MethodSpec, methods_for
from ebm_ood.commands.benchmark.runner import CellResult, aggregate, run_benchmark
from ebm_ood.tables import elflein_table, heat_table
from ebm_ood.commands.cli import main
from ebm_ood.detector import Detector
from ebm_ood.plumbing.errors import DivergenceError


class _Diverges(Detector):
    name = "boom"

    def _fit(self, x, y):
        raise DivergenceError("boom", 7, "non-finite loss (main = nan)", {"loss_main": 1.5})


class _Norm(Detector):
    """Score = squared distance to the training mean (a tiny real detector)."""
    name = "norm"

    def _fit(self, x, y):
        self.mu_ = x.reshape(len(x), -1).mean(0)

    def _score(self, x):
        return ((x.reshape(len(x), -1) - self.mu_) ** 2).sum(1)


def test_aggregate_mean_and_std():
    cells = [CellResult(metrics={"a": {"auroc": v, "aupr_in": v, "aupr_out": v, "fpr95": 1 - v}}) for v in (0.2, 0.4, 0.9)]
    row = aggregate(cells)["a"]
    assert row["seeds"] == 3 and row["auroc"] == pytest.approx(np.mean([0.2, 0.4, 0.9]))
    assert row["auroc_std"] == pytest.approx(np.std([0.2, 0.4, 0.9]))
    assert aggregate([cells[0], CellResult(error="DivergenceError: x")]) == {"error": "DivergenceError: x"}


def test_failed_method_becomes_a_cell_and_the_run_goes_on():
    specs = [MethodSpec("Boom", lambda ctx: _Diverges()), MethodSpec("Norm", lambda ctx: _Norm())]
    res, times = run_benchmark(["tabular"], specs, [0], log=lambda m: None)
    assert res["tabular"]["Boom"]["error"].startswith("DivergenceError: boom diverged at step 7")
    assert 0.0 <= res["tabular"]["Norm"]["noise"]["auroc"] <= 1.0
    # constant OOD far from the [0, 1] data: the distance detector must find it easily
    assert res["tabular"]["Norm"]["constant"]["auroc"] > 0.9
    groups = {"held-out": "natural", "noise": "non-natural", "constant": "non-natural"}
    table = elflein_table(res["tabular"], groups)
    assert "failed: DivergenceError" in table and "| Norm |" in table
    assert "| Norm |" in heat_table(res["tabular"], groups)
    # the default is the authors' protocol: its cells are aupr_out_bal, recomputed here on truncated sets
    from ebm_ood.data import get_dataset
    from sklearn.metrics import average_precision_score

    d, det = get_dataset("tabular"), _Norm().fit(get_dataset("tabular").x_train)
    s_id, s_ood = det.score(d.x_test), det.score(d.ood["held-out"].x)
    n = min(len(s_id), len(s_ood))
    ap = average_precision_score(np.r_[np.zeros(n), np.ones(n)], np.r_[s_id[:n], s_ood[:n]])
    assert f"| Norm | {100 * ap:.1f} |" in table  # one seed: the mean alone
    two_seeds = {m: {o: {**r, "seeds": 2} for o, r in res.items()} for m, res in res["tabular"].items() if m == "Norm"}
    assert f"| Norm | {100 * ap:.1f} ± 0.0 |" in elflein_table(two_seeds, groups)
    from ebm_ood.metrics import chance_aupr  # checked against brute force in test_metrics.py

    assert table.splitlines()[-1] == f"Chance level (random scores): {100 * chance_aupr(n, n):.1f} % on every set."
    full = elflein_table(res["tabular"], groups, "aupr_in")  # ID positive on the unbalanced sets
    assert "held-out" in full.splitlines()[-1] and "50.0 % on every set" not in full


def test_quick_benchmark_is_bit_identical_for_one_seed(tmp_path):
    outs = []
    for k in range(2):
        out = tmp_path / f"run{k}"
        main(["benchmark", "--quick", "--dataset", "tabular", "--seeds", "1", "--out", str(out)])
        outs.append((out / "results.json").read_bytes())
    assert outs[0] == outs[1]
    main(["benchmark", "--quick", "--dataset", "tabular", "--seeds", "1,2", "--out", str(tmp_path / "other")])
    other = json.loads((tmp_path / "other" / "results.json").read_text())["results"]
    first = json.loads(outs[0])["results"]
    assert not [m for m, r in first["tabular"].items() if "error" in r]  # every quick cell trains
    some_method = next(iter(first["tabular"]))
    assert other["tabular"][some_method] != first["tabular"][some_method]


def test_suites_select_methods():
    names_heat = {m.name for m in methods_for("heat")}
    names_ell = {m.name for m in methods_for("elflein")}
    assert "CE" in names_ell and "CE" not in names_heat
    assert {m.name for m in methods_for("all")} == names_heat | names_ell
    with pytest.raises(ValueError, match="suite"):
        methods_for("nope")
    # explicit names: from any suite, in the given order, each once (case-insensitive)
    assert [m.name for m in methods_for("heat", ["ce", "GMM", "CE"])] == ["CE", "GMM"]


def test_loaded_datasets_run_like_their_names():
    from ebm_ood.data import get_dataset

    specs = [MethodSpec("Norm", lambda ctx: _Norm())]
    by_name = run_benchmark(["tabular"], specs, [0, 1], log=lambda m: None)[0]
    loaded = run_benchmark([get_dataset("tabular")], specs, [0, 1], log=lambda m: None)[0]
    assert by_name == loaded and set(by_name["tabular"]["Norm"]) == {"held-out", "noise", "constant"}
