"""ViM, virtual-logit matching (Wang et al. 2022). Features z (N, D), head W (C, D), b (C,).

1. Origin ``u = -W⁺ b`` (pseudo-inverse), where the logits vanish in the least-squares sense.
2. Principal subspace P: the top ``D_p`` eigenvectors of ``(1/N) Σ (z - u)(z - u)ᵀ`` over the training
   features; ``x^{P⊥} = (z - u) R Rᵀ`` with R the remaining (D - D_p) eigenvectors.
3. ``α = mean_train(max_c f(z)_c) / mean_train(‖x^{P⊥}‖)`` so the virtual logit ``α‖x^{P⊥}‖`` has the
   scale of the real ones.
4. Score (higher = more OOD): ``s(z) = α ‖x^{P⊥}‖ - logsumexp_c f(z)_c``; the paper's ID score is
   ``-log softmax`` of the virtual logit, a monotone function of this.

``D_p`` default (ours, after the paper's choices): 1000 if D ≥ 1536, 512 if 768 ≤ D < 1536, else D // 2.
"""
from __future__ import annotations

import numpy as np

from ebm_ood.plumbing.checks import check_int
from ebm_ood.posthoc.linear_head import HeadDetector, energy_score, logits_of


def default_principal_dim(d: int) -> int:
    """Principal-subspace size D_p for feature dimension D (see module docstring)."""
    if d >= 1536:
        return 1000
    if d >= 768:
        return 512
    return max(1, d // 2)


def vim_origin(weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``u = -W⁺ b``: (C, D), (C,) → (D,)."""
    return -np.linalg.pinv(weight) @ bias


def residual_basis(z: np.ndarray, origin: np.ndarray, dim: int) -> np.ndarray:
    """Orthonormal basis R (D, D - dim) of the complement of the top-``dim`` eigenvectors of the
    second moment of ``z - u`` (N, D)."""
    zc = np.asarray(z, dtype=np.float64) - origin
    vals, vecs = np.linalg.eigh(zc.T @ zc / zc.shape[0])  # ascending eigenvalues
    order = np.argsort(vals)[::-1]
    return np.ascontiguousarray(vecs[:, order[dim:]])


class ViM(HeadDetector):
    """ViM, virtual-logit matching (Wang et al. 2022): ``α ‖x^{P⊥}‖ - logsumexp_c f(z)_c`` (module
    docstring): the energy ``-logsumexp f(z)`` plus the scaled residual norm, so an energy plus a
    penalty, not an energy of a normalised density. After fit: ``origin_`` u (D,), ``basis_`` R
    (D, D - D_p), ``alpha_``, ``dim_`` (D_p).

    Parameters
    ----------
    weight : array (C, D), the head's ``W``.
    bias : array (C,), the head's ``b``.
    dim : int or None, principal-subspace size D_p (None: module docstring's default).
    device : torch device or None (CPU).
    batch_size : int, samples per scoring batch.

    Needs
    -----
    Features (N, D) and the backbone's linear head ``W`` (C, D), ``b`` (C,):
    ``FeatureSpaceDetector(bb, ViM.from_backbone(bb))`` with ``bb = Backbone(model, head=model.fc, ...)``.

    Example
    -------
    >>> import numpy as np, ebm_ood
    >>> rng = np.random.default_rng(0)
    >>> z, W, b = rng.normal(size=(100, 6)).astype("float32"), rng.normal(size=(3, 6)), rng.normal(size=3)
    >>> ebm_ood.ViM(W, b, dim=3).fit(z).score(z[:3]).shape
    (3,)
    """

    name = "ViM"

    def __init__(self, weight, bias, dim: int | None = None, device=None, batch_size: int = 4096):
        super().__init__(weight, bias, device, batch_size)
        self.dim = None if dim is None else check_int(dim, "dim")

    def residual_norm(self, z: np.ndarray) -> np.ndarray:
        """``‖x^{P⊥}‖ = ‖(z - u) R‖``. (N,)."""
        return np.linalg.norm((np.asarray(z, dtype=np.float64) - self.origin_) @ self.basis_, axis=1)

    def _fit(self, x, y):
        self.check_features(x)
        d = x.shape[1]
        self.dim_ = default_principal_dim(d) if self.dim is None else self.dim
        if self.dim_ >= d:
            raise ValueError(f"dim: the principal subspace must be smaller than the feature dimension {d}, got {self.dim_}")
        self.origin_ = vim_origin(self.weight, self.bias)
        self.basis_ = residual_basis(x, self.origin_, self.dim_)
        max_logit = logits_of(x, self.weight, self.bias).max(axis=1)
        self.alpha_ = float(max_logit.mean() / max(self.residual_norm(x).mean(), 1e-12))

    def _fitted_mismatch(self):
        d = self.weight.shape[1]
        dim = default_principal_dim(d) if self.dim is None else self.dim
        if self.dim_ != dim or not 1 <= dim < d:
            return f"dim_ = {self.dim_!r}, but dim = {self.dim!r} and features of size {d} give {dim}"
        if self.origin_.shape != (d,) or self.basis_.shape != (d, d - dim):
            return (f"origin_ {self.origin_.shape} / basis_ {self.basis_.shape} do not fit features of size {d} "
                    f"and dim_ = {dim}, expected ({d},) / ({d}, {d - dim})")
        return None

    def _score(self, x):
        self.check_features(x)
        return self.alpha_ * self.residual_norm(x) + energy_score(logits_of(x, self.weight, self.bias))
