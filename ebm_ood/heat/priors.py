"""HEAT's prior density estimators written as energies ``E_q(z) = -log q(z)`` (+ const), and the
prior samplers that start SGLD (Alg. 1: ``z'_0 ~ q``).

Every prior is a small ``nn.Module`` with only buffers (nothing is trained by gradient):
``fit(z, y)`` on numpy features (N, D), ``forward(z)`` (N, D) -> (N,) differentiable in ``z`` (used inside
SGLD), ``sample(n, generator)`` -> (n, D).

* :class:`ELPrior` — energy-logits (Liu et al. 2020; HEAT §3.2): ``E(z) = -τ · logsumexp(fc(z) / τ)``
  with the backbone's linear head ``fc(z) = W z + b``.
* :class:`GMMPrior` — class-conditional Gaussians with one shared covariance (HEAT §3.2). Paper form
  ``E(z) = -logsumexp_c -½ (ẑ - μ_c)ᵀ Σ⁻¹ (ẑ - μ_c)``; the authors' code (``form="code"``) uses the
  full ``-log q(ẑ)`` with class-frequency weights. Both on ``ẑ = z / ‖z‖`` by default
  (``normalize=True``): the GMM HEAT corrects is SSD+'s (Sehwag et al. 2021, Mahalanobis on L2-normalised
  features) — HEAT Table 1's GMM row (CIFAR-10: 52.6/89.0, ..., 35.1/93.3) is Table 4's SSD+ row — and
  the authors' code normalises (``config/default.yaml``: ``normalize: True``, read by the GMM configs).
  ``normalize=False``: the raw features.
* Every prior energy is divided by a temperature ``T``. Defaults: ``T_G = 1e3`` for the GMM priors
  (HEAT App. B: "temperature scaling on the mixture of Gaussian distributions energy with temperature
  T_G = 1e3"; the authors' code: ``temperature_prior: 1e3`` in ``heat_gmm*_c10.yaml``) and ``T = 1`` for
  EL (App. B scales only the GMM energy; the code: ``temperature_prior: 1e0`` in ``heat_el_c10.yaml``).
  ``temperature="auto"`` (a switch, not the paper's) sets ``T`` to the std of the raw energy on ID
  training features.
  GMM-std is the same prior fitted on std-pooled features (the detector picks the features).
* :class:`NoPrior` — ``E_q = 0``: the "fully data-driven EBM" baseline of HEAT Table 2 / Fig. 4; it
  keeps a Gaussian proposal to start SGLD.

Samplers. GMM: ``c ~ π``, ``z = μ_c + L ε`` (Cholesky, ``L Lᵀ = Σ``). EL has no closed-form sampler:
by default (``init="gaussian"``) we start from the class-Gaussian fitted on the same features;
``init="normal"`` is the authors' code, ``N(0, I)``; both are then projected onto the feature domain.

Feature domain (``domain``). The authors' ResNets end in ReLU, so their SGLD starts and steps are
ReLU-projected. This project's backbones may end in LeakyReLU (features of both signs), where a ReLU
would put the negatives in a region no real feature visits. ``domain="auto"`` (default) reads it from
the training features at fit time: ``"nonneg"`` if every coordinate is >= 0 (project with ReLU), else
``"real"`` (no ReLU). :meth:`_GaussianBuffers.project` is that projection (plus the L2 normalisation of
a normalising GMM prior); :meth:`_GaussianBuffers.features` is the map every energy applies to ``z`` first.

Ridge. Σ gets ``reg · s · I`` with ``s`` the mean within-class variance of the training features
(:meth:`~ebm_ood.class_gaussian.ClassGaussianStats.ridge_scale`), so a dead feature channel (zero
variance) stays invertible whatever the features' scale.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ebm_ood.class_gaussian import ClassGaussian, DegenerateCovarianceWarning, fit_class_gaussian
from ebm_ood.energy import energy_from_logits
from ebm_ood.plumbing.errors import NotFittedError
from ebm_ood.plumbing.checks import check_array, check_bool, check_positive

DOMAINS = ("auto", "nonneg", "real")
_GAUSSIAN_FIELDS = ("means", "cov", "chol", "whiten", "precision", "counts", "log_weights", "logdet")


class _GaussianBuffers(nn.Module):
    """Base of the priors: a fitted :class:`ClassGaussian` held as buffers (moves with ``.to(device)``,
    saved in state_dict), and the energy temperature: ``forward(z) = raw_energy(z) / T``.

    A number is used as it is (HEAT App. B: ``T_G = 1e3`` for the GMM priors; ``T = 1`` is the formula
    verbatim). ``T = "auto"`` sets ``T`` at fit time to the standard deviation of ``raw_energy`` on the
    training features, so that the prior's ID energies spread over O(1) whatever the feature scale — a
    rule of ours, not the paper's. The two are not interchangeable: with ``T_G = 1e3`` on L2-normalised
    features the prior's ID energies spread over ~1e-2, so the residual ``E_θ`` (kept to about ±1/λ by
    Eq. 5) outweighs the prior's ordering of ID-like points; with "auto" the prior's ID spread is 1, ten
    times ``E_θ``'s range at λ = 10.
    """

    normalize = False   # GMMPrior(normalize=True) L2-normalises z before its energy

    def _init_common(self, temperature, reg: float, domain: str) -> None:
        """Check and store the temperature, the relative ridge ``reg`` and the feature ``domain``."""
        if temperature != "auto":
            check_positive(temperature, "temperature")
        check_positive(reg, "reg", allow_zero=True)
        if domain not in DOMAINS:
            raise ValueError(f"domain: expected one of {DOMAINS}, got {domain!r}")
        self.temperature, self.reg, self.domain = temperature, float(reg), domain
        self.domain_ = None if domain == "auto" else domain
        self.register_buffer("t_", torch.tensor(1.0 if temperature == "auto" else float(temperature), dtype=torch.float64))

    def _fit_domain(self, z: np.ndarray) -> None:
        if self.domain == "auto":
            self.domain_ = "nonneg" if float(np.min(z)) >= 0 else "real"

    def features(self, z: torch.Tensor) -> torch.Tensor:
        """The map applied to ``z`` before every energy: L2 normalisation for a GMM prior with
        ``normalize=True``, else identity. (N, D) -> (N, D)."""
        return F.normalize(z, dim=-1) if self.normalize else z

    def project(self, z: torch.Tensor) -> torch.Tensor:
        """Onto the feature domain: ReLU if the features are non-negative, then :meth:`features`.
        (N, D) -> (N, D). Before ``fit`` with ``domain="auto"``: ReLU (the papers' post-ReLU features)."""
        return self.features(F.relu(z) if self.domain_ in (None, "nonneg") else z)

    @torch.no_grad()
    def _fit_temperature(self, z: np.ndarray) -> None:
        if self.temperature == "auto":
            e = torch.cat([self.raw_energy(torch.as_tensor(z[i:i + 4096], dtype=torch.float32, device=self.t_.device))
                           for i in range(0, len(z), 4096)]).double()
            std, scale = float(e.std(unbiased=False)), float(e.abs().mean())   # population std
            if not std > 1e-4 * scale:    # constant up to rounding (e.g. N <= D: equal d² for all)
                warnings.warn(f"{type(self).__name__}: the prior energy is constant on the training features "
                              f"(std {std:.3g}; for a Gaussian prior: a degenerate covariance, e.g. one sample per "
                              f"class), so the temperature 'auto' is undefined; using T = 1",
                              DegenerateCovarianceWarning, stacklevel=3)
                std = 1.0
            self.t_.fill_(std)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``E_q(z) = raw_energy(z) / T``: (N, D) -> (N,), differentiable in z."""
        return self.raw_energy(z) / self.t_.to(z.dtype)

    def set_gaussian(self, g: ClassGaussian) -> None:
        for k in _GAUSSIAN_FIELDS:
            self.register_buffer("g_" + k, getattr(g, k).clone())

    @property
    def gaussian(self) -> ClassGaussian:
        if not hasattr(self, "g_means"):
            raise NotFittedError(f"{type(self).__name__}: call fit(z, y) first")
        return ClassGaussian(**{k: getattr(self, "g_" + k) for k in _GAUSSIAN_FIELDS})

    def _fit_gaussian(self, z, y, batch_size: int | None, reg: float) -> None:
        """Fit the class-Gaussian on ``z`` (N, D) with labels ``y`` (N,); ``y=None``: one Gaussian."""
        z = check_array(z, "z", ndim=2)
        y = np.zeros(len(z), np.int64) if y is None else y
        self.set_gaussian(fit_class_gaussian(z, y, batch_size=batch_size, reg=reg, relative=True))


class ELPrior(_GaussianBuffers):
    """Energy-logits prior (Liu et al. 2020; HEAT §3.2): raw energy ``-τ · logsumexp_c (W z + b)_c / τ``
    with the backbone's linear head, divided by the energy temperature ``T`` (see the base class).

    weight (C, D), bias (C,): the head. logit_temperature: τ (Liu et al.: 1). temperature: ``T`` (default 1,
    the paper's and the authors' code's; "auto": see the base class). init: "gaussian" (default,
    ours) or "normal" (authors' code) — how ``sample`` draws SGLD starting points. reg: relative ridge of
    the Gaussian proposal; domain: the feature domain (module docstring).
    """

    name = "EL"

    def __init__(self, weight, bias, logit_temperature: float = 1.0, temperature=1.0, init: str = "gaussian",
                 reg: float = 1e-6, domain: str = "auto"):
        super().__init__()
        check_positive(logit_temperature, "logit_temperature")
        if init not in ("gaussian", "normal"):
            raise ValueError(f"init: expected 'gaussian' or 'normal', got {init!r}")
        w = torch.as_tensor(np.asarray(weight), dtype=torch.float32)
        b = torch.as_tensor(np.asarray(bias), dtype=torch.float32)
        if w.ndim != 2 or b.shape != (w.shape[0],):
            raise ValueError(f"weight, bias: expected (C, D) and (C,), got {tuple(w.shape)}, {tuple(b.shape)}")
        self.register_buffer("weight", w)
        self.register_buffer("bias", b)
        self.logit_temperature, self.init = float(logit_temperature), init
        self._init_common(temperature, reg, domain)

    def fit(self, z, y=None, batch_size: int | None = None) -> "ELPrior":
        """The energy is the classifier's; only the SGLD proposal and ``T`` are fitted."""
        z = check_array(z, "z", ndim=2, shape=(self.weight.shape[1],))
        self._fit_domain(z)
        self._fit_gaussian(z, y, batch_size, self.reg)
        self._fit_temperature(z)
        return self

    def raw_energy(self, z: torch.Tensor) -> torch.Tensor:
        """(N, D) -> (N,)."""
        logits = F.linear(z, self.weight.to(z.dtype), self.bias.to(z.dtype))  # (N, C) = fc(z)
        return energy_from_logits(logits, self.logit_temperature)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n, D) starting points for SGLD, projected onto the feature domain (:meth:`project`)."""
        if self.init == "normal":
            z = torch.randn(int(n), self.weight.shape[1], generator=generator).to(self.weight.device)
        else:
            z, _ = self.gaussian.sample(n, generator)
        return self.project(z)


class GMMPrior(_GaussianBuffers):
    """Class-conditional Gaussian prior with shared covariance (HEAT §3.2; Lee et al. 2018).

    form="paper" (default): raw energy ``-logsumexp_c(-½ d²_c(ẑ))``, ``d²_c`` the squared Mahalanobis
      distance to the class mean ``μ_c``.
    form="code" (authors' code): raw energy the full ``-log q(ẑ)``, ``q = Σ_c π_c N(μ_c, Σ)`` with
      class-frequency weights.
    normalize (default True, both forms): ``ẑ = z / ‖z‖`` (the Gaussian is fitted on, and the energy and
      ``E_θ`` read, L2-normalised features; see the module docstring for the source); False: ``ẑ = z``.
    temperature: ``T`` (default ``T_G = 1e3``, HEAT App. B and the authors' code, both forms; "auto": see
      the base class). The energy is ``raw / T``.
    Σ is the ML covariance of class-centred features plus ``reg · s · I``, ``s`` the mean within-class
    variance (default reg 1e-6 in both forms; the authors' code adds an absolute 1e-12), fitted with :class:`~ebm_ood.class_gaussian.ClassGaussianStats`, streamed
    in chunks when ``fit`` gets a ``batch_size``.
    """

    name = "GMM"

    def __init__(self, form: str = "paper", temperature=1e3, reg: float = 1e-6, domain: str = "auto",
                 normalize: bool = True):
        super().__init__()
        if form not in ("paper", "code"):
            raise ValueError(f"form: expected 'paper' or 'code', got {form!r}")
        self.form = form
        self.normalize = check_bool(normalize, "normalize")
        self._init_common(temperature, reg, domain)

    def fit(self, z, y=None, batch_size: int | None = None) -> "GMMPrior":
        """z (N, D) numpy features, y (N,) labels (None: one Gaussian); streamed in ``batch_size`` chunks."""
        z = check_array(z, "z", ndim=2)
        self._fit_domain(z)
        zf = self.features(torch.as_tensor(z)).numpy() if self.normalize else z   # the map forward applies
        self._fit_gaussian(zf, y, batch_size, self.reg)
        self._fit_temperature(z)
        return self

    def raw_energy(self, z: torch.Tensor) -> torch.Tensor:
        """(N, D) -> (N,), differentiable in z."""
        g, zp = self.gaussian, self.features(z)
        if self.form == "paper":   # -logsumexp_c(-½ d²_c)
            return -torch.logsumexp(-0.5 * g.mahalanobis(zp), dim=1)
        return -g.log_density(zp)  # -log q(z)

    def max_curvature(self) -> float | None:
        """An upper bound of the largest eigenvalue of the Hessian ``∇²_z E_q``: ``1 / (λ_min(Σ) T)`` for
        the paper form (the mixture's Hessian is ``Σ⁻¹`` minus a covariance, divided by ``T``; with
        ``normalize`` it is the bound in the normalised coordinates, which the map ``z / ‖z‖`` scales by
        ``1 / ‖z‖²`` — 1 near the unit sphere the prior's samples live on); None for the code form. SGLD with gradient step ``a`` overshoots
        along a direction of curvature ``κ`` when ``a κ > 1`` and diverges when ``a κ > 2``."""
        if self.form != "paper":
            return None
        lam_min = float(torch.linalg.eigvalsh(self.gaussian.cov)[0])
        return 1.0 / (lam_min * float(self.t_))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``c ~ π``, ``z'_0 = μ_c + L ε`` (Alg. 1). (n, D) float32."""
        z, _ = self.gaussian.sample(n, generator)
        return z


class NoPrior(_GaussianBuffers):
    """``E_q(z) = 0``: a plain EBM (HEAT Table 2 / Fig. 4 baseline). SGLD starts from one Gaussian
    fitted on the features (class labels ignored)."""

    name = "EBM"

    def __init__(self, reg: float = 1e-6, domain: str = "auto"):
        super().__init__()
        self._init_common(1.0, reg, domain)

    def fit(self, z, y=None, batch_size: int | None = None) -> "NoPrior":
        z = check_array(z, "z", ndim=2)
        self._fit_domain(z)
        self._fit_gaussian(z, None, batch_size, self.reg)
        return self

    def raw_energy(self, z: torch.Tensor) -> torch.Tensor:
        return z.sum(dim=1) * 0.0

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        z, _ = self.gaussian.sample(n, generator)
        return z
