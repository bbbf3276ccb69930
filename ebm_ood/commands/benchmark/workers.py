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


class _Pool:
    """Spawned workers (:func:`worker_main`), each with its own pipe: ``idle`` ones and ``busy`` ones
    (``{pipe: (process, task)}``)."""

    def __init__(self, init: Callable, init_args: tuple, work: Callable):
        import multiprocessing

        self.context = multiprocessing.get_context("spawn")  # fork is unsafe once torch's thread pools exist
        self.args = (init, init_args, work)
        self.all, self.idle, self.busy = [], [], {}

    def spawn(self) -> None:
        parent_end, child_end = self.context.Pipe()
        proc = self.context.Process(target=worker_main, args=(child_end, os.getpid(), *self.args), daemon=True,
                                    name="ebm-ood-worker")
        proc.start()
        child_end.close()
        self.all.append((parent_end, proc))
        self.idle.append((parent_end, proc))

    def dispatch(self, pending: deque) -> None:
        """Hand queued tasks to idle workers."""
        while pending and self.idle:
            conn, proc = self.idle.pop()
            try:
                conn.send(pending[0])
            except OSError:  # died before its first task: dropped (run_in_workers starts another)
                continue
            self.busy[conn] = (proc, pending.popleft())

    def finished(self):
        """Wait for busy workers; yield ``(task, result, error)`` for each that answered or died."""
        from multiprocessing.connection import wait

        ready = set(wait(list(self.busy) + [proc.sentinel for proc, _ in self.busy.values()]))
        for conn, (proc, task) in list(self.busy.items()):
            if conn not in ready and proc.sentinel not in ready:
                continue
            try:
                status, value = conn.recv() if conn.poll() else (None, None)
            except (EOFError, OSError):
                status, value = None, None
            del self.busy[conn]
            if status is None:  # its process ended without an answer
                proc.join(1)
                yield task, None, (f"WorkerDied: the worker process ended (exit code {proc.exitcode}: killed, "
                                   "or out of memory) while running this cell")
                continue
            self.idle.append((conn, proc))
            yield task, (value if status == "ok" else None), (None if status == "ok" else value)

    def close(self, finished: bool) -> None:
        """Finished: let idle workers exit; otherwise (an error, Ctrl-C) kill every worker now."""
        for conn, proc in self.all:
            if finished and proc.is_alive():
                try:
                    conn.send(None)
                except OSError:
                    pass
            else:
                proc.kill()
        for conn, proc in self.all:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(1)
            conn.close()


def run_in_workers(tasks: list, jobs: int, init: Callable, init_args: tuple, work: Callable,
                   on_result: Callable) -> None:
    """Run ``work(*task)`` for every task in ``jobs`` spawned worker processes. ``on_result(task, result,
    error)`` gets each finished task in the parent as it finishes: ``error`` is None, the worker's
    ``"Type: message"``, or ``"WorkerDied: ..."`` when its process ended mid-task (a fresh worker takes its
    place while tasks are queued). An exception in ``on_result`` (or Ctrl-C) stops every worker at once
    and propagates."""
    pool, pending, finished = _Pool(init, init_args, work), deque(tasks), False
    most = min(jobs, len(tasks)) + len(tasks)  # workers started in all: each replacement follows a lost task
    try:
        for _ in range(min(jobs, len(tasks))):
            pool.spawn()
        while pending or pool.busy:
            while pending and len(pool.idle) + len(pool.busy) < min(jobs, len(tasks)) and len(pool.all) < most:
                pool.spawn()  # in place of workers that died
            pool.dispatch(pending)
            if not pool.busy:  # no worker could be started: the remaining tasks fail, nothing waits
                for task in list(pending):
                    on_result(task, None, "WorkerDied: no worker process could be started for this cell")
                pending.clear()
            for task, result, error in (pool.finished() if pool.busy else ()):
                on_result(task, result, error)
        finished = True
    finally:
        pool.close(finished)
