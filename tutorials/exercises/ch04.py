"""Chapter 04 exercises: score matching fits a Gaussian by its second moment, the variance of slicing
projections, and the cost of the exact trace."""
from __future__ import annotations

import itertools
from unittest import mock

import numpy as np

from exercises._check import as_array, as_dict, as_float, close, fail, passed

EX = "ch04 exercise {}"


def gaussian_data(n: int = 4000, seed: int = 0) -> np.ndarray:
    """(n, 2) float64 samples of N(m, C) with m = (0.5, -0.3), C = [[1, 0.5], [0.5, 0.7]]."""
    rng = np.random.default_rng(seed)
    chol = np.linalg.cholesky(np.array([[1.0, 0.5], [0.5, 0.7]]))
    return rng.standard_normal((n, 2)) @ chol.T + np.array([0.5, -0.3])


def check_exercise_1(a) -> bool:
    """``a`` (2, 2): the symmetric matrix that minimises ``exact_score_matching_loss`` of
    ``E_A(x) = ½ xᵀAx`` on ``gaussian_data()`` (train A by gradient descent, or solve for it)."""
    ex = EX.format(1)
    got = as_array(a, "a", ex, shape=(2, 2))
    x = gaussian_data()
    second_moment = x.T @ x / len(x)                      # E[x xᵀ], not the centred covariance
    want = np.linalg.inv(second_moment)
    err = float(np.abs(got - want).max())
    if err > 0.02:
        centred = np.linalg.inv(np.cov(x.T, bias=True))
        hint = ("the model has no mean parameter: the objective sees E[xxᵀ], not the covariance"
                if np.abs(got - centred).max() < 0.02 else
                "Hyvärinen: J(A) = mean(½‖Ax‖²) - tr A; set its gradient in A to zero")
        fail(ex, f"your A {got.round(3).tolist()} is {err:.3g} away from the minimiser {want.round(3).tolist()}",
             hint)
    return passed(ex, "score matching fits A = E[xxᵀ]⁻¹ without ever computing Z.")


H = np.array([[2.0, 0.5, -1.0, 0.0], [0.5, 1.0, 0.3, 0.2], [-1.0, 0.3, -0.5, 0.7], [0.0, 0.2, 0.7, 1.5]])


def check_exercise_2(answer) -> bool:
    """``answer = {"rademacher": var, "gaussian": var}``: the variance of the one-projection trace estimate
    ``vᵀHv`` of ``tr H`` for the symmetric ``H`` above, with Rademacher and with standard normal ``v``."""
    ex = EX.format(2)
    answer = as_dict(answer, ("rademacher", "gaussian"), "answer", ex)
    signs = np.array(list(itertools.product((-1.0, 1.0), repeat=len(H))))   # all 2^D Rademacher vectors
    quad = np.einsum("ki,ij,kj->k", signs, H, signs)
    if not np.allclose(quad.mean(), np.trace(H)):
        fail(ex, "internal: the brute-force mean is not tr H")
    close(ex, "the Rademacher variance", as_float(answer["rademacher"], "rademacher", ex), float(quad.var()), 1e-6,
          "enumerate all 2^D sign vectors, or use the fact that v_i² = 1 removes the diagonal")
    rng = np.random.default_rng(0)
    v = rng.standard_normal((400_000, len(H)))
    mc = float(np.einsum("ki,ij,kj->k", v, H, v).var())
    close(ex, "the Gaussian variance", as_float(answer["gaussian"], "gaussian", ex), mc, 0.02 * mc,
          "E[v_i⁴] = 3 for a standard normal")
    return passed(ex, "Rademacher projections drop the diagonal's contribution, so SSM's trace estimate is "
                      "less noisy with them.")


def _count_grad_calls(fn) -> int:
    import torch
    calls = []
    real = torch.autograd.grad

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    with mock.patch.object(torch.autograd, "grad", counting):
        fn()
    return len(calls)


def check_exercise_3(answer) -> bool:
    """``answer = {"exact": n, "sliced": m}``: the number of backward passes (``torch.autograd.grad`` calls)
    ``exact_score_matching_loss`` and ``sliced_score_matching_loss(..., n_projections=4)`` make for one batch
    of 64-dimensional inputs (the score ``s = -∇ₓE`` counts as one)."""
    ex = EX.format(3)
    answer = as_dict(answer, ("exact", "sliced"), "answer", ex)
    import torch
    from ebm_ood.methods.score_matching import exact_score_matching_loss, sliced_score_matching_loss
    net = torch.nn.Sequential(torch.nn.Linear(64, 8), torch.nn.Softplus(), torch.nn.Linear(8, 1))
    energy = lambda x: net(x).squeeze(1)                                      # noqa: E731
    x = torch.randn(5, 64)
    counts = {"exact": _count_grad_calls(lambda: exact_score_matching_loss(energy, x)),
              "sliced": _count_grad_calls(lambda: sliced_score_matching_loss(energy, x, n_projections=4))}
    for k in ("exact", "sliced"):
        got = as_float(answer[k], k, ex)
        if got != counts[k]:
            fail(ex, f"{k}: you say {got:g} backward passes; counting the calls gives {counts[k]}",
                 "the exact trace needs one pass per input dimension; read how the projections are batched")
    return passed(ex, f"exact: {counts['exact']} passes (grows with D), sliced: {counts['sliced']} "
                      "(independent of D).")
