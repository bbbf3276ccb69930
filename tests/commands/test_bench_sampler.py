"""``ebm-ood bench sampler``: the timing harness's arithmetic and its report, on tiny sizes (no timings asserted)."""
import json
import statistics

import numpy as np

from ebm_ood.commands.speed import sampler as bench
from ebm_ood.commands.speed import timing


def test_ratio_summary_is_median_of_per_round_ratios():
    num = [[4.0, 5.0, 6.0], [10.0], [2.0, 2.0], [8.0]]          # round medians 5, 10, 2, 8
    den = [[1.0], [2.0, 2.0, 9.0], [1.0], [1.0]]                  # round medians 1, 2, 1, 1
    ratios = np.array([5.0, 5.0, 2.0, 8.0])
    got = timing.ratio_summary(num, den)
    assert got["median"] == np.median(ratios)
    q = statistics.quantiles(sorted(ratios), n=4)
    assert (got["q1"], got["q3"]) == (q[0], q[2])
    # a ratio of independent medians would differ: median(num) / median(den) = 6.5 / 1
    assert got["median"] != np.median([5, 10, 2, 8]) / np.median([1, 2, 1, 1])


def test_tick_quantised_flags_scheduler_ticks_only():
    tick = timing.TICK_S
    on_ticks = [[2 * tick + 1e-5, 4 * tick - 2e-5, 2 * tick] for _ in range(4)]
    spread = [[t * tick for t in (1.3, 1.55, 2.4)] for _ in range(4)]
    short = [[1e-4, 2e-4, 3e-4] for _ in range(4)]
    two_ticks_of_work = [[1.99 * tick, 2.0 * tick, 2.01 * tick, 1.97 * tick] for _ in range(4)]
    assert timing.tick_quantised(on_ticks)
    assert not timing.tick_quantised(spread)
    assert not timing.tick_quantised(short)
    assert not timing.tick_quantised(two_ticks_of_work)


def test_interleaved_rotates_the_order_and_counts_calls():
    order = []
    impls = {name: (lambda name=name: order.append(name)) for name in "abc"}
    samples = timing.interleaved(impls, rounds=3, calls=2)
    assert order[:3] == ["a", "b", "c"]                           # warm-up
    timed = order[3:]
    assert timed[:6] == ["a", "a", "b", "b", "c", "c"]
    assert timed[6:12] == ["b", "b", "c", "c", "a", "a"]
    assert all(len(v) == 3 and all(len(r) == 2 for r in v) for v in samples.values())


def test_update_rows_and_report_on_a_tiny_size():
    rows = bench.bench_update(rounds=2, sizes=(1000,))
    (row,) = rows
    assert row["numel"] == 1000 and row["fused_ns"] > 0 and row["eager_ns"] > 0
    assert "vs_compile" not in row
    result = {"device": "cpu", "backend": "x", "threads": 1, "torch": "t", "load_avg": 0.0, "ghz": None,
              "rounds": 2, "compile_note": "--no-compile", "speedup_1m": None, "speedup_50k": None,
              "vs_compile_1m": None, "overhead_mlp": None, "overhead_conv": None, "update": rows,
              "update_2threads": [], "chains": [], "cuda_check": []}
    text = bench.render(result)
    assert "| 1,000 | 1 |" in text and "speedup_1m=n/a" in text
    json.dumps(result)


def test_update_impls_compute_the_same_update():
    """The peers time the same arithmetic: without noise (b = 0 via a zero-noise copy) fused == eager."""
    import torch

    from ebm_ood.sampling import ops

    x = torch.linspace(-2, 2, 101)
    g = torch.linspace(3, -3, 101)
    a = x.clone()
    ops.sgld_step_(a, g, bench.A, 0.0, bench.LO, bench.HI, seed=1, offset=0)
    b = x.clone().add_(g, alpha=-bench.A).clamp_(bench.LO, bench.HI)
    assert torch.allclose(a, b, atol=1e-7)


def test_every_speed_bench_rejects_counts_below_their_bound_before_timing(capsys):
    from ebm_ood.commands.cli import main

    for argv, message in ((["sampler", "--rounds", "1"], "--rounds must be >= 2, got 1"),
                          (["threads", "--steps", "0"], "--steps must be >= 1, got 0"),
                          (["detectors", "--n-train", "1"], "--n-train must be >= 2, got 1"),
                          (["detectors", "--threads", "-1"], "--threads must be >= 0, got -1")):
        assert main(["bench"] + argv) == 2
        assert message in capsys.readouterr().err
