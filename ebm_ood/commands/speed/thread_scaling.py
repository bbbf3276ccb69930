"""Speed of the library's calls at 1 torch thread against torch's default count (and 2, 4 where the cores allow).

Run: ``ebm-ood bench threads [--rounds 7] [--json] [--quick]``.

What is timed, each a public call as a library user makes it, with the thread count set through
:func:`ebm_ood.plumbing.threads.num_threads` (so the library's own policy does not interfere):

* ``HEAT-GMM fit``: ``HEATDetector(GMMPrior()).fit(z, y)`` for ``--steps`` training steps of the default
  preset (batch 128, 20 SGLD steps per negative batch, residual MLP 6 x 128) on the digits backbone's
  64-d features (the CE classifier of the ``quick`` preset, trained once before timing);
* ``CD fit``: ``CDDetector`` of the default image preset (SmallWRN widen 1, batch 64, 15 SGLD steps) for
  ``--steps`` steps on the digits images (1x8x8);
* ``KNN score`` / ``Mahalanobis score``: one ``score`` call after ``fit``, small (digits features: 1,010
  training, 289 scored, 64-d) and large (synthetic class clusters of :mod:`ebm_ood.commands.speed.detectors`:
  10,000 training, 5,000 scored, 512-d).

Timing (:mod:`ebm_ood.commands.speed.timing`): the thread counts of one task are interleaved within each round in a
rotating order; the headline is ``t(n threads) / t(1 thread)`` as the median of per-round ratios with its
interquartile range; calls clustering on scheduler ticks are flagged. Speed is measured here only, never in
tests. The policy it informs is :mod:`ebm_ood.plumbing.threads`.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

import torch

from ebm_ood.plumbing import threads
from ebm_ood.commands.speed.timing import count_error, interleaved, ratio_summary, round_times, tick_quantised

SUMMARY = "library calls (HEAT and CD fits, KNN and Mahalanobis scoring) at 1 thread against more"


def thread_counts() -> list[int]:
    """1, torch's default count (:func:`ebm_ood.plumbing.threads.torch_default_threads`), and 2 and 4 when
    this process may run on that many cores."""
    cores = threads.available_cores()
    return sorted({1, threads.torch_default_threads()} | {n for n in (2, 4) if n <= cores})


def tasks(steps: int, large: bool = True) -> dict:
    """name → a zero-argument call (one public library call) — see the module docstring."""
    from dataclasses import replace

    from ebm_ood.commands.benchmark.registry import RunContext, shared_backbone
    from ebm_ood.data import get_dataset
    from ebm_ood.heat.hybrid import HEATDetector, heat_config
    from ebm_ood.heat.priors import GMMPrior
    from ebm_ood.methods.contrastive_divergence import CDDetector, cd_config
    from ebm_ood.posthoc import KNN, Mahalanobis
    from ebm_ood.commands.speed.detectors import BenchConfig, synthetic_features
    from ebm_ood.training import TrainConfig

    d = get_dataset("digits")
    with threads.num_threads(1):
        backbone = shared_backbone(RunContext(d, 0, "quick"))
        z_train, z_test = backbone.extract(d.x_train).z, backbone.extract(d.x_test).z
    heat_cfg = heat_config("default", train=TrainConfig(steps=steps, batch_size=128, eval_every=steps, progress=False))
    cd_base = cd_config("default", "image")
    cd_cfg = replace(cd_base, select="last",
                     train=replace(cd_base.train, steps=steps, warmup=0, eval_every=steps, progress=False))
    out = {
        f"HEAT-GMM fit, {steps} steps": lambda: HEATDetector(GMMPrior(), heat_cfg).fit(z_train, d.y_train),
        f"CD fit, {steps} steps": lambda: CDDetector(cd_cfg).fit(d.x_train),
    }
    sets = [("small", z_train, d.y_train, z_test)]
    if large:
        big_train, big_y, big_test, _, _ = synthetic_features(BenchConfig(n_train=10_000, n_test=5_000, dim=512))
        sets.append(("large", big_train, big_y, big_test))
    for size, zt, yt, zs in sets:
        for name, make in (("KNN", lambda: KNN()), ("Mahalanobis", lambda: Mahalanobis())):
            with threads.num_threads(1):
                det = make().fit(zt, yt)
            out[f"{name} score, {size} ({len(zt):,} fit, {len(zs):,} scored, {zt.shape[1]}-d)"] = \
                lambda det=det, zs=zs: det.score(zs)
    return out


def bench(calls: dict, rounds: int, counts: list[int]) -> list[dict]:
    """One row per ``calls`` item (name → zero-argument call): median ms per call at each thread count in
    ``counts`` (which must include 1) and the ratios to 1 thread."""
    rows = []
    for name, fn in calls.items():
        def at(n, fn=fn):
            def call():
                with threads.num_threads(n):
                    return fn()
            return call

        samples = interleaved({n: at(n) for n in counts}, rounds, calls=1)
        row = {"task": name, "counts": counts,
               "ms": {n: 1e3 * statistics.median(round_times(samples[n])) for n in counts},
               "quantised": {n: tick_quantised(samples[n]) for n in counts},
               "vs_1": {n: ratio_summary(samples[n], samples[1]) for n in counts if n != 1}}
        rows.append(row)
    return rows


def render(result: dict) -> str:
    counts = result["counts"]
    lines = [f"Library calls by torch thread count (torch default here: {result['torch_default']}; cores "
             f"available: {result['cores']}; load average {result['load_avg']:.1f}; {result['rounds']} "
             "interleaved rounds, one call per count per round)",
             "ms per call (median over rounds); t(n) / t(1) = median of per-round ratios [interquartile range]", "",
             "| call | " + " | ".join(f"{n} thread{'s' if n > 1 else ''} ms" for n in counts) + " | "
             + " | ".join(f"t({n}) / t(1)" for n in counts if n != 1) + " |",
             "|---|" + "---|" * (2 * len(counts) - 1)]
    for r in result["rows"]:
        ms = [f"{r['ms'][n]:.1f}" + (" (tick-quantised)" if r["quantised"][n] else "") for n in counts]
        ratios = [f"{v['median']:.2f}x [{v['q1']:.2f}-{v['q3']:.2f}]" for n, v in r["vs_1"].items()]
        lines.append(f"| {r['task']} | " + " | ".join(ms + ratios) + " |")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON only")
    parser.add_argument("--rounds", type=int, default=7,
                        help="interleaved rounds; the ratios are medians over rounds (default 7)")
    parser.add_argument("--steps", type=int, default=10, help="training steps per timed fit (default 10)")
    parser.add_argument("--quick", action="store_true", help="small scoring sets only (skips the 512-d features)")


def run(args) -> int:
    error = count_error(args, {"rounds": 2, "steps": 1})
    if error:
        print(error, file=sys.stderr)
        return 2
    counts = thread_counts()
    rows = bench(tasks(args.steps, large=not args.quick), args.rounds, counts)
    cores = threads.available_cores()
    result = {"torch": torch.__version__, "torch_default": threads.torch_default_threads(), "cores": cores,
              "counts": counts, "rounds": args.rounds, "steps": args.steps,
              "load_avg": os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan"), "rows": rows}
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0

