// Philox4x32-10 counter-based RNG and Box–Muller normals, written once for host and device code.
//
// Philox4x32-10 (Salmon et al., SC'11): 128-bit counter (c0..c3), 64-bit key (k0, k1), ten rounds of
//   hi0,lo0 = mulhilo(M0, c0); hi1,lo1 = mulhilo(M1, c2);
//   (c0, c1, c2, c3) <- (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0);  (k0, k1) += (W0, W1) between rounds.
// Box–Muller uses short float32 polynomials for ln, sin and cos, evaluated in a fixed order with no FMA
// contraction (-ffp-contract=off / --fmad=false) so that the CPU kernel, the CUDA kernel and the
// pure-PyTorch twin (ebm_ood/sampling/philox.py) round identically. Everything is branch-free (selects
// only) so that loops over lanes of these functions auto-vectorise.
#pragma once
#include <cstdint>
#include <cstring>
#include <cmath>

#if defined(__CUDACC__)
#define EBM_HD __host__ __device__ __forceinline__
#else
#define EBM_HD inline __attribute__((always_inline))
#endif

namespace ebm_ood {

constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;
constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;

EBM_HD uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
#endif
}

EBM_HD float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
#endif
}

// One Philox4x32 round on the counter words, in place.
EBM_HD void philox_round(uint32_t& c0, uint32_t& c1, uint32_t& c2, uint32_t& c3, uint32_t k0, uint32_t k1) {
  const uint64_t p0 = static_cast<uint64_t>(kPhiloxM0) * c0;
  const uint64_t p1 = static_cast<uint64_t>(kPhiloxM1) * c2;
  const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
  const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
  c1 = static_cast<uint32_t>(p1);
  c3 = static_cast<uint32_t>(p0);
  c0 = n0;
  c2 = n2;
}

// The ten round keys of Philox4x32-10 for the key (k0, k1): round r uses (k0 + r W0, k1 + r W1).
EBM_HD void philox_round_keys(uint32_t k0, uint32_t k1, uint32_t out0[10], uint32_t out1[10]) {
  for (int r = 0; r < 10; ++r) {
    out0[r] = k0;
    out1[r] = k1;
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
}

// Philox4x32-10: the counter words become the four output words.
EBM_HD void philox4x32_10(uint32_t& c0, uint32_t& c1, uint32_t& c2, uint32_t& c3, uint32_t k0, uint32_t k1) {
  philox_round(c0, c1, c2, c3, k0, k1);
  for (int r = 1; r < 10; ++r) {
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
    philox_round(c0, c1, c2, c3, k0, k1);
  }
}

// ln(u) for a normal float u in (0, 1): u = m 2^e, m re-centred to [sqrt(1/2), sqrt(2)), Cephes-style
// degree-9 polynomial in x = m - 1, ln 2 split in two parts.
EBM_HD float log_unit(float u) {
  const uint32_t b = float_bits(u);
  const uint32_t mb = (b & 0x7FFFFFu) | 0x3F000000u;             // m in [0.5, 1), u = m 2^e
  const uint32_t small = mb < 0x3F3504F3u ? 1u : 0u;              // m < sqrt(1/2) (bits of 0.70710678f)
  const int32_t e = static_cast<int32_t>(b >> 23) - 126 - static_cast<int32_t>(small);
  const float x = bits_float(mb + (small << 23)) - 1.0f;          // (small ? 2m : m) - 1, exact
  const float fe = static_cast<float>(e);
  const float z = x * x;
  float p = 7.0376836292e-2f;
  p = p * x + -1.1514610310e-1f;
  p = p * x + 1.1676998740e-1f;
  p = p * x + -1.2420140846e-1f;
  p = p * x + 1.4249322787e-1f;
  p = p * x + -1.6668057665e-1f;
  p = p * x + 2.0000714765e-1f;
  p = p * x + -2.4999993993e-1f;
  p = p * x + 3.3333331174e-1f;
  float y = (p * x) * z;
  y = y + fe * -2.12194440e-4f;
  y = y + z * -0.5f;
  const float r = x + y;
  return r + fe * 0.693359375f;
}

// sin and cos of 2*pi*k/2^23 for k in [0, 2^23): exact reduction to the nearest quarter turn n and a
// remainder phi in [-pi/4, pi/4), then short polynomials.
EBM_HD void sincos_2pi(uint32_t k, float& s, float& c) {
  const int32_t n = static_cast<int32_t>((k + (1u << 20)) >> 21);   // 0..4
  const float phi = static_cast<float>(static_cast<int32_t>(k) - (n << 21)) * 7.490140565847857e-07f;  // pi/2^22
  const float z = phi * phi;
  float sp = (z * -1.9515295891e-4f + 8.3321608736e-3f) * z + -1.6666654611e-1f;
  sp = ((sp * z) * phi) + phi;
  float cp = (z * 2.443315711809948e-5f + -1.388731625493765e-3f) * z + 4.166664568298827e-2f;
  cp = (cp * z) * z;
  cp = cp - z * 0.5f;
  cp = cp + 1.0f;
  // rotate (sin, cos) of phi by n quarter turns: swap on odd n, then sign flips (bit 31)
  const uint32_t q = static_cast<uint32_t>(n);
  const uint32_t swap = 0u - (q & 1u);
  const uint32_t spb = float_bits(sp), cpb = float_bits(cp);
  s = bits_float(((spb & ~swap) | (cpb & swap)) ^ ((q & 2u) << 30));
  c = bits_float(((cpb & ~swap) | (spb & swap)) ^ (((q + 1u) & 2u) << 30));
}

// Two independent N(0, 1) samples from two uniform words: u = (2 (wa >> 9) + 1) 2^-24 in (0, 1),
// angle 2*pi (wb >> 9) 2^-23; (n0, n1) = sqrt(-2 ln u) (cos, sin).
EBM_HD void box_muller(uint32_t wa, uint32_t wb, float& n0, float& n1) {
  const float u = static_cast<float>(static_cast<int32_t>(((wa >> 9) << 1) | 1u)) * 5.960464477539063e-08f;
  const float r = sqrtf(log_unit(u) * -2.0f);  // correctly rounded (IEEE) on host and device
  float s, c;
  sincos_2pi(wb >> 9, s, c);
  n0 = r * c;
  n1 = r * s;
}

// The four normals of Philox block b (elements 4b..4b+3) for (seed, offset) split into 32-bit words.
EBM_HD void philox_normal4(uint64_t b, uint32_t k0, uint32_t k1, uint32_t o0, uint32_t o1, float* out) {
  uint32_t c0 = static_cast<uint32_t>(b), c1 = static_cast<uint32_t>(b >> 32), c2 = o0, c3 = o1;
  philox4x32_10(c0, c1, c2, c3, k0, k1);
  box_muller(c0, c1, out[0], out[1]);
  box_muller(c2, c3, out[2], out[3]);
}

}  // namespace ebm_ood
