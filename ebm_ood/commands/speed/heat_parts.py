"""HEAT's parts for ``ebm-ood bench detectors``: zero-argument calls that score a batch of features with
each piece of HEAT (Lafon et al. 2023, Table 12): the prior energies (EL, GMM), the residual MLP
``E_θ`` forward, a hybrid energy ``E_q + E_θ``, the composition of three standardised energies (HEAT Eq. 7)
and the whole HEAT score (3 hybrids + composition). The residual MLP is timed untrained (its cost does not
depend on its weights).
"""
from __future__ import annotations

import numpy as np
import torch

from ebm_ood.heat.compose import Standardizer, compose_energies
from ebm_ood.heat.hybrid import HybridEnergy, ResidualMLP
from ebm_ood.heat.priors import ELPrior, GMMPrior


def timers(z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray, w: np.ndarray, b: np.ndarray) -> dict:
    """name → a zero-argument call that scores ``z_test`` (M, D) with one part of HEAT."""
    el = ELPrior(w, b).fit(z_train, y_train).eval()
    gmm = GMMPrior().fit(z_train, y_train).eval()                    # the default: L2-normalised features
    gmm_raw = GMMPrior(normalize=False).fit(z_train, y_train).eval()
    mlp = ResidualMLP(z_train.shape[1]).eval()  # width 2·D (1024 for 512-d features, as in the paper)
    mlp.set_input_stats(z_train)
    hybrids = [HybridEnergy(p, m).eval() for p, m in ((el, mlp), (gmm, mlp), (gmm_raw, mlp))]
    z = torch.as_tensor(z_test)

    def no_grad(fn):
        def call():
            with torch.no_grad():
                return fn()
        return call

    out = {
        "HEAT: EL prior E_q": no_grad(lambda: el(z)),
        "HEAT: GMM prior E_q (L2-normalised features)": no_grad(lambda: gmm(z)),
        "HEAT: GMM prior E_q (raw features)": no_grad(lambda: gmm_raw(z)),
        "HEAT: residual MLP E_θ forward": no_grad(lambda: mlp(z)),
        "HEAT: hybrid E_q + E_θ (GMM)": no_grad(lambda: hybrids[1](z)),
    }
    out.update(compose_timers(hybrids, z, z_train))
    return out


def compose_timers(hybrids, z: torch.Tensor, z_train: np.ndarray) -> dict:
    """Eq. 7 (β = 0) on the standardised energies of the three hybrids, alone and as the full HEAT score.
    The third hybrid (GMM on raw features) stands in for HEAT-GMM-std: same cost, other features."""
    def energies(a: torch.Tensor) -> np.ndarray:   # (N, 3) float64
        with torch.no_grad():
            return torch.stack([h(a) for h in hybrids], 1).double().numpy()

    standardizer = Standardizer().fit(energies(torch.as_tensor(z_train[:2000])))
    e_test = energies(z)
    return {
        "HEAT: composition Eq. 7 of 3 standardised energies": lambda: compose_energies(standardizer.transform(e_test), 0.0),
        "HEAT: full score (3 hybrids + composition)": lambda: compose_energies(standardizer.transform(energies(z)), 0.0),
    }
