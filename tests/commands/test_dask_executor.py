"""``--executor dask`` on a real local Dask cluster (worker processes, one task thread each): results
byte-identical to ``--jobs 1``, a killed worker fails only its unit's cells, and ``import ebm_ood`` never
imports dask. Dask distributed comes with the ``test`` extra (setup.py)."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import distributed  # noqa: F401  (the test extra installs it; a missing install fails here, not silently)

from ebm_ood.commands.benchmark.registry import methods_for
from ebm_ood.commands.benchmark.runner import run_benchmark
from ebm_ood.commands.cli import main

ROOT = Path(__file__).resolve().parents[2]
RUN = ["benchmark", "--quick", "--methods", "CE,MSP,CD", "--dataset", "tabular", "--seeds", "0,1"]


def test_dask_results_are_byte_identical_to_jobs_1_and_resume_across_executors(tmp_path, capsys):
    dask_out, serial_out = tmp_path / "dask", tmp_path / "serial"
    assert main([*RUN, "--executor", "dask", "--jobs", "2", "--out", str(dask_out)]) == 0
    assert "local Dask cluster of 2 worker process(es)" in capsys.readouterr().err
    assert main([*RUN, "--jobs", "1", "--out", str(serial_out)]) == 0
    assert (dask_out / "results.json").read_bytes() == (serial_out / "results.json").read_bytes()
    lines = [json.loads(line) for line in (dask_out / "results.cells.jsonl").read_text().splitlines()[1:]]
    assert sorted((c["seed"], c["method"]) for c in lines) == sorted((s, m) for s in (0, 1) for m in
                                                                     ("CE", "MSP", "CD"))
    capsys.readouterr()
    assert main([*RUN, "--jobs", "1", "--out", str(dask_out)]) == 0     # same run: the dask run's cells are kept
    assert "6 finished cells kept" in capsys.readouterr().err
    assert (dask_out / "results.json").read_bytes() == (serial_out / "results.json").read_bytes()


def test_a_killed_dask_worker_fails_its_unit_and_the_run_completes():
    from distributed import Client

    from ebm_ood.commands.benchmark.dask_executor import _local_cluster

    cluster = _local_cluster(2)
    watcher = Client(cluster, set_as_default=False)
    got, killed = [], []

    def on_cell(dataset, seed, method, cell):
        got.append((seed, method, cell))
        if not killed:              # the other worker is mid-unit: its next unit is handed out only after this
            busy = [addr for addr, keys in watcher.processing().items() if keys]
            pid = watcher.run(os.getpid, workers=busy[:1])[busy[0]]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    try:
        results, _ = run_benchmark(["tabular"], methods_for("all", ["CE", "MSP", "CD"]), [0, 1], preset="quick",
                                   log=lambda m: None, on_cell=on_cell, executor="dask",
                                   scheduler=cluster.scheduler_address)
    finally:
        watcher.close()
        cluster.close()
    assert killed and sorted((s, m) for s, m, _ in got) == sorted((s, m) for s in (0, 1) for m in ("CE", "MSP", "CD"))
    died = [(s, m) for s, m, c in got if c.error]
    assert died and all(c.error.startswith("WorkerDied: the Dask worker") for _, _, c in got if c.error)
    assert len(died) <= 2                                            # one unit: CE+MSP, or CD
    assert sum(c.error is None for _, _, c in got) >= 6 - 2
    assert any("error" not in r for r in results["tabular"].values())  # the run completed with its other cells


def test_importing_ebm_ood_does_not_import_dask():
    code = ("import sys, ebm_ood, ebm_ood.commands.cli, ebm_ood.commands.benchmark.command, ebm_ood.commands.benchmark.runner, "
            "ebm_ood.commands.benchmark.dask_executor; print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('dask', 'distributed')))")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_executor_flags_are_checked_before_any_training(tmp_path):
    with pytest.raises(SystemExit, match="--scheduler: needs --executor dask"):
        main([*RUN, "--scheduler", "tcp://127.0.0.1:1", "--out", str(tmp_path / "a")])
    with pytest.raises(SystemExit, match="--jobs: the workers of --scheduler run the units"):
        main([*RUN, "--executor", "dask", "--scheduler", "tcp://127.0.0.1:1", "--jobs", "2",
              "--out", str(tmp_path / "b")])
    with pytest.raises(ValueError, match="executor: expected one of local, dask"):
        run_benchmark(["tabular"], methods_for("all", ["MSP"]), [0], preset="quick", executor="ray")
    with pytest.raises(ValueError, match="scheduler: a scheduler address needs executor='dask'"):
        run_benchmark(["tabular"], methods_for("all", ["MSP"]), [0], preset="quick", scheduler="tcp://x:1")


def test_an_unreachable_scheduler_is_one_error_line(tmp_path, capsys):
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(SystemExit, match=r"--scheduler: scheduler tcp://127\.0\.0\.1:9: could not connect"):
            main([*RUN, "--executor", "dask", "--scheduler", "tcp://127.0.0.1:9", "--out", str(tmp_path)])


def test_units_sharing_one_worker_process_run_one_at_a_time():
    """A worker with several task threads (``dask worker --nthreads 4``, or a cluster shared with another
    client) could run two units at once in one process; the methods seed torch's global generator, so
    :func:`run_unit` runs them one after the other."""
    import threading
    import time

    from ebm_ood.commands.benchmark.dask_executor import run_unit

    inside, most = [0], [0]

    def work(_):
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        time.sleep(0.05)
        inside[0] -= 1

    threads = [threading.Thread(target=run_unit, args=(lambda: None, (), work, (i,))) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1


def test_a_relative_data_folder_reaches_workers_started_elsewhere(tmp_path, monkeypatch):
    """Workers run in their own working folder (here: the one the cluster started in); a ``--dataset``
    folder given relative to this process's is sent by its absolute path."""
    import numpy as np

    from ebm_ood.commands.benchmark.dask_executor import _local_cluster

    rng = np.random.default_rng(0)
    (tmp_path / "mine" / "ood").mkdir(parents=True)
    np.savez(tmp_path / "mine" / "train.npz", x=rng.uniform(size=(80, 4)), y=np.arange(80) % 2)
    np.savez(tmp_path / "mine" / "test.npz", x=rng.uniform(size=(20, 4)))
    np.savez(tmp_path / "mine" / "ood" / "far.npz", x=rng.uniform(2, 3, size=(20, 4)))
    cluster = _local_cluster(1)                      # its worker's working folder: this process's now
    try:
        monkeypatch.chdir(tmp_path)
        got = []
        results, _ = run_benchmark(["mine"], methods_for("all", ["MSP"]), [0], preset="quick", log=lambda m: None,
                                   on_cell=lambda *a: got.append(a[-1]), executor="dask",
                                   scheduler=cluster.scheduler_address)
    finally:
        cluster.close()
    assert [c.error for c in got] == [None] and "far" in results["mine"]["MSP"]
