"""Chapter 06 exercises: change of variables, the radial flow's log-determinant, bits per dimension."""
from __future__ import annotations

import math

import numpy as np
from scipy import stats

from exercises._check import decade, elements_off, off_by, as_array, as_callable, fail, passed

EX = "ch06 exercise {}"


def check_exercise_1(log_p) -> bool:
    """``log_p(y (N,)) -> (N,)``: the log-density of ``y = exp(x)``, ``x ~ N(0, 1)``, by the change of
    variables formula (a log-normal; compared with ``scipy.stats.lognorm``)."""
    ex = EX.format(1)
    fn = as_callable(log_p, "log_p", ex)
    y = np.exp(np.random.default_rng(1).normal(0, 1.5, 50))
    got = as_array(fn(y), "log_p(y)", ex, shape=(50,))
    want = stats.lognorm(s=1.0).logpdf(y)
    err = float(np.abs(got - want).max())
    if err > 1e-8:
        sign = np.abs(got - (want + 2 * np.log(y))).max() < 1e-8
        fail(ex, f"your log p(y) is off by {decade(err)} (the largest error)",
             "the Jacobian term has the wrong sign: log p_Y(y) = log p_X(log y) + log|d log y / dy|" if sign
             else "log p_Y(y) = log p_X(x) - log|dy/dx| with x = log y")
    return passed(ex, "log p_Y(y) = log p_X(log y) - log y.")


def check_exercise_2(radial_log_det) -> bool:
    """``radial_log_det(z (N, d), z0 (d,), alpha > 0, beta) -> (N,)``: ``log|det ∂f/∂z|`` of the radial flow
    ``f(z) = z + β (z - z0) / (α + r)``, ``r = ‖z - z0‖`` (Rezende & Mohamed 2015), compared with the
    log-determinant of the autograd Jacobian (and with the library's ``radial_transform``, which agrees)."""
    ex = EX.format(2)
    import torch
    fn = as_callable(radial_log_det, "radial_log_det", ex)
    rng = np.random.default_rng(2)
    for d, alpha, beta in ((2, 0.7, 1.3), (3, 1.5, -0.6)):
        z = torch.as_tensor(rng.normal(0, 1, (6, d)))
        z0 = torch.as_tensor(rng.normal(0, 0.5, d))
        got = as_array(fn(z, z0, alpha, beta), f"radial_log_det (d = {d})", ex, shape=(6,))
        def flow(v):
            return v + beta * (v - z0) / (alpha + torch.linalg.norm(v - z0))
        want = np.array([float(torch.linalg.slogdet(torch.autograd.functional.jacobian(flow, zi))[1]) for zi in z])
        from ebm_ood.methods.flows.radial import radial_transform
        library = radial_transform(z, z0, torch.tensor(alpha, dtype=z.dtype), torch.tensor(beta, dtype=z.dtype))[1]
        if np.abs(library.numpy() - want).max() > 1e-8:
            fail(ex, "internal: the library's radial_transform disagrees with autograd's Jacobian")
        err = float(np.abs(got - want).max())
        if err > 1e-8:
            fail(ex, f"d = {d}, α = {alpha}, β = {beta}: your log-determinant is off by {decade(err)} (the largest error)",
                 "(d - 1) directions orthogonal to z - z0 are scaled by 1 + βh, the radial one by "
                 "1 + βh + βh'r, h = 1/(α + r)")
    return passed(ex, "the radial flow's determinant is O(d), not O(d³): it is a rank-one update.")


def check_exercise_3(bits_per_dim) -> bool:
    """``bits_per_dim(log_p (N,), D, delta) -> (N,)``: bits per dimension of inputs discretised into bins of
    width ``delta`` from the continuous log-density ``log_p`` (nats) of a D-dimensional model.
    Checked on uniform densities over K bins (exactly ``log2 K`` bits) and a Gaussian."""
    ex = EX.format(3)
    fn = as_callable(bits_per_dim, "bits_per_dim", ex)
    for levels, delta, d in ((256, 2 / 256, 64), (17, 1 / 8, 10)):
        log_p = np.full(3, -d * math.log(levels * delta))            # uniform on a box of K bins per side
        got = as_array(fn(log_p, d, delta), "bits_per_dim", ex, shape=(3,))
        if np.abs(got - math.log2(levels)).max() > 1e-9:
            fail(ex, f"a uniform density over {levels} bins per dimension codes in log2({levels}) bits/dim; "
                     f"your {got[0]:.4f} is {off_by(float(got[0]), math.log2(levels))}",
                 "probability of a bin ≈ p(x)·δ per dimension; bits = -log2 of it, divided by D")
    x = np.random.default_rng(3).normal(0, 1, (4, 5))
    log_p = stats.norm.logpdf(x).sum(1)
    bins = np.prod(stats.norm.cdf(x + 0.005) - stats.norm.cdf(x - 0.005), axis=1)   # exact bin masses
    want = -np.log2(bins) / 5
    got = as_array(fn(log_p, 5, 0.01), "bits_per_dim", ex, shape=(4,))
    if np.abs(got - want).max() > 1e-3:
        fail(ex, f"for a standard normal and δ = 0.01 you get {got.round(4).tolist()}; against the exact bin "
                 f"masses {elements_off(got, want, 1e-3)}")
    return passed(ex, "bpd = -(log p + D log δ) / (D log 2): uniform noise over 256 levels costs 8 bits/dim.")
