"""The divergence guard of :func:`ebm_ood.training.train`: stop a run whose training has blown up.

Every step, before the backward pass, :func:`check_losses` looks at the losses and the logged values
(finite; the energies named in ``guard_keys`` bounded by ``max_abs``); after every optimizer step,
:func:`check_params` looks at the parameters (finite, ``|p| <= max_param``), so the snapshot restored on
divergence (:func:`diverged`) is never an exploded one.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ebm_ood.plumbing.errors import DivergenceError
from ebm_ood.plumbing.resume import restore


def check_losses(losses: dict[str, torch.Tensor], logs: dict, guard_keys: tuple[str, ...],
                 max_abs: float) -> str | None:
    """The problem with a step's ``losses`` ({optimizer: scalar tensor}) and ``logs`` ({name: float}):
    a non-finite loss or logged value, or a value named in ``guard_keys`` with ``|value| > max_abs``;
    ``None`` when there is none."""
    for g, l in losses.items():
        if not torch.isfinite(l.detach()).all():
            return f"non-finite loss ({g} = {float(l.detach())})"
    for k, v in logs.items():
        v = float(v)
        if not math.isfinite(v):
            return f"non-finite {k} = {v}"
        if k in guard_keys and abs(v) > max_abs:
            return f"|{k}| = {abs(v):.3g} exceeds the bound {max_abs:.3g}"
    return None


def check_params(modules: dict[str, nn.Module], bound: float) -> str | None:
    """The first parameter of ``modules`` that is non-finite or has ``|value| > bound``, named; else ``None``."""
    named = [(f"{k}.{pn}", p) for k, m in modules.items() for pn, p in m.named_parameters() if p.numel()]
    if not named:
        return None
    dev = named[0][1].device
    tops = torch.stack([p.detach().abs().amax().float().to(dev) for _, p in named])
    if bool(torch.isfinite(tops).all()) and float(tops.max()) <= bound:  # one device sync per step
        return None
    for (pname, _), top in zip(named, tops.tolist()):
        if not math.isfinite(top) or top > bound:
            return f"parameter {pname} reached |value| = {top:.3g} (bound max_param = {bound:.3g})"
    return None


def diverged(name: str, step: int, problem: str, modules: dict[str, nn.Module], good: dict,
             last_finite: dict) -> DivergenceError:
    """Restore ``modules`` to ``good`` (the snapshot of the last validation) and return the error to raise:
    method ``name`` diverged at ``step`` because of ``problem``; ``last_finite`` holds the last finite values."""
    restore(modules, good)
    return DivergenceError(name, step, problem, last_finite)
