"""Speed of the SGLD sampler: the fused update op vs plain PyTorch, and whole 100-step chains.

Run: ``ebm-ood bench sampler [--json] [--repeats 21]`` or ``python -m ebm_ood.bench.sampler``.

1. One update ``x <- clamp(x - a g + b n)`` on float32 tensors of 1k ... 4M elements: the fused op
   (``ebm_ood.sampling.ops.sgld_step_`` with its Python-side input checks, which the sampler runs on a
   chain's first step only) vs the plain
   expression ``x.add_(g, alpha=-a).add_(torch.randn_like(x), alpha=b).clamp_(lo, hi)``. Median times,
   their ratio, and the op's memory throughput (reads x and g, writes x: 12 bytes/element) beside a
   plain copy's (8 bytes/element), the memory-bandwidth limit.
2. A 100-step chain, batch 64, on the tabular MLP energy (5 layers, width 100, 18 inputs) and on a small
   conv energy (the SmallWRN on 1x8x8 digits): ``sampling.sgld`` vs a JEM-style loop
   (``x.requires_grad_(); g = autograd.grad(E(x).sum(), x); x = x - a g + b randn``), and the floor: the
   100 energy gradients alone (parameters frozen), at the states our chain visits. Overhead = time / floor - 1.
Speed is measured here only, never in tests. Timings on a shared machine are noisy: medians help.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

from ebm_ood.sampling import ops
from ebm_ood.sampling.sgld import sgld

SIZES = (1_000, 50_000, 200_000, 1_000_000, 4_000_000)


def _times(fn, repeats: int, min_time: float = 0.0) -> tuple[float, float]:
    """(median, best) seconds of ``fn()`` over ``repeats`` calls (more for very short calls), after one warm-up.

    The best time is less disturbed by other processes on a shared machine; the median is the headline."""
    fn()
    times = []
    while len(times) < repeats or sum(times) < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 50 * repeats:
            break
    return statistics.median(times), min(times)


def bench_update(repeats: int) -> list[dict]:
    rows = []
    a, b, lo, hi = 0.01, 0.01, -1.0, 1.0
    for n in SIZES:
        gen = torch.Generator().manual_seed(0)
        x, g = torch.rand(n, generator=gen) * 2 - 1, torch.randn(n, generator=gen)
        y = torch.empty_like(x)
        step = iter(range(10**9))
        t_op, b_op = _times(lambda: ops.sgld_step_(x, g, a, b, lo, hi, seed=1, offset=next(step)), repeats, 0.05)
        t_plain, b_plain = _times(lambda: x.add_(g, alpha=-a).add_(torch.randn_like(x), alpha=b).clamp_(lo, hi),
                                  repeats, 0.05)
        t_copy, _ = _times(lambda: y.copy_(x), repeats, 0.05)
        rows.append({"numel": n, "fused_ms": 1e3 * t_op, "plain_ms": 1e3 * t_plain, "speedup": t_plain / t_op,
                     "speedup_best": b_plain / b_op, "fused_gbs": 12 * n / t_op / 1e9,
                     "plain_gbs": 12 * n / t_plain / 1e9, "copy_gbs": 8 * n / t_copy / 1e9})
    return rows


def _energies():
    """(name, net, x0) for the tabular MLP energy and the small conv energy, batch 64; E(x) = net(x)[:, 0]."""
    from ebm_ood.nn import MLP, SmallWRN

    torch.manual_seed(0)
    mlp = MLP(18, 1, width=100, depth=5)
    conv = SmallWRN(1, 1, width=2)
    return [("mlp", mlp, torch.rand(64, 18) * 2 - 1), ("conv", conv, torch.rand(64, 1, 8, 8) * 2 - 1)]


def bench_chains(repeats: int, n_steps: int = 100) -> list[dict]:
    rows = []
    a, b = 1.0, 0.01
    for name, net, x0 in _energies():
        energy = lambda x, net=net: net(x)[:, 0]  # noqa: E731

        def ours():
            sgld(energy, x0, n_steps=n_steps, step_size=a, noise_std=b, module=net)

        def jem_loop():                      # the reference loop of the JEM / Elflein code
            x = x0.clone()
            for _ in range(n_steps):
                x.requires_grad_(True)
                (g,) = torch.autograd.grad(energy(x).sum(), x)
                x = (x - a * g + b * torch.randn_like(x)).detach()
            return x

        # The floor: the same 100 energy gradients at the very states our chain visits (timing depends on
        # the values: activations near zero are slow denormals on CPUs), without any update arithmetic.
        _, states = sgld(energy, x0, n_steps=n_steps, step_size=a, noise_std=b, module=net, return_chain=True)
        states = [s.requires_grad_(True) for s in states[:n_steps]]

        def floor():
            for x in states:
                (g,) = torch.autograd.grad(energy(x).sum(), x)
            return g

        net.eval()
        t_ours, b_ours = _times(ours, repeats)
        t_ref, b_ref = _times(jem_loop, repeats)
        net.requires_grad_(False)            # as sgld(module=net) does; the nets above train all parameters
        t_floor, b_floor = _times(floor, repeats)
        net.requires_grad_(True)
        rows.append({"energy": name, "ours_ms": 1e3 * t_ours, "jem_ms": 1e3 * t_ref, "floor_ms": 1e3 * t_floor,
                     "overhead": t_ours / t_floor - 1.0, "jem_overhead": t_ref / t_floor - 1.0,
                     "overhead_best": b_ours / b_floor - 1.0})
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON only")
    parser.add_argument("--repeats", type=int, default=21, help="timed calls per measurement (median reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")


def run(args) -> int:
    if args.repeats < 1:
        print("error: --repeats must be >= 1", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    backend = ops.backend()
    upd, chains = bench_update(args.repeats), bench_chains(max(3, args.repeats // 4))
    by_n = {r["numel"]: r for r in upd}
    by_e = {r["energy"]: r for r in chains}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    result = {"backend": backend, "threads": torch.get_num_threads(), "torch": torch.__version__, "load_avg": load,
              "speedup_1m": by_n[1_000_000]["speedup"], "speedup_50k": by_n[50_000]["speedup"],
              "overhead_mlp": by_e["mlp"]["overhead"], "overhead_conv": by_e["conv"]["overhead"],
              "update": upd, "chains": chains}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"SGLD update x <- clamp(x - a g + b n), float32, backend={backend}, {result['threads']} threads, "
          f"load average {load:.1f} (other processes distort timings)")
    print(f"{'elements':>10} {'fused ms':>10} {'plain ms':>10} {'speedup':>8} {'(best)':>7} {'fused GB/s':>11}"
          f" {'plain GB/s':>11} {'copy GB/s':>10}")
    for r in upd:
        print(f"{r['numel']:>10,} {r['fused_ms']:>10.4f} {r['plain_ms']:>10.4f} {r['speedup']:>7.2f}x "
              f"{r['speedup_best']:>6.2f}x "
              f"{r['fused_gbs']:>11.2f} {r['plain_gbs']:>11.2f} {r['copy_gbs']:>10.2f}")
    print("\n100-step SGLD chain, batch 64 (overhead = time / gradient-only floor - 1)")
    print(f"{'energy':>8} {'ours ms':>9} {'JEM loop ms':>12} {'floor ms':>9} {'ours over floor':>16} {'(best)':>8}"
          f" {'JEM over floor':>15}")
    for r in chains:
        print(f"{r['energy']:>8} {r['ours_ms']:>9.2f} {r['jem_ms']:>12.2f} {r['floor_ms']:>9.2f} "
              f"{100 * r['overhead']:>15.1f}% {100 * r['overhead_best']:>7.1f}% {100 * r['jem_overhead']:>14.1f}%")
    print(f"\nspeedup_1m={result['speedup_1m']:.2f} (target >= 3), speedup_50k={result['speedup_50k']:.2f} "
          f"(target >= 1.5), overhead_mlp={100 * result['overhead_mlp']:.1f}%, "
          f"overhead_conv={100 * result['overhead_conv']:.1f}% (target <= 10%)")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="ebm-ood bench sampler", description=__doc__.strip().splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
