# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Chapter 10 — Writing a fused torch C++/CUDA op: the SGLD update in `csrc/`
#
# *ebm_ood tutorials.* Run as a script: `python tutorials/10_fused_torch_op.py`
# (`EBM_OOD_FAST=1` for a quick version). To open it as a notebook, convert it with jupytext
# (`pip install jupytext`, then `jupytext --to ipynb tutorials/10_fused_torch_op.py`); jupytext is not a
# dependency of `ebm_ood`. Figures go to `$EBM_OOD_FIGURES` (default `tutorials/figures/`).
#
# **Motivation.** Every SGLD step (chapter 02) ends with the element-wise update
#
# $$x \leftarrow \operatorname{clamp}\big(x - \alpha\, g + \sigma\, n,\ lo,\ hi\big), \qquad n \sim \mathcal N(0, I)$$
#
# (the decoupled form; HEAT Eq. 4 is `α = η/2`, `σ = √η`). Contrastive divergence runs it 20–100 times
# per training step, on every negative sample. In plain PyTorch it is `randn` plus three or four passes over
# memory; on a CPU the single-threaded `randn` dominates. A *fused* op computes the noise and the update in
# one pass, on all cores and SIMD lanes. This chapter reads the code in `csrc/` and checks it piece by piece:
#
# 1. `philox.h` — the counter-based random number generator Philox4x32-10, and Box–Muller;
# 2. `sgld_update.h` — the per-element update, one definition for CPU and CUDA;
# 3. `sgld_cpu.cpp` — the CPU kernel and the op's registration with `TORCH_LIBRARY`;
# 4. `sgld_cuda.cu` — the CUDA kernel;
# 5. `ebm_ood/sampling/ops.py` — building (ahead of time or just in time), loading, the pure-PyTorch twin.

# %%
import math
import os
import re
import time
from pathlib import Path

import numpy as np
import torch

from ebm_ood.sampling import ops, philox
from ebm_ood.plumbing.tutorial import FAST, save_figure, setup

plt = setup(seed=0, threads=min(2, torch.get_num_threads()))  # two threads: the op parallelises, compare it

CSRC = Path(ops.__file__).resolve().parents[2] / "csrc"                             # the repository's csrc/


def show_source(name: str, pattern: str, lines: int) -> None:
    """Print ``lines`` lines of ``csrc/name`` starting at the first line matching ``pattern``."""
    path = CSRC / name
    if not path.is_file():
        print(f"({path} not found: this installation has no csrc/ checkout)")
        return
    text = path.read_text().splitlines()
    start = next(i for i, line in enumerate(text) if re.search(pattern, line))
    print(f"--- csrc/{name}, line {start + 1} ---")
    print("\n".join(text[start : start + lines]))


# %% [markdown]
# ## 1. Why a counter-based generator
#
# `torch.randn` uses a *stateful* generator: each call advances a hidden state, so the numbers depend on
# the order in which threads ask for them. A fused kernel on many threads (or thousands of CUDA threads)
# would need to share that state. A **counter-based** generator (Salmon et al., SC'11, "Parallel Random
# Numbers: As Easy as 1, 2, 3") has no state: it is a keyed bijection `(counter, key) → random bits`.
# Element `i` of the update just encrypts its own counter, so every thread works independently, the result
# does not depend on how the work is split, and a pure-PyTorch *twin* can reproduce the numbers exactly.
#
# ### Philox4x32-10
# A 128-bit counter `(c0, c1, c2, c3)` and a 64-bit key `(k0, k1)`; ten rounds of
#
# $$\begin{aligned}
# (\mathrm{hi}_0, \mathrm{lo}_0) &= M_0 \cdot c_0, \quad (\mathrm{hi}_1, \mathrm{lo}_1) = M_1 \cdot c_2
#   \quad\text{(32×32 → 64-bit products)}\\
# (c_0, c_1, c_2, c_3) &\leftarrow (\mathrm{hi}_1 \oplus c_1 \oplus k_0,\ \mathrm{lo}_1,\ \mathrm{hi}_0 \oplus c_3 \oplus k_1,\ \mathrm{lo}_0)\\
# (k_0, k_1) &\leftarrow (k_0 + W_0,\ k_1 + W_1) \bmod 2^{32} \quad\text{(between rounds)}
# \end{aligned}$$
#
# with `M0 = 0xD2511F53`, `M1 = 0xCD9E8D57`, `W0 = 0x9E3779B9`, `W1 = 0xBB67AE85`. In C++ (`philox.h`),
# written once for host and device (`EBM_HD` expands to `__host__ __device__` under nvcc):

# %%
show_source("philox.h", r"void philox_round", 12)

# %% [markdown]
# The Python twin (`ebm_ood/sampling/philox.py`) does the same on int64 tensors. A 32×32-bit product needs
# up to 64 bits, one more than a signed int64 holds, so the twin splits the multiplier into 16-bit halves.
#
# **Check:** the published known-answer vectors of Random123 (the authors' reference implementation).

# %%
known_answers = [  # counter words, key words -> output words (Random123 kat_vectors)
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]
for counter, key, expected in known_answers:
    out = tuple(int(w) for w in philox.philox4x32_10(counter, key))
    print(" ".join(f"{w:08x}" for w in out), "  expected", " ".join(f"{w:08x}" for w in expected))
    assert out == expected

# %% [markdown]
# ### How the op lays out its counters
# The op's `seed` is the key (`k0, k1 = seed mod 2³², seed >> 32`). Elements are grouped in blocks of four
# (one Philox call gives four 32-bit words); block `b` uses the counter `(b mod 2³², b >> 32, offset mod 2³²,
# offset >> 32)`. `sgld` keeps one seed per chain and passes `offset = t` at step `t`, so no counter — and
# no noise — is ever used twice within a chain. The noise of element `i` depends only on `(seed, offset, i)`:
# a prefix of a longer draw is the shorter draw.

# %%
short_draw = philox.normal(10, seed=42, offset=3)
long_draw = philox.normal(1000, seed=42, offset=3)
assert torch.equal(short_draw, long_draw[:10])                        # a pure function of the index
assert not torch.equal(long_draw[:10], philox.normal(10, seed=42, offset=4)[:10])   # new step, new noise

# %% [markdown]
# ## 2. Box–Muller: two uniforms, two normals
# Two 32-bit words `w_a, w_b` become `u ∈ (0, 1)` and an angle `θ ∈ [0, 2π)`, and
#
# $$n_0 = \sqrt{-2 \ln u}\,\cos\theta, \qquad n_1 = \sqrt{-2 \ln u}\,\sin\theta$$
#
# are independent standard normals. `u = (2 (w_a >> 9) + 1)·2⁻²⁴` is never 0 (so `ln u` is finite) and
# `θ = 2π (w_b >> 9)·2⁻²³`. The catch: `logf`, `sinf` and `cosf` round differently in glibc, SLEEF
# (PyTorch's vector math) and CUDA, so the kernel and the twin would differ in the last bit. `philox.h`
# therefore evaluates short polynomials for `ln`, `sin` and `cos` in a fixed order and is compiled without
# fused multiply-add contraction (`-ffp-contract=off`, `--fmad=false`), so all three round identically.
#
# **Check:** the twin's normals against a float64 numpy Box–Muller from the same Philox words.

# %%
n_check = 4096
w0, w1, w2, w3 = philox.philox4x32_10((torch.arange(n_check), 0, 5, 0), (7, 0))   # blocks 0.., offset 5, seed 7
n0, n1 = philox.box_muller(w0, w1)
u = (2 * (w0.numpy() >> 9) + 1) * 2.0**-24
theta = 2 * np.pi * (w1.numpy() >> 9) * 2.0**-23
r = np.sqrt(-2 * np.log(u))
assert np.allclose(n0.numpy(), r * np.cos(theta), rtol=1e-5, atol=1e-5)
assert np.allclose(n1.numpy(), r * np.sin(theta), rtol=1e-5, atol=1e-5)
# and the op's noise stream, element 4b + j, is built from exactly these words
stream = philox.normal(4 * n_check, seed=7, offset=5).view(n_check, 4)
assert torch.equal(stream[:, 0], n0) and torch.equal(stream[:, 1], n1)
print("Box-Muller matches numpy to 1e-5; the stream is (n0, n1, n2, n3) per Philox block")

# %% [markdown]
# ## 3. The per-element update, written once
# `sgld_update.h` is the entire numerical content of the op, shared by the CPU loop and the CUDA kernel:

# %%
show_source("sgld_update.h", r"template <typename T>", 8)

# %% [markdown]
# The twin, `ops.sgld_step_twin_`, is the same three lines on whole tensors: `v = x - g·α`, `v = v + n·σ`,
# clamp. Same operations in the same order, hence the same rounding.
#
# **Check:** the twin is the formula (float64 numpy, noise from `philox.normal`).

# %%
x = torch.randn(1000)
g = torch.randn(1000)
alpha, sigma, seed, offset = 0.3, 0.1, 2024, 11
x_twin = ops.sgld_step_twin_(x.clone(), g, alpha, sigma, -2.0, 2.0, seed, offset)
noise = philox.normal(1000, seed, offset).double().numpy()
reference = np.clip(x.double().numpy() - alpha * g.double().numpy() + sigma * noise, -2.0, 2.0)
assert np.allclose(x_twin.double().numpy(), reference, atol=1e-6)

# %% [markdown]
# ## 4. The CPU kernel and the registration
#
# `sgld_cpu.cpp` splits the tensor into tiles of 1024 elements handed to threads with `at::parallel_for`.
# A tile runs one of several kernels ("paths") that give the same numbers, bit for bit. The portable one
# (`sgld_tile.h`) runs Philox on 16 or 32 blocks at once in structure-of-arrays form, one block per 64-bit lane of
# GCC/Clang vector types, then Box–Muller and the update as flat loops the compiler vectorises; it is compiled
# once per instruction set (baseline SSE2 / NEON, and with GCC on x86-64 AVX2 and AVX-512 copies), and the
# op picks the best one the CPU has at load time. On a CPU with AVX-512 a hand-vectorised kernel runs
# instead, one pass per 128 elements with the normals going straight into the update
# (`EBM_OOD_SGLD_PATH=avx2` etc. forces a path, `torch.ops.ebm_ood.sgld_cpu_paths()` lists them).
# (A scalar loop drawing with `std::normal_distribution` is *slower* than plain
# PyTorch: winning needs threads **and** SIMD.)
#
# The op is declared once, with a *schema*, and implemented per dispatch key:

# %%
show_source("sgld_cpu.cpp", r"^TORCH_LIBRARY\(", 17)

# %% [markdown]
# Reading the schema: `Tensor(a!) x` says the op *mutates* `x` in place (alias set `a`, written `!`), which
# lets `torch.compile` and functionalisation reason about it; `float` is C++ `double`; `Scalar` takes
# any Python number, so the seed and offset (64-bit Philox words, up to 2⁶⁴ − 1; an `int` stops at
# 2⁶³ − 1) reach the kernel's own range check; `-> ()` returns nothing. `TORCH_LIBRARY(ebm_ood, m)`
# creates the namespace `torch.ops.ebm_ood`; each `TORCH_LIBRARY_IMPL(ebm_ood, <key>, m)` registers a
# kernel for one dispatch key: `CPU`, `CUDA` (only when built with CUDA), `Meta` (no data, for tracing and
# `opcheck`; it makes the same argument checks as the real kernels), and `Autograd`, autograd's "not
# implemented" fallback, so that the op never records a graph. The op has no derivative on purpose: SGLD
# takes `∇ₓE` *before* the update and updates detached tensors. Every kernel checks all its arguments
# (`checked_params`: dtypes, shapes, devices, contiguity, `x` and `grad` not overlapping — the kernel reads
# them through `__restrict__` pointers —, finite step and noise, no NaN clamp bound, and neither `x` nor
# `grad` requiring grad: "sgld_step_: x requires grad, but the op has no autograd; pass x.detach()", the
# message the check below prints) and bumps `x`'s version counter, as every in-place op must,
# so a graph that saved `x` earlier refuses to backpropagate through stale values.

# %%
backend = ops.backend()
print("backend in use:", backend)
if backend == "extension":
    op = torch.ops.ebm_ood.sgld_step_
    print("registered op:", op.default._schema)
    # check: the compiled op and the twin agree bit for bit, float32 and float64, odd sizes included
    for dtype in (torch.float32, torch.float64):
        for numel in (1, 7, 1024, 5003):
            xs, gs = torch.randn(numel, dtype=dtype), torch.randn(numel, dtype=dtype)
            a, b = xs.clone(), xs.clone()
            op(a, gs, 0.1, 0.05, -1.5, 1.5, 99, 3)
            ops.sgld_step_twin_(b, gs, 0.1, 0.05, -1.5, 1.5, 99, 3)
            assert torch.equal(a, b), (dtype, numel)
    # check: the op's own guard refuses an x or a grad that requires grad, naming the argument and the fix
    # (x is a non-leaf here: on a leaf that requires grad PyTorch refuses every in-place op before any kernel)
    for args in ((torch.zeros(4, requires_grad=True) * 1.0, torch.zeros(4)),
                 (torch.zeros(4), torch.zeros(4, requires_grad=True))):
        try:
            op(*args, 0.1, 0.1, -1.0, 1.0, 0, 0)
            raise AssertionError("the op should refuse tensors that require grad")
        except RuntimeError as err:
            message = str(err).splitlines()[0]
        print("the op refuses it:", message[:100])
        assert "but the op has no autograd; pass" in message and ".detach()" in message
    # check: PyTorch's own consistency tests for custom ops (schema, fake tensors, aliasing)
    torch.library.opcheck(op.default, (torch.randn(257), torch.randn(257), 0.1, 0.2, -1.0, 1.0, 3, 4))
    print("compiled op == twin (bit for bit) and torch.library.opcheck passes")
else:
    print("the compiled extension could not be loaded here (see the warning above): the comparison of op and "
          "twin is skipped; ops.sgld_step_ runs the twin")
    a = ops.sgld_step_(torch.zeros(8), torch.zeros(8), 0.0, 1.0, seed=1, offset=0)
    assert torch.equal(a, philox.normal(8, 1, 0))

# %% [markdown]
# ## 5. The CUDA kernel
# `sgld_cuda.cu` uses only raw pointers and the CUDA runtime, so `nvcc -c` compiles it on a machine with no
# GPU. One thread handles one Philox block (four elements) in a grid-stride loop, calling the same
# `philox_normal4` and `sgld_update` as the CPU code:

# %%
show_source("sgld_cuda.cu", r"__global__ void sgld_step_kernel", 16)
if torch.cuda.is_available() and backend == "extension" and torch._C._dispatch_has_kernel_for_dispatch_key(
        "ebm_ood::sgld_step_", "CUDA"):
    xc, gc = torch.randn(10_001), torch.randn(10_001)
    on_gpu = xc.cuda()
    torch.ops.ebm_ood.sgld_step_(on_gpu, gc.cuda(), 0.1, 0.05, -1.0, 1.0, 5, 6)
    ops.sgld_step_twin_(xc, gc, 0.1, 0.05, -1.0, 1.0, 5, 6)
    assert torch.equal(on_gpu.cpu(), xc)
    print("CUDA kernel == twin, bit for bit")
else:
    print("no CUDA device (or no CUDA build of the op) here: the CUDA comparison is skipped")

# %% [markdown]
# ## 6. Building: ahead of time, just in time, or not at all
# `ebm_ood/sampling/ops.py` is the only module that knows which implementation runs:
#
# 1. **Ahead of time (AOT).** `pip install --no-build-isolation -e .` lets `setup.py` see torch and build
#    `csrc/` as the extension module `ebm_ood._C` with `torch.utils.cpp_extension.CppExtension` (or
#    `CUDAExtension` when a CUDA toolkit is present). Importing `ebm_ood._C` runs the `TORCH_LIBRARY`
#    static initialisers, which register the op.
# 2. **Just in time (JIT).** Otherwise the first call compiles `csrc/` with
#    `torch.utils.cpp_extension.load` (ninja, about 30 s) into a cache directory whose name hashes the
#    sources, flags and torch/Python versions, so an edit to `csrc/` triggers a rebuild and an unchanged tree
#    reuses the `.so`. `is_python_module=False`: the library is loaded only for its registrations.
# 3. **Fallback.** No compiler or a build error: one warning, then the twin. `EBM_OOD_FORCE_TWIN=1` forces it.

# %%
print("compiler flags:", ops.CXX_FLAGS, "| nvcc flags:", ops.NVCC_FLAGS)
print("JIT cache:", os.environ.get("EBM_OOD_EXTENSIONS_DIR", "~/.cache/ebm_ood/torch_extensions"))

# %% [markdown]
# ## 7. Is it worth it? A small timing
# One SGLD update of `N` float32 elements: plain PyTorch (`randn_like` and three in-place passes) and
# `ops.sgld_step_`; the twin (pure-PyTorch Philox on int64 tensors, dozens of passes over memory) exists
# for correctness, not speed, so we time it on a 16× smaller tensor and compare rates in nanoseconds per
# element. Timings on a shared machine are noisy; we print a ratio of medians, and the ratio is only
# information — the test suite never asserts on time.

# %%
def median_time(fn, repeats: int) -> float:
    fn()                                                   # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


numel = 1 << (18 if FAST else 20)
repeats = 5 if FAST else 20
xb, gb = torch.randn(numel), torch.randn(numel)


def plain_pytorch():
    xb.add_(gb, alpha=-0.01).add_(torch.randn_like(xb), alpha=0.01).clamp_(-1.0, 1.0)


xs_small, gs_small = xb[: numel // 16].clone(), gb[: numel // 16].clone()
ns_per_element = {                                 # median seconds / elements, in nanoseconds
    "plain PyTorch": median_time(plain_pytorch, repeats) / numel * 1e9,
    "twin (N/16 elements)": median_time(lambda: ops.sgld_step_twin_(xs_small, gs_small, 0.01, 0.01, -1.0, 1.0, 1, 0),
                                        2) / (numel // 16) * 1e9,
}
if backend == "extension":                         # without the extension, sgld_step_ *is* the twin
    ns_per_element["sgld_step_ (extension)"] = median_time(
        lambda: ops.sgld_step_(xb, gb, 0.01, 0.01, -1.0, 1.0, seed=1, offset=0), repeats) / numel * 1e9
for name, ns in ns_per_element.items():
    print(f"{name:>26}: {ns:8.2f} ns per element   ({1e3 / ns:8.1f} M elements/s)")
fused = ns_per_element.get("sgld_step_ (extension)", ns_per_element["twin (N/16 elements)"])
print(f"speed-up of ops.sgld_step_ ({backend}) over plain PyTorch at {numel} elements, "
      f"{torch.get_num_threads()} threads: {ns_per_element['plain PyTorch'] / fused:.2f}x")

# %%
big = philox.normal(50_000 if FAST else 400_000, seed=3, offset=0).double()     # the op's noise stream
if plt is not None:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    fig.subplots_adjust(wspace=0.45)
    noise = big.numpy()
    grid = np.linspace(-5, 5, 400)
    axes[0].hist(noise, bins=100, density=True, alpha=0.6, label="Philox + Box–Muller")
    axes[0].plot(grid, np.exp(-grid**2 / 2) / math.sqrt(2 * math.pi), "k-", label="N(0, 1) density")
    axes[0].set_yscale("log"), axes[0].set_ylim(1e-5, 1), axes[0].legend(), axes[0].set_title("the op's noise")
    names = list(ns_per_element)
    axes[1].barh(names, [ns_per_element[k] for k in names])
    axes[1].set_xscale("log"), axes[1].set_xlabel("ns per float32 element (median, log scale)")
    axes[1].set_title("one SGLD update")
    save_figure(fig, "10_fused_op.png")

# check: the noise has standard moments (mean 0, variance 1, kurtosis 3) within sampling error
assert abs(float(big.mean())) < 5 / math.sqrt(len(big))
assert abs(float(big.var()) - 1) < 5 * math.sqrt(2 / len(big))
assert abs(float((big**4).mean()) - 3) < 5 * math.sqrt(96 / len(big))

# %% [markdown]
# ### Summary
# * A counter-based RNG (Philox4x32-10) makes noise a pure function of `(seed, offset, index)`: threads need
#   no shared state, and a twin can match the kernel bit for bit.
# * Portable Box–Muller: fixed polynomials and no FMA contraction, so CPU, CUDA and twin round alike.
# * One header for the update, one schema with `TORCH_LIBRARY`, one kernel per dispatch key, a `Meta` kernel
#   and an autograd guard; `torch.library.opcheck` tests the registration.
# * `ops.py` hides AOT/JIT/fallback from the rest of the library.
#
# ## Exercises
# Each exercise has a check, `ch10.check_exercise_k(answer)` (imported in the last cell), that recomputes the
# answer independently and says what is wrong. Reference solutions: `tutorials/exercises/solutions/ch10.py`.
# 1. **Counter reuse.** Call `ops.sgld_step_` on zero tensors of 4096 elements (`step_size=0`, `noise_std=1`,
#    `seed=ch10.SEED`) twice with `offset=ch10.OFFSET`, and once with `ch10.OFFSET + 1`. What are the
#    correlations of the noises, and what would happen to an SGLD chain that forgot to advance `offset`?
#    Check: `ch10.check_exercise_1({"same_offset": ..., "next_offset": ...})`.
# 2. **Counter collisions across the tensor.** For a tensor of more than `4 · 2³²` elements, block indices
#    overflow into `c1`. Compute `philox.philox4x32_10` for counters `(0, 0, OFFSET, 0)` and `(0, 1, OFFSET, 0)`
#    with key `(SEED, 0)`. Check: `ch10.check_exercise_2({"low": [4 words], "high": [4 words]})`.
# 3. **The noise from the words.** Write `noise(seed, offset, numel)` in numpy: Philox words per block of four
#    elements, then Box–Muller (`ch10.check_exercise_3`'s docstring gives the bit layout). Check:
#    `ch10.check_exercise_3(noise)`. Where does your float64 version differ from `philox.normal`, and why?


# %%
# The exercise checks: a script finds tutorials/exercises/ beside it; a notebook finds it when run in tutorials/.
from exercises import ch10  # noqa: E402

print("exercise checks:", ", ".join(f"ch10.{name}(answer)" for name in dir(ch10) if name.startswith("check_")))
