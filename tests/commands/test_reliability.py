"""Nothing lost at the end of a run: every output path is checked before training, every finished cell is
kept as it completes, result headers record the CPU thread count; concurrent runs share an --out folder."""
import json
import os
import threading

import pytest
import torch

from ebm_ood.commands.benchmark import runner
from ebm_ood.commands.cli import EXPERIMENTS, main

NO_TRAINING = "training started"


def _no_training(monkeypatch):
    monkeypatch.setattr(runner, "run_cell", lambda *a, **k: pytest.fail(NO_TRAINING))
    monkeypatch.setattr(runner, "fit_method", lambda *a, **k: pytest.fail(NO_TRAINING))


@pytest.mark.parametrize("blocked", ["results.json", "results.md", "results.cells.jsonl"])
def test_benchmark_output_that_is_a_folder_fails_before_training(tmp_path, monkeypatch, blocked):
    _no_training(monkeypatch)
    (tmp_path / blocked).mkdir()
    with pytest.raises(SystemExit, match=f"{blocked}' is a folder"):
        main(["benchmark", "--quick", "--methods", "CE", "--out", str(tmp_path)])


@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS))
def test_experiment_outputs_that_are_folders_fail_before_training(tmp_path, monkeypatch, experiment):
    _no_training(monkeypatch)
    stem = EXPERIMENTS[experiment].NAME
    for ext in ("json", "md", "png", "cells.jsonl"):
        out = tmp_path / ext
        (out / f"{stem}.{ext}").mkdir(parents=True)
        with pytest.raises(SystemExit, match=rf"{stem}\.{ext}' is a folder"):
            main(["experiment", experiment, "--quick", "--out", str(out)])


def test_a_failure_after_training_keeps_every_finished_cell(tmp_path, monkeypatch):
    from ebm_ood.commands.benchmark import report

    args = ["benchmark", "--quick", "--methods", "CE,MSP", "--dataset", "tabular", "--seeds", "0,1", "--jobs", "1"]
    assert main(args + ["--out", str(tmp_path / "ok")]) == 0
    ok = json.loads((tmp_path / "ok" / "results.json").read_text())["results"]["tabular"]

    def table_crash(*a, **k):
        raise RuntimeError("late failure")

    monkeypatch.setattr(report, "render_markdown", table_crash)  # fails after every cell has trained
    with pytest.raises(RuntimeError, match="late failure"):
        main(args + ["--out", str(tmp_path / "late")])
    lines = (tmp_path / "late" / "results.cells.jsonl").read_text().splitlines()
    header, cells = json.loads(lines[0])["header"], [json.loads(l) for l in lines[1:]]
    assert header["threads"] == torch.get_num_threads() and header["flags"]["methods"] == "CE,MSP"
    assert sorted((c["method"], c["seed"]) for c in cells) == [("CE", 0), ("CE", 1), ("MSP", 0), ("MSP", 1)]
    for method in ("CE", "MSP"):  # the kept cells hold the numbers the finished run reported
        per_seed = [c["metrics"] for c in cells if c["method"] == method]
        for ood, row in ok[method].items():
            mean = sum(m[ood]["auroc"] for m in per_seed) / 2
            assert row["auroc"] == pytest.approx(mean, abs=1e-12)


def test_result_headers_record_the_thread_count(tmp_path, monkeypatch):
    from ebm_ood.commands.benchmark.runner import CellResult

    monkeypatch.setattr(runner, "run_cell", lambda spec, ctx: CellResult(error="RuntimeError: skipped"))
    try:
        for n in (1, 2):
            out = tmp_path / str(n)
            assert main(["benchmark", "--quick", "--methods", "CE", "--dataset", "tabular", "--threads", str(n),
                         "--seeds", "1", "--jobs", "1", "--out", str(out)]) == 1  # every cell failed
            header = json.loads((out / "results.cells.jsonl").read_text().splitlines()[0])["header"]
            assert header["threads"] == n
            assert f"Computed with {n} CPU thread" in (out / "results.md").read_text()
    finally:
        torch.set_num_threads(1)


def test_experiment_json_records_the_thread_count(tmp_path):
    from ebm_ood.commands.experiments.output import write_results
    from ebm_ood.commands.flags import cpu_kind

    torch.set_num_threads(2)
    try:
        md, js = write_results(str(tmp_path), "x", "# table", {"a": 1})
    finally:
        torch.set_num_threads(1)
    assert json.loads(open(js).read()) == {"a": 1, "threads": 2, **cpu_kind()}
    assert open(md).read().rstrip().endswith("one seed reproduces these numbers exactly for this CPU kind and "
                                             "thread count.")


def test_concurrent_out_folder_checks_never_collide(tmp_path):
    from ebm_ood.commands.flags import check_out_dir

    errors = []

    def worker():
        for _ in range(100):
            try:
                check_out_dir(str(tmp_path))
            except BaseException as err:  # SystemExit included
                errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and os.listdir(tmp_path) == []


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o027, 0o077])
def test_prepared_dataset_folders_and_files_follow_the_umask(tmp_path, umask):
    import numpy as np

    from ebm_ood.data.store import write_dataset

    old = os.umask(umask)
    try:
        x, y = np.zeros((3, 2), np.float32), np.zeros(3, np.int64)
        target = write_dataset("toy", {"train": (x, y, {})}, {}, tmp_path)
        write_dataset("toy", {"train": (x, y, {})}, {}, tmp_path)  # replacing an existing folder too
    finally:
        os.umask(old)
    assert os.stat(target).st_mode & 0o777 == 0o777 & ~umask
    for f in os.listdir(target):
        assert os.stat(target / f).st_mode & 0o777 == 0o666 & ~umask, f
    assert sorted(os.listdir(tmp_path)) == ["toy"]
