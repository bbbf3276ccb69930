"""Speed of the SGLD sampler: the fused update op against its peers, and whole 100-step chains.

Run: ``ebm-ood bench sampler [--json] [--rounds 15] [--threads 1] [--no-compile] [--no-paths] [--device cpu|cuda]``.

1. One update ``x <- clamp(x - a g + b n)``, float32, 1k ... 4M elements, by
   * ``fused``: ``ebm_ood.sampling.ops.sgld_step_`` (the C++ op, or its twin without a compiler);
   * ``eager``: ``x.add_(g, alpha=-a).add_(torch.randn_like(x), alpha=b).clamp_(lo, hi)``;
   * ``compile``: ``torch.compile`` of the same update (Inductor; its compile time is reported apart);
   * ``floor``: ``torch.compile`` of the update with a constant in place of the noise: one fused pass with no
     random numbers, the arithmetic floor of any update that must also draw them;
   * ``copy``: ``y.copy_(x)``, the memory floor.
   Each is reported in ns and CPU cycles per element, and the ratios ``eager / fused`` and
   ``compile / fused`` as the median of per-round ratios with their interquartile range.
   Then one row per CPU kernel ("path") this machine can run (``torch.ops.ebm_ood.sgld_cpu_paths()``:
   the hand-written AVX-512 one, the portable avx512 / avx2 / baseline copies), each in a fresh process with
   ``EBM_OOD_SGLD_PATH`` forcing the kernel and ``ATEN_CPU_CAPABILITY`` the matching ATen kernels for the
   eager peer (what a CPU with only that instruction set runs), fused against eager at 50k and 1M elements.
2. A 100-step chain, batch 64, on the tabular MLP energy (5 layers, width 100, 18 inputs) and on a small
   conv energy (the SmallWRN on 1x8x8 digits), both as the EBM methods use them (``JEMEnergy`` with one
   logit): ``sampling.sgld`` vs a JEM-style loop (``x.requires_grad_(); g = autograd.grad(E(x).sum(), x);
   x = x - a g + b randn``) vs the floor, the 100 energy gradients alone at the states our chain visits.
   Overhead = median per-round ratio to the floor, minus one.

How the timings survive a shared machine: one torch thread by default (with two, every parallel section of
a loaded 2-core machine lasts whole scheduler ticks; the two-thread figure is a separate, labelled row);
the implementations are interleaved within each round, in a rotating order, so a burst of load hits all of
them alike; the headline is the median of per-round ratios, never a ratio of independent medians. When
the individual calls of an implementation cluster on multiples of the scheduler tick, the row says
``tick-quantised`` and gives no ratio. Speed is measured here only, never in tests.

``--device cuda`` (on a machine with a GPU) first checks the CUDA kernel bit for bit against the
pure-PyTorch twin, then times the update there.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Callable

import torch

from ebm_ood.commands.speed.timing import count_error, cpu_ghz, interleaved, ratio_summary, round_times, sync, tick_quantised
from ebm_ood.sampling import ops
from ebm_ood.sampling.sgld import sgld

SUMMARY = "the fused SGLD op and whole chains against plain PyTorch and torch.compile"

SIZES = (1_000, 50_000, 1_000_000, 4_000_000)
A, B, LO, HI = 0.01, 0.01, -1.0, 1.0


# ---------------------------------------------------------------------------------------------- the update
def update_impls(x: torch.Tensor, g: torch.Tensor, compiled: dict | None) -> dict[str, Callable[[], object]]:
    """The implementations of one update on ``x`` (in place), with ``g`` as the gradient."""
    step = iter(range(1 << 62))
    y = torch.empty_like(x)
    impls = {
        "fused": lambda: ops.sgld_step_(x, g, A, B, LO, HI, seed=1, offset=next(step), check=False),
        "eager": lambda: x.add_(g, alpha=-A).add_(torch.randn_like(x), alpha=B).clamp_(LO, HI),
        "copy": lambda: y.copy_(x),
    }
    if compiled is not None:
        impls["compile"] = lambda: compiled["update"](x, g)
        impls["floor"] = lambda: compiled["floor"](x, g)
    return impls


def _plain_update(x, g):
    x.copy_(torch.clamp(x - A * g + B * torch.randn_like(x), LO, HI))


def _no_rng_update(x, g):
    x.copy_(torch.clamp(x - A * g + B * 0.5, LO, HI))


def compile_peers() -> tuple[dict | None, str | None]:
    """``torch.compile`` of the plain update and of the no-RNG floor; (None, reason) when it cannot."""
    try:
        return {"update": torch.compile(_plain_update, dynamic=False),
                "floor": torch.compile(_no_rng_update, dynamic=False)}, None
    except Exception as exc:  # noqa: BLE001 - the compiler is an optional peer
        return None, f"{type(exc).__name__}: {exc}"


def bench_update(rounds: int, sizes=SIZES, compiled: dict | None = None, device: str = "cpu") -> list[dict]:
    rows = []
    ghz = cpu_ghz() if device == "cpu" else None
    for n in sizes:
        gen = torch.Generator().manual_seed(0)
        x = (torch.rand(n, generator=gen) * 2 - 1).to(device)
        g = torch.randn(n, generator=gen).to(device)
        row: dict = {"numel": n, "threads": torch.get_num_threads()}
        if compiled is not None:
            t0 = time.perf_counter()
            compiled["update"](x, g)
            compiled["floor"](x, g)
            sync(device)
            row["compile_s"] = time.perf_counter() - t0
        samples = interleaved(update_impls(x, g, compiled), rounds, device=device)
        for name, per_round in samples.items():
            ns = 1e9 * statistics.median(round_times(per_round)) / n
            row[f"{name}_ns"] = ns
            row[f"{name}_cycles"] = ns * ghz if ghz else None
            row[f"{name}_quantised"] = tick_quantised(per_round)
        quantised = any(row[f"{k}_quantised"] for k in ("fused", "eager"))
        row["vs_eager"] = None if quantised else ratio_summary(samples["eager"], samples["fused"])
        if "compile" in samples:
            quantised_c = row["fused_quantised"] or row["compile_quantised"]
            row["vs_compile"] = None if quantised_c else ratio_summary(samples["compile"], samples["fused"])
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------- per path
# The ATen kernels a CPU with only a path's instruction set runs (ATEN_CPU_CAPABILITY).
ATEN_OF_PATH = {"avx512-intrinsics": "avx512", "avx512": "avx512", "avx2": "avx2", "baseline": "default"}
PATH_SIZES = (50_000, 1_000_000)


def cpu_paths() -> tuple[str | None, list[str]]:
    """(the CPU path the op takes here, the paths this CPU can run); (None, []) with the twin."""
    if ops.backend() != "extension":
        return None, []
    chosen, *paths = torch.ops.ebm_ood.sgld_cpu_paths().split()
    return chosen, [name for name, ok in (w.split(":") for w in paths) if ok == "yes"]


_PATH_WORKER = ("import json, sys, torch; from ebm_ood.commands.speed import sampler; torch.set_num_threads(1); "
                "rows = sampler.bench_update(int(sys.argv[1]), sizes=tuple(int(n) for n in sys.argv[2].split(','))); "
                "print(json.dumps({'path': sampler.cpu_paths()[0], "
                "'aten': torch.backends.cpu.get_cpu_capability(), 'rows': rows}))")


def bench_paths(rounds: int, sizes=PATH_SIZES) -> list[dict]:
    """Fused vs eager, one thread, per CPU path this machine runs, each in its own process (the op reads
    ``EBM_OOD_SGLD_PATH`` once per process). Rows: path, aten, and bench_update's fields."""
    rows = []
    for path in cpu_paths()[1]:
        env = {**os.environ, "EBM_OOD_SGLD_PATH": path, "ATEN_CPU_CAPABILITY": ATEN_OF_PATH.get(path, "default")}
        env.pop("EBM_OOD_SGLD_GENERIC", None)
        r = subprocess.run([sys.executable, "-c", _PATH_WORKER, str(rounds), ",".join(map(str, sizes))],
                           capture_output=True, text=True, env=env, timeout=1800)
        if r.returncode != 0:
            raise RuntimeError(f"bench sampler: the {path} path failed: {r.stderr.strip().splitlines()[-1:]}")
        out = json.loads(r.stdout.strip().splitlines()[-1])
        rows += [{"path": out["path"], "aten": out["aten"], **row} for row in out["rows"]]
    return rows


# ---------------------------------------------------------------------------------------------- chains
def _energies():
    """(name, energy module, parameters' owner, x0): the tabular MLP and the small conv energy, batch 64,
    each as ``JEMEnergy`` with one logit (``E(x) = -f(x)[0]``), as CD, SSM and VERA train them."""
    from ebm_ood.energy import JEMEnergy
    from ebm_ood.nn import MLP, SmallWRN

    torch.manual_seed(0)
    mlp = JEMEnergy(MLP(18, 1, width=100, depth=5))
    conv = JEMEnergy(SmallWRN(1, 1, width=2))
    return [("mlp", mlp, torch.rand(64, 18) * 2 - 1), ("conv", conv, torch.rand(64, 1, 8, 8) * 2 - 1)]


def bench_chains(rounds: int, n_steps: int = 100) -> list[dict]:
    rows = []
    a, b = 1.0, 0.01
    for name, energy, x0 in _energies():
        def ours():
            sgld(energy, x0, n_steps=n_steps, step_size=a, noise_std=b, module=energy)

        def jem_loop():                      # the reference loop of the JEM / Elflein code
            x = x0.clone()
            for _ in range(n_steps):
                x.requires_grad_(True)
                (g,) = torch.autograd.grad(energy(x).sum(), x)
                x = (x - a * g + b * torch.randn_like(x)).detach()
            return x

        # The floor: the same energy gradients at the very states our chain visits (timing depends on the
        # values: activations near zero are slow denormals on CPUs), without any update arithmetic.
        _, states = sgld(energy, x0, n_steps=n_steps, step_size=a, noise_std=b, module=energy, return_chain=True)
        states = [s.requires_grad_(True) for s in states[:n_steps]]

        params = list(energy.parameters())

        def floor():                         # parameters frozen for the chain, as sgld(module=...) does
            for q in params:
                q.requires_grad_(False)
            for x in states:
                (g,) = torch.autograd.grad(energy(x).sum(), x)
            for q in params:
                q.requires_grad_(True)
            return g

        energy.eval()
        cheap = name == "mlp"                # a ~30 ms chain: several calls per round and more rounds
        samples = interleaved({"ours": ours, "jem": jem_loop, "floor": floor}, 2 * rounds if cheap else rounds,
                              calls=5 if cheap else 1)
        energy.train()
        over = ratio_summary(samples["ours"], samples["floor"])
        over_jem = ratio_summary(samples["jem"], samples["floor"])
        rows.append({"energy": name, **{f"{k}_ms": 1e3 * statistics.median(round_times(v))
                                         for k, v in samples.items()},
                     "overhead": over["median"] - 1.0, "overhead_q1": over["q1"] - 1.0,
                     "overhead_q3": over["q3"] - 1.0, "jem_overhead": over_jem["median"] - 1.0})
    return rows


# ---------------------------------------------------------------------------------------------- CUDA check
def check_cuda_against_twin(numel: int = 1_000_003) -> list[dict]:
    """Bit-for-bit comparison of the CUDA kernel with the twin (float32 and float64, odd size, clamp
    active). Returns one row per dtype with the number of differing elements (0 expected)."""
    rows = []
    for dtype in (torch.float32, torch.float64):
        gen = torch.Generator().manual_seed(0)
        x = (torch.rand(numel, generator=gen, dtype=torch.float64) * 4 - 2).to(dtype)
        g = torch.randn(numel, generator=gen, dtype=torch.float64).to(dtype)
        want = ops.sgld_step_twin_(x.clone(), g, 0.3, 0.7, -1.5, 2.0, 99, 3)
        got = x.cuda()
        ops.sgld_step_(got, g.cuda(), 0.3, 0.7, -1.5, 2.0, seed=99, offset=3)
        diff = int((got.cpu() != want).sum())
        rows.append({"dtype": str(dtype).removeprefix("torch."), "numel": numel, "differing": diff})
    return rows


# ---------------------------------------------------------------------------------------------- report
def _ratio(r: dict | None) -> str:
    return "tick-quantised" if r is None else f"{r['median']:.2f}x [{r['q1']:.2f}-{r['q3']:.2f}]"


def _cell(row: dict, name: str) -> str:
    if f"{name}_ns" not in row:
        return "-"
    cycles = row.get(f"{name}_cycles")
    return f"{row[f'{name}_ns']:.2f}" + (f" ({cycles:.1f})" if cycles is not None else "")


def render(result: dict) -> str:
    lines = [f"SGLD update x <- clamp(x - a g + b n), float32, device={result['device']}, "
             f"backend={result['backend']}, cpu path={result.get('cpu_path') or '-'}, load average {result['load_avg']:.1f}, clock "
             f"{result['ghz'] or float('nan'):.2f} GHz (nominal), {result['rounds']} interleaved rounds",
             "ns per element (CPU cycles per element); ratios = median of per-round ratios [interquartile range]",
             "", "| elements | threads | fused | eager | compile | floor (no RNG) | copy | eager / fused "
             "| compile / fused |", "|---|---|---|---|---|---|---|---|---|"]
    for r in result["update"] + result["update_2threads"]:
        label = f"{r['threads']}" + (" (labelled row: 2 threads)" if r in result["update_2threads"] else "")
        lines.append(f"| {r['numel']:,} | {label} | {_cell(r, 'fused')} | {_cell(r, 'eager')} | "
                     f"{_cell(r, 'compile')} | {_cell(r, 'floor')} | {_cell(r, 'copy')} | {_ratio(r['vs_eager'])} | "
                     f"{_ratio(r.get('vs_compile')) if 'vs_compile' in r else '-'} |")
    if result.get("paths"):
        lines += ["", f"Per CPU kernel (path), one thread, each in its own process: this CPU takes "
                  f"{result['cpu_path']}; ATen = the eager peer's ATEN_CPU_CAPABILITY", "",
                  "| path | ATen | elements | fused | eager | eager / fused |", "|---|---|---|---|---|---|"]
        for r in result["paths"]:
            lines.append(f"| {r['path']} | {r['aten']} | {r['numel']:,} | {_cell(r, 'fused')} | {_cell(r, 'eager')} | "
                         f"{_ratio(r['vs_eager'])} |")
    elif result.get("cpu_path"):
        lines.append(f"\nCPU kernel (path) of the fused op here: {result['cpu_path']}")
    if result["compile_note"]:
        lines.append(f"\ntorch.compile peer unavailable: {result['compile_note']}")
    elif result["update"] and "compile_s" in result["update"][0]:
        secs = ", ".join(f"{r['numel']:,}: {r['compile_s']:.1f} s" for r in result["update"])
        lines.append(f"\ntorch.compile time (both peers, first call per size, not in the ratios): {secs}")
    if result["chains"]:
        lines += ["", "100-step SGLD chain, batch 64, JEMEnergy with one logit (overhead = median per-round "
                  "ratio to the gradient-only floor - 1)", "",
                  "| energy | ours ms | JEM loop ms | floor ms | ours over floor [IQR] | JEM over floor |",
                  "|---|---|---|---|---|---|"]
        for r in result["chains"]:
            lines.append(f"| {r['energy']} | {r['ours_ms']:.2f} | {r['jem_ms']:.2f} | {r['floor_ms']:.2f} | "
                         f"{100 * r['overhead']:.1f}% [{100 * r['overhead_q1']:.1f}-{100 * r['overhead_q3']:.1f}] | "
                         f"{100 * r['jem_overhead']:.1f}% |")
    if result.get("cuda_check"):
        lines += ["", "CUDA kernel vs the twin, bit for bit: " + ", ".join(
            f"{r['dtype']} {r['differing']} of {r['numel']:,} differ" for r in result["cuda_check"])]
    fmt = lambda v, pct=False: "n/a" if v is None else (f"{100 * v:.1f}%" if pct else f"{v:.2f}")  # noqa: E731
    lines.append(f"\nspeedup_1m={fmt(result['speedup_1m'])} (target >= 3), speedup_50k={fmt(result['speedup_50k'])}, "
                 f"vs_compile_1m={fmt(result['vs_compile_1m'])}, overhead_mlp={fmt(result['overhead_mlp'], True)}, "
                 f"overhead_conv={fmt(result['overhead_conv'], True)} (target <= 10%)")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON only")
    parser.add_argument("--rounds", type=int, default=15,
                        help="interleaved rounds per measurement; the ratios are medians over rounds (default 15)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for the main rows (default 1; a 2-thread row is always added)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile peers (they compile "
                        "C++ on first use, about a minute)")
    parser.add_argument("--no-chains", action="store_true", help="time the update only")
    parser.add_argument("--no-paths", action="store_true", help="skip the per-CPU-kernel rows (one process each)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                        help="cpu (default) or cuda: check the CUDA kernel bit for bit against the twin, then time it")


def _speedup(rows: list[dict], n: int, key: str) -> float | None:
    ratio = next((r.get(key) for r in rows if r["numel"] == n), None)
    return None if ratio is None else ratio["median"]


def run(args) -> int:
    error = count_error(args, {"rounds": 2, "threads": 1})
    if error:
        print(error, file=sys.stderr)
        return 2
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda: torch sees no GPU (torch.cuda.is_available() is False)", file=sys.stderr)
        return 2
    if args.device == "cuda" and ops.backend() != "extension":
        print("error: --device cuda: the compiled op is not loaded (backend 'twin'), so there is no CUDA kernel "
              "to check; see the warning above for why it did not build", file=sys.stderr)
        return 2
    previous = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        backend = ops.backend()
        cuda_check = check_cuda_against_twin() if args.device == "cuda" else []
        compiled, note = (None, "--no-compile") if args.no_compile else compile_peers()
        upd = bench_update(args.rounds, compiled=compiled, device=args.device)
        two = []
        if args.device == "cpu" and args.threads != 2:
            torch.set_num_threads(2)
            two = bench_update(args.rounds, sizes=(1_000_000,), device=args.device)
            torch.set_num_threads(args.threads)
        paths = [] if args.no_paths or args.device == "cuda" else bench_paths(args.rounds)
        chains = [] if args.no_chains or args.device == "cuda" else bench_chains(max(5, args.rounds // 2))
    finally:
        torch.set_num_threads(previous)
    by_e = {r["energy"]: r for r in chains}
    result = {"device": args.device, "backend": backend, "cpu_path": cpu_paths()[0], "threads": args.threads, "torch": torch.__version__,
              "load_avg": os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan"), "ghz": cpu_ghz(),
              "rounds": args.rounds, "compile_note": None if args.no_compile else note,
              "speedup_1m": _speedup(upd, 1_000_000, "vs_eager"), "speedup_50k": _speedup(upd, 50_000, "vs_eager"),
              "vs_compile_1m": _speedup(upd, 1_000_000, "vs_compile"),
              "overhead_mlp": by_e["mlp"]["overhead"] if "mlp" in by_e else None,
              "overhead_conv": by_e["conv"]["overhead"] if "conv" in by_e else None,
              "update": upd, "update_2threads": two, "paths": paths, "chains": chains, "cuda_check": cuda_check}
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 1 if any(r["differing"] for r in cuda_check) else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="ebm-ood bench sampler", description=__doc__.strip().splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
