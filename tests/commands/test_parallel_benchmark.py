"""``--jobs``: (dataset, seed) units in worker processes give exactly the serial run's results."""
import json

import pytest

from ebm_ood.commands.benchmark.registry import MethodSpec, methods_for
from ebm_ood.commands.benchmark.runner import run_benchmark
from ebm_ood.commands.cli import main

METHODS = ["CE", "MSP", "CD"]      # a trained classifier shared within a seed, a post-hoc score, an SGLD-trained EBM


def test_parallel_units_equal_the_serial_run(tmp_path):
    out = tmp_path / "parallel"
    assert main(["benchmark", "--quick", "--methods", ",".join(METHODS), "--dataset", "tabular", "--seeds", "0,1",
                 "--jobs", "2", "--out", str(out)]) == 0
    serial, _ = run_benchmark(["tabular"], methods_for("all", METHODS), [0, 1], preset="quick", log=lambda m: None)
    assert json.loads((out / "results.json").read_text())["results"] == serial
    lines = [json.loads(line) for line in (out / "results.cells.jsonl").read_text().splitlines()[1:]]
    assert sorted((c["seed"], c["method"]) for c in lines) == sorted((s, m) for s in (0, 1) for m in METHODS)


def test_parallel_needs_registered_methods_and_positive_jobs(tmp_path):
    spec = methods_for("all", ["MSP"])[0]
    custom = MethodSpec(name="mine", build=spec.build, suites=spec.suites, uses_labels=spec.uses_labels)
    with pytest.raises(ValueError, match="mine is not in METHODS"):
        run_benchmark(["tabular"], [custom], [0, 1], preset="quick", log=lambda m: None, jobs=2)
    with pytest.raises(ValueError, match="jobs"):
        run_benchmark(["tabular"], [spec], [0], preset="quick", log=lambda m: None, jobs=0)
    with pytest.raises(SystemExit, match="--jobs"):
        main(["benchmark", "--quick", "--methods", "CE", "--jobs", "0", "--out", str(tmp_path)])


def test_units_keep_the_seed_s_shared_methods_together_and_standalone_ones_apart():
    from types import SimpleNamespace

    from ebm_ood.commands.benchmark.runner import _units

    specs = methods_for("all", ["CE", "MSP", "CD", "GMM-std", "VERA"])
    named = [("tabular", SimpleNamespace(kind="tabular")), ("digits", SimpleNamespace(kind="image"))]
    got = [(src, seed, names) for src, _, seed, names in _units(named, specs, [0, 1])]
    per_seed = lambda src, seed, shared: [(src, seed, shared), (src, seed, ["CD"]), (src, seed, ["VERA"])]
    assert got == (per_seed("digits", 0, ["CE", "MSP", "GMM-std"]) + per_seed("digits", 1, ["CE", "MSP", "GMM-std"])
                   + per_seed("tabular", 0, ["CE", "MSP"]) + per_seed("tabular", 1, ["CE", "MSP"]))


def test_the_ce_row_is_the_seed_s_shared_classifier():
    from ebm_ood.commands.benchmark.registry import RunContext, shared_classifier
    from ebm_ood.commands.benchmark.runner import fit_method
    from ebm_ood.data import get_dataset

    ctx = RunContext(dataset=get_dataset("tabular"), seed=0, preset="quick")
    ce = fit_method(methods_for("all", ["CE"])[0], ctx)
    assert ce is shared_classifier(ctx) and ce.fitted_        # trained once, for the CE row and the backbone
