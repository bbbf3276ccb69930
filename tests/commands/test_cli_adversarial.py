"""The command line under inputs a user plausibly gets wrong: a run's cells are never mixed with those of
changed input files (a ``--classifier`` file, a data folder), ``--dataset NAME`` follows one rule in the
benchmark and the experiments (an existing path wins), every training command locks its ``--out``, and bad
flags, paths and environment variables are clear errors before any training."""
import argparse
import os

import numpy as np
import pytest

from ebm_ood.commands.benchmark import runner
from ebm_ood.commands.cell_log import CellLog, CellResult, read_cells
from ebm_ood.commands.cli import main
from ebm_ood.commands.experiments import common, density_vs_norm, heat_lambda

CELLS = "results.cells.jsonl"
CLASSIFIER = """
from torch import nn
from ebm_ood.backbone import Backbone

def make():  # {tag}
    net = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 4))
    return Backbone(features=net[:-1], head=net[-1])
"""


def _fake_cells(monkeypatch, calls):
    """Cells without training, recording (method, seed) of every cell run."""
    def fake(spec, ctx):
        calls.append((spec.name, ctx.seed))
        row = {"auroc": 0.5, "fpr95": 0.5, "aupr_out_bal": 0.5}
        return CellResult(metrics={ood: row for ood in ctx.dataset.ood}, seconds=0.1)
    monkeypatch.setattr(runner, "run_cell", fake)


def _folder(root):
    """A valid tabular data folder: 40 samples, 5 features, classes 0..3, one OOD set."""
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(40, 5)).astype(np.float32)
    (root / "ood").mkdir(parents=True)
    np.savez(root / "train.npz", x=x, y=np.arange(40) % 4)
    np.savez(root / "test.npz", x=x[:8])
    np.savez(root / "ood" / "far.npz", x=x[:8] + 3)
    return root


def test_a_changed_data_folder_file_is_another_run_its_old_cells_moved_aside(tmp_path, monkeypatch):
    data, out = _folder(tmp_path / "mine"), tmp_path / "out"
    run = ["benchmark", "--quick", "--methods", "CE,MSP", "--dataset", str(data), "--seeds", "0", "--jobs", "1",
           "--out", str(out)]
    calls = []
    _fake_cells(monkeypatch, calls)
    assert main(run) == 0 and len(calls) == 2
    assert main(run) == 0 and len(calls) == 2           # unchanged: resumed, nothing run again
    arrays = dict(np.load(data / "train.npz"))
    arrays["x"][0, 0] += 0.25                            # one value changed; the folder is still valid
    np.savez(data / "train.npz", **arrays)
    assert main(run) == 0 and len(calls) == 4           # the old cells are not reused
    assert len(read_cells(str(out / (CELLS + ".1")))[1]) == 2   # ... and not lost
    header, cells, _ = read_cells(str(out / CELLS))
    assert len(cells) == 2 and str(data / "train.npz") in header["contents"]


def test_a_changed_classifier_file_is_another_run(tmp_path, monkeypatch):
    clf, out = tmp_path / "clf.py", tmp_path / "out"
    clf.write_text(CLASSIFIER.format(tag="v1"))
    run = ["benchmark", "--quick", "--methods", "MSP", "--dataset", "tabular", "--seeds", "0", "--jobs", "1",
           "--classifier", f"{clf}:make", "--out", str(out)]
    calls = []
    _fake_cells(monkeypatch, calls)
    assert main(run) == 0 and len(calls) == 1
    assert main(run) == 0 and len(calls) == 1
    clf.write_text(CLASSIFIER.format(tag="v2"))
    assert main(run) == 0 and len(calls) == 2
    assert (out / (CELLS + ".1")).exists()


def test_the_experiments_dataset_follows_the_benchmarks_rule(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "digits").mkdir()
    (tmp_path / "digits" / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="names both the built-in dataset and"):
        common.dataset_from_args(argparse.Namespace(dataset="digits"))
    (tmp_path / "digits" / "notes.txt").unlink()
    (tmp_path / "digits").rmdir()
    _folder(tmp_path / "digits")
    common.load_dataset.cache_clear()
    try:
        d = common.dataset_from_args(argparse.Namespace(dataset="digits"))
        assert d.kind == "tabular" and d.input_shape == (5,)  # the user's folder, not the built-in images
    finally:
        common.load_dataset.cache_clear()


@pytest.mark.parametrize("argv", [
    ["experiment", "heat-lambda", "--quick", "--dataset", "digits"],
    ["experiment", "density-vs-norm", "--quick", "--dataset", "tabular", "--methods", "CD"],
])
def test_every_experiment_refuses_a_second_run_into_its_out(tmp_path, monkeypatch, argv):
    monkeypatch.setattr(heat_lambda, "fit_method", lambda *a: pytest.fail("training started"))
    monkeypatch.setattr(density_vs_norm, "fit_method", lambda *a: pytest.fail("training started"))
    holder = CellLog(tmp_path / "other.cells.jsonl", {"flags": {}})
    holder.start()                                      # a run in progress in this folder
    try:
        with pytest.raises(SystemExit, match="another run is writing there now"):
            main(argv + ["--out", str(tmp_path)])
    finally:
        holder.close()
    assert sorted(os.listdir(tmp_path)) == ["other.cells.jsonl"]


def _no_training(monkeypatch):
    monkeypatch.setattr(runner, "run_cell", lambda *a, **k: pytest.fail("training started"))


@pytest.mark.parametrize("inside", ["", "ood", "ood/deeper"])
def test_out_is_never_a_data_folder_or_inside_one(tmp_path, monkeypatch, inside):
    data = _folder(tmp_path / "mine")
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    _no_training(monkeypatch)
    out = data / inside if inside else data
    with pytest.raises(SystemExit, match="--out .* the data folder .* choose another --out"):
        main(["benchmark", "--quick", "--methods", "CE", "--dataset", str(data), "--out", str(out)])
    with pytest.raises(SystemExit, match="--out .* the data folder"):
        main(["experiment", "supervision", "--quick", "--methods", "CD", "--dataset", str(data), "--out", str(out)])
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before


@pytest.mark.parametrize("flags, message", [
    (["--methods", ""], "--methods: expected comma-separated method names"),
    (["--methods", " , "], "--methods: expected comma-separated method names"),
    (["--methods", "MSP", "--classifier", ""], "--classifier: expected FILE.py:FUNCTION"),
    (["--threads", str(10 ** 9)], "--threads: expected at most 1024 threads"),
])
def test_empty_and_out_of_range_values_are_errors_not_defaults(tmp_path, monkeypatch, flags, message):
    _no_training(monkeypatch)
    with pytest.raises(SystemExit, match=message):
        main(["benchmark", "--quick", "--dataset", "tabular", "--out", str(tmp_path)] + flags)
    assert os.listdir(tmp_path) == []


def test_seeds_beyond_torchs_range_are_refused_by_the_flag(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        main(["benchmark", "--quick", "--methods", "CE", "--seeds", f"0,{2 ** 64}", "--out", str(tmp_path)])
    assert err.value.code == 2 and "--seeds: expected seeds below 2**63" in capsys.readouterr().err


def test_an_invalid_thread_count_in_the_environment_is_named(tmp_path, monkeypatch):
    _no_training(monkeypatch)
    monkeypatch.setenv("EBM_OOD_NUM_THREADS", "abc")
    with pytest.raises(SystemExit, match="EBM_OOD_NUM_THREADS: expected a positive integer"):
        main(["benchmark", "--quick", "--methods", "CE", "--dataset", "tabular", "--out", str(tmp_path)])


def test_an_empty_gamma_list_is_an_error_not_the_default_grid(tmp_path, monkeypatch):
    from ebm_ood.commands.experiments import gamma_sweep
    monkeypatch.setattr(gamma_sweep, "run_experiment", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(SystemExit, match="--gammas"):
        main(["experiment", "gamma-sweep", "--quick", "--gammas", "", "--out", str(tmp_path)])


def test_a_negative_bench_seed_is_a_flag_error(capsys):
    assert main(["bench", "detectors", "--seed", "-1"]) == 2
    assert "--seed must be >= 0" in capsys.readouterr().err


def test_prepare_names_the_size_flags():
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for flag in ("--size", "--grey-size"):
        r = subprocess.run([sys.executable, os.path.join(root, "data_scripts", "prepare.py"), "textures",
                            "--no-download", flag, "0"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and f"error: {flag}: expected a positive number of pixels" in r.stderr, r.stderr


def test_the_process_exits_2_with_one_line_for_a_flag_error(tmp_path):
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "ebm_ood", "benchmark", "--quick", "--jobs", "0", "--out",
                        str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip() == "error: --jobs: expected a positive integer, got 0"


@pytest.mark.parametrize("argv", [
    ["experiment", "supervision", "--gamma", "inf"],
    ["experiment", "smoothness", "--gamma", "inf"],
    ["experiment", "samples", "--gamma", "inf"],
    ["experiment", "samples", "--noise", "inf"],
])
def test_an_infinite_weight_is_a_flag_error_not_failed_cells(tmp_path, argv):
    with pytest.raises(SystemExit, match="finite"):
        main(argv + ["--quick", "--out", str(tmp_path)])
    assert os.listdir(tmp_path) == []
