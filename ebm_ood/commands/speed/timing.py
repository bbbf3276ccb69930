"""Timing that survives a busy shared machine, for the speed benchmarks (``ebm-ood bench ...``).

Implementations are interleaved within each round, in an order that rotates from round to round, so a burst
of load from another process hits all of them alike; a comparison is the median of per-round ratios (with
its interquartile range), never a ratio of independent medians; calls that cluster on scheduler ticks are
detected, because their time is then the scheduler's and not the work's.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch

TICK_S = 0.004                       # the Linux scheduler tick at HZ=250


def count_error(args, least: dict[str, int]) -> str | None:
    """The error line for the first flag of ``least`` (``{attribute: smallest allowed value}``) that is below
    its bound, e.g. ``--rounds`` (ratios are medians over rounds, so at least 2); None when all pass."""
    for name, bound in least.items():
        value = getattr(args, name)
        if value < bound:
            return f"error: --{name.replace('_', '-')} must be >= {bound}, got {value}"
    return None


def sync(device: str) -> None:
    """Wait for queued GPU work, so that a timer sees it (no-op on the CPU)."""
    if device == "cuda":
        torch.cuda.synchronize()


def interleaved(impls: dict[str, Callable[[], object]], rounds: int, calls: int = 5,
                device: str = "cpu") -> dict[str, list[list[float]]]:
    """Time ``calls`` calls of every implementation in each of ``rounds`` rounds, implementations interleaved
    (the order rotates from round to round). Returns ``{name: [[seconds per call] per round]}``."""
    names = list(impls)
    for fn in impls.values():        # warm-up: caches, lazy initialisation, the thread pool
        fn()
    sync(device)
    samples: dict[str, list[list[float]]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn, per_call = impls[name], []
            for _ in range(calls):
                t0 = time.perf_counter()
                fn()
                sync(device)
                per_call.append(time.perf_counter() - t0)
            samples[name].append(per_call)
    return samples


def round_times(per_round: list[list[float]]) -> list[float]:
    """The median call time of each round."""
    return [statistics.median(calls) for calls in per_round]


def ratio_summary(numerator: list[list[float]], denominator: list[list[float]]) -> dict:
    """Median and interquartile range of the per-round ratios ``numerator / denominator``."""
    ratios = sorted(n / d for n, d in zip(round_times(numerator), round_times(denominator)))
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return {"median": statistics.median(ratios), "q1": q[0], "q3": q[2]}


def tick_quantised(per_round: list[list[float]], tick: float = TICK_S, tol: float = 0.05) -> bool:
    """True when most calls that last at least a tick end within ``tol`` ticks of a whole number of ticks,
    and those calls land on at least two different multiples (e.g. 8 and 16 ms): the time is then the
    scheduler's, not the work's (a parallel section waiting for a descheduled thread). Work that simply
    takes about two ticks lands on one multiple and is not flagged."""
    long_calls = [t for calls in per_round for t in calls if t >= 0.9 * tick]
    if len(long_calls) < 5:
        return False
    on_tick = [round(t / tick) for t in long_calls if abs(t / tick - round(t / tick)) < tol]
    return len(on_tick) >= 0.6 * len(long_calls) and len(set(on_tick)) >= 2


def cpu_ghz() -> float | None:
    """The nominal clock from /proc/cpuinfo (Linux), to turn ns into cycles; None when unknown."""
    try:
        with open("/proc/cpuinfo") as f:
            mhz = [float(line.split(":")[1]) for line in f if line.startswith("cpu MHz")]
        return mhz[0] / 1e3 if mhz else None
    except OSError:
        return None
