"""Philox4x32-10 + Box–Muller (ebm_ood/sampling/philox.py and csrc/philox.h) against published answers,
numpy's elementary functions and the normal distribution."""
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import scipy.stats as st
import torch

from ebm_ood.sampling import philox
from ebm_ood.plumbing.build_flags import CXX_FLAGS, NVCC_FLAGS

CSRC = Path(__file__).resolve().parents[2] / "csrc"

# Random123 known-answer vectors (Salmon et al., SC'11): counter words, key words -> output words.
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter,key,expected", KAT)
def test_twin_matches_random123_known_answers(counter, key, expected):
    out = philox.philox4x32_10(counter, key)
    assert tuple(int(w) for w in out) == expected


def _philox_python_ints(counter, key):
    """Independent scalar Philox4x32-10 with Python ints (no 16-bit split, no tensors)."""
    c, (k0, k1) = list(counter), key
    for r in range(10):
        if r:
            k0, k1 = (k0 + 0x9E3779B9) & 0xFFFFFFFF, (k1 + 0xBB67AE85) & 0xFFFFFFFF
        p0, p1 = 0xD2511F53 * c[0], 0xCD9E8D57 * c[2]
        c = [((p1 >> 32) ^ c[1] ^ k0) & 0xFFFFFFFF, p1 & 0xFFFFFFFF, ((p0 >> 32) ^ c[3] ^ k1) & 0xFFFFFFFF,
             p0 & 0xFFFFFFFF]
    return tuple(c)


def test_vectorised_twin_matches_scalar_reference_on_random_counters():
    rng = np.random.default_rng(0)
    words = rng.integers(0, 2**32, size=(64, 6), dtype=np.uint64)
    counter = [torch.as_tensor(words[:, i].astype(np.int64)) for i in range(4)]
    for j in range(0, 64, 16):  # key is a pair of ints per call
        key = (int(words[j, 4]), int(words[j, 5]))
        out = philox.philox4x32_10(counter, key)
        for i in range(64):
            ref = _philox_python_ints([int(words[i, k]) for k in range(4)], key)
            assert tuple(int(o[i]) for o in out) == ref


def _compile_and_run(compiler, src, tmp_path, flags):
    exe = tmp_path / "kat"
    subprocess.run([compiler, *flags, f"-I{CSRC}", str(src), "-o", str(exe)], check=True, capture_output=True)
    return subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split()


KAT_MAIN = r"""
#include <cstdio>
#include "philox.h"
int main() {
  const unsigned v[3][6] = {{0,0,0,0,0,0}, {0xffffffffu,0xffffffffu,0xffffffffu,0xffffffffu,0xffffffffu,0xffffffffu},
    {0x243f6a88u,0x85a308d3u,0x13198a2eu,0x03707344u,0xa4093822u,0x299f31d0u}};
  for (int i = 0; i < 3; ++i) {
    uint32_t c0 = v[i][0], c1 = v[i][1], c2 = v[i][2], c3 = v[i][3];
    ebm_ood::philox4x32_10(c0, c1, c2, c3, v[i][4], v[i][5]);
    std::printf("%u %u %u %u\n", c0, c1, c2, c3);
  }
  float n[4];
  ebm_ood::philox_normal4(5, 123u, 0u, 7u, 0u, n);
  std::printf("%.9g %.9g %.9g %.9g\n", n[0], n[1], n[2], n[3]);
  return 0;
}
"""


def _check_header_output(out):
    words = [int(w) for w in out[:12]]
    assert tuple(words) == sum((k[2] for k in KAT), ())
    ref = philox.normal(24, seed=123, offset=7)[20:24].double().numpy()
    np.testing.assert_array_equal(np.array(out[12:16], dtype=np.float32), ref.astype(np.float32))


@pytest.mark.skipif(shutil.which("g++") is None, reason="no C++ compiler")
def test_header_known_answers_with_host_compiler(tmp_path):
    src = tmp_path / "kat.cpp"
    src.write_text(KAT_MAIN)
    _check_header_output(_compile_and_run("g++", src, tmp_path, [*CXX_FLAGS, "-std=c++17"]))


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
def test_header_known_answers_through_nvcc_host_path(tmp_path):
    """The header compiled by nvcc (its __host__ __device__ functions, run on the host)."""
    src = tmp_path / "kat.cu"
    src.write_text(KAT_MAIN)
    _check_header_output(_compile_and_run("nvcc", src, tmp_path, [*NVCC_FLAGS, "-std=c++17"]))


def test_log_polynomial_matches_numpy_log():
    u = torch.cat([torch.rand(200_000, generator=torch.Generator().manual_seed(1)).clamp_min(1e-30),
                   torch.tensor([2.0**-24, 0.5, 0.70710677, 0.70710678, 0.70710684, 1 - 2.0**-24])])
    ours = philox.log_unit(u).double().numpy()
    ref = np.log(u.double().numpy())
    rel = np.abs(ours - ref) / np.maximum(np.abs(ref), 1e-30)
    assert rel.max() < 3e-7       # ~2 float32 ulps


def test_sincos_matches_numpy_over_full_turn():
    k = torch.arange(0, 2**23, 11)
    s, c = philox.sincos_2pi(k)
    theta = 2 * np.pi * k.double().numpy() / 2**23
    assert np.abs(s.double().numpy() - np.sin(theta)).max() < 2.5e-7
    assert np.abs(c.double().numpy() - np.cos(theta)).max() < 2.5e-7


def test_normal_stream_matches_float64_box_muller_on_scalar_philox():
    """The documented stream, rebuilt independently: scalar Philox on (block, offset) with key = seed, then
    Box–Muller in float64 numpy, u = (2 (w_a >> 9) + 1) 2^-24, θ = 2π (w_b >> 9) 2^-23,
    n = sqrt(-2 ln u) (cos θ, sin θ); words (w0, w1) -> elements 4b, 4b+1, (w2, w3) -> 4b+2, 4b+3."""
    seed, offset, numel = 0x123456789ABCDEF, 2**32 + 5, 4 * 150 + 3     # high words used; a partial block
    ref = []
    for b in range((numel + 3) // 4):
        w = _philox_python_ints([b & 0xFFFFFFFF, b >> 32, offset & 0xFFFFFFFF, offset >> 32],
                                (seed & 0xFFFFFFFF, seed >> 32))
        for wa, wb in ((w[0], w[1]), (w[2], w[3])):
            u = (2 * (wa >> 9) + 1) * 2.0**-24
            theta = 2 * np.pi * (wb >> 9) * 2.0**-23
            r = np.sqrt(-2 * np.log(u))
            ref += [r * np.cos(theta), r * np.sin(theta)]
    ours = philox.normal(numel, seed, offset).double().numpy()
    np.testing.assert_allclose(ours, np.array(ref[:numel]), rtol=0, atol=3e-6)   # float32 polynomials


def test_normals_have_standard_moments_and_pass_ks():
    n = philox.normal(200_000, seed=2024, offset=3).double().numpy()
    se = 1 / np.sqrt(n.size)
    assert abs(n.mean()) < 5 * se
    assert abs(n.var() - 1) < 5 * np.sqrt(2) * se
    assert abs(st.skew(n)) < 5 * np.sqrt(6) * se
    assert abs(st.kurtosis(n)) < 5 * np.sqrt(24) * se
    assert st.kstest(n, "norm").pvalue > 1e-3
    assert np.abs(n).max() <= np.sqrt(48 * np.log(2)) + 1e-5   # documented 23-bit tail bound


def test_noise_is_a_function_of_index_and_differs_across_offsets_and_seeds():
    a = philox.normal(1001, seed=9, offset=0)
    np.testing.assert_array_equal(philox.normal(13, seed=9, offset=0).numpy(), a[:13].numpy())
    b = philox.normal(1001, seed=9, offset=1)
    c = philox.normal(1001, seed=10, offset=0)
    for other in (b, c):
        pairs = set(zip(a[:-1].tolist(), a[1:].tolist()))            # no run of the stream reused
        assert not pairs & set(zip(other[:-1].tolist(), other[1:].tolist()))
        assert (a == other).float().mean() < 1e-2
        assert abs(np.corrcoef(a.numpy(), other.numpy())[0, 1]) < 0.15
