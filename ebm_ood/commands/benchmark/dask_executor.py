"""``--executor dask``: the benchmark's work units on a Dask distributed cluster (optional extra ``dist``).

The same contract as :func:`~ebm_ood.commands.benchmark.workers.run_in_workers`: ``work(*task)`` for every task,
``on_result(task, result, error)`` in this (the client) process as each unit finishes, so the cells log
has one writer. Dask is imported only inside :func:`run_on_dask`; ``import ebm_ood`` never imports it.

* ``scheduler`` None: a :class:`distributed.LocalCluster` of ``workers`` processes, one task thread each,
  made here and closed at the end; otherwise the address of a running scheduler (``dask scheduler`` and
  ``dask worker ADDRESS --nthreads 1`` on each machine, each with ebm_ood and the datasets installed).
* The client hands out at most as many units at a time as there are workers (the next one when a unit
  finishes; a local cluster's scheduler sends each worker one at a time), so a worker that dies holds only
  the unit it was running: that unit fails with ``"WorkerDied: ..."`` and the others
  run on (the local cluster's nanny starts a fresh worker). A local cluster never reruns a unit whose
  worker died (``allowed-failures`` 0); a running scheduler applies its own
  ``distributed.scheduler.allowed-failures`` (Dask's default 3 reruns it on other workers before it fails).
* In one worker process units run one at a time (:data:`_UNIT_LOCK`): the methods seed torch's global
  generator, which two units running at once in one process would share.
"""
from __future__ import annotations

import threading
import uuid
from collections import deque
from typing import Callable

INSTALL_HINT = 'pip install -e ".[dist]"'
_UNIT_LOCK = threading.Lock()


class SchedulerUnreachable(ConnectionError):
    """No Dask client could connect to the scheduler (its address is in the message)."""


def require_dask() -> None:
    """Raise ImportError naming the extra to install when Dask distributed is not importable."""
    try:
        import distributed  # noqa: F401
    except ImportError as err:
        raise ImportError(f"the dask executor needs Dask distributed, which is not installed ({err}); "
                          f"install the extra: {INSTALL_HINT}") from None


def run_unit(init: Callable, init_args: tuple, work: Callable, task: tuple):
    """On a Dask worker: ``init(*init_args)`` then ``work(*task)``, one unit at a time per process."""
    with _UNIT_LOCK:
        init(*init_args)
        return work(*task)


def _first_line(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else ""
    return f"{type(err).__name__}: {text}"


def _local_cluster(workers: int):
    """A local cluster of ``workers`` processes (one task thread each, no dashboard) whose scheduler never
    reruns a task whose worker died and hands each worker one task at a time."""
    import logging

    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                          "distributed.scheduler.worker-saturation": 1.0}):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                            silence_logs=logging.ERROR)


def run_on_dask(tasks: list, init: Callable, init_args: tuple, work: Callable, on_result: Callable,
                scheduler: str | None = None, workers: int = 1, log=None) -> None:
    """Run ``work(*task)`` for every task on a Dask cluster (module docstring); ``on_result(task, result,
    error)`` gets each as it finishes: ``error`` is None, the unit's ``"Type: message"``, or
    ``"WorkerDied: ..."`` when its worker died. An exception in ``on_result`` (or Ctrl-C) cancels every
    unit still queued or running and propagates; a cluster made here is closed in every case."""
    require_dask()
    from distributed import Client, KilledWorker, as_completed

    cluster = _local_cluster(workers) if scheduler is None else None
    try:
        client = Client(cluster if cluster is not None else scheduler, set_as_default=False)
    except BaseException as err:
        if cluster is not None:
            cluster.close()
        if isinstance(err, (OSError, ValueError, TypeError)):
            raise SchedulerUnreachable(f"scheduler {scheduler or cluster.scheduler_address}: could not connect "
                                       f"({_first_line(err)}); start it (dask scheduler) or check the address") from None
        raise
    pending, running = deque(tasks), {}
    done = as_completed(loop=client.loop)
    try:
        if log is not None:
            where = f"scheduler {scheduler}" if scheduler else f"a local Dask cluster of {workers} worker process(es)"
            log(f"running {len(tasks)} unit(s) on {where}")

        def hand_out() -> None:
            slots = max(1, len(client.nthreads()))
            while pending and len(running) < slots:
                task = pending.popleft()
                future = client.submit(run_unit, init, init_args, work, task, pure=False, retries=0,
                                       key=f"ebm-ood-unit-{uuid.uuid4().hex}")
                running[future] = task
                done.add(future)

        hand_out()
        for future in done:
            task = running.pop(future)
            try:
                result, error = future.result(), None
            except KilledWorker as err:
                result, error = None, (f"WorkerDied: the Dask worker running this cell died (killed, or out "
                                       f"of memory) ({err})")
            except Exception as err:  # the unit itself raised (e.g. its dataset missing on that machine)
                result, error = None, _first_line(err)
            on_result(task, result, error)
            hand_out()
    finally:
        for future in list(running):
            future.cancel()
        client.close()
        if cluster is not None:
            cluster.close()
