"""The fused SGLD op (csrc/, torch.ops.ebm_ood.sgld_step_) against its pure-PyTorch twin and closed forms."""
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.stats as st
import torch

from ebm_ood.sampling import ops, philox
from ebm_ood.plumbing.build_flags import NVCC_FLAGS

ROOT = Path(__file__).resolve().parents[2]
needs_ext = pytest.mark.skipif(ops.backend() != "extension", reason="fused op not built (no compiler)")


def _pair(n, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, generator=g, dtype=dtype), torch.randn(n, generator=g, dtype=dtype)


@needs_ext
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1,), (3,), (1023,), (4097,), (64, 18), (7, 1, 8, 8), (70_001,)])
def test_extension_matches_twin(dtype, shape):
    x, g = _pair(math.prod(shape), dtype)
    x, g = x.view(shape), g.view(shape)
    args = (0.3, 0.7, -1.5, 2.0, 12_345_678_901, 7)
    a, b = x.clone(), x.clone()
    torch.ops.ebm_ood.sgld_step_(a, g, *args)
    ops.sgld_step_twin_(b, g, *args)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert not torch.equal(a, x)


def test_twin_matches_numpy_formula():
    """x <- clamp(x - a g + s n) computed independently in float64 numpy from the twin's noise."""
    x, g = _pair(5000, torch.float64, seed=1)
    n = philox.normal(5000, seed=4, offset=2).double().numpy()
    ref = np.clip(x.numpy() - 0.05 * g.numpy() + 0.2 * n, -0.9, 1.1)
    out = ops.sgld_step_twin_(x.clone(), g, 0.05, 0.2, -0.9, 1.1, 4, 2)
    np.testing.assert_allclose(out.numpy(), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("use_twin", [False, True])
def test_noise_is_standard_normal(use_twin, monkeypatch):
    if not use_twin and ops.backend() != "extension":
        pytest.skip("fused op not built")
    if use_twin:
        monkeypatch.setitem(ops._STATE, "backend", "twin")
    x, g = torch.zeros(100_000), torch.zeros(100_000)
    ops.sgld_step_(x, g, 1.0, 1.0, seed=77, offset=5)
    n = x.double().numpy()
    se = 1 / np.sqrt(n.size)
    assert abs(n.mean()) < 5 * se and abs(n.var() - 1) < 5 * np.sqrt(2) * se
    assert abs(st.kurtosis(n)) < 5 * np.sqrt(24) * se
    assert st.kstest(n, "norm").pvalue > 1e-3


@needs_ext
def test_no_repeated_noise_across_offsets_and_seeds():
    draws = []
    for seed, offset in [(1, 0), (1, 1), (1, 2), (2, 0)]:
        x = torch.zeros(20_000)
        torch.ops.ebm_ood.sgld_step_(x, torch.zeros_like(x), 0.0, 1.0, -math.inf, math.inf, seed, offset)
        draws.append(x.numpy())
    for i in range(len(draws)):
        for j in range(i):
            # no run of the stream reappears (single float32 values may coincide by chance: ~2^23 levels)
            pairs_i = set(zip(draws[i][:-1].tolist(), draws[i][1:].tolist()))
            assert not pairs_i & set(zip(draws[j][:-1].tolist(), draws[j][1:].tolist()))
            assert (draws[i] == draws[j]).mean() < 1e-3
            assert abs(np.corrcoef(draws[i], draws[j])[0, 1]) < 0.05


def test_clamp_and_noise_free_step_match_closed_form():
    x, g = _pair(10_000, torch.float32, seed=3)
    out = ops.sgld_step_(x.clone(), g, 0.5, 0.0, -0.25, 0.75)
    ref = np.clip(x.numpy() - np.float32(0.5) * g.numpy(), np.float32(-0.25), np.float32(0.75))
    np.testing.assert_array_equal(out.numpy(), ref)
    big = ops.sgld_step_(x.clone(), g, 0.1, 5.0, -1.0, 1.0)
    assert big.min() == -1.0 and big.max() == 1.0 and ((big == 1.0).float().mean() > 0.2)


def test_wrapper_is_reproducible_under_manual_seed():
    x, g = _pair(1000, torch.float32)
    torch.manual_seed(5)
    a = ops.sgld_step_(x.clone(), g, 0.1, 0.1)
    torch.manual_seed(5)
    b = ops.sgld_step_(x.clone(), g, 0.1, 0.1)
    c = ops.sgld_step_(x.clone(), g, 0.1, 0.1)       # the generator moved on: new noise
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_wrapper_rejects_bad_input():
    x, g = _pair(8, torch.float32)
    with pytest.raises(ValueError, match="grad"):
        ops.sgld_step_(x, g[:4], 0.1, 0.1)
    with pytest.raises(ValueError, match="no autograd"):
        ops.sgld_step_(x.clone().requires_grad_(), g, 0.1, 0.1)
    with pytest.raises(ValueError, match="contiguous"):
        ops.sgld_step_(torch.zeros(4, 4).t(), torch.zeros(4, 4), 0.1, 0.1)
    with pytest.raises(ValueError, match="clamp_min"):
        ops.sgld_step_(x, g, 0.1, 0.1, 1.0, -1.0)
    with pytest.raises(TypeError, match="x"):
        ops.sgld_step_(torch.zeros(4, dtype=torch.int64), torch.zeros(4, dtype=torch.int64), 0.1, 0.1)


@needs_ext
def test_raw_op_has_no_autograd():
    x = torch.zeros(4, requires_grad=True)
    with pytest.raises(RuntimeError):
        torch.ops.ebm_ood.sgld_step_(x, torch.zeros(4), 0.1, 0.1, -1.0, 1.0, 0, 0)


@needs_ext
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck(dtype):
    x, g = _pair(513, dtype)
    torch.library.opcheck(torch.ops.ebm_ood.sgld_step_.default, (x, g, 0.1, 0.2, -1.0, 1.0, 3, 4))


def _run_python(code, **env):
    full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True, text=True, env=full,
                          cwd=str(ROOT), timeout=120)


def test_env_var_forces_twin():
    r = _run_python("from ebm_ood.sampling import ops; print(ops.backend())", EBM_OOD_FORCE_TWIN="1")
    assert r.returncode == 0 and r.stdout.strip() == "twin"


def test_falls_back_to_twin_with_one_warning_without_compiler(tmp_path):
    code = ("import sys; sys.modules['ebm_ood._C'] = None; "   # as if no ahead-of-time build either
            "import torch; from ebm_ood.sampling import ops; x = torch.zeros(8); "
            "ops.sgld_step_(x, torch.zeros(8), 0.1, 0.1); ops.sgld_step_(x, torch.zeros(8), 0.1, 0.1); "
            "print(ops.backend())")
    r = _run_python(code, CXX=str(tmp_path / "no-such-compiler"), EBM_OOD_EXTENSIONS_DIR=str(tmp_path / "ext"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "twin"
    assert r.stderr.count("using the pure-PyTorch twin") == 1


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
def test_cuda_kernel_compiles_with_nvcc(tmp_path):
    """`nvcc -c` of the CUDA kernel, with the build's flags, works on a machine without a GPU (raw pointers,
    CUDA runtime only)."""
    out = tmp_path / "sgld_cuda.o"
    r = subprocess.run(["nvcc", "-c", str(ROOT / "csrc" / "sgld_cuda.cu"), "-o", str(out), "-std=c++17",
                        *NVCC_FLAGS, f"-I{ROOT / 'csrc'}", "-Xcompiler", "-fPIC"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 0


@pytest.mark.skipif(not torch.cuda.is_available() or ops.backend() != "extension", reason="needs a GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_cpu(dtype):
    x, g = _pair(10_001, dtype)
    a = x.clone()
    torch.ops.ebm_ood.sgld_step_(a, g, 0.3, 0.7, -1.5, 2.0, 99, 3)
    b = x.cuda()
    torch.ops.ebm_ood.sgld_step_(b, g.cuda(), 0.3, 0.7, -1.5, 2.0, 99, 3)
    torch.testing.assert_close(b.cpu(), a, rtol=0, atol=1e-6)


def _mismatches(num_threads=1):
    """(dtype, numel, seed, offset) cases where the op and the twin differ in any bit, specials included."""
    torch.set_num_threads(num_threads)
    bad = []
    for dtype, bits in ((torch.float32, torch.int32), (torch.float64, torch.int64)):
        for n in (1, 5, 31, 33, 127, 129, 1023, 1025, 3001, 70_001, 300_007):
            for seed, offset, lo, hi in ((12_345_678_901, 7, -1.5, 2.0), (2**64 - 1, 2**64 - 1, -math.inf, math.inf),
                                         (0, 2**33 + 3, -0.0, 0.5)):
                gen = torch.Generator().manual_seed(n)
                x, g = torch.randn(n, generator=gen, dtype=dtype) * 2, torch.randn(n, generator=gen, dtype=dtype)
                x[1::11], x[2::13], x[3::17], g[4::19] = math.nan, -0.0, math.inf, -math.inf
                a, b = x.clone(), x.clone()
                torch.ops.ebm_ood.sgld_step_(a, g, 0.3, 0.7, lo, hi, seed, offset)
                ops.sgld_step_twin_(b, g, 0.3, 0.7, lo, hi, seed, offset)
                if not torch.equal(a.view(bits), b.view(bits)):
                    bad.append((str(dtype), n, seed, offset))
    return bad


@needs_ext
def test_extension_matches_twin_bit_for_bit():
    """The kernel this CPU runs (AVX-512 intrinsics where available) equals the twin in every bit."""
    threads = torch.get_num_threads()
    try:
        assert _mismatches() == []
        assert _mismatches(num_threads=2) == []
    finally:
        torch.set_num_threads(threads)


@needs_ext
def test_generic_kernel_matches_twin_bit_for_bit():
    """EBM_OOD_SGLD_GENERIC=1 selects the auto-vectorised kernel that other CPUs run: same bits."""
    code = ("import sys; sys.path.insert(0, 'tests/sampling'); from test_sgld_op import _mismatches; "
            "print(_mismatches(), _mismatches(num_threads=2))")
    r = _run_python(code, EBM_OOD_SGLD_GENERIC="1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[] []"
