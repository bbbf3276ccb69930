"""Pure-PyTorch twin of ``csrc/philox.h``: the Philox4x32-10 counter-based generator and Box–Muller.

Philox4x32-10 (Salmon et al., SC'11, "Parallel Random Numbers: As Easy as 1, 2, 3") maps a 128-bit
counter ``(c0, c1, c2, c3)`` and a 64-bit key ``(k0, k1)`` to four uniform 32-bit words by ten rounds of

    hi0, lo0 = mulhilo(0xD2511F53, c0);  hi1, lo1 = mulhilo(0xCD9E8D57, c2)
    (c0, c1, c2, c3) <- (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0);  (k0, k1) += (0x9E3779B9, 0xBB67AE85)

Nothing is stored between calls: the noise for element ``i`` of a call with ``(seed, offset)`` is a pure
function of ``(seed, offset, i)``, so the C++/CUDA kernels and this twin agree element by element.

Layout of the stream (the same in C++):
  key     = (seed mod 2^32, seed >> 32)
  counter = (b mod 2^32, b >> 32, offset mod 2^32, offset >> 32) with block ``b = i // 4``
  words (w0, w1) -> normals of elements 4b, 4b+1; words (w2, w3) -> normals of elements 4b+2, 4b+3.

Box–Muller: ``u = (2 (w_a >> 9) + 1) 2^-24`` in (0, 1) and angle ``2π (w_b >> 9) 2^-23``;
``n = sqrt(-2 ln u) (cos θ, sin θ)``. ``ln``, ``sin`` and ``cos`` are short float32 polynomials
(Cephes-style, ~1 ulp on their reduced ranges) written out operation by operation, so that the vectorised
C++ loop and these tensor ops round identically: no library ``logf``/``sinf`` whose last bit differs between
libm, SLEEF and CUDA. Uniforms keep 23 bits, so ``|n| <= sqrt(48 ln 2) = 5.77`` (tail mass < 1e-8).

Unsigned 32-bit words are held in int64 tensors with values in ``[0, 2^32)``.
"""
from __future__ import annotations

import torch

PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85
_MASK32 = 0xFFFFFFFF

# Polynomial coefficients (float32 literals, as in csrc/philox.h).
_LOG_P = (7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1, 1.4249322787e-1,
          -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1)
_LOG2_HI, _LOG2_LO = 0.693359375, -2.12194440e-4   # ln 2 split so that e * _LOG2_HI is exact
_SIN_P = (-1.9515295891e-4, 8.3321608736e-3, -1.6666654611e-1)
_COS_P = (2.443315711809948e-5, -1.388731625493765e-3, 4.166664568298827e-2)
_QUARTER_TURN_SCALE = 7.490140565847857e-07          # π / 2^22: one unit of the reduced 22-bit angle
_INV_2_24 = 5.960464477539063e-08                      # 2^-24


def _mulhilo(m: int, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(hi, lo) 32-bit halves of the 64-bit product ``m * c`` without int64 overflow (c: int64 in [0, 2^32))."""
    m_hi, m_lo = m >> 16, m & 0xFFFF
    a = c * m_lo                                     # < 2^48
    b = c * m_hi                                     # < 2^48
    t = a + ((b & 0xFFFF) << 16)                     # low 48-ish bits of the product, < 2^49
    lo = t & _MASK32
    hi = ((b >> 16) + (t >> 32)) & _MASK32
    return hi, lo


def philox4x32_10(counter, key) -> tuple[torch.Tensor, ...]:
    """Philox4x32-10 on broadcastable int64 tensors (or ints) ``counter = (c0..c3)``, ``key = (k0, k1)``.

    Returns the four output words as int64 tensors with values in ``[0, 2^32)``.
    """
    c0, c1, c2, c3 = (torch.as_tensor(c, dtype=torch.int64) for c in counter)
    k0, k1 = (int(k) & _MASK32 for k in key)
    for r in range(10):
        if r > 0:  # key schedule (Weyl sequence)
            k0, k1 = (k0 + PHILOX_W0) & _MASK32, (k1 + PHILOX_W1) & _MASK32
        hi0, lo0 = _mulhilo(PHILOX_M0, c0)
        hi1, lo1 = _mulhilo(PHILOX_M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


def log_unit(u: torch.Tensor) -> torch.Tensor:
    """Natural log of float32 ``u`` in (0, 1) (normal numbers), the polynomial of ``csrc/philox.h``."""
    bits = u.view(torch.int32)
    e = (bits >> 23) - 126                           # u = m 2^e with m in [0.5, 1)
    m = ((bits & 0x7FFFFF) | 0x3F000000).view(torch.float32)
    small = m < 0.70710678                           # re-centre m on 1: m in [sqrt(1/2), sqrt(2))
    e = torch.where(small, e - 1, e).to(torch.float32)
    x = torch.where(small, (m + m) - 1.0, m - 1.0)
    z = x * x
    p = torch.full_like(x, _LOG_P[0])
    for c in _LOG_P[1:]:
        p = p * x + c
    y = (p * x) * z
    y = y + e * _LOG2_LO
    y = y + z * -0.5
    r = x + y
    return r + e * _LOG2_HI


def sincos_2pi(k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sin, cos)`` of the angle ``2π k / 2^23`` for int64 ``k`` in ``[0, 2^23)``, as float32.

    Exact reduction to the nearest quarter turn ``n`` and a remainder ``φ`` in ``[-π/4, π/4)``.
    """
    n = (k + (1 << 20)) >> 21                        # nearest quarter turn, 0..4
    phi = (k - (n << 21)).to(torch.float32) * _QUARTER_TURN_SCALE
    z = phi * phi
    sp = (z * _SIN_P[0] + _SIN_P[1]) * z + _SIN_P[2]
    sp = ((sp * z) * phi) + phi
    cp = (z * _COS_P[0] + _COS_P[1]) * z + _COS_P[2]
    cp = (cp * z) * z
    cp = cp - z * 0.5
    cp = cp + 1.0
    q = n & 3
    s = torch.where(q == 0, sp, torch.where(q == 1, cp, torch.where(q == 2, -sp, -cp)))
    c = torch.where(q == 0, cp, torch.where(q == 1, -sp, torch.where(q == 2, -cp, sp)))
    return s, c


def box_muller(wa: torch.Tensor, wb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent N(0, 1) float32 samples from two uniform 32-bit words (int64 tensors)."""
    u = (((wa >> 9) << 1) | 1).to(torch.float32) * _INV_2_24        # (0, 1), exact
    # torch's float32 sqrt kernel is not always correctly rounded (SLEEF, ~0.5001 ulp); sqrtf in C++/CUDA is.
    # sqrt in float64 rounded to float32 is correctly rounded, so the twin matches bit for bit.
    r = torch.sqrt((log_unit(u) * -2.0).double()).float()
    s, c = sincos_2pi(wb >> 9)
    return r * c, r * s


def normal(numel: int, seed: int, offset: int, device=None) -> torch.Tensor:
    """The op's noise: ``numel`` float32 N(0, 1) values for ``(seed, offset)``; element i is a pure function
    of ``(seed, offset, i)``. Shape (numel,)."""
    if int(numel) != numel or numel < 0:
        raise ValueError(f"numel: expected a non-negative integer, got {numel!r}")
    numel = int(numel)
    n_blocks = (numel + 3) // 4
    b = torch.arange(n_blocks, dtype=torch.int64, device=device)
    offset = int(offset) & 0xFFFFFFFFFFFFFFFF
    seed = int(seed) & 0xFFFFFFFFFFFFFFFF
    counter = (b & _MASK32, b >> 32, offset & _MASK32, offset >> 32)
    w0, w1, w2, w3 = philox4x32_10(counter, (seed & _MASK32, seed >> 32))
    n0, n1 = box_muller(w0, w1)
    n2, n3 = box_muller(w2, w3)
    return torch.stack((n0, n1, n2, n3), dim=1).reshape(-1)[:numel]
