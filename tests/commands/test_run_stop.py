"""Stopping a ``--jobs 2`` run (real processes): workers die with their parent (SIGKILL included), SIGTERM
ends the run cleanly with one line and the cells kept, a worker killed mid-run fails its own cells and
the run finishes with a non-zero exit code."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

ROOT = Path(__file__).resolve().parents[2]
RUN = ["benchmark", "--quick", "--methods", "CE,MSP,CD", "--dataset", "tabular", "--seeds", "0,1,2", "--jobs", "2"]
# The same cells at the default presets: CD's units then run for a minute or more, so a signal sent when the first
# cell lands (the CE unit's) finds work still running; with --quick every unit ends within ~0.3 s of the first.
RUN_LONG = [a for a in RUN if a != "--quick"]
# Six seeds: twelve quick units, so work is still queued for a while after the first cell lands.
SEEDS_MORE = "0,1,2,3,4,5"
RUN_MORE = [SEEDS_MORE if a == "0,1,2" else a for a in RUN]


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                kids.append(int(entry))
    return kids


def _alive(pids) -> list[int]:
    alive = []
    for p in pids:
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2] != "Z":
            alive.append(p)
    return alive


def _default_sigint() -> None:
    """In the child before exec: Ctrl-C's default action, as in a terminal. A test run started in the background
    by a non-interactive shell inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(out: Path, run: list = RUN) -> subprocess.Popen:
    """The run, its output in files (a pipe would keep a reader waiting on any process left holding it)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out.mkdir(parents=True, exist_ok=True)
    with open(out.parent / "stdout.txt", "w") as so, open(out.parent / "stderr.txt", "w") as se:
        return subprocess.Popen([sys.executable, "-m", "ebm_ood", *run, "--out", str(out)], env=env, cwd=ROOT,
                                stdout=so, stderr=se, start_new_session=True,
                                preexec_fn=_default_sigint)


def _finish(proc, timeout: float) -> str:
    """Wait for ``proc`` (killed after ``timeout`` s); its stderr."""
    try:
        proc.wait(timeout)
    finally:
        proc.kill()
        proc.wait()
    return (Path(proc.args[-1]).parent / "stderr.txt").read_text()


def _wait_for(cond, timeout: float = 120.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(0.1)
    pytest.fail("timed out")


def _workers(proc) -> list[int]:
    """The worker processes of ``proc`` (its children running multiprocessing's spawn entry point)."""
    return [p for p in _children(proc.pid) if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]


def _cells(out: Path) -> list[dict]:
    path = out / "results.cells.jsonl"
    lines = path.read_text().splitlines()[1:] if path.exists() else []
    return [json.loads(l) for l in lines]


def test_workers_die_with_a_killed_parent(tmp_path):
    proc = _start(tmp_path / "out")
    try:
        workers = _wait_for(lambda: len(_workers(proc)) == 2 and _workers(proc))
        helpers = _children(proc.pid)                 # the workers and multiprocessing's helper process
    finally:
        proc.kill()
        proc.wait()
    try:
        _wait_for(lambda: not _alive(helpers), timeout=10)
    finally:
        for pid in _alive(helpers):                   # never leave them running, even when the test fails
            os.kill(pid, signal.SIGKILL)
    assert set(workers) <= set(helpers)


@pytest.mark.parametrize("how, code, said", [("SIGTERM", 143, "SIGTERM"), ("Ctrl-C", 130, "Ctrl-C")])
def test_sigterm_or_ctrl_c_ends_the_run_with_one_line_and_keeps_the_cells(tmp_path, how, code, said):
    out = tmp_path / "out"
    proc = _start(out, RUN_LONG)
    try:
        _wait_for(lambda: len(_cells(out)) >= 1)
        helpers = _children(proc.pid)
        if how == "SIGTERM":
            proc.send_signal(signal.SIGTERM)
        else:                                           # a terminal sends Ctrl-C to the whole process group
            os.killpg(proc.pid, signal.SIGINT)
    finally:
        err = _finish(proc, 60)
    assert proc.returncode == code
    assert "Traceback" not in err and err.count("stopped by") == 1
    assert err.strip().splitlines()[-1].startswith(f"ebm-ood: stopped by {said}; every finished cell is kept in")
    assert len(_cells(out)) >= 1                        # whole lines, still there
    _wait_for(lambda: not _alive(helpers), timeout=10)


def test_a_killed_worker_fails_its_cells_and_the_run_finishes(tmp_path):
    out = tmp_path / "out"
    proc = _start(out, RUN_MORE)
    try:
        _wait_for(lambda: len(_cells(out)) >= 1)       # both workers busy: units are still queued
        os.kill(_workers(proc)[0], signal.SIGKILL)
    finally:
        err = _finish(proc, 300)
    cells = _cells(out)
    died = [c for c in cells if c["error"] and c["error"].startswith("WorkerDied")]
    assert proc.returncode == 1 and died, err
    n = 3 * len(SEEDS_MORE.split(","))
    assert len(cells) == n and sum(c["error"] is None for c in cells) >= n - 2   # a unit holds <= 2 cells
