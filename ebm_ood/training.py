"""The one small trainer every method shares: Adam, linear learning-rate warm-up, model selection on
ID validation data only, a divergence guard, resumable checkpoints and a progress bar.

A method supplies ``step_fn(xb, yb, step) -> (loss, logs)`` where ``loss`` is a scalar tensor, or a
dict ``{optimizer_name: loss}`` when several optimizers train different parameters (VERA: the EBM and
the generator). Each loss is back-propagated only into its own optimizer's parameters
(``backward(inputs=...)``). ``logs`` maps names to floats; keys listed in ``guard_keys`` (energies)
are checked against ``max_abs`` by the divergence guard.
"""
from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from ebm_ood.checkpoint import load_checkpoint, save_checkpoint
from ebm_ood.errors import DivergenceError
from ebm_ood.validation import check_positive

PRESETS = ("quick", "default", "full")
KINDS = ("tabular", "image")


@dataclass
class TrainConfig:
    steps: int = 1000  # optimisation steps
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup: int = 0  # steps of linear learning-rate warm-up (Elflein CD: 2,500)
    eval_every: int = 100  # steps between validations / snapshots
    patience: int | None = None  # validations without improvement before stopping early
    max_abs: float = 1e5  # divergence guard: bound on |logged energies|
    guard_keys: tuple[str, ...] = ("e_pos", "e_neg")
    seed: int = 0  # batch order
    progress: bool = True
    checkpoint_path: str | None = None  # resumable training state, saved at every validation
    lrs: dict = field(default_factory=dict)  # per-optimizer learning rates, e.g. {"gen": 6e-5}


@dataclass
class History:
    steps_done: int = 0
    best_step: int = -1
    best_value: float = -math.inf
    logs: list = field(default_factory=list)  # (step, {name: value}) at every validation
    stopped_early: bool = False


def check_preset(preset: str, kind: str | None = None) -> None:
    """The methods' ``*_config(preset, kind)`` arguments: ``preset`` in :data:`PRESETS`, ``kind`` in :data:`KINDS`."""
    if preset not in PRESETS:
        raise ValueError(f"preset: expected 'quick', 'default' or 'full', got {preset!r}")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind: expected 'tabular' or 'image', got {kind!r}")


def _check_config(config: TrainConfig, groups: dict[str, list[str]]) -> None:
    for name in ("batch_size", "eval_every"):
        value = getattr(config, name)
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    for name in ("steps", "warmup"):
        value = getattr(config, name)
        if not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name}: expected a non-negative integer, got {value!r}")
    if config.patience is not None and (not isinstance(config.patience, (int, np.integer)) or config.patience < 1):
        raise ValueError(f"patience: expected None or a positive integer, got {config.patience!r}")
    check_positive(config.lr, "lr")
    check_positive(config.max_abs, "max_abs")
    check_positive(config.weight_decay, "weight_decay", allow_zero=True)
    for g, lr in config.lrs.items():
        if g not in groups:
            raise ValueError(f"lrs: {g!r} is not an optimizer; expected keys among {sorted(groups)}")
        check_positive(lr, f"lrs[{g!r}]")


def _params(modules: dict[str, nn.Module], names) -> list[nn.Parameter]:
    return [p for n in names for p in modules[n].parameters() if p.requires_grad]


def train(
    modules: dict[str, nn.Module],
    step_fn: Callable,
    x: torch.Tensor,
    y: torch.Tensor | None,
    config: TrainConfig,
    *,
    name: str,
    groups: dict[str, list[str]] | None = None,
    validate: Callable[[], float] | None = None,
    stateful: dict | None = None,
) -> History:
    """Run ``config.steps`` optimisation steps of ``step_fn`` on random mini-batches of ``(x, y)``.

    ``groups`` maps optimizer names to module names (default: one optimizer ``"main"`` over all
    modules). ``validate()`` returns a number where higher is better (ID validation only); the modules
    end with the weights of the best validation. ``stateful`` holds extra objects with
    ``state_dict``/``load_state_dict`` (a replay buffer) saved in checkpoints. On divergence the modules
    are restored to their last good snapshot and :class:`DivergenceError` is raised.
    """
    groups = groups or {"main": list(modules)}
    stateful = stateful or {}
    _check_config(config, groups)
    for g, names in groups.items():
        if unknown := [n for n in names if n not in modules]:
            raise ValueError(f"groups: optimizer {g!r} names modules {unknown} that are not in modules {sorted(modules)}")
    n = x.shape[0]
    if n == 0:
        raise ValueError("x: expected at least one training sample, got none")
    if y is not None and y.shape[0] != n:
        raise ValueError(f"y: expected {n} labels (one per sample of x), got {y.shape[0]}")
    params = {g: _params(modules, names) for g, names in groups.items()}
    optimizers = {
        g: torch.optim.Adam(params[g], lr=config.lrs.get(g, config.lr), betas=config.betas,
                            weight_decay=config.weight_decay)
        for g in groups
    }
    warm = int(config.warmup)
    schedulers = {g: torch.optim.lr_scheduler.LambdaLR(o, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0)
                  for g, o in optimizers.items()}
    batch_gen = torch.Generator().manual_seed(int(config.seed))
    hist = History()
    snapshot = _snapshot(modules)
    best = snapshot
    start, evals_without_gain = 0, 0

    if config.checkpoint_path and os.path.exists(config.checkpoint_path):
        ck = load_checkpoint(config.checkpoint_path)
        for k, m in modules.items():
            m.load_state_dict(ck["modules"][k])
        for g in optimizers:
            optimizers[g].load_state_dict(ck["optimizers"][g])
            schedulers[g].load_state_dict(ck["schedulers"][g])
        for k, obj in stateful.items():
            obj.load_state_dict(ck["stateful"][k])
        batch_gen.set_state(ck["batch_rng"])
        torch.set_rng_state(ck["torch_rng"])
        start, evals_without_gain = int(ck["step"]), int(ck["evals_without_gain"])
        hist.best_step, hist.best_value = int(ck["best_step"]), float(ck["best_value"])
        hist.logs = [(int(s), dict(l)) for s, l in ck["logs"]]
        best, snapshot = ck["best"], _snapshot(modules)

    bs = min(config.batch_size, n)
    last_finite: dict = {}
    bar = _progress(config.steps, start, name, config.progress)
    for step in range(start, config.steps):
        idx = torch.randint(0, n, (bs,), generator=batch_gen).to(x.device)
        xb, yb = x[idx], (y[idx] if y is not None else None)
        for m in modules.values():
            m.train()
        losses, logs = step_fn(xb, yb, step)
        if not isinstance(losses, dict):
            losses = {next(iter(groups)): losses}
        elif unknown := sorted(set(losses) - set(groups)):
            raise ValueError(f"step_fn: returned losses {unknown} for no optimizer; the optimizers are {sorted(groups)}")
        problem = _check(losses, logs, config)
        if problem:
            _restore(modules, snapshot)
            bar.close()
            raise DivergenceError(name, step, problem, last_finite)
        for o in optimizers.values():
            o.zero_grad(set_to_none=True)
        for g, loss in losses.items():
            loss.backward(inputs=params[g], retain_graph=len(losses) > 1)
        for g, o in optimizers.items():
            o.step()
            schedulers[g].step()
        last_finite = {**{f"loss_{g}": float(l.detach()) for g, l in losses.items()}, **{k: float(v) for k, v in logs.items()}}
        bar.update(1)
        if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
            value = float(validate()) if validate is not None else float(step)
            hist.logs.append((step + 1, {**last_finite, "val": value}))
            snapshot = _snapshot(modules)
            if value > hist.best_value:
                hist.best_value, hist.best_step, best, evals_without_gain = value, step + 1, snapshot, 0
            else:
                evals_without_gain += 1
            if config.checkpoint_path:
                save_checkpoint({
                    "modules": {k: m.state_dict() for k, m in modules.items()},
                    "optimizers": {g: o.state_dict() for g, o in optimizers.items()},
                    "schedulers": {g: s.state_dict() for g, s in schedulers.items()},
                    "stateful": {k: o.state_dict() for k, o in stateful.items()},
                    "batch_rng": batch_gen.get_state(), "torch_rng": torch.get_rng_state(),
                    "step": step + 1, "evals_without_gain": evals_without_gain,
                    "best_step": hist.best_step, "best_value": hist.best_value, "best": best,
                    "logs": [[s, l] for s, l in hist.logs],
                }, config.checkpoint_path)
            if config.patience is not None and evals_without_gain >= config.patience:
                hist.stopped_early = True
                break
    bar.close()
    hist.steps_done = step + 1 if hist.stopped_early else config.steps
    _restore(modules, best)
    for m in modules.values():
        m.eval()
    return hist


def _check(losses: dict, logs: dict, config: TrainConfig) -> str | None:
    for g, l in losses.items():
        if not torch.isfinite(l.detach()).all():
            return f"non-finite loss ({g} = {float(l.detach())})"
    for k, v in logs.items():
        v = float(v)
        if not math.isfinite(v):
            return f"non-finite {k} = {v}"
        if k in config.guard_keys and abs(v) > config.max_abs:
            return f"|{k}| = {abs(v):.3g} exceeds the bound {config.max_abs:.3g}"
    return None


def _snapshot(modules: dict[str, nn.Module]) -> dict:
    return {k: copy.deepcopy(m.state_dict()) for k, m in modules.items()}


def _restore(modules: dict[str, nn.Module], snap: dict) -> None:
    for k, m in modules.items():
        m.load_state_dict(snap[k])


def _progress(total: int, start: int, name: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, desc=name, leave=False, disable=(not enabled) or None, dynamic_ncols=True)


def to_tensor(x, device=None, dtype=torch.float32) -> torch.Tensor | None:
    """numpy or tensor → contiguous tensor on ``device``; ``None`` (no labels) stays ``None``."""
    if x is None:
        return None
    if isinstance(x, torch.Tensor):
        return x.to(device=device, dtype=dtype)
    return torch.as_tensor(np.ascontiguousarray(x), dtype=dtype, device=device)


def batched_mean(fn: Callable[..., torch.Tensor], *tensors: torch.Tensor, batch_size: int) -> float:
    """``mean_n fn(...)_n`` over all samples, evaluated ``batch_size`` samples at a time (validation criteria).

    ``fn(*batches) -> (B,)`` per-sample values for aligned slices of ``tensors`` (each (N, ...)); the sum
    is accumulated in float64. Gradients are left to the caller (SSM's criterion needs them).
    """
    n = tensors[0].shape[0]
    if n == 0:
        raise ValueError("tensors: expected at least one sample, got none")
    total = 0.0
    for i in range(0, n, batch_size):
        total += float(fn(*(t[i : i + batch_size] for t in tensors)).detach().double().sum())
    return total / n


def seed_everything(seed: int) -> None:
    """One seed fixes every CPU result: torch (and the fused op's noise, which is seeded from torch)
    and numpy's legacy global generator."""
    torch.manual_seed(int(seed))
    np.random.seed(int(seed) % (2**32))
