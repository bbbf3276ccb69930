// The portable CPU kernel of the fused SGLD op: one tile of elements, every instruction set from one text.
//
// No include guard: sgld_cpu.cpp includes this file once per instruction set, each time with
//   EBM_TILE_NS      the namespace of that copy (inside ebm_ood),
//   EBM_TILE_VBYTES  the vector width in bytes (16: SSE2 / NEON, 32: AVX2, 64: AVX-512),
//   EBM_TILE_MUL     how mul_even is done: 0 plain C++, 1 SSE2, 2 AVX2, 3 AVX-512F (pmuludq), 4 NEON (umull),
// and, for x86 widths above SSE2, inside a `#pragma GCC target` region, so the compiler may use the wider
// instructions in this copy only. philox.h and sgld_update.h (the per-element definitions) must come first.
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
//  2. Box–Muller (philox.h) over the group's lanes, a flat loop the compiler vectorises: every floating-point
//     operation of the scalar definition in the same order, so the bits are those of the twin.
//  3. The update (sgld_update.h) in element order, another flat loop.

#ifndef EBM_OOD_TILE_PARAMS
#define EBM_OOD_TILE_PARAMS
#include <cstdint>
#include <cstring>
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
}  // namespace ebm_ood
#endif

namespace ebm_ood {
namespace EBM_TILE_NS {

typedef uint64_t VecU64 __attribute__((vector_size(EBM_TILE_VBYTES)));
typedef uint32_t VecU32 __attribute__((vector_size(EBM_TILE_VBYTES)));
constexpr int kVec = EBM_TILE_VBYTES / 8;                // blocks (64-bit lanes) per vector
constexpr int kLanes = EBM_TILE_VBYTES == 16 ? 16 : 32;  // blocks per group
constexpr int kGroupVecs = kLanes / kVec;                // an even number

// The low halves of a's and b's 64-bit lanes, as one vector of 32-bit words: per 128-bit segment s,
// (a[2s], a[2s + 1], b[2s], b[2s + 1]) -- one in-segment shuffle (shufps, uzp1), no lane crossing.
inline __attribute__((always_inline)) VecU32 low_halves(VecU64 a, VecU64 b) {
#if defined(__clang__)
#define EBM_SHUFFLE(...) __builtin_shufflevector((VecU32)a, (VecU32)b, __VA_ARGS__)
#else
#define EBM_SHUFFLE(...) __builtin_shuffle((VecU32)a, (VecU32)b, VecU32{__VA_ARGS__})
#endif
#if EBM_TILE_VBYTES == 16
  return EBM_SHUFFLE(0, 2, 4, 6);
#elif EBM_TILE_VBYTES == 32
  return EBM_SHUFFLE(0, 2, 8, 10, 4, 6, 12, 14);
#else
  return EBM_SHUFFLE(0, 2, 16, 18, 4, 6, 20, 22, 8, 10, 24, 26, 12, 14, 28, 30);
#endif
#undef EBM_SHUFFLE
}

// The block (0 .. 2 kVec - 1) of a pair of vectors (a, b) held by lane i of a (second = 0) or of b (1), so
// that low_halves(a, b) lists the pair's blocks in order: segment s of the result is blocks 4s .. 4s + 3.
constexpr uint32_t pair_block(int i, int second) { return static_cast<uint32_t>(4 * (i / 2) + 2 * second + i % 2); }

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

// The per-tile Philox constants: round keys and the words that do not depend on the block's low counter
// word (c1 = b >> 32, c2, c3 = offset), so that round 1's M1 c2 and round 2's M0 c0 are scalars.
struct TileKeys {
  uint32_t k0[10], k1[10];
  uint32_t r1_c2x;                  // round 1: c2 = hi(M0 c0) ^ r1_c2x
  uint32_t r2_c0x, r2_c2x, r2_c3;   // round 2: c0 = hi(M1 c2) ^ r2_c0x, c2 = c3 ^ r2_c2x, c3 = r2_c3
};

inline TileKeys tile_keys(uint32_t cw1, const TileParams& p) {
  TileKeys t;
  uint32_t k0 = p.k0, k1 = p.k1;
  for (int r = 0; r < 10; ++r) {
    t.k0[r] = k0;
    t.k1[r] = k1;
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  const uint64_t p1 = static_cast<uint64_t>(kPhiloxM1) * p.o0;            // round 1, M1 c2
  const uint32_t r1_c0 = static_cast<uint32_t>(p1 >> 32) ^ cw1 ^ t.k0[0];
  t.r1_c2x = p.o1 ^ t.k1[0];
  const uint64_t p0 = static_cast<uint64_t>(kPhiloxM0) * r1_c0;           // round 2, M0 c0
  t.r2_c0x = static_cast<uint32_t>(p1) ^ t.k0[1];
  t.r2_c2x = static_cast<uint32_t>(p0 >> 32) ^ t.k1[1];
  t.r2_c3 = static_cast<uint32_t>(p0);
  return t;
}

// Philox4x32-10 of the kLanes blocks whose low counter words are bl, bl + 1, ... (same b >> 32, offset):
// the four output words of block bl + j go to w0[j] .. w3[j].
inline __attribute__((always_inline)) void philox_group(uint32_t bl, const TileKeys& t, uint32_t* __restrict w0,
                                                        uint32_t* __restrict w1, uint32_t* __restrict w2,
                                                        uint32_t* __restrict w3) {
  VecU64 c0[kGroupVecs], c1[kGroupVecs], c2[kGroupVecs], c3[kGroupVecs];
  const VecU64 m0 = VecU64{} + kPhiloxM0, m1 = VecU64{} + kPhiloxM1;
  VecU64 lane[2] = {VecU64{}, VecU64{}};
  for (int v = 0; v < kVec; ++v) lane[0][v] = pair_block(v, 0), lane[1][v] = pair_block(v, 1);
  for (int q = 0; q < kGroupVecs; ++q) {     // rounds 1 and 2, one varying multiply each
    const uint32_t first = bl + static_cast<uint32_t>((q / 2) * 2 * kVec);   // vectors q, q ^ 1 share a pair
    const VecU64 p0 = mul_even(lane[q % 2] + static_cast<uint64_t>(first), m0);
    const VecU64 p1 = mul_even((p0 >> 32) ^ t.r1_c2x, m1);
    c0[q] = (p1 >> 32) ^ t.r2_c0x;
    c1[q] = p1;
    c2[q] = p0 ^ t.r2_c2x;
    c3[q] = VecU64{} + t.r2_c3;
  }
#pragma GCC unroll 8
  for (int r = 2; r < 10; ++r) {
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
  for (int q = 0; q < kGroupVecs; q += 2) {  // the low halves, in block order
    const VecU32 h0 = low_halves(c0[q], c0[q + 1]), h1 = low_halves(c1[q], c1[q + 1]);
    const VecU32 h2 = low_halves(c2[q], c2[q + 1]), h3 = low_halves(c3[q], c3[q + 1]);
    std::memcpy(w0 + q * kVec, &h0, sizeof(h0));
    std::memcpy(w1 + q * kVec, &h1, sizeof(h1));
    std::memcpy(w2 + q * kVec, &h2, sizeof(h2));
    std::memcpy(w3 + q * kVec, &h3, sizeof(h3));
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
  for (int64_t i = 0; i < count; i += 4 * kLanes) {
    alignas(64) uint32_t w0[kLanes], w1[kLanes], w2[kLanes], w3[kLanes];
    alignas(64) float n0[kLanes], n1[kLanes], n2[kLanes], n3[kLanes];
    philox_group(static_cast<uint32_t>(b0) + static_cast<uint32_t>(i / 4), t, w0, w1, w2, w3);
    for (int j = 0; j < kLanes; ++j) {
      box_muller(w0[j], w1[j], n0[j], n1[j]);
      box_muller(w2[j], w3[j], n2[j], n3[j]);
    }
    T* xs = x + start + i;
    const T* gs = g + start + i;
    if (count - i >= 4 * kLanes) {
      for (int j = 0; j < kLanes; ++j) {
        xs[4 * j + 0] = sgld_update<T>(xs[4 * j + 0], gs[4 * j + 0], step, sd, n0[j], lo, hi);
        xs[4 * j + 1] = sgld_update<T>(xs[4 * j + 1], gs[4 * j + 1], step, sd, n1[j], lo, hi);
        xs[4 * j + 2] = sgld_update<T>(xs[4 * j + 2], gs[4 * j + 2], step, sd, n2[j], lo, hi);
        xs[4 * j + 3] = sgld_update<T>(xs[4 * j + 3], gs[4 * j + 3], step, sd, n3[j], lo, hi);
      }
    } else {
      for (int64_t e = 0; e < count - i; ++e) {
        const int64_t j = e / 4, l = e % 4;
        const float n = l == 0 ? n0[j] : (l == 1 ? n1[j] : (l == 2 ? n2[j] : n3[j]));
        xs[e] = sgld_update<T>(xs[e], gs[e], step, sd, n, lo, hi);
      }
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
