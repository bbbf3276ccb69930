"""How many CPU threads torch uses inside the library's calls (``Detector.fit``, ``Detector.score``).

Torch starts with one intra-op thread per physical core. The models of this library are small (an MLP of
width 2·D on 64- to 512-d features, a SmallWRN on 8x8 or 32x32 images, batches of 64 to 128), and for
them a parallel section costs more than it saves: on a 2-core machine torch's default of 2 threads made
training several times slower than 1 thread (``ebm-ood bench threads`` measures it; README, "Threads").
So every ``fit`` and ``score`` runs under :func:`library_threads`, which picks the count by these rules,
first match wins:

1. the caller chose torch's count in code: it called :func:`set_num_threads` (which sets
   ``torch.set_num_threads(n)`` and marks the count as chosen), or torch's count differs from torch's own
   default (:func:`torch_default_threads`: the caller ran ``torch.set_num_threads``, as
   ``ebm-ood --threads`` does): torch's current count, untouched;
2. the environment variable ``EBM_OOD_NUM_THREADS`` is set: its value;
3. ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` is set (torch's default came from the caller): torch's
   current count, untouched;
4. otherwise :data:`DEFAULT_THREADS` (1).

Torch's count is restored when the call returns (or raises). Nested calls (a detector fitting an inner
detector) decide once, at the outermost call. Torch's thread count is global to the process: two Python
threads scoring at once share one setting. Rule 1 cannot tell a ``torch.set_num_threads(n)`` call that
set torch's own default ``n`` from no call at all; :func:`set_num_threads` can. A result depends on the
thread count (the order of floating-point sums in torch's parallel kernels), so one seed reproduces a
result for one count (and one CPU kind: :func:`ebm_ood.commands.flags.cpu_kind`); rule 4 makes that count 1 unless the caller chose another.
"""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager

import torch

ENV_VAR = "EBM_OOD_NUM_THREADS"
DEFAULT_THREADS = 1                   # rule 4: small models run fastest on one thread
_TORCH_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")

_chosen = False                       # set_num_threads was called: torch's count is the caller's
_lock = threading.Lock()
_depth = 0                            # library calls in progress (the outermost one decides)
_restore: int | None = None           # torch's count before the outermost call, when it was changed


def torch_default_threads() -> int:
    """The intra-op thread count torch starts with: ``OMP_NUM_THREADS`` (``MKL_NUM_THREADS`` wins when both
    are set) or else its pool's default, one thread per physical core, which torch also reports as the
    inter-op count while nobody has set that (``torch.get_num_interop_threads()``)."""
    count = 0
    for var in _TORCH_ENV_VARS:
        raw = os.environ.get(var, "").strip()
        if raw.isdigit() and int(raw) > 0:
            count = int(raw)
    return count or torch.get_num_interop_threads()


def available_cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _check_count(n, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{name}: expected a positive integer number of threads, got {n!r}")
    return n


def set_num_threads(n: int | None) -> None:
    """``torch.set_num_threads(n)``, and library calls keep torch's count from now on (rule 1) even when
    it equals torch's default; ``None`` returns to rules 2-4 (torch's count is left as it is)."""
    global _chosen
    if n is None:
        _chosen = False
        return
    torch.set_num_threads(_check_count(n, "n"))
    _chosen = True


def _env_threads() -> int | None:
    raw = os.environ.get(ENV_VAR)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        value = None
    if value is None or value < 1:
        raise ValueError(f"{ENV_VAR}: expected a positive integer number of threads, got {raw!r}")
    return value


def get_num_threads() -> int:
    """The torch thread count the next library call will run with (rules 1-4 above)."""
    current = torch.get_num_threads()
    if _chosen or current != torch_default_threads():
        return current
    env = _env_threads()
    if env is not None:
        return env
    return current if any(os.environ.get(v, "").strip() for v in _TORCH_ENV_VARS) else DEFAULT_THREADS


@contextmanager
def library_threads():
    """Run the body with :func:`get_num_threads` torch threads, then restore torch's previous count.
    Re-entrant: only the outermost call sets and restores."""
    global _depth, _restore
    with _lock:
        if _depth == 0:
            target, current = get_num_threads(), torch.get_num_threads()
            _restore = current if target != current else None
            if _restore is not None:
                torch.set_num_threads(target)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _restore is not None:
                torch.set_num_threads(_restore)
                _restore = None


@contextmanager
def num_threads(n: int):
    """:func:`set_num_threads` ``(n)`` for the body; afterwards torch's count and the mark return to what
    they were."""
    global _chosen
    n = _check_count(n, "n")
    previous_chosen, previous_torch = _chosen, torch.get_num_threads()
    set_num_threads(n)
    try:
        yield
    finally:
        _chosen = previous_chosen
        torch.set_num_threads(previous_torch)
