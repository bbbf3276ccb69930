"""Chapter 04 exercises: score matching fits a Gaussian by its second moment, the variance of slicing
projections, and the sliced loss written out."""
from __future__ import annotations

import itertools

import numpy as np

from exercises._check import elements_off, as_array, as_callable, as_dict, as_float, close, fail, passed

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
        fail(ex, f"your A {got.round(3).tolist()} is not the minimiser: {elements_off(got, want, 0.02)}",
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


def check_exercise_3(ssm_loss) -> bool:
    """Implement it: ``ssm_loss(energy, x (N, D), v (N, D), variance_reduction) -> (N,)``, the per-sample
    sliced score matching loss for one projection ``v`` per sample, with ``s = -∇ₓE`` and the Hessian-vector
    product by double backprop: SSM ``vᵀ∇ₓs v + ½(vᵀs)²``, SSM-VR ``vᵀ∇ₓs v + ½‖s‖²``. Compared with the
    library's ``sliced_score_matching_loss(..., reduce=False)`` on the same projections, for a network,
    inputs and projections the check draws."""
    ex = EX.format(3)
    import torch
    from ebm_ood.methods.score_matching import random_projections, sliced_score_matching_loss
    fn = as_callable(ssm_loss, "ssm_loss", ex)
    rng = np.random.default_rng(30)
    torch.manual_seed(int(rng.integers(1, 2**31)))
    net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Softplus(), torch.nn.Linear(16, 1)).double()
    energy = lambda x: net(x).squeeze(1)                                      # noqa: E731
    x = torch.as_tensor(rng.normal(0, 1, (12, 6)))
    seed = int(rng.integers(1, 2**31))
    for kind, vr in (("rademacher", True), ("gaussian", False)):
        v = random_projections(tuple(x.shape), kind, torch.Generator().manual_seed(seed), x.device, x.dtype)
        want = sliced_score_matching_loss(energy, x, projection=kind, variance_reduction=vr, reduce=False,
                                          generator=torch.Generator().manual_seed(seed)).detach().numpy()
        got = as_array(fn(energy, x.clone(), v.clone(), vr), f"ssm_loss(..., variance_reduction={vr})", ex,
                       shape=(len(x),))
        if not np.allclose(got, want, rtol=1e-8, atol=1e-10):
            fail(ex, f"{'SSM-VR' if vr else 'SSM'} ({kind} v): {elements_off(got, want, 1e-8 * np.abs(want) + 1e-10)}",
                 "s = -grad of energy(x).sum() with create_graph=True; then grad of (s·v).sum() gives the "
                 "Hessian-vector product; SSM-VR replaces ½(vᵀs)² by ½‖s‖²")
    return passed(ex, "two backward passes whatever D: the trace estimate vᵀ∇s v costs one Hessian-vector "
                      "product, where the exact trace costs D.")
