"""Worker processes for ``--jobs N``: each runs one work unit at a time, sent over its own pipe.

* A worker dies with its parent: on Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)``; everywhere a watcher
  thread that exits once ``os.getppid()`` is no longer the parent (and a closed pipe ends an idle one).
* A worker ignores Ctrl-C (the terminal sends it to the whole process group): the parent stops them.
* A worker that dies mid-unit (killed, out of memory) fails that unit's cells; the others run on, in a
  fresh worker. The parent never waits on a dead worker.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections import deque
from typing import Callable

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int, poll_seconds: float = 0.5) -> None:
    """Make this process exit when process ``parent`` (its parent) exits."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        os._exit(1)

    threading.Thread(target=watch, name="ebm-ood-parent-watch", daemon=True).start()


def _first_line(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else ""
    return f"{type(err).__name__}: {text}"


def worker_main(conn, parent: int, init: Callable, init_args: tuple, work: Callable) -> None:
    """A worker's loop: ``init(*init_args)``, then ``work(*task)`` for every task received, sending back
    ``("ok", result)`` or ``("error", "Type: message")``; ``None`` or a closed pipe ends it."""
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    init(*init_args)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        try:
            reply = ("ok", work(*task))
        except Exception as err:
            reply = ("error", _first_line(err))
        conn.send(reply)


def run_in_workers(tasks: list, jobs: int, init: Callable, init_args: tuple, work: Callable,
                   on_result: Callable) -> None:
    """Run ``work(*task)`` for every task in ``jobs`` spawned worker processes. ``on_result(task, result,
    error)`` gets each finished task in the parent as it finishes: ``error`` is None, the worker's
    ``"Type: message"``, or ``"WorkerDied: ..."`` when its process ended mid-task. An exception in
    ``on_result`` (or Ctrl-C) stops every worker at once and propagates."""
    import multiprocessing
    from multiprocessing.connection import wait

    context = multiprocessing.get_context("spawn")  # fork is unsafe once torch's thread pools exist
    pending, idle, busy = deque(tasks), [], {}

    def spawn():
        parent_end, child_end = context.Pipe()
        proc = context.Process(target=worker_main, args=(child_end, os.getpid(), init, init_args, work),
                               daemon=True, name="ebm-ood-worker")
        proc.start()
        child_end.close()
        return parent_end, proc

    workers = []
    finished = False
    try:
        for _ in range(min(jobs, len(tasks))):
            workers.append(spawn())
            idle.append(workers[-1])
        while pending or busy:
            while pending and idle:
                conn, proc = idle.pop()
                task = pending.popleft()
                try:
                    conn.send(task)
                except OSError:  # died before its first task: it never ran it
                    pending.appendleft(task)
                    workers.append(spawn())
                    idle.append(workers[-1])
                    continue
                busy[conn] = (proc, task)
            ready = set(wait(list(busy) + [proc.sentinel for proc, _ in busy.values()]))
            for conn, (proc, task) in list(busy.items()):
                if conn not in ready and proc.sentinel not in ready:
                    continue
                try:
                    status, value = conn.recv() if conn.poll() else (None, None)
                except (EOFError, OSError):
                    status, value = None, None
                del busy[conn]
                if status is None:  # its process ended without an answer
                    proc.join(1)
                    conn.close()
                    if pending:
                        workers.append(spawn())
                        idle.append(workers[-1])
                    on_result(task, None, f"WorkerDied: the worker process ended (exit code {proc.exitcode}: "
                                          "killed, or out of memory) while running this cell")
                    continue
                idle.append((conn, proc))
                on_result(task, value if status == "ok" else None, None if status == "ok" else value)
        finished = True
    finally:
        for conn, proc in workers:
            if finished and proc.is_alive():
                try:
                    conn.send(None)
                except OSError:
                    pass
            else:
                proc.kill()
        for conn, proc in workers:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(1)
            conn.close()
