// CPU kernel and registration of the fused SGLD op
//   ebm_ood::sgld_step_(Tensor(a!) x, Tensor grad, float step_size, float noise_std,
//                       float clamp_min, float clamp_max, Scalar seed, Scalar offset) -> ()
// seed and offset are integers in [0, 2^64) (Scalar, so that Python ints above 2^63 reach the checks).
// x <- clamp(x - step_size * grad + noise_std * n), n = Philox4x32-10 + Box–Muller (philox.h) of
// (seed, offset, element index). No autograd: the op is a sampler update on detached tensors.
//
// Speed: plain PyTorch spends most of its time in single-threaded randn. Here the work is split into
// tiles of kTile elements over threads (at::parallel_for), and each tile runs one of these kernels ("paths"),
// which give the same numbers, bit for bit:
//  * portable (sgld_tile.h): Philox in structure-of-arrays form on vector-extension types, then Box–Muller
//    as a flat loop the compiler vectorises and the update on whole vectors; one text, compiled once per
//    instruction set: "baseline" (SSE2 on x86-64, NEON on ARM64, plain C++ elsewhere) and, with GCC on
//    x86-64, "avx2" and "avx512" copies in `#pragma GCC target` regions, so the JIT-built library runs on
//    any CPU.
//  * "avx512-intrinsics" (below): hand-written AVX-512F, 3-6 % faster than the portable avx512 copy.
// The op takes the first path of kPaths the CPU supports (__builtin_cpu_supports); EBM_OOD_SGLD_PATH=<name>
// forces one, EBM_OOD_SGLD_GENERIC=1 skips the intrinsics (both read once); sgld_cpu_paths() says which.
// The AVX-512 intrinsics (tile_f32_avx512 / tile_f64_avx512, GCC/Clang on x86-64) are target("avx512f")
// functions; -DEBM_OOD_NO_AVX512 leaves them out. One pass per 128 elements (32 Philox blocks), nothing
// stored between the steps:
//    - Philox: four independent groups of eight blocks, one block per 64-bit lane, interleaved op by op to
//      hide the multiplier latency. A word lives in the low half of its lane (the high half is don't-care),
//      so mulhilo(M, c) is one vpmuludq, its high word one 64-bit shift away, and the three-way xor one
//      vpternlogd. The counter words b >> 32, offset are the same for every block of a tile, so the first
//      two rounds are half scalar (M1 * c2 of round 1 and M0 * c0 of round 2 are computed once per tile).
//    - Element order without interleaving shuffles: group lanes hold blocks in the order 0 4 1 5 2 6 3 7;
//      one masked vpshufd each merges (w0, w2) and (w1, w3) into 32-bit lanes, Box–Muller runs on the 16
//      word pairs at once, and unpacklo / unpackhi of (r cos, r sin), which work inside 128-bit lanes, emit
//      blocks 0-3 and 4-7 each as four whole blocks, in element order.
//    - Box–Muller makes every floating-point operation of philox.h (multiplies, adds, converts, sqrt), in
//      the same order, and IEEE rounds them the same in a vector lane as in a scalar (-ffp-contract=off
//      keeps the compiler from fusing a multiply and an add into an FMA): the polynomials cannot be
//      shortened without changing the numbers. Only integer steps are rewritten to equal values (the
//      exponent of u with vgetexpps, the angle remainder by sign extension, the quadrant from wb + 2^29).
//    - The update is sgld_update.h's: vmaxps(lo, v) / vminps(hi, v) are its selects, NaN included; masked
//      loads and stores cover a tile's last partial 128 elements.
//    The per-element definitions stay in philox.h and sgld_update.h, shared by every kernel, CUDA included.
#include <Python.h>
#include <ATen/MemoryOverlap.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <c10/core/InferenceMode.h>
#include <torch/library.h>
#include <torch/csrc/autograd/autograd_not_implemented_fallback.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#if defined(__GNUC__) && defined(__x86_64__) && !defined(EBM_OOD_NO_AVX512)
#include <immintrin.h>
#endif

#include "philox.h"
#include "sgld_update.h"

#ifdef EBM_OOD_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

namespace ebm_ood {  // launchers in sgld_cuda.cu (raw pointers; return a cudaError_t code)
int sgld_step_cuda_f32(float*, const float*, int64_t, double, double, double, double, uint64_t, uint64_t, void*);
int sgld_step_cuda_f64(double*, const double*, int64_t, double, double, double, double, uint64_t, uint64_t, void*);
const char* cuda_error_name(int code);
}  // namespace ebm_ood
#endif

// Every kernel below is compiled with GCC's first instruction-scheduling pass, which GCC runs by default on
// most targets but not on x86: it interleaves independent dependency chains (the two Box–Muller vectors of an
// iteration in sgld_tile.h, the Philox groups), keeping to the register budget (sched-pressure). Scheduling
// moves instructions only, so the numbers stay those of the twin; `ebm-ood bench sampler`'s per-path rows
// measure 4-10 % faster kernels with it on every x86 path (README, Speed).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("schedule-insns", "sched-pressure")
#endif

// The portable kernel (sgld_tile.h), one copy per instruction set: the architecture's baseline vectors (SSE2 on
// x86-64, NEON on ARM64, plain C++ elsewhere) and, with GCC on x86-64, AVX2 and AVX-512F copies.
#define EBM_TILE_NS portable_baseline
#define EBM_TILE_VBYTES 16
#if defined(__x86_64__) || defined(_M_X64)
#define EBM_TILE_MUL 1
#elif defined(__aarch64__) && defined(__ARM_NEON)
#define EBM_TILE_MUL 4
#else
#define EBM_TILE_MUL 0
#endif
#include "sgld_tile.h"
#undef EBM_TILE_NS
#undef EBM_TILE_VBYTES
#undef EBM_TILE_MUL

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define EBM_OOD_X86_COPIES 1
#pragma GCC push_options
#pragma GCC target("avx2")
#define EBM_TILE_NS portable_avx2
#define EBM_TILE_VBYTES 32
#define EBM_TILE_MUL 2
#include "sgld_tile.h"
#undef EBM_TILE_NS
#undef EBM_TILE_VBYTES
#undef EBM_TILE_MUL
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx512f")
#define EBM_TILE_NS portable_avx512
#define EBM_TILE_VBYTES 64
#define EBM_TILE_MUL 3
#include "sgld_tile.h"
#undef EBM_TILE_NS
#undef EBM_TILE_VBYTES
#undef EBM_TILE_MUL
#pragma GCC pop_options
#endif

namespace ebm_ood {
namespace {

using Params = TileParams;
constexpr int64_t kTile = 1024;              // elements per tile (a multiple of 4: whole Philox blocks)
// Below 64 tiles (64k elements) one thread is faster: waking a thread pool costs more than the work.
constexpr int64_t kGrainTiles = 64;

#if defined(__GNUC__) && defined(__x86_64__) && !defined(EBM_OOD_NO_AVX512)
#define EBM_OOD_AVX512_KERNEL 1
#define EBM_AVX512 __attribute__((target("avx512f"))) inline __attribute__((always_inline))

// Philox4x32-10 on K groups of eight blocks, one block per 64-bit lane: each lane holds a 32-bit word in its
// low half (the high half is don't-care: vpmuludq reads only the low halves, and only they are read at the
// end). mulhilo(M, c) is one vpmuludq; its high word is moved to the low half by a 64-bit shift.
// The K groups are independent chains, interleaved op by op so that the multiplier latency is hidden.
template <int K>
struct PhiloxK {
  __m512i c0[K], c1[K], c2[K], c3[K];
};

// The per-tile constants (TileKeys, tile_keys) are the portable kernel's, from sgld_tile.h.
EBM_AVX512 __m512i hi_to_lo(__m512i v) { return _mm512_srli_epi64(v, 32); }
EBM_AVX512 __m512i xor3(__m512i a, __m512i b, __m512i c) { return _mm512_ternarylogic_epi32(a, b, c, 0x96); }
EBM_AVX512 __m512i bcast(uint32_t v) { return _mm512_set1_epi32(static_cast<int>(v)); }

// Ten rounds for K groups; group k's c0 words are the low halves of cw0[k].
template <int K>
EBM_AVX512 PhiloxK<K> philox(const __m512i* cw0, const TileKeys& t) {
  const __m512i m0 = _mm512_set1_epi64(kPhiloxM0), m1 = _mm512_set1_epi64(kPhiloxM1);
  PhiloxK<K> s;
  // rounds 1 and 2: c0, c1 after round 1 and c3 after round 2 are tile constants
#pragma GCC unroll 16
  for (int k = 0; k < K; ++k) {
    const __m512i p0 = _mm512_mul_epu32(cw0[k], m0);
    const __m512i c2 = _mm512_xor_si512(hi_to_lo(p0), bcast(t.r1_c2x));
    const __m512i p1 = _mm512_mul_epu32(c2, m1);
    s.c0[k] = _mm512_xor_si512(hi_to_lo(p1), bcast(t.r2_c0x));
    s.c1[k] = p1;
    s.c2[k] = _mm512_xor_si512(p0, bcast(t.r2_c2x));
    s.c3[k] = bcast(t.r2_c3);
  }
#pragma GCC unroll 8
  for (int r = 2; r < 10; ++r) {
    const __m512i k0 = bcast(t.k0[r]), k1 = bcast(t.k1[r]);
#pragma GCC unroll 16
    for (int k = 0; k < K; ++k) {
      const __m512i p0 = _mm512_mul_epu32(s.c0[k], m0);
      const __m512i p1 = _mm512_mul_epu32(s.c2[k], m1);
      s.c0[k] = xor3(hi_to_lo(p1), s.c1[k], k0);
      s.c1[k] = p1;
      s.c2[k] = xor3(hi_to_lo(p0), s.c3[k], k1);
      s.c3[k] = p0;
    }
  }
  return s;
}

// box_muller of philox.h on 16 (wa, wb) pairs, nc = r cos, ns = r sin, with every floating-point operation of
// the scalar code, in the same order; only integer steps are rewritten, to equal values:
//  * u = ku 2^-24 with ku = (wa >> 8) | 1 (== ((wa >> 9) << 1) | 1): ku and u have the same mantissa bits, and
//    u's exponent is getexp(ku) - 24, so log_unit's e is getexp(ku) - 23 - small (small integers, exact);
//  * the angle k = wb >> 9 = n 2^21 + rem: rem is k's low 21 bits sign-extended, i.e. wb's bits 9..29; only
//    n mod 4 is used (swap on n odd, sin sign n & 2, cos sign (n + 1) & 2), and t = wb + 2^29 (mod 2^32) holds
//    n mod 4 in its top two bits.
EBM_AVX512 void box_muller16(__m512i wa, __m512i wb, __m512& nc, __m512& ns) {
  const __m512 kf = _mm512_cvtepi32_ps(_mm512_or_si512(_mm512_srli_epi32(wa, 8), _mm512_set1_epi32(1)));
  // log_unit(u)
  const __m512i mb = _mm512_ternarylogic_epi32(_mm512_castps_si512(kf), _mm512_set1_epi32(0x7FFFFF),
                                               _mm512_set1_epi32(0x3F000000), 0xEA);   // (a & b) | c
  const __mmask16 small = _mm512_cmplt_epu32_mask(mb, _mm512_set1_epi32(0x3F3504F3));
  __m512 fe = _mm512_sub_ps(_mm512_getexp_ps(kf), _mm512_set1_ps(23.0f));
  fe = _mm512_mask_sub_ps(fe, small, fe, _mm512_set1_ps(1.0f));
  const __m512i xb = _mm512_mask_add_epi32(mb, small, mb, _mm512_set1_epi32(1 << 23));
  const __m512 x = _mm512_sub_ps(_mm512_castsi512_ps(xb), _mm512_set1_ps(1.0f));
  const __m512 z = _mm512_mul_ps(x, x);
  __m512 q = _mm512_set1_ps(7.0376836292e-2f);
  q = _mm512_add_ps(_mm512_mul_ps(q, x), _mm512_set1_ps(-1.1514610310e-1f));
  q = _mm512_add_ps(_mm512_mul_ps(q, x), _mm512_set1_ps(1.1676998740e-1f));
  q = _mm512_add_ps(_mm512_mul_ps(q, x), _mm512_set1_ps(-1.2420140846e-1f));
  q = _mm512_add_ps(_mm512_mul_ps(q, x), _mm512_set1_ps(1.4249322787e-1f));
  q = _mm512_add_ps(_mm512_mul_ps(q, x), _mm512_set1_ps(-1.6668057665e-1f));
  q = _mm512_add_ps(_mm512_mul_ps(q, x), _mm512_set1_ps(2.0000714765e-1f));
  q = _mm512_add_ps(_mm512_mul_ps(q, x), _mm512_set1_ps(-2.4999993993e-1f));
  q = _mm512_add_ps(_mm512_mul_ps(q, x), _mm512_set1_ps(3.3333331174e-1f));
  __m512 y = _mm512_mul_ps(_mm512_mul_ps(q, x), z);
  y = _mm512_add_ps(y, _mm512_mul_ps(fe, _mm512_set1_ps(-2.12194440e-4f)));
  y = _mm512_add_ps(y, _mm512_mul_ps(z, _mm512_set1_ps(-0.5f)));
  const __m512 lnu = _mm512_add_ps(_mm512_add_ps(x, y), _mm512_mul_ps(fe, _mm512_set1_ps(0.693359375f)));
  const __m512 r = _mm512_sqrt_ps(_mm512_mul_ps(lnu, _mm512_set1_ps(-2.0f)));
  // sincos_2pi(wb >> 9)
  const __m512i t = _mm512_add_epi32(wb, _mm512_set1_epi32(1 << 29));
  const __m512 phi = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srai_epi32(_mm512_slli_epi32(wb, 2), 11)),
                                   _mm512_set1_ps(7.490140565847857e-07f));
  const __m512 z2 = _mm512_mul_ps(phi, phi);
  __m512 sp = _mm512_add_ps(_mm512_mul_ps(z2, _mm512_set1_ps(-1.9515295891e-4f)), _mm512_set1_ps(8.3321608736e-3f));
  sp = _mm512_add_ps(_mm512_mul_ps(sp, z2), _mm512_set1_ps(-1.6666654611e-1f));
  sp = _mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(sp, z2), phi), phi);
  __m512 cp = _mm512_add_ps(_mm512_mul_ps(z2, _mm512_set1_ps(2.443315711809948e-5f)),
                            _mm512_set1_ps(-1.388731625493765e-3f));
  cp = _mm512_add_ps(_mm512_mul_ps(cp, z2), _mm512_set1_ps(4.166664568298827e-2f));
  cp = _mm512_mul_ps(_mm512_mul_ps(cp, z2), z2);
  cp = _mm512_sub_ps(cp, _mm512_mul_ps(z2, _mm512_set1_ps(0.5f)));
  cp = _mm512_add_ps(cp, _mm512_set1_ps(1.0f));
  const __mmask16 swap = _mm512_test_epi32_mask(t, _mm512_set1_epi32(1 << 30));
  const __m512i sign = _mm512_set1_epi32(static_cast<int>(0x80000000u));
  const __m512i s = _mm512_ternarylogic_epi32(_mm512_castps_si512(_mm512_mask_blend_ps(swap, sp, cp)), t, sign,
                                              0x78);                                    // a ^ (b & c)
  const __m512i c = _mm512_ternarylogic_epi32(_mm512_castps_si512(_mm512_mask_blend_ps(swap, cp, sp)),
                                              _mm512_add_epi32(t, _mm512_set1_epi32(1 << 30)), sign, 0x78);
  nc = _mm512_mul_ps(r, _mm512_castsi512_ps(c));
  ns = _mm512_mul_ps(r, _mm512_castsi512_ps(s));
}

// The 32 K normals of blocks b..b+8K-1 in element order: n[2k], n[2k+1] hold blocks b+8k..b+8k+7. Lane m of
// group k's Philox vectors holds block b + 8k + lane_block[2m]: after Box–Muller the cos products hold (n0, n2)
// and the sin products (n1, n3) of lane m's block in 32-bit lanes 2m, 2m+1, so unpacklo / unpackhi (which
// work inside 128-bit lanes) emit whole blocks, in order. The low counter word b + j does not wrap inside a
// tile (kTile divides 2^34), so b >> 32 is the tile's.
template <int K>
EBM_AVX512 void normals(uint32_t b_lo, const TileKeys& t, __m512* n) {
  const __m512i lane_block = _mm512_setr_epi32(0, 0, 4, 0, 1, 0, 5, 0, 2, 0, 6, 0, 3, 0, 7, 0);
  __m512i cw0[K];
#pragma GCC unroll 16
  for (int k = 0; k < K; ++k) cw0[k] = _mm512_add_epi32(bcast(b_lo + 8u * static_cast<uint32_t>(k)), lane_block);
  const PhiloxK<K> w = philox<K>(cw0, t);
#pragma GCC unroll 16
  for (int k = 0; k < K; ++k) {
    const __m512i w02 = _mm512_mask_shuffle_epi32(w.c0[k], 0xAAAA, w.c2[k], _MM_PERM_CDAB);  // (w0, w2) per block
    const __m512i w13 = _mm512_mask_shuffle_epi32(w.c1[k], 0xAAAA, w.c3[k], _MM_PERM_CDAB);  // (w1, w3)
    __m512 nc, ns;
    box_muller16(w02, w13, nc, ns);
    n[2 * k] = _mm512_unpacklo_ps(nc, ns);
    n[2 * k + 1] = _mm512_unpackhi_ps(nc, ns);
  }
}

struct Update16f {
  __m512 step, sd, lo, hi;
};

// sgld_update<float> on 16 lanes: max(lo, v) is `v < lo ? lo : v` (vmaxps returns its second operand when
// the first is not greater, NaN included), min(hi, v) is `v > hi ? hi : v`.
EBM_AVX512 __m512 update16(__m512 x, __m512 g, __m512 n, const Update16f& u) {
  __m512 v = _mm512_sub_ps(x, _mm512_mul_ps(g, u.step));
  v = _mm512_add_ps(v, _mm512_mul_ps(n, u.sd));
  v = _mm512_max_ps(u.lo, v);
  return _mm512_min_ps(u.hi, v);
}

struct Update8d {
  __m512d step, sd, lo, hi;
};

EBM_AVX512 __m512d update8(__m512d x, __m512d g, __m256 n, const Update8d& u) {
  __m512d v = _mm512_sub_pd(x, _mm512_mul_pd(g, u.step));
  v = _mm512_add_pd(v, _mm512_mul_pd(_mm512_cvtps_pd(n), u.sd));
  v = _mm512_max_pd(u.lo, v);
  return _mm512_min_pd(u.hi, v);
}

EBM_AVX512 __mmask16 first_lanes16(int64_t n) {
  return n >= 16 ? static_cast<__mmask16>(0xFFFF) : n <= 0 ? 0 : static_cast<__mmask16>((1u << n) - 1u);
}

EBM_AVX512 __mmask8 first_lanes8(int64_t n) {
  return n >= 8 ? static_cast<__mmask8>(0xFF) : n <= 0 ? 0 : static_cast<__mmask8>((1u << n) - 1u);
}

constexpr int kGroups = 4;                  // groups of 8 Philox blocks (32 elements) in flight
static_assert((int64_t{1} << 34) % kTile == 0, "a tile's Philox blocks must share the counter word b >> 32");

__attribute__((target("avx512f"))) void tile_f32_avx512(float* x, const float* g, int64_t start, int64_t count,
                                                         const Params& p) {
  const uint64_t b0 = static_cast<uint64_t>(start) / 4;
  const TileKeys t = tile_keys(static_cast<uint32_t>(b0 >> 32), p);
  const Update16f u{_mm512_set1_ps(static_cast<float>(p.step_size)), _mm512_set1_ps(static_cast<float>(p.noise_std)),
                    _mm512_set1_ps(static_cast<float>(p.lo)), _mm512_set1_ps(static_cast<float>(p.hi))};
  float* xs = x + start;
  const float* gs = g + start;
  int64_t i = 0;
  for (; i + 32 * kGroups <= count; i += 32 * kGroups) {
    __m512 n[2 * kGroups];
    normals<kGroups>(static_cast<uint32_t>(b0) + static_cast<uint32_t>(i / 4), t, n);
#pragma GCC unroll 16
    for (int q = 0; q < 2 * kGroups; ++q) {
      const int64_t j = i + 16 * q;
      _mm512_storeu_ps(xs + j, update16(_mm512_loadu_ps(xs + j), _mm512_loadu_ps(gs + j), n[q], u));
    }
  }
  for (; i < count; i += 32) {
    __m512 n[2];
    normals<1>(static_cast<uint32_t>(b0) + static_cast<uint32_t>(i / 4), t, n);
    for (int q = 0; q < 2; ++q) {
      const int64_t j = i + 16 * q;
      const __mmask16 m = first_lanes16(count - j);
      _mm512_mask_storeu_ps(xs + j, m, update16(_mm512_maskz_loadu_ps(m, xs + j), _mm512_maskz_loadu_ps(m, gs + j),
                                                n[q], u));
    }
  }
}

__attribute__((target("avx512f"))) void tile_f64_avx512(double* x, const double* g, int64_t start, int64_t count,
                                                         const Params& p) {
  const uint64_t b0 = static_cast<uint64_t>(start) / 4;
  const TileKeys t = tile_keys(static_cast<uint32_t>(b0 >> 32), p);
  const Update8d u{_mm512_set1_pd(p.step_size), _mm512_set1_pd(p.noise_std), _mm512_set1_pd(p.lo),
                   _mm512_set1_pd(p.hi)};
  double* xs = x + start;
  const double* gs = g + start;
  for (int64_t i = 0; i < count; i += 32 * kGroups) {
    __m512 n[2 * kGroups];
    normals<kGroups>(static_cast<uint32_t>(b0) + static_cast<uint32_t>(i / 4), t, n);
#pragma GCC unroll 16
    for (int q = 0; q < 4 * kGroups; ++q) {
      const int64_t j = i + 8 * q;
      const __m512d nq = _mm512_castps_pd(n[q / 2]);
      const __m256 n8 = _mm256_castpd_ps(q % 2 == 0 ? _mm512_castpd512_pd256(nq) : _mm512_extractf64x4_pd(nq, 1));
      const __mmask8 m = first_lanes8(count - j);
      _mm512_mask_storeu_pd(xs + j, m, update8(_mm512_maskz_loadu_pd(m, xs + j), _mm512_maskz_loadu_pd(m, gs + j),
                                               n8, u));
    }
  }
}

#endif

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

using TileF32 = void (*)(float*, const float*, int64_t, int64_t, const Params&);
using TileF64 = void (*)(double*, const double*, int64_t, int64_t, const Params&);

// The CPU kernels ("paths"), fastest first; the op runs the first one this CPU can run.
struct Path {
  const char* name;
  TileF32 f32;
  TileF64 f64;
  bool (*supported)();
};

bool always() { return true; }
#if defined(__GNUC__) && defined(__x86_64__)
bool has_avx2() { return __builtin_cpu_supports("avx2"); }
bool has_avx512f() { return __builtin_cpu_supports("avx512f"); }
#endif

const Path kPaths[] = {
#ifdef EBM_OOD_AVX512_KERNEL
    {"avx512-intrinsics", tile_f32_avx512, tile_f64_avx512, has_avx512f},
#endif
#ifdef EBM_OOD_X86_COPIES
    {"avx512", portable_avx512::tile_f32, portable_avx512::tile_f64, has_avx512f},
    {"avx2", portable_avx2::tile_f32, portable_avx2::tile_f64, has_avx2},
#endif
    {"baseline", portable_baseline::tile_f32, portable_baseline::tile_f64, always},
};

// The names of the paths this build has, for messages.
std::string path_names() {
  std::string names;
  for (const Path& q : kPaths) names += std::string(names.empty() ? "" : ", ") + q.name;
  return names;
}

// The path in use, chosen once: $EBM_OOD_SGLD_PATH names one (refused if this CPU or build cannot run it);
// otherwise EBM_OOD_SGLD_GENERIC set to anything but "0" skips the hand-written intrinsics; otherwise the
// fastest path the CPU supports. All paths give the same bits.
const Path& cpu_path() {
  static const Path* chosen = [] {
    const char* want = std::getenv("EBM_OOD_SGLD_PATH");
    if (want != nullptr && want[0] != '\0') {
      for (const Path& q : kPaths) {
        if (std::strcmp(q.name, want) == 0) {
          TORCH_CHECK(q.supported(), "EBM_OOD_SGLD_PATH=", want, ": this CPU cannot run that kernel; choose one "
                      "of the paths it supports (unset the variable to take the fastest)");
          return &q;
        }
      }
      TORCH_CHECK(false, "EBM_OOD_SGLD_PATH=", want, " is not a kernel of this build; choose one of: ",
                  path_names());
    }
    const char* env = std::getenv("EBM_OOD_SGLD_GENERIC");
    const bool generic = env != nullptr && env[0] != '\0' && std::strcmp(env, "0") != 0;
    for (const Path& q : kPaths) {
      if (generic && std::strcmp(q.name, "avx512-intrinsics") == 0) continue;
      if (q.supported()) return &q;
    }
    return &kPaths[sizeof(kPaths) / sizeof(kPaths[0]) - 1];
  }();
  return *chosen;
}

// "name supported" for every path of this build, the chosen one first (for the benchmark and tests).
std::string sgld_cpu_paths() {
  std::string out = cpu_path().name;
  for (const Path& q : kPaths) out += std::string(" ") + q.name + (q.supported() ? ":yes" : ":no");
  return out;
}

template <typename T>
void run_tiles(void (*tile)(T*, const T*, int64_t, int64_t, const Params&), T* x, const T* g, int64_t numel,
               const Params& p) {
  const int64_t n_tiles = (numel + kTile - 1) / kTile;
  at::parallel_for(0, n_tiles, /*grain_size=*/kGrainTiles, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t start = t * kTile;
      tile(x, g, start, std::min(kTile, numel - start), p);
    }
  });
}

// seed or offset as a 64-bit word.
uint64_t key_word(const c10::Scalar& v, const char* name) {
  TORCH_CHECK(v.isIntegral(/*includeBool=*/false), "sgld_step_: ", name, " must be an integer, got ", v.type());
  if (v.isSymbolic()) return 0;  // tracing (torch.compile): only shapes matter
  TORCH_CHECK(v.isUnsigned(), "sgld_step_: ", name, " must be in [0, 2^64), got ", v.toLong());
  return v.toUInt64();
}

// Every argument check of the op, shared by the CPU, CUDA and Meta kernels (the Python wrapper checks the
// same things first, with the same meaning). Returns the kernel parameters.
Params checked_params(const at::Tensor& x, const at::Tensor& grad, double step_size, double noise_std,
                      double clamp_min, double clamp_max, const c10::Scalar& seed, const c10::Scalar& offset) {
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "sgld_step_: x must be float32 or float64, got ", x.scalar_type());
  TORCH_CHECK(grad.scalar_type() == x.scalar_type(), "sgld_step_: grad dtype ", grad.scalar_type(),
              " differs from x dtype ", x.scalar_type());
  TORCH_CHECK(grad.sym_sizes() == x.sym_sizes(), "sgld_step_: grad shape ", grad.sym_sizes(),
              " differs from x shape ", x.sym_sizes());
  TORCH_CHECK(grad.device() == x.device(), "sgld_step_: grad is on ", grad.device(), " but x is on ", x.device());
  TORCH_CHECK(x.is_contiguous(), "sgld_step_: x must be contiguous (the update is in place)");
  TORCH_CHECK(grad.is_contiguous(), "sgld_step_: grad must be contiguous (call .contiguous() first)");
  const bool symbolic = x.unsafeGetTensorImpl()->has_symbolic_sizes_strides() ||
                        grad.unsafeGetTensorImpl()->has_symbolic_sizes_strides();  // tracing: no memory
  TORCH_CHECK(symbolic || at::get_overlap_status(x, grad) == at::MemOverlapStatus::No,
              "sgld_step_: x and grad share memory; the kernel reads grad while writing x, so pass a separate "
              "grad (grad.clone())");
  TORCH_CHECK(!x.requires_grad(), "sgld_step_: x requires grad, but the op has no autograd; pass x.detach()");
  TORCH_CHECK(!(grad.requires_grad() && c10::GradMode::is_enabled()),
              "sgld_step_: grad requires grad, but the op has no autograd; pass grad.detach()");
  TORCH_CHECK(!x.is_inference() || c10::InferenceMode::is_enabled(),
              "sgld_step_: x is an inference tensor; update it inside torch.inference_mode() or pass x.clone()");
  TORCH_CHECK(std::isfinite(step_size), "sgld_step_: step_size must be finite, got ", step_size);
  TORCH_CHECK(std::isfinite(noise_std), "sgld_step_: noise_std must be finite, got ", noise_std);
  TORCH_CHECK(!std::isnan(clamp_min) && !std::isnan(clamp_max), "sgld_step_: clamp bounds must not be NaN, got [",
              clamp_min, ", ", clamp_max, "] (use -inf / inf for no bound)");
  TORCH_CHECK(clamp_min <= clamp_max, "sgld_step_: clamp_min must be <= clamp_max, got ", clamp_min, " > ",
              clamp_max);
  const uint64_t s = key_word(seed, "seed"), o = key_word(offset, "offset");
  return Params{static_cast<uint32_t>(s), static_cast<uint32_t>(s >> 32), static_cast<uint32_t>(o),
                static_cast<uint32_t>(o >> 32), step_size, noise_std, clamp_min, clamp_max};
}

void sgld_step_cpu(at::Tensor& x, const at::Tensor& grad, double step_size, double noise_std, double clamp_min,
                   double clamp_max, const c10::Scalar& seed, const c10::Scalar& offset) {
  const Params p = checked_params(x, grad, step_size, noise_std, clamp_min, clamp_max, seed, offset);
  TORCH_CHECK(x.device().is_cpu(), "sgld_step_ (CPU): x must be on the CPU");
  x.unsafeGetTensorImpl()->bump_version();  // an in-place op: autograd must see that x changed
  const Path& path = cpu_path();
  if (x.scalar_type() == at::kFloat) {
    run_tiles<float>(path.f32, x.data_ptr<float>(), grad.data_ptr<float>(), x.numel(), p);
  } else {
    run_tiles<double>(path.f64, x.data_ptr<double>(), grad.data_ptr<double>(), x.numel(), p);
  }
}

#ifdef EBM_OOD_WITH_CUDA
void sgld_step_cuda(at::Tensor& x, const at::Tensor& grad, double step_size, double noise_std, double clamp_min,
                    double clamp_max, const c10::Scalar& seed, const c10::Scalar& offset) {
  const Params p = checked_params(x, grad, step_size, noise_std, clamp_min, clamp_max, seed, offset);
  TORCH_CHECK(x.is_cuda(), "sgld_step_ (CUDA): x must be on a CUDA device");
  x.unsafeGetTensorImpl()->bump_version();  // an in-place op: autograd must see that x changed
  const c10::cuda::CUDAGuard guard(x.device());
  void* stream = c10::cuda::getCurrentCUDAStream().stream();
  const uint64_t s = p.k0 | (static_cast<uint64_t>(p.k1) << 32), o = p.o0 | (static_cast<uint64_t>(p.o1) << 32);
  const int err = x.scalar_type() == at::kFloat
      ? sgld_step_cuda_f32(x.data_ptr<float>(), grad.data_ptr<float>(), x.numel(), step_size, noise_std, clamp_min,
                           clamp_max, s, o, stream)
      : sgld_step_cuda_f64(x.data_ptr<double>(), grad.data_ptr<double>(), x.numel(), step_size, noise_std,
                           clamp_min, clamp_max, s, o, stream);
  TORCH_CHECK(err == 0, "sgld_step_ (CUDA): kernel launch failed: ", cuda_error_name(err));
}
#endif

// Kernel for fake/meta tensors (torch.compile, opcheck): the same checks as the real kernels, no data.
void sgld_step_meta(at::Tensor& x, const at::Tensor& grad, double step_size, double noise_std, double clamp_min,
                    double clamp_max, const c10::Scalar& seed, const c10::Scalar& offset) {
  checked_params(x, grad, step_size, noise_std, clamp_min, clamp_max, seed, offset);
  x.unsafeGetTensorImpl()->bump_version();
}

}  // namespace

TORCH_LIBRARY(ebm_ood, m) {
  m.def("sgld_step_(Tensor(a!) x, Tensor grad, float step_size, float noise_std, float clamp_min, "
        "float clamp_max, Scalar seed, Scalar offset) -> ()");
  // The CPU kernel in use and the ones this build has: "chosen name:yes|no ..." (read by the benchmark).
  m.def("sgld_cpu_paths() -> str", &sgld_cpu_paths);
}

TORCH_LIBRARY_IMPL(ebm_ood, CPU, m) { m.impl("sgld_step_", &sgld_step_cpu); }
#ifdef EBM_OOD_WITH_CUDA
TORCH_LIBRARY_IMPL(ebm_ood, CUDA, m) { m.impl("sgld_step_", &sgld_step_cuda); }
#endif
TORCH_LIBRARY_IMPL(ebm_ood, Meta, m) { m.impl("sgld_step_", &sgld_step_meta); }
// No derivative: inputs that require grad get autograd's "not implemented" error.
TORCH_LIBRARY_IMPL(ebm_ood, Autograd, m) {
  m.impl("sgld_step_", torch::autograd::autogradNotImplementedFallback());
}
TORCH_LIBRARY_IMPL(ebm_ood, ADInplaceOrView, m) {
  m.impl("sgld_step_", torch::autograd::autogradNotImplementedInplaceOrViewFallback());
}

}  // namespace ebm_ood

// Lets setup.py's ahead-of-time build be imported as the Python module ebm_ood._C (it only registers ops).
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
