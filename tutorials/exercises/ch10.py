"""Chapter 10 exercises: counter reuse, Philox words across the counter's high word, and the op's noise
rebuilt from the words. The Philox reference here is plain Python integers, independent of
``ebm_ood.sampling.philox``."""
from __future__ import annotations

import math

import numpy as np

from exercises._check import decade, as_array, as_callable, as_dict, as_float, close, fail, passed

EX = "ch10 exercise {}"
MASK = 0xFFFFFFFF
SEED, OFFSET = 1234, 7


def philox_reference(counter: tuple[int, int, int, int], key: tuple[int, int]) -> tuple[int, int, int, int]:
    """Philox4x32-10 (Salmon et al. 2011) on Python ints: ten rounds, key bumped by the Weyl constants."""
    c0, c1, c2, c3 = (int(c) & MASK for c in counter)
    k0, k1 = (int(k) & MASK for k in key)
    for r in range(10):
        if r:
            k0, k1 = (k0 + 0x9E3779B9) & MASK, (k1 + 0xBB67AE85) & MASK
        p0, p1 = 0xD2511F53 * c0, 0xCD9E8D57 * c2
        c0, c1, c2, c3 = ((p1 >> 32) ^ c1 ^ k0) & MASK, p1 & MASK, ((p0 >> 32) ^ c3 ^ k1) & MASK, p0 & MASK
    return c0, c1, c2, c3


def check_exercise_1(answer) -> bool:
    """``answer = {"same_offset": r, "next_offset": r}``: the correlation between the noises of two
    ``ops.sgld_step_`` calls on zero tensors of 4096 elements (``step_size=0``, ``noise_std=1``,
    ``seed=SEED``) with the same ``offset=OFFSET`` twice, and with ``OFFSET`` then ``OFFSET + 1``."""
    ex = EX.format(1)
    import torch
    from ebm_ood.sampling import ops
    answer = as_dict(answer, ("same_offset", "next_offset"), "answer", ex)
    draws = {}
    for o in (OFFSET, OFFSET + 1):
        x = torch.zeros(4096)
        ops.sgld_step_(x, torch.zeros(4096), 0.0, 1.0, seed=SEED, offset=o)
        draws[o] = x.double().numpy()
    again = torch.zeros(4096)
    ops.sgld_step_(again, torch.zeros(4096), 0.0, 1.0, seed=SEED, offset=OFFSET)
    same = float(np.corrcoef(draws[OFFSET], again.double().numpy())[0, 1])
    nxt = float(np.corrcoef(draws[OFFSET], draws[OFFSET + 1])[0, 1])
    close(ex, "same_offset", as_float(answer["same_offset"], "same_offset", ex), same, 1e-9,
          "a counter-based generator is a function of (seed, offset, i): same inputs, same numbers")
    close(ex, "next_offset", as_float(answer["next_offset"], "next_offset", ex), nxt, 1e-9)
    if abs(nxt) > 4 / math.sqrt(4096):
        fail(ex, f"internal: consecutive offsets correlate ({nxt:.3f})")
    return passed(ex, "the same (seed, offset) repeats the noise exactly (r = 1): a chain that forgets to advance "
                      "offset adds the same vector every step, a drift instead of diffusion.")


def check_exercise_2(answer) -> bool:
    """``answer = {"low": 4 words, "high": 4 words}``: ``philox4x32_10`` for counters ``(0, 0, OFFSET, 0)`` and
    ``(0, 1, OFFSET, 0)`` (element block 0 and block 2³²) with key ``(SEED, 0)``."""
    ex = EX.format(2)
    answer = as_dict(answer, ("low", "high"), "answer", ex)
    for name, c1 in (("low", 0), ("high", 1)):
        got = as_array(answer[name], f"answer[{name!r}]", ex, shape=(4,))
        want = np.array(philox_reference((0, c1, OFFSET, 0), (SEED, 0)), dtype=np.float64)
        if not np.array_equal(got, want):
            fail(ex, f"{name}: your words {got.astype(np.int64).tolist()} are not Philox4x32-10 of counter "
                     f"(0, {c1}, {OFFSET}, 0): words {np.flatnonzero(got != want).tolist()} differ",
                 "convert the tensors to ints; the counter order is (c0, c1, c2, c3)")
    if np.array_equal(as_array(answer["low"], "low", ex), as_array(answer["high"], "high", ex)):
        fail(ex, "the two counters give the same words")
    return passed(ex, "c1 is part of the counter: blocks 0 and 2³² get different words, no collision.")


def check_exercise_3(noise) -> bool:
    """``noise(seed, offset, numel) -> (numel,)`` numpy: the op's N(0, 1) noise rebuilt from Philox words:
    block b uses counter ``(b mod 2³², b >> 32, offset mod 2³², offset >> 32)`` and key ``(seed mod 2³²,
    seed >> 32)``; words (w0, w1) and (w2, w3) go through Box–Muller with ``u = (2 (w0 >> 9) + 1) / 2²⁴``,
    angle ``2π (w1 >> 9) / 2²³``, giving ``r cos, r sin`` (elements 4b .. 4b + 3)."""
    ex = EX.format(3)
    fn = as_callable(noise, "noise", ex)
    for seed, offset, numel in ((SEED, OFFSET, 10), (2**40 + 5, 2**33 + 3, 7)):
        got = as_array(fn(seed, offset, numel), f"noise({seed}, {offset}, {numel})", ex, shape=(numel,))
        want = []
        for b in range((numel + 3) // 4):
            w = philox_reference((b & MASK, b >> 32, offset & MASK, offset >> 32), (seed & MASK, seed >> 32))
            for wa, wb in ((w[0], w[1]), (w[2], w[3])):
                r = math.sqrt(-2.0 * math.log((2 * (wa >> 9) + 1) / 2**24))
                angle = 2 * math.pi * (wb >> 9) / 2**23
                want += [r * math.cos(angle), r * math.sin(angle)]
        want = np.array(want[:numel])
        from ebm_ood.sampling import philox
        if np.abs(philox.normal(numel, seed, offset).double().numpy() - want).max() > 1e-5:
            fail(ex, "internal: the library's philox.normal disagrees with Box–Muller on the reference words")
        err = float(np.abs(got - want).max())
        if err > 1e-5:
            fail(ex, f"noise({seed}, {offset}, {numel}) differs from Box–Muller on Philox words by {decade(err)} (the largest error)",
                 "check the element order (cos, sin of words 0-1, then of words 2-3) and the high counter words")
    return passed(ex, "element i of the noise is a pure function of (seed, offset, i) — what lets the CPU "
                      "kernel, the CUDA kernel and the twin agree.")
