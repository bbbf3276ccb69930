"""The JIT build lock (ebm_ood/plumbing/build_lock.py): a build killed at any moment never blocks a later
one, a live builder is waited for, then a timeout names it and the command that clears the lock."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ebm_ood.plumbing import build_lock as bl
from ebm_ood.sampling import ops

pytestmark = pytest.mark.skipif(bl.fcntl is None, reason="needs POSIX flock")

HOLDER = """
import importlib.util, sys, time
from pathlib import Path
spec = importlib.util.spec_from_file_location("build_lock", sys.argv[2])  # the module alone: no torch import
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
with mod.build_lock(sys.argv[1], log=lambda m: None):
    Path(sys.argv[1], "lock").write_text("")   # as torch does while it compiles
    print("held", flush=True)
    time.sleep(60)
"""


def _start_holder(build_dir):
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(build_dir), bl.__file__], stdout=subprocess.PIPE,
                         text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def _kill(p):
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=10)


def test_locks_left_by_a_killed_build_are_cleared(tmp_path):
    p = _start_holder(tmp_path)
    _kill(p)  # kill -9 mid-build: both lock files stay behind
    assert (tmp_path / "lock").exists() and (tmp_path / bl.LOCK_NAME).exists()
    logs, t0 = [], time.monotonic()
    with bl.build_lock(tmp_path, timeout=5, log=logs.append):
        assert not (tmp_path / "lock").exists()
        assert f"pid {os.getpid()}" in (tmp_path / bl.LOCK_NAME).read_text()
    assert time.monotonic() - t0 < 3
    assert any("interrupted" in m for m in logs)


def test_a_torch_lock_without_an_owner_is_cleared(tmp_path):
    (tmp_path / "lock").write_text("")  # torch's bare lock, no ebm_ood lock file at all
    with bl.build_lock(tmp_path, timeout=1, log=lambda m: None):
        assert not (tmp_path / "lock").exists()


def test_a_live_builder_is_waited_for_then_named_with_the_command_to_clear(tmp_path):
    p = _start_holder(tmp_path)
    try:
        logs = []
        with pytest.raises(bl.BuildLockTimeout) as e:
            with bl.build_lock(tmp_path, timeout=0.3, poll=0.05, log=logs.append):
                pass
        msg = str(e.value)
        assert f"pid {p.pid}" in msg and f"rm -f {tmp_path / bl.LOCK_NAME} {tmp_path / 'lock'}" in msg
        assert bl.TIMEOUT_ENV in msg and any(f"pid {p.pid}" in m for m in logs)
        assert (tmp_path / "lock").exists()  # a live builder's lock is never touched
    finally:
        _kill(p)
    with bl.build_lock(tmp_path, timeout=2, log=lambda m: None):  # released by its death
        pass


def test_removing_the_lock_file_by_hand_unblocks_waiters(tmp_path):
    p = _start_holder(tmp_path)
    try:
        (tmp_path / bl.LOCK_NAME).unlink()  # the command the timeout message gives
        (tmp_path / "lock").unlink()
        entered = False
        with bl.build_lock(tmp_path, timeout=2, log=lambda m: None):   # raises after 2 s if still blocked
            entered = True
        assert entered
    finally:
        _kill(p)


@pytest.mark.parametrize("raw", ["soon", "-1", "nan"])
def test_bad_timeout_setting_is_named(monkeypatch, raw):
    monkeypatch.setenv(bl.TIMEOUT_ENV, raw)
    with pytest.raises(ValueError, match=bl.TIMEOUT_ENV):
        bl.timeout_from_env()


def test_jit_build_runs_under_the_lock_and_clears_a_stale_torch_lock(tmp_path, monkeypatch):
    from torch.utils import cpp_extension

    seen = {}

    def fake_load(name, build_directory, **kw):
        d = Path(build_directory)
        seen["torch_lock"] = (d / "lock").exists()
        seen["ours"] = (d / bl.LOCK_NAME).read_text()

    monkeypatch.setenv("EBM_OOD_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setattr(cpp_extension, "load", fake_load)
    monkeypatch.setattr(ops.torch.cuda, "is_available", lambda: False)
    # the build folder of this source tree, with the lock of a killed build in it
    stale = []
    real_lock = bl.build_lock

    def lock_with_leftover(build_dir, **kw):
        Path(build_dir).mkdir(parents=True, exist_ok=True)
        (Path(build_dir) / "lock").write_text("")
        stale.append(build_dir)
        return real_lock(build_dir, log=lambda m: None, **kw)

    monkeypatch.setattr(ops, "build_lock", lock_with_leftover)
    ops._jit_build()
    assert stale and seen == {"torch_lock": False, "ours": f"pid {os.getpid()} on {os.uname().nodename}\n"}
