"""Every CPU kernel ("path") of the fused SGLD op gives the twin's bits: each is forced in a fresh process
(EBM_OOD_SGLD_PATH), and the portable kernel is cross-compiled for ARM64 and run under qemu where a cross
compiler is installed."""
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ebm_ood.sampling import ops
from ebm_ood.plumbing.build_flags import CXX_FLAGS

ROOT = Path(__file__).resolve().parents[2]
PATHS = ("avx512-intrinsics", "avx512", "avx2", "baseline")
needs_ext = pytest.mark.skipif(ops.backend() != "extension", reason="fused op not built (no compiler)")


def _run_python(code, **env):
    full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    for name in ("EBM_OOD_SGLD_PATH", "EBM_OOD_SGLD_GENERIC", "EBM_OOD_FORCE_TWIN"):
        if name not in env:
            full.pop(name, None)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, cwd=str(ROOT),
                          timeout=300)


def _paths() -> dict[str, bool]:
    """{path: whether this CPU runs it} for the paths of this build."""
    return {name: ok == "yes" for name, ok in (w.split(":") for w in torch.ops.ebm_ood.sgld_cpu_paths().split()[1:])}


@needs_ext
def test_this_build_reports_its_paths_and_the_chosen_one():
    report = torch.ops.ebm_ood.sgld_cpu_paths().split()
    paths = _paths()
    assert report[0] in paths and paths[report[0]]
    assert paths.get("baseline") is True                    # every CPU runs the baseline kernel
    assert set(paths) <= set(PATHS)


@needs_ext
@pytest.mark.parametrize("path", PATHS)
def test_forced_path_matches_twin_bit_for_bit(path):
    """float32 and float64, sizes around the group and tile edges, NaN/inf/-0 inputs, 64-bit seeds and
    offsets, one and two threads (test_sgld_op._mismatches)."""
    if not _paths().get(path, False):
        pytest.skip(f"this CPU or build has no {path} kernel")
    code = ("import sys, torch; sys.path.insert(0, 'tests/sampling'); from test_sgld_op import _mismatches; "
            "print(torch.ops.ebm_ood.sgld_cpu_paths().split()[0], _mismatches(), _mismatches(num_threads=2))")
    r = _run_python(code, EBM_OOD_SGLD_PATH=path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [path, "[]", "[]"]


@needs_ext
def test_generic_setting_skips_the_intrinsics():
    r = _run_python("import torch; from ebm_ood.sampling import ops; ops.backend(); "
                    "print(torch.ops.ebm_ood.sgld_cpu_paths().split()[0])", EBM_OOD_SGLD_GENERIC="1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() in PATHS[1:]


@needs_ext
@pytest.mark.parametrize("value", ["sse9", "AVX2", "avx2 "])
def test_unknown_path_is_refused_with_the_choices(value):
    code = ("import torch; from ebm_ood.sampling import ops; x = torch.zeros(8); "
            "ops.sgld_step_(x, torch.zeros(8), 0.1, 0.1)")
    r = _run_python(code, EBM_OOD_SGLD_PATH=value)
    assert r.returncode != 0
    assert f"EBM_OOD_SGLD_PATH={value}" in r.stderr and "baseline" in r.stderr


# ------------------------------------------------------------------------------ ARM64, cross-compiled
CROSS = shutil.which("aarch64-linux-gnu-g++")
QEMU = shutil.which("qemu-aarch64")


@pytest.mark.skipif(CROSS is None, reason="no ARM64 cross compiler (apt-get install g++-aarch64-linux-gnu)")
@pytest.mark.parametrize("march", ["armv8-a", "armv8.2-a", "armv9-a"])
def test_portable_kernel_matches_twin_on_arm64(tmp_path, march):
    """The portable kernel built for ARM64 (NEON) with the op's flags: compiles for each -march and, where
    qemu-aarch64 is installed, gives the twin's bits."""
    exe = tmp_path / "driver"
    flags = [f for f in CXX_FLAGS if f != "-fopenmp"]
    r = subprocess.run([CROSS, "-std=c++17", *flags, f"-march={march}", f"-I{ROOT / 'csrc'}",
                        "-DEBM_TILE_NS=arm", "-DEBM_TILE_VBYTES=16", "-DEBM_TILE_MUL=4", "-static",
                        str(ROOT / "tests" / "sgld_tile_driver.cpp"), "-o", str(exe)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    if QEMU is None:
        pytest.skip("compiled; no qemu-aarch64 to run it (apt-get install qemu-user)")
    for n, seed, offset in ((1, 0, 0), (131, 12_345_678_901, 7), (5000, 2**64 - 1, 2**64 - 1), (70_001, 3, 2**33 + 3)):
        gen = torch.Generator().manual_seed(n)
        x, g = torch.randn(n, generator=gen) * 2, torch.randn(n, generator=gen)
        x[1::11], x[2::13], x[3::17], g[4::19] = math.nan, -0.0, math.inf, -math.inf
        out = subprocess.run([QEMU, str(exe), str(n), str(seed), str(offset)],
                             input=x.numpy().tobytes() + g.numpy().tobytes(), capture_output=True, timeout=300)
        assert out.returncode == 0, out.stderr
        got = torch.frombuffer(bytearray(out.stdout), dtype=torch.float32)
        want = ops.sgld_step_twin_(x.clone(), g, 0.3, 0.7, -1.5, 2.0, seed, offset)
        assert torch.equal(got.view(torch.int32), want.view(torch.int32)), (n, seed, offset)
