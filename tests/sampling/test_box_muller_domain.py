"""csrc/philox.h's Box–Muller gives the twin's bits over its whole domain: every value u can take (2^23, from
w_a >> 9) and every angle (2^23, from w_b >> 9), built with the op's flags by the host compiler and, where
installed, by nvcc (host path). The kernels' integer steps (exponent, mantissa, quarter-turn reduction,
signs) are rewritten for vector units; this checks them at every input rather than at sampled ones."""
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from ebm_ood.sampling import philox
from ebm_ood.plumbing.build_flags import CXX_FLAGS, NVCC_FLAGS

CSRC = Path(__file__).resolve().parents[2] / "csrc"
N = 1 << 23

# For k in [0, 2^23): w_a = k 2^9 + (k mod 2^9), w_b = (k P mod 2^23) 2^9 + (k mod 2^9) with P odd, so that
# each of w_a >> 9 and w_b >> 9 runs through all 2^23 values, unpaired, and the ignored low bits vary.
P = 2654435761
MAIN = r"""
#include <cstdio>
#include <vector>
#include "philox.h"
int main(int argc, char** argv) {
  const uint32_t n = 1u << 23;
  std::vector<float> out(2 * static_cast<size_t>(n));
  for (uint32_t k = 0; k < n; ++k) {
    const uint32_t wa = (k << 9) | (k & 0x1FFu);
    const uint32_t wb = (((k * 2654435761u) & (n - 1u)) << 9) | (k & 0x1FFu);
    ebm_ood::box_muller(wa, wb, out[2 * static_cast<size_t>(k)], out[2 * static_cast<size_t>(k) + 1]);
  }
  FILE* f = std::fopen(argv[1], "wb");
  if (f == nullptr || std::fwrite(out.data(), sizeof(float), out.size(), f) != out.size()) return 1;
  return std::fclose(f);
}
"""


def _twin() -> np.ndarray:
    k = torch.arange(N, dtype=torch.int64)
    wa = (k << 9) | (k & 0x1FF)
    wb = (((k * P) & (N - 1)) << 9) | (k & 0x1FF)
    n0, n1 = philox.box_muller(wa, wb)
    return torch.stack((n0, n1), dim=1).reshape(-1).numpy().view(np.uint32)


@pytest.fixture(scope="module")
def twin_bits():
    return _twin()


def _header_bits(compiler, flags, tmp_path) -> np.ndarray:
    src, exe, out = tmp_path / "bm.cpp", tmp_path / "bm", tmp_path / "bm.bin"
    if compiler == "nvcc":
        src = tmp_path / "bm.cu"
    src.write_text(MAIN)
    r = subprocess.run([compiler, *flags, f"-I{CSRC}", str(src), "-o", str(exe)], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    subprocess.run([str(exe), str(out)], check=True, timeout=600)
    return np.fromfile(out, dtype=np.uint32)


def _mismatch_report(got: np.ndarray, want: np.ndarray) -> str:
    bad = np.flatnonzero(got != want)
    return f"{bad.size} of {want.size} differ, first at k = {[int(i) // 2 for i in bad[:5]]}"


@pytest.mark.skipif(shutil.which("g++") is None, reason="no C++ compiler")
def test_header_box_muller_matches_twin_on_every_input(tmp_path, twin_bits):
    got = _header_bits("g++", [*CXX_FLAGS, "-std=c++17"], tmp_path)
    assert np.array_equal(got, twin_bits), _mismatch_report(got, twin_bits)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
def test_header_box_muller_matches_twin_on_every_input_through_nvcc(tmp_path, twin_bits):
    got = _header_bits("nvcc", [*NVCC_FLAGS, "-std=c++17"], tmp_path)
    assert np.array_equal(got, twin_bits), _mismatch_report(got, twin_bits)
