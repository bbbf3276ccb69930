"""`ebm-ood bench sampler`'s per-CPU-kernel rows: one per path this machine runs, each forced in its own
process with the matching ATen kernels, and the path this CPU takes named (timings are never asserted)."""
import json

import pytest

from ebm_ood.sampling import ops
from ebm_ood.commands.speed import sampler as bench


@pytest.mark.skipif(ops.backend() != "extension", reason="fused op not built (no compiler)")
def test_a_row_per_path_this_cpu_runs_and_the_path_it_takes():
    chosen, runnable = bench.cpu_paths()
    assert chosen in runnable and "baseline" in runnable
    rows = bench.bench_paths(rounds=2, sizes=(1000,))
    assert [r["path"] for r in rows] == runnable                       # the forced path really ran
    assert all(r["aten"].lower() in ("default", "avx2", "avx512") for r in rows)  # ATen may cap what was asked
    assert all(r["numel"] == 1000 and r["fused_ns"] > 0 and r["eager_ns"] > 0 for r in rows)
    result = {"device": "cpu", "backend": "extension", "cpu_path": chosen, "threads": 1, "torch": "t",
              "load_avg": 0.0, "ghz": None, "rounds": 2, "compile_note": "--no-compile", "speedup_1m": None,
              "speedup_50k": None, "vs_compile_1m": None, "overhead_mlp": None, "overhead_conv": None,
              "update": [], "update_2threads": [], "paths": rows, "chains": [], "cuda_check": []}
    text = bench.render(result)
    assert f"this CPU takes {chosen}" in text
    for r in rows:
        assert f"| {r['path']} | {r['aten']} | 1,000 |" in text
    json.dumps(result)
