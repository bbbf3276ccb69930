"""The divergence guard (ebm_ood.plumbing.divergence_guard): the parameter check against a brute-force numpy scan,
the loss/log checks' verdicts, and the restore on divergence. Its use inside ``train`` is in test_training.py."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from ebm_ood.plumbing.divergence_guard import check_losses, check_params, diverged
from ebm_ood.plumbing.errors import DivergenceError
from ebm_ood.plumbing.resume import snapshot


def _scan(modules, bound):
    """The first parameter, in module then parameter order, that is non-finite or above ``bound`` (numpy)."""
    for k, m in modules.items():
        for pn, p in m.named_parameters():
            if p.numel() == 0:
                continue
            top = float(np.max(np.abs(p.detach().numpy())))
            if not math.isfinite(top) or top > bound:
                return f"parameter {k}.{pn} reached |value| = {top:.3g} (bound max_param = {bound:.3g})"
    return None


def _modules(seed):
    torch.manual_seed(seed)
    empty = nn.Module()
    empty.p = nn.Parameter(torch.zeros(0))  # no values: nothing to check
    return {"a": nn.Linear(4, 3), "act": nn.ReLU(), "empty": empty, "b": nn.Linear(3, 2)}


@pytest.mark.parametrize("plant", [
    {},                                                   # all fine
    {("b", "bias", 1): 2e8},                              # above the bound
    {("b", "bias", 1): 1e8},                              # at the bound: allowed
    {("b", "weight", (0, 0)): float("nan"), ("a", "weight", (2, 1)): -float("inf")},  # the first one is named
    {("a", "bias", 0): -3e9, ("b", "weight", (1, 2)): 5e9},
])
def test_check_params_names_the_first_bad_parameter_like_a_numpy_scan(plant):
    modules = _modules(0)
    with torch.no_grad():
        for (k, pn, idx), value in plant.items():
            getattr(modules[k], pn)[idx] = value
    assert check_params(modules, 1e8) == _scan(modules, 1e8)
    assert (check_params(modules, 1e8) is None) == (not plant or max(abs(v) for v in plant.values()) <= 1e8)
    assert check_params({"act": nn.ReLU()}, 1.0) is None  # no parameters at all


def test_check_losses_verdicts():
    keys, bound = ("e_pos", "e_neg"), 1e5
    ok = {"main": torch.tensor(1.5)}
    assert check_losses(ok, {"e_pos": -3.0, "other": 1e9}, keys, bound) is None  # only guard_keys are bounded
    assert check_losses({"ebm": torch.tensor(1.0), "gen": torch.tensor(float("nan"))}, {"e_pos": 1e9}, keys, bound) \
        == "non-finite loss (gen = nan)"                                           # losses before logs
    assert check_losses(ok, {"other": float("-inf")}, keys, bound) == "non-finite other = -inf"
    assert check_losses(ok, {"e_neg": np.float32(-2e5)}, keys, bound) == "|e_neg| = 2e+05 exceeds the bound 1e+05"
    assert check_losses(ok, {"e_neg": 1e5}, keys, bound) is None                   # at the bound: allowed


def test_diverged_restores_the_snapshot_and_returns_the_error():
    modules = _modules(1)
    good = snapshot(modules)
    w0 = modules["b"].weight.detach().clone()
    with torch.no_grad():
        modules["b"].weight.mul_(1e9)
    err = diverged("toy", 7, "non-finite loss (main = nan)", modules, good, {"loss_main": 0.25})
    assert isinstance(err, DivergenceError)
    assert (err.method, err.step, err.last_finite) == ("toy", 7, {"loss_main": 0.25})
    assert str(err).startswith("toy diverged at step 7: non-finite loss (main = nan). "
                               "Last finite values: loss_main=0.25.")
    assert torch.equal(modules["b"].weight, w0)
