"""HEAT's parts for ``ebm-ood bench detectors``: zero-argument calls that score a batch of features with
each piece of HEAT (Lafon et al. 2023, Table 12): the prior energies (EL, GMM), the residual MLP
``E_θ`` forward, a hybrid energy ``E_q + E_θ``, and — when :mod:`ebm_ood.heat.compose` provides it — the
composition of three standardised energies (HEAT Eq. 7) and the whole HEAT score (3 hybrids + composition).

Kept apart from :mod:`ebm_ood.bench.detectors` so that the timing harness does not depend on HEAT's API.
The residual MLP is timed untrained (its cost does not depend on its weights).
"""
from __future__ import annotations

import numpy as np
import torch


def timers(z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray, w: np.ndarray, b: np.ndarray) -> dict:
    """name → call. Raises ImportError / AttributeError when ``ebm_ood.heat`` lacks a needed piece."""
    from ebm_ood.heat.hybrid import HybridEnergy, ResidualMLP
    from ebm_ood.heat.priors import ELPrior, GMMPrior

    el = ELPrior(w, b).fit(z_train, y_train).eval()
    gmm = GMMPrior().fit(z_train, y_train).eval()
    gmm_code = GMMPrior(form="code").fit(z_train, y_train).eval()
    mlp = ResidualMLP(z_train.shape[1]).eval()  # width 2·D (1024 for 512-d features, as in the paper)
    mlp.set_input_stats(z_train)
    hybrids = [HybridEnergy(p, m).eval() for p, m in ((el, mlp), (gmm, mlp), (gmm_code, mlp))]
    z = torch.as_tensor(z_test)

    def no_grad(fn):
        def call():
            with torch.no_grad():
                return fn()
        return call

    out = {
        "HEAT: EL prior E_q": no_grad(lambda: el(z)),
        "HEAT: GMM prior E_q (paper form)": no_grad(lambda: gmm(z)),
        "HEAT: GMM prior E_q (code form, L2)": no_grad(lambda: gmm_code(z)),
        "HEAT: residual MLP E_θ forward": no_grad(lambda: mlp(z)),
        "HEAT: hybrid E_q + E_θ (GMM)": no_grad(lambda: hybrids[1](z)),
    }
    out.update(_composition_timers(hybrids, z, z_train))
    return out


def _composition_timers(hybrids, z: torch.Tensor, z_train: np.ndarray) -> dict:
    """HEAT Eq. 7 on three energies, and the full HEAT score; empty when compose is not available."""
    try:
        from ebm_ood.heat import compose

        return compose_timers(compose, hybrids, z, z_train)
    except (ImportError, AttributeError):
        return {}


def compose_timers(compose, hybrids, z: torch.Tensor, z_train: np.ndarray) -> dict:
    """Eq. 7 (β = 0) on the standardised energies of the three hybrids, alone and as the full HEAT score.
    The third hybrid (GMM, authors' code form) stands in for HEAT-GMM-std: same cost, other features."""
    with torch.no_grad():
        zt = torch.as_tensor(z_train[:2000])
        standardizer = compose.Standardizer().fit(torch.stack([h(zt) for h in hybrids], 1).double().numpy())
        energies = torch.stack([h(z) for h in hybrids], 1).double().numpy()  # (N, 3)

    def full():
        with torch.no_grad():
            e = torch.stack([h(z) for h in hybrids], 1).double().numpy()
        return compose.compose_energies(standardizer.transform(e), 0.0)

    return {
        "HEAT: composition Eq. 7 of 3 standardised energies": lambda: compose.compose_energies(
            standardizer.transform(energies), 0.0),
        "HEAT: full score (3 hybrids + composition)": full,
    }
