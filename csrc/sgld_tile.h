// The portable CPU kernel of the fused SGLD op: one tile of elements, every instruction set from one text.
//
// No include guard: sgld_cpu.cpp includes this file once per instruction set, each time with
//   EBM_TILE_NS      the namespace of that copy (inside ebm_ood),
//   EBM_TILE_VBYTES  the vector width in bytes (16: SSE2 / NEON, 32: AVX2, 64: AVX-512),
//   EBM_TILE_MUL     how mul_even is done: 0 plain C++, 1 SSE2, 2 AVX2, 3 AVX-512F (pmuludq), 4 NEON (umull),
// and, for x86 widths above SSE2, inside a `#pragma GCC target` region, so the compiler may use the wider
// instructions in this copy only. sgld_update.h (the per-element update) must come first; philox.h is included here.
//
// Per group of kLanes Philox blocks (4 kLanes elements), nothing leaves registers and L1:
//  1. Philox4x32-10 in structure-of-arrays form: each counter word of the group is an array of GCC/Clang
//     vector-extension vectors with one block per 64-bit lane; a word sits in the lane's low half and the
//     high half is don't-care. Then mulhilo(M, c) is one 32x32->64 multiply of the low halves (mul_even), its
//     high word one 64-bit shift away, and the xors, shifts and adds are plain vector operators that the
//     compiler lowers to SSE2, AVX2, AVX-512 or NEON. mul_even is the only per-instruction-set line: compilers
//     do not find the widening multiply of the low halves themselves (GCC 12 emulates a full 64-bit one).
//     The counter words b >> 32, offset are the same for all blocks of a tile, so rounds 1 and 2 each have
//     one multiply per block (the other is a scalar, tile_keys).
//     Round 10 emits the words as Box–Muller's pairs, (w0, w2) and (w1, w3) of a block in one 64-bit lane
//     each: hi(M0 c0) already sits in the high half of its product, so the pairs take two 32-bit blends
//     (blend_halves) where the round's own shifts and xors would be followed by a re-packing. The blocks are
//     in the lane order (lane_block) that makes step 2's output come out in element order from one
//     in-segment zip (unpcklps / unpckhps, zip1 / zip2) per vector.
//  2. Box–Muller (philox.h) over the group's pairs, a flat loop the compiler vectorises: every floating-point
//     operation of the scalar definition in the same order, so the bits are those of the twin. Each iteration
//     takes two pairs kLanes apart, so a vector iteration holds two independent chains (ln's polynomial is a
//     chain of 18 dependent operations) that the scheduling pass (sgld_cpu.cpp) interleaves.
//  3. The update (sgld_update.h) in element order, whole vectors (update_full; a tile's last partial group
//     runs the scalar definition): the same operations, with the two selects as x86's max / min, which
//     compilers do not find themselves (GCC 12 emits compare-and-blend sequences).

#ifndef EBM_OOD_TILE_PARAMS
#define EBM_OOD_TILE_PARAMS
#include <cstdint>
#include <cstring>
#include <type_traits>
#include "philox.h"
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#elif defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>
#endif
namespace ebm_ood {
struct TileParams {
  uint32_t k0, k1, o0, o1;                   // Philox key (seed) and counter high words (offset)
  double step_size, noise_std, lo, hi;
};

// The per-tile Philox constants: round keys and the words that do not depend on the block's low counter
// word (c1 = b >> 32, c2, c3 = offset), so that round 1's M1 c2 and round 2's M0 c0 are scalars.
struct TileKeys {
  uint32_t k0[10], k1[10];
  uint32_t r1_c2x;                  // round 1: c2 = hi(M0 c0) ^ r1_c2x
  uint32_t r2_c0x, r2_c2x, r2_c3;   // round 2: c0 = hi(M1 c2) ^ r2_c0x, c2 = c3 ^ r2_c2x, c3 = r2_c3
};

inline TileKeys tile_keys(uint32_t cw1, const TileParams& p) {
  TileKeys t;
  philox_round_keys(p.k0, p.k1, t.k0, t.k1);
  const uint64_t p1 = static_cast<uint64_t>(kPhiloxM1) * p.o0;            // round 1, M1 c2
  const uint32_t r1_c0 = static_cast<uint32_t>(p1 >> 32) ^ cw1 ^ t.k0[0];
  t.r1_c2x = p.o1 ^ t.k1[0];
  const uint64_t p0 = static_cast<uint64_t>(kPhiloxM0) * r1_c0;           // round 2, M0 c0
  t.r2_c0x = static_cast<uint32_t>(p1) ^ t.k0[1];
  t.r2_c2x = static_cast<uint32_t>(p0 >> 32) ^ t.k1[1];
  t.r2_c3 = static_cast<uint32_t>(p0);
  return t;
}
}  // namespace ebm_ood
#endif

namespace ebm_ood {
namespace EBM_TILE_NS {

typedef uint64_t VecU64 __attribute__((vector_size(EBM_TILE_VBYTES)));
typedef uint32_t VecU32 __attribute__((vector_size(EBM_TILE_VBYTES)));
constexpr int kVec = EBM_TILE_VBYTES / 8;                // blocks (64-bit lanes) per vector
constexpr int kLanes = EBM_TILE_VBYTES == 64 ? 32 : 16;  // blocks per group (fastest measured)
constexpr int kGroupVecs = kLanes / kVec;

typedef float VecF32 __attribute__((vector_size(EBM_TILE_VBYTES)));
constexpr int kW = EBM_TILE_VBYTES / 4;                 // 32-bit lanes per vector

#if defined(__clang__)
#define EBM_SHUFFLE(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define EBM_SHUFFLE(a, b, ...) __builtin_shuffle(a, b, VecU32{__VA_ARGS__})
#endif
// Per 128-bit segment s: (c[4s], s[4s], c[4s + 1], s[4s + 1]) and (c[4s + 2], s[4s + 2], c[4s + 3], s[4s + 3])
// (unpcklps / unpckhps, zip1 / zip2: no lane crossing).
inline __attribute__((always_inline)) void zip_segments(VecF32 c, VecF32 s, VecF32& lo, VecF32& hi) {
#if EBM_TILE_VBYTES == 16
  lo = EBM_SHUFFLE(c, s, 0, 4, 1, 5);
  hi = EBM_SHUFFLE(c, s, 2, 6, 3, 7);
#elif EBM_TILE_VBYTES == 32
  lo = EBM_SHUFFLE(c, s, 0, 8, 1, 9, 4, 12, 5, 13);
  hi = EBM_SHUFFLE(c, s, 2, 10, 3, 11, 6, 14, 7, 15);
#else
  lo = EBM_SHUFFLE(c, s, 0, 16, 1, 17, 4, 20, 5, 21, 8, 24, 9, 25, 12, 28, 13, 29);
  hi = EBM_SHUFFLE(c, s, 2, 18, 3, 19, 6, 22, 7, 23, 10, 26, 11, 27, 14, 30, 15, 31);
#endif
}

// Per 64-bit lane: the low 32 bits of a, the high 32 bits of b (vpblendd / blend, no lane crossing).
inline __attribute__((always_inline)) VecU64 blend_halves(VecU64 a, VecU64 b) {
  const VecU32 a32 = (VecU32)a, b32 = (VecU32)b;
#if EBM_TILE_VBYTES == 16
  return (VecU64)EBM_SHUFFLE(a32, b32, 0, 5, 2, 7);
#elif EBM_TILE_VBYTES == 32
  return (VecU64)EBM_SHUFFLE(a32, b32, 0, 9, 2, 11, 4, 13, 6, 15);
#else
  return (VecU64)EBM_SHUFFLE(a32, b32, 0, 17, 2, 19, 4, 21, 6, 23, 8, 25, 10, 27, 12, 29, 14, 31);
#endif
}
#undef EBM_SHUFFLE

// The block (of the kVec a vector covers) that 64-bit lane i holds: 0, kVec/2, 1, kVec/2 + 1, ... With the
// words packed as pairs (w0, w2), (w1, w3) per lane, Box–Muller's (r cos, r sin) vectors of those lanes go
// through zip_segments into element order: `lo` holds blocks 0 .. kVec/2 - 1, `hi` the rest.
constexpr uint32_t lane_block(int i) { return static_cast<uint32_t>(i % 2 == 0 ? i / 2 : kVec / 2 + i / 2); }

// Low 32 bits of a times low 32 bits of m, as 64-bit products, lane by lane.
inline __attribute__((always_inline)) VecU64 mul_even(VecU64 a, VecU64 m) {
#if EBM_TILE_MUL == 1
  return (VecU64)_mm_mul_epu32((__m128i)a, (__m128i)m);
#elif EBM_TILE_MUL == 2
  return (VecU64)_mm256_mul_epu32((__m256i)a, (__m256i)m);
#elif EBM_TILE_MUL == 3
  return (VecU64)_mm512_mul_epu32((__m512i)a, (__m512i)m);
#elif EBM_TILE_MUL == 4
  return (VecU64)vmull_u32(vmovn_u64((uint64x2_t)a), vmovn_u64((uint64x2_t)m));
#else
  return (a & 0xFFFFFFFFull) * (m & 0xFFFFFFFFull);
#endif
}

// Philox4x32-10 of the kLanes blocks whose low counter words are bl .. bl + kLanes - 1 (same b >> 32,
// offset), as Box–Muller's word pairs: (wa[2j], wb[2j]) = (w0, w1) and (wa[2j + 1], wb[2j + 1]) = (w2, w3) of
// block bl + kVec * (j / kVec) + lane_block(j % kVec).
inline __attribute__((always_inline)) void philox_group(uint32_t bl, const TileKeys& t, uint32_t* __restrict wa,
                                                        uint32_t* __restrict wb) {
  VecU64 c0[kGroupVecs], c1[kGroupVecs], c2[kGroupVecs], c3[kGroupVecs];
  const VecU64 m0 = VecU64{} + kPhiloxM0, m1 = VecU64{} + kPhiloxM1;
  VecU64 lane = VecU64{};
  for (int v = 0; v < kVec; ++v) lane[v] = lane_block(v);
  for (int q = 0; q < kGroupVecs; ++q) {     // rounds 1 and 2, one varying multiply each
    const VecU64 p0 = mul_even(lane + static_cast<uint64_t>(bl + static_cast<uint32_t>(q * kVec)), m0);
    const VecU64 p1 = mul_even((p0 >> 32) ^ t.r1_c2x, m1);
    c0[q] = (p1 >> 32) ^ t.r2_c0x;
    c1[q] = p1;
    c2[q] = p0 ^ t.r2_c2x;
    c3[q] = VecU64{} + t.r2_c3;
  }
#pragma GCC unroll 8
  for (int r = 2; r < 9; ++r) {
    const uint64_t k0 = t.k0[r], k1 = t.k1[r];
#pragma GCC unroll 16
    for (int q = 0; q < kGroupVecs; ++q) {
      const VecU64 p0 = mul_even(c0[q], m0), p1 = mul_even(c2[q], m1);
      const VecU64 b = c1[q], d = c3[q];
      c0[q] = (p1 >> 32) ^ b ^ k0;
      c1[q] = p1;
      c2[q] = (p0 >> 32) ^ d ^ k1;
      c3[q] = p0;
    }
  }
  // round 10, its words leaving as pairs: lane i of wa holds (w0, w2) = (hi(p1) ^ c1 ^ k0, hi(p0) ^ c3 ^ k1),
  // of wb (w1, w3) = (lo(p1), lo(p0)); hi(p0) is already in the high half of p0
  const VecU64 k01 = VecU64{} + (static_cast<uint64_t>(t.k0[9]) | static_cast<uint64_t>(t.k1[9]) << 32);
#pragma GCC unroll 16
  for (int q = 0; q < kGroupVecs; ++q) {
    const VecU64 p0 = mul_even(c0[q], m0), p1 = mul_even(c2[q], m1);
    const VecU64 a = blend_halves(p1 >> 32, p0) ^ blend_halves(c1[q], c3[q] << 32) ^ k01;
    const VecU64 b = blend_halves(p1, p0 << 32);
    std::memcpy(wa + q * kW, &a, sizeof(a));
    std::memcpy(wb + q * kW, &b, sizeof(b));
  }
}

typedef double VecF64 __attribute__((vector_size(EBM_TILE_VBYTES)));
typedef float VecF32h __attribute__((vector_size(EBM_TILE_VBYTES / 2)));

// sgld_update's selects `v < lo ? lo : v` and `v > hi ? hi : v` on a vector: x86's max(lo, v) / min(hi, v)
// are exactly these (they return the second operand unless the first is strictly greater / less, so a NaN
// v and signed zeros come out as the selects give them); elsewhere the selects themselves.
inline __attribute__((always_inline)) VecF32 clamp_lo(VecF32 v, VecF32 lo) {
#if EBM_TILE_MUL == 1
  return (VecF32)_mm_max_ps((__m128)lo, (__m128)v);
#elif EBM_TILE_MUL == 2
  return (VecF32)_mm256_max_ps((__m256)lo, (__m256)v);
#elif EBM_TILE_MUL == 3
  return (VecF32)_mm512_max_ps((__m512)lo, (__m512)v);
#else
  return v < lo ? lo : v;
#endif
}
inline __attribute__((always_inline)) VecF32 clamp_hi(VecF32 v, VecF32 hi) {
#if EBM_TILE_MUL == 1
  return (VecF32)_mm_min_ps((__m128)hi, (__m128)v);
#elif EBM_TILE_MUL == 2
  return (VecF32)_mm256_min_ps((__m256)hi, (__m256)v);
#elif EBM_TILE_MUL == 3
  return (VecF32)_mm512_min_ps((__m512)hi, (__m512)v);
#else
  return v > hi ? hi : v;
#endif
}
inline __attribute__((always_inline)) VecF64 clamp_lo(VecF64 v, VecF64 lo) {
#if EBM_TILE_MUL == 1
  return (VecF64)_mm_max_pd((__m128d)lo, (__m128d)v);
#elif EBM_TILE_MUL == 2
  return (VecF64)_mm256_max_pd((__m256d)lo, (__m256d)v);
#elif EBM_TILE_MUL == 3
  return (VecF64)_mm512_max_pd((__m512d)lo, (__m512d)v);
#else
  return v < lo ? lo : v;
#endif
}
inline __attribute__((always_inline)) VecF64 clamp_hi(VecF64 v, VecF64 hi) {
#if EBM_TILE_MUL == 1
  return (VecF64)_mm_min_pd((__m128d)hi, (__m128d)v);
#elif EBM_TILE_MUL == 2
  return (VecF64)_mm256_min_pd((__m256d)hi, (__m256d)v);
#elif EBM_TILE_MUL == 3
  return (VecF64)_mm512_min_pd((__m512d)hi, (__m512d)v);
#else
  return v > hi ? hi : v;
#endif
}

// The update's scalars in every lane of a vector of T: VecF32 or VecF64. (Set lane by lane: VecF{} + s would
// turn lo = -0.0 into +0.0.)
template <typename T>
struct UpdateVecs {
  typedef typename std::conditional<sizeof(T) == 4, VecF32, VecF64>::type V;
  V step, sd, lo, hi;
  UpdateVecs(T step_, T sd_, T lo_, T hi_) {
    for (int i = 0; i < static_cast<int>(sizeof(V) / sizeof(T)); ++i) {
      step[i] = step_;
      sd[i] = sd_;
      lo[i] = lo_;
      hi[i] = hi_;
    }
  }
};

// sgld_update (sgld_update.h) on 4 kLanes elements in whole vectors: the same operations in the same order,
// the selects as clamp_lo / clamp_hi.
template <typename T>
inline __attribute__((always_inline)) void update_full(T* __restrict xs, const T* __restrict gs,
                                                       const float* __restrict n, const UpdateVecs<T>& u) {
  typedef typename UpdateVecs<T>::V V;
  constexpr int kN = static_cast<int>(sizeof(V) / sizeof(T));
#pragma GCC unroll 32
  for (int e = 0; e < 4 * kLanes; e += kN) {
    V x, g, nv;
    std::memcpy(&x, xs + e, sizeof(x));
    std::memcpy(&g, gs + e, sizeof(g));
    if constexpr (sizeof(T) == 4) {
      std::memcpy(&nv, n + e, sizeof(nv));
    } else {
      VecF32h nh;
      std::memcpy(&nh, n + e, sizeof(nh));
      nv = __builtin_convertvector(nh, VecF64);
    }
    V v = x - g * u.step;
    v = v + nv * u.sd;
    v = clamp_hi(clamp_lo(v, u.lo), u.hi);
    std::memcpy(xs + e, &v, sizeof(v));
  }
}

// Elements [start, start + count) of x, start a multiple of 4 and the tile's blocks sharing b >> 32.
template <typename T>
inline __attribute__((always_inline)) void tile(T* __restrict x, const T* __restrict g, int64_t start,
                                                int64_t count, const TileParams& p) {
  const uint64_t b0 = static_cast<uint64_t>(start) / 4;
  const TileKeys t = tile_keys(static_cast<uint32_t>(b0 >> 32), p);
  const T step = static_cast<T>(p.step_size), sd = static_cast<T>(p.noise_std);
  const T lo = static_cast<T>(p.lo), hi = static_cast<T>(p.hi);
  const UpdateVecs<T> u(step, sd, lo, hi);
  for (int64_t i = 0; i < count; i += 4 * kLanes) {
    alignas(64) uint32_t wa[2 * kLanes], wb[2 * kLanes];
    alignas(64) float c[2 * kLanes], sn[2 * kLanes], n[4 * kLanes];
    philox_group(static_cast<uint32_t>(b0) + static_cast<uint32_t>(i / 4), t, wa, wb);
    for (int j = 0; j < kLanes; ++j) {  // two independent chains per vector iteration (step 2 above)
      box_muller(wa[j], wb[j], c[j], sn[j]);
      box_muller(wa[j + kLanes], wb[j + kLanes], c[j + kLanes], sn[j + kLanes]);
    }
    for (int q = 0; q < 2 * kLanes; q += kW) {  // element order
      VecF32 cv, sv, lo, hi;
      std::memcpy(&cv, c + q, sizeof(cv));
      std::memcpy(&sv, sn + q, sizeof(sv));
      zip_segments(cv, sv, lo, hi);
      std::memcpy(n + 2 * q, &lo, sizeof(lo));
      std::memcpy(n + 2 * q + kW, &hi, sizeof(hi));
    }
    T* xs = x + start + i;
    const T* gs = g + start + i;
    const int64_t m = count - i < 4 * kLanes ? count - i : 4 * kLanes;
    if (m == 4 * kLanes) {
      update_full<T>(xs, gs, n, u);
    } else {
      for (int64_t e = 0; e < m; ++e) xs[e] = sgld_update<T>(xs[e], gs[e], step, sd, n[e], lo, hi);
    }
  }
}

void tile_f32(float* x, const float* g, int64_t start, int64_t count, const TileParams& p) {
  tile<float>(x, g, start, count, p);
}

void tile_f64(double* x, const double* g, int64_t start, int64_t count, const TileParams& p) {
  tile<double>(x, g, start, count, p);
}

}  // namespace EBM_TILE_NS
}  // namespace ebm_ood
