"""The lock around the just-in-time build of ``csrc/``: a dead builder never blocks, a live one is waited
for only so long.

torch's JIT build guards its folder with a bare ``lock`` file and waits for it to vanish, without limit;
a build killed midway (``kill -9``, a closed terminal) leaves the file behind and every later run hangs.
So we take our own lock first: an exclusive ``flock`` on ``ebm_ood_build.lock`` in the build folder, which
the kernel releases when its holder dies, however it dies. The holder writes its pid and host into the file
(for messages). While we hold the lock no other ebm_ood process is building in that folder, so a torch
``lock`` found then was left by a killed build and is removed. A live holder is waited for up to
``timeout`` seconds (``$EBM_OOD_BUILD_TIMEOUT``, default 900); then :class:`BuildLockTimeout` names the
holder and the command that clears the lock.
"""
from __future__ import annotations

import math
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

try:
    import fcntl
except ImportError:  # not POSIX: torch's own lock only
    fcntl = None

LOCK_NAME = "ebm_ood_build.lock"
TORCH_LOCK_NAME = "lock"
TIMEOUT_ENV = "EBM_OOD_BUILD_TIMEOUT"
DEFAULT_TIMEOUT = 900.0


class BuildLockTimeout(RuntimeError):
    """Another process held the build lock for longer than the timeout."""


def timeout_from_env() -> float:
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not value >= 0:
        raise ValueError(f"${TIMEOUT_ENV}: expected a number of seconds >= 0, got {raw!r}")
    return value


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        text = ""
    return text or "an unknown process"


@contextmanager
def build_lock(build_dir: str | os.PathLike, timeout: float | None = None, poll: float = 0.1,
               log: Callable[[str], None] = _stderr) -> Iterator[None]:
    """Hold the build lock of ``build_dir`` (created if missing) for the ``with`` block."""
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    timeout = timeout_from_env() if timeout is None else float(timeout)
    path, torch_lock = build_dir / LOCK_NAME, build_dir / TORCH_LOCK_NAME
    start, told = time.monotonic(), False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = _holder(path)
            waited = time.monotonic() - start
            if waited >= timeout:
                raise BuildLockTimeout(
                    f"{path}: waited {waited:.0f} s for the fused SGLD op being compiled by {holder}. If that "
                    f"process is gone or stuck, clear the lock with: rm -f {path} {torch_lock} "
                    f"(or set {TIMEOUT_ENV} to wait longer)") from None
            if not told:
                log(f"ebm_ood: waiting for {holder} to finish compiling the fused SGLD op ({path})")
                told = True
            time.sleep(poll)
            continue
        try:  # the file may have been removed (rm -f) and recreated while we waited: lock the current one
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        if torch_lock.exists():
            log(f"ebm_ood: removing {torch_lock}, left by a build that was interrupted")
            torch_lock.unlink(missing_ok=True)
        yield
    finally:
        os.close(fd)  # releases the flock
