"""Stochastic gradient Langevin dynamics (SGLD): draw approximate samples of ``p(x) ∝ exp(-E(x))``.

Two forms of one update (``form=``):

* ``"langevin"`` (HEAT Eq. 4 / Eq. 12, Welling & Teh 2011): ``z <- z - (η/2) ∇_z E(z) + sqrt(η) w``,
  ``w ~ N(0, I)``, ``η = step_size``. For small η the chain's stationary law is ``exp(-E)/Z`` itself.
* ``"decoupled"`` (JEM / Elflein code, App. B; HEAT code): ``x <- x - α ∇_x E(x) + σ w`` with α
  (``step_size``) and σ (``noise_std``) chosen separately (Elflein: α = 1, σ = 0.01). With σ² ≠ 2α this
  samples ``exp(-E/T)`` at temperature ``T = σ²/(2α)`` (here 5e-5: nearly a noisy gradient descent),
  which is what short-run contrastive divergence uses in practice.

Step and noise follow a schedule over the chain's steps ``t = 0..T-1`` (``schedule=``): constant,
linear from start to end (HEAT paper), or the HEAT code's ``(start - end)(1 - t/T)^2 + end``.
The update itself is ``ebm_ood.sampling.ops.sgld_step_`` (the fused op or its twin).
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from ebm_ood.energy import joint_energy
from ebm_ood.sampling import ops

FORMS = ("decoupled", "langevin")
DEFAULT_STEP_SIZE = 1.0  # α (decoupled: Elflein's CD) or η (langevin)
_SCHEDULES = ("constant", "linear", "poly")


def schedule_value(start: float, end: float | None, t: int, n_steps: int, schedule: str = "constant") -> float:
    """The step-size/noise value at step ``t`` of ``n_steps``.

    constant (or ``end`` None): ``start``; linear: ``start + (end - start) t / (T - 1)`` (both ends reached,
    HEAT paper); poly: ``(start - end)(1 - t/T)^2 + end`` (HEAT code's within-chain decay).
    """
    if schedule not in _SCHEDULES:
        raise ValueError(f"schedule: expected one of {_SCHEDULES}, got {schedule!r}")
    return _scheduled(start, end, t, n_steps, schedule)


def _scheduled(start: float, end: float | None, t: int, n_steps: int, schedule: str) -> float:
    """:func:`schedule_value` of a ``schedule`` already checked."""
    if schedule == "constant" or end is None:
        return float(start)
    if schedule == "linear":
        return float(start) if n_steps <= 1 else start + (end - start) * t / (n_steps - 1)
    return (start - end) * (1.0 - t / n_steps) ** 2 + end


def class_conditional_energy(logits_fn: Callable[[torch.Tensor], torch.Tensor], y: torch.Tensor):
    """``x -> E(x, y) = -f(x)[y]`` (Elflein Eq. 1, :func:`ebm_ood.energy.joint_energy`) with the classes
    ``y`` fixed, for class-conditional SGLD in supervised CD.

    logits_fn: (N, *shape) -> (N, C) logits f(x); y: (N,) int64 class per sample. Returns x -> (N,).
    """
    y = torch.as_tensor(y, dtype=torch.int64)

    def energy(x: torch.Tensor) -> torch.Tensor:
        logits = logits_fn(x)                                           # (N, C)
        return joint_energy(logits, y.to(logits.device))                # (N,)

    return energy


def _freeze(module: torch.nn.Module | None, eval_mode: bool):
    if module is None:
        return None
    saved = ([(m, m.training) for m in module.modules()], [(p, p.requires_grad) for p in module.parameters()])
    for p in module.parameters():
        p.requires_grad_(False)
    if eval_mode:
        module.eval()
    return saved


def _restore(saved) -> None:
    if saved is None:
        return
    modes, flags = saved
    for m, training in modes:
        m.training = training           # per module: children may have had different modes
    for p, flag in flags:
        p.requires_grad_(flag)


def _check_arguments(x0, n_steps, form, schedule, step_size, noise_std, step_end, noise_end,
                     clamp) -> tuple[float, float]:
    """Refuse bad arguments of :func:`sgld`, naming them; returns the clamp bounds ``(lo, hi)`` (±inf for none)."""
    if form not in FORMS:
        raise ValueError(f"form: expected one of {FORMS}, got {form!r}")
    if schedule not in _SCHEDULES:
        raise ValueError(f"schedule: expected one of {_SCHEDULES}, got {schedule!r}")
    if not isinstance(x0, torch.Tensor) or x0.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"x0: expected a float32 or float64 torch.Tensor, got "
                        f"{x0.dtype if isinstance(x0, torch.Tensor) else type(x0).__name__}")
    if int(n_steps) != n_steps or n_steps < 0:
        raise ValueError(f"n_steps: expected a non-negative integer, got {n_steps!r}")
    if schedule != "constant" and step_end is None:
        raise ValueError(f"step_end: required with schedule={schedule!r}")
    for name, value in (("step_size", step_size), ("noise_std", noise_std), ("step_end", step_end),
                        ("noise_end", noise_end)):
        if value is not None and not value >= 0:
            raise ValueError(f"{name}: must be >= 0, got {value}")
    lo, hi = (-math.inf, math.inf) if clamp is None else (float(clamp[0]), float(clamp[1]))
    if lo > hi:
        raise ValueError(f"clamp: expected (lo, hi) with lo <= hi, got {clamp}")
    return lo, hi


def _coefficients(form, step_size, step_end, noise_std, noise_end, n_steps, schedule) -> list[tuple[float, float]]:
    """``[(a_t, s_t)]`` for t = 0..n_steps-1: step t of SGLD is ``x <- x - a_t ∇E(x) + s_t w``, computed
    once before the chain runs."""
    updates = []
    for t in range(int(n_steps)):
        a = _scheduled(step_size, step_end, t, n_steps, schedule)
        if form == "langevin":           # HEAT Eq. 4: z <- z - η/2 ∇E + sqrt(η) w
            updates.append((a / 2.0, math.sqrt(a)))
        else:                            # Elflein code: x <- x - α ∇E + σ w
            updates.append((a, _scheduled(noise_std, noise_end, t, n_steps, schedule)))
    return updates


def sgld(energy, x0, *, n_steps, step_size=DEFAULT_STEP_SIZE, noise_std=0.01, form="decoupled", step_end=None, noise_end=None,
         schedule="constant", clamp=None, project=None, module=None, eval_mode=True, return_chain=False,
         generator=None):
    """Run ``n_steps`` of SGLD from ``x0`` on ``energy`` (HEAT Eq. 4/12; Elflein App. B code form).

    energy: callable (N, *shape) -> (N,) energies E(x). x0: (N, *shape) float32/float64 tensor (not modified).
    form: "langevin" (η = step_size scheduled to step_end; noise_std/noise_end ignored, noise sqrt(η)) or
      "decoupled" (α = step_size -> step_end, σ = noise_std -> noise_end).
    schedule: "constant" | "linear" | "poly" (see ``schedule_value``).
    clamp: None or (lo, hi) applied after each update (images: (-1, 1)).
    project: None or callable (N, *shape) -> (N, *shape) applied after each step (HEAT: the prior's ``project``).
    module: nn.Module behind ``energy``; during sampling its parameters get ``requires_grad=False`` (no
      ``.grad`` accumulates, no parameter-gradient work) and, with ``eval_mode``, it is in eval mode
      (Elflein code); both are restored afterwards, also on error.
    return_chain: also return the list ``[x_0, x_1, ..., x_T]`` (detached clones; for plots).
    generator: torch.Generator for the noise seed (default: torch's global generator).
    Returns x_T (N, *shape), detached; or (x_T, chain).
    """
    lo, hi = _check_arguments(x0, n_steps, form, schedule, step_size, noise_std, step_end, noise_end, clamp)
    seed = ops.draw_seed(generator)      # one Philox key per chain; offset = t never repeats within it
    x = x0.detach().clone().contiguous()
    chain = [x.clone()] if return_chain else None
    updates = _coefficients(form, step_size, step_end, noise_std, noise_end, n_steps, schedule)
    saved = _freeze(module, eval_mode)
    try:
        with torch.enable_grad():
            for t, (a, s) in enumerate(updates):
                x.requires_grad_(True)
                e = energy(x)
                if t == 0 and e.shape != (x.shape[0],):
                    raise ValueError(f"energy: expected shape ({x.shape[0]},) from energy(x), got {tuple(e.shape)}")
                (g,) = torch.autograd.grad(e.sum(), x)
                x = x.detach()
                # z_{t+1} = z_t - a_t ∇E(z_t) + s_t w_t (HEAT Eq. 4: a_t = η_t/2, s_t = √η_t; else α_t, σ_t)
                ops.sgld_step_(x, g, a, s, lo, hi, seed=seed, offset=t, check=t == 0)
                if project is not None:
                    x = project(x).detach().contiguous()
                if chain is not None:
                    chain.append(x.clone())
    finally:
        _restore(saved)
    return (x, chain) if return_chain else x
